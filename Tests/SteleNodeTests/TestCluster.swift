import Foundation
import Logging
import NIOCore
import NIOPosix
import SteleAdversary
import SteleAudit
import SteleCore
import SteleCrypto
import SteleHarness
import SteleLedger
import SteleTestSupport
@testable import SteleNode

/// A 4-replica config on free ports of 127.0.0.1 and the replicas' keys, for replicas run
/// inside the test process. The cluster id is fresh each time, so a connection left over from
/// another test to a reused port fails its handshake.
func localCluster() throws -> (config: ClusterConfig, keys: [KeyPair]) {
    let ports = try LocalPorts.free(4).map { UInt16($0) }
    let replicas = TestReplicas(n: 4, cluster: ClusterID(bytes: SecureRandom.bytes(16))!, ports: .listed(ports))
    return (replicas.config, replicas.keys)
}

/// A 4-replica cluster of real `stele replica` processes on 127.0.0.1, in a scratch directory.
/// Every process it started is stopped by PID in `shutdown()` (call it in a defer).
final class TestCluster: @unchecked Sendable {
    let directory: ClusterDirectory
    let config: ClusterConfig
    let clientKey: KeyPair
    private(set) var processes: [ReplicaID: Process] = [:]
    let tickMilliseconds: Int
    var logs: [ReplicaID: URL] = [:]
    /// Replicas started with `--byzantine MODE --allow-byzantine`.
    let byzantine: [ReplicaID: ByzantineMode]

    /// `stele replica --frame-bytes-max`, when set.
    let frameBytesMax: Int?

    init(replicas: Int = 4, tickMilliseconds: Int = 20, byzantine: [ReplicaID: ByzantineMode] = [:], frameBytesMax: Int? = nil,
         batchBytesMax: Int = ProtocolParameters().batchBytesMax) throws {
        self.byzantine = byzantine
        self.frameBytesMax = frameBytesMax
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("stele-e2e-\(UUID().uuidString.prefix(8))").path
        let ports = try LocalPorts.free(replicas)
        // Ports are consecutive from base-port in `cluster init`; write the config with the
        // ephemeral ports instead.
        var parameters = ProtocolParameters()
        parameters.checkpointInterval = 8
        parameters.watermarkWindow = 32
        parameters.batchBytesMax = batchBytesMax
        try ClusterDirectory.initialize(root: root, replicas: replicas, f: nil, host: "127.0.0.1", basePort: 20000, parameters: parameters, force: false)
        directory = ClusterDirectory(root)
        let initial = try directory.loadConfig()
        let endpoints = initial.replicas.enumerated().map { index, replica in
            ReplicaEndpoint(id: replica.id, host: "127.0.0.1", port: UInt16(ports[index]), publicKey: replica.publicKey)
        }
        config = try ClusterConfig(cluster: initial.cluster, f: initial.f, replicas: endpoints, parameters: parameters)
        try config.jsonData().write(to: URL(fileURLWithPath: directory.configPath))
        clientKey = try KeyFile.read(from: directory.clientKeyPath)
        self.tickMilliseconds = tickMilliseconds
    }

    func startAll() throws {
        for id in config.replicaIDs { try start(id) }
    }

    func start(_ id: ReplicaID) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: builtSteleExecutable())
        process.arguments = ["replica", "--dir", directory.root, "--id", "\(id.value)", "--tick-ms", "\(tickMilliseconds)", "--log-level", "info"]
        if let mode = byzantine[id] { process.arguments! += ["--byzantine", mode.rawValue, "--allow-byzantine"] }
        if let frameBytesMax { process.arguments! += ["--frame-bytes-max", "\(frameBytesMax)"] }
        let log = URL(fileURLWithPath: "\(directory.root)/replica-\(id.value).log")
        if !FileManager.default.fileExists(atPath: log.path) { FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        processes[id] = process
        logs[id] = log
    }

    /// Waits until every running replica answers a status query (it is listening and serving).
    func waitUntilServing(timeout: Duration = .seconds(60)) async throws -> Bool {
        let running = processes.keys.sorted()
        return try await withClient { client in
            await eventually(timeout: timeout) {
                for id in running where await client.status(of: id, timeout: .milliseconds(500)) == nil { return false }
                return true
            }
        }
    }

    func pid(_ id: ReplicaID) -> Int32? { processes[id].map(\.processIdentifier) }

    func kill9(_ id: ReplicaID) {
        guard let process = processes[id], process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        waitForExit(process)
        processes[id] = nil
    }

    func signal(_ id: ReplicaID, _ number: Int32) {
        guard let process = processes[id], process.isRunning else { return }
        kill(process.processIdentifier, number)
    }

    /// SIGCONT (in case it is stopped), SIGTERM, then SIGKILL after 5 s; removes the directory
    /// unless STELE_KEEP_E2E is set.
    func shutdown() {
        for (_, process) in processes where process.isRunning {
            kill(process.processIdentifier, SIGCONT)
            kill(process.processIdentifier, SIGTERM)
        }
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline, processes.values.contains(where: \.isRunning) { usleep(20_000) }
        for (_, process) in processes where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            waitForExit(process)
        }
        processes = [:]
        if ProcessInfo.processInfo.environment["STELE_KEEP_E2E"] == nil {
            try? FileManager.default.removeItem(atPath: directory.root)
        }
    }

    func logTail(_ id: ReplicaID, lines: Int = 30) -> String {
        guard let log = logs[id], let text = try? String(contentsOf: log, encoding: .utf8) else { return "" }
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    func withClient<T: Sendable>(_ body: (SteleClient) async throws -> T) async throws -> T {
        var settings = SteleClient.Settings()
        settings.retransmitAfter = .milliseconds(300)
        settings.retransmitAfterMax = .seconds(1)
        return try await SteleClient.with(config: config, keyPair: clientKey, settings: settings, logger: Logger(label: "test.client"), body)
    }

    /// Every block of replica `id`'s ledger, read from the file (read-only, while it runs).
    func ledgerBlocks(_ id: ReplicaID) throws -> [CertifiedBlock] {
        let store = try LedgerStore.open(path: directory.ledgerPath(id), expectedGenesis: config.genesis, access: .readOnly)
        guard store.head.height.value >= 1 else { return [] }
        var blocks: [CertifiedBlock] = []
        var next: UInt64 = 1
        while next <= store.head.height.value {
            let last = min(store.head.height.value, next + 511)
            blocks += try store.blocks(from: SequenceNumber(next), to: SequenceNumber(last))
            next = last + 1
        }
        return blocks
    }

    func height(_ id: ReplicaID) -> UInt64 {
        (try? LedgerStore.open(path: directory.ledgerPath(id), expectedGenesis: config.genesis, access: .readOnly).head.height.value) ?? 0
    }

    /// The stele-check verdict over the given replicas' ledger files.
    func audit(_ replicas: [ReplicaID]) throws -> AuditReport {
        try Auditor(config: config).audit(paths: replicas.map { directory.ledgerPath($0) })
    }
}
