import ArgumentParser
import Foundation
import Logging
import SteleAdversary
import SteleCore
import SteleCrypto
import SteleLedger
import SteleNode

struct ReplicaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replica",
        abstract: "Run one replica in the foreground (the production shape: one per machine).",
        discussion: """
        Either --dir DIR --id I (a directory made by `stele cluster init`), or
        --config FILE --key FILE --data DIR --id I (one machine of a real deployment).
        SIGTERM or Ctrl-C stops it cleanly.

        Fault injection: --byzantine MODE --allow-byzantine makes this replica attack its own
        cluster (modes: \(ByzantineMode.allCases.map(\.rawValue).joined(separator: ", "))). It
        logs that loudly and is refused without --allow-byzantine. See docs/security.md.
        """)

    @Option(help: "The cluster directory.")
    var dir: String?

    @Option(help: "This replica's id (0 ..< n).")
    var id: UInt16

    @Option(help: "The cluster config (cluster.json), with --key and --data.")
    var config: String?

    @Option(help: "This replica's secret key file (0600).")
    var key: String?

    @Option(help: "Where this replica keeps its ledger and write-ahead log.")
    var data: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .customLong("tick-ms"), help: "Milliseconds per protocol tick.")
    var tickMilliseconds: Int = 50

    @Option(name: .customLong("frame-bytes-max"),
            help: ArgumentHelp("Largest frame accepted from clients and unauthenticated peers (links between replicas allow a watermark window of full batches on top).", visibility: .hidden))
    var frameBytesMax: Int = NodeSettings().frameBytesMax

    @Option(name: .customLong("metrics-port"), help: "Serve Prometheus metrics at http://127.0.0.1:PORT/metrics.")
    var metricsPort: Int?

    @Option(help: ArgumentHelp("Misbehave on purpose (fault-injection testing only; needs --allow-byzantine).", valueName: "mode"))
    var byzantine: ByzantineMode?

    @Flag(name: .customLong("allow-byzantine"), help: "Confirm --byzantine: this replica will attack its own cluster.")
    var allowByzantine = false

    func validate() throws {
        if frameBytesMax < 64 * 1024 {
            throw ValidationError("--frame-bytes-max must be at least 65536 (a request of the largest payload must fit)")
        }
        if byzantine != nil, !allowByzantine {
            throw ValidationError("--byzantine makes this replica attack its own cluster; add --allow-byzantine to confirm (fault-injection testing only)")
        }
        if byzantine == nil, allowByzantine {
            throw ValidationError("--allow-byzantine is only meaningful with --byzantine MODE")
        }
    }

    func run() async throws {
        let replicaID = ReplicaID(id)
        // Before any metric is created: metrics made earlier would stay unexported.
        let registry = metricsPort.map { _ in PrometheusMetrics.bootstrap() }
        var logger = makeLogger("stele.replica", level: logLevel)
        logger[metadataKey: "replica"] = "\(id)"
        let clusterConfig: ClusterConfig
        let keyPair: KeyPair
        let ledgerPath: String
        let walPath: String
        var pidPath: String?
        do {
            if let dir {
                let directory = ClusterDirectory(dir)
                clusterConfig = try directory.loadConfig()
                keyPair = try KeyFile.read(from: directory.keyPath(replicaID))
                ledgerPath = directory.ledgerPath(replicaID)
                walPath = directory.walPath(replicaID)
                pidPath = directory.pidPath(replicaID)
                try FileManager.default.createDirectory(atPath: directory.stateDirectory, withIntermediateDirectories: true)
                try FileManager.default.createDirectory(atPath: directory.ledgersDirectory, withIntermediateDirectories: true)
            } else if let config, let key, let data {
                clusterConfig = try ClusterConfig.load(path: config)
                keyPair = try KeyFile.read(from: key)
                try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
                ledgerPath = "\(data)/replica-\(id).ledger"
                walPath = "\(data)/replica-\(id).wal"
            } else {
                throw ValidationError("give --dir DIR, or --config FILE --key FILE --data DIR")
            }
            guard clusterConfig.isMember(replicaID) else {
                throw ValidationError("replica \(id) is not in the cluster (n = \(clusterConfig.n))")
            }
        } catch let error as ValidationError {
            throw error
        } catch {
            fail("\(error)", code: 2)
        }
        let ledger: LedgerStore
        do {
            if FileManager.default.fileExists(atPath: ledgerPath) {
                ledger = try LedgerStore.open(path: ledgerPath, expectedGenesis: clusterConfig.genesis)
                if let torn = ledger.openReport.tornTail {
                    logger.warning("ledger had a torn tail; truncated it", metadata: ["detail": "\(torn)"])
                }
            } else {
                ledger = try LedgerStore.create(path: ledgerPath, genesis: clusterConfig.genesis)
            }
        } catch {
            fail("\(error)", code: 2)
        }
        var settings = NodeSettings()
        settings.tickInterval = .milliseconds(max(1, tickMilliseconds))
        settings.frameBytesMax = frameBytesMax
        let node: ReplicaNode
        do {
            node = try ReplicaNode(config: clusterConfig, id: replicaID, keyPair: keyPair, ledger: ledger, walPath: walPath, settings: settings, byzantine: byzantine, logger: logger)
        } catch {
            fail("\(error)", code: 2)
        }
        if let pidPath { try? "\(getpid())\n".write(toFile: pidPath, atomically: true, encoding: .utf8) }
        defer { if let pidPath { try? FileManager.default.removeItem(atPath: pidPath) } }

        let metricsPort = self.metricsPort
        let runTask = Task {
            try await withThrowingDiscardingTaskGroup { group in
                if let registry, let metricsPort {
                    group.addTask { try await PrometheusMetrics.serve(registry: registry, host: "127.0.0.1", port: metricsPort) }
                }
                group.addTask { try await node.run() }
            }
        }
        let stopLogger = logger
        let signals = StopSignals { number in
            stopLogger.info("stopping on signal \(number)")
            runTask.cancel()
        }
        defer { signals.cancel() }
        do {
            try await runTask.value
        } catch is CancellationError {
        } catch {
            if !runTask.isCancelled { fail("replica \(id) stopped: \(error)", code: 1) }
        }
        logger.info("stopped")
    }
}

extension ByzantineMode: ExpressibleByArgument {
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}
