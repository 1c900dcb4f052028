import Foundation
import Histogram
import Logging
import SteleCore
import SteleCrypto
import SteleHarness
import SteleNode
import Synchronization

/// How `stele bench` loads its cluster.
public struct BenchOptions: Sendable {
    /// Seconds measured, after `warmup` seconds not measured.
    public var duration: Double = 30
    public var warmup: Double = 5
    /// Client keys, each keeping `outstanding` requests in flight.
    public var clients = 16
    public var outstanding = 64
    public var payloadBytes = 100
    /// Open loop: offered transactions per second over all clients (0: closed loop).
    public var rate: Double = 0
    public var pipelineDepth: Int?
    public var batchSize: Int?
    /// Where the cluster lives (kept); a scratch directory, removed at the end, when nil.
    public var directory: String?
    public var flood: FloodKind = .none
    /// Runs the replicas (`stele`, or a wrapper such as tools/profile-replica).
    public var replicaExecutable: String

    public init(replicaExecutable: String) {
        self.replicaExecutable = replicaExecutable
    }
}

/// One `stele bench` run: a 4-replica cluster of separate processes on 127.0.0.1 (through the
/// harness's launcher, replica output in `DIR/replicas.log`), driven with the options' load,
/// measured, and stopped (also on SIGINT or SIGTERM, which end the process with status 130).
public struct BenchRun: Sendable {
    public let options: BenchOptions
    /// Progress lines (not the report).
    public let say: @Sendable (String) -> Void

    public init(options: BenchOptions, say: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.say = say
    }

    /// Runs the bench and hands the report to `publish` before the cluster is torn down, so that
    /// whatever happens while the replicas stop cannot lose it.
    public func run(publish: (BenchReport) throws -> Void) async throws {
        say("measuring Ed25519 on one core ...")
        let ratesBefore = measureEd25519()
        let scratch = "stele-bench-\(UUID().uuidString.prefix(8))"
        let root = options.directory ?? FileManager.default.temporaryDirectory.appendingPathComponent(scratch).path
        let config = try ClusterDirectory.initializeOnFreePorts(root: root, replicas: 4, parameters: parameters,
                                                                force: true)
        let directory = ClusterDirectory(root)
        let launcher = ReplicaLauncher(settings: try launchSettings(directory))
        let signals = launcher.stopAllAndExitOnSignal()
        defer {
            signals.cancel()
            launcher.stopAll()
            if options.directory == nil { try? FileManager.default.removeItem(atPath: root) }
        }
        try launcher.start(config.replicaIDs)
        say("cluster started in \(root); driving it with \(options.clients) clients × \(options.outstanding) "
            + "outstanding, \(options.payloadBytes)-byte payloads")

        let pids = launcher.pids
        let replicaPIDs = config.replicaIDs.compactMap { pids[$0] }
        let floodTask = try startFlood(config: config, directory: directory)
        let load = try await drive(config: config, pids: replicaPIDs)
        floodTask.cancel()
        let floodReport = await floodTask.value
        say("measuring Ed25519 on one core again ...")
        let ratesAfter = measureEd25519()
        let statuses = try await collectStatuses(config: config, directory: directory)
        var report = self.report(
            config: config, load: load, rates: [ratesBefore, ratesAfter],
            statuses: statuses, rss: replicaPIDs.compactMap(ProcessStats.residentBytes),
            ledger: ledgerFigures(directory: directory, config: config))
        if options.flood != .none { report.flood = floodReport }
        try publish(report)
    }

    var parameters: ProtocolParameters {
        var parameters = ProtocolParameters()
        if let pipelineDepth = options.pipelineDepth { parameters.pipelineDepthMax = pipelineDepth }
        if let batchSize = options.batchSize { parameters.batchSizeMax = batchSize }
        return parameters
    }

    /// Warnings and above from every replica, prefixed, into `DIR/replicas.log`.
    func launchSettings(_ directory: ClusterDirectory) throws -> ReplicaLauncher.Settings {
        let logPath = "\(directory.root)/replicas.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        var settings = ReplicaLauncher.Settings(executable: options.replicaExecutable, directory: directory)
        settings.logLevel = "warning"
        settings.output = .prefixed(try FileHandle(forWritingTo: URL(fileURLWithPath: logPath)))
        return settings
    }

    /// Floods the replicas for the whole run (`--flood`); the `connections` flood impersonates
    /// replica 3 (a replica-key holder) against the other three.
    func startFlood(config: ClusterConfig, directory: ClusterDirectory) throws -> Task<FloodReport, Never> {
        let kind = options.flood
        let deadline = ContinuousClock.now + .milliseconds(Int64((options.warmup + options.duration) * 1000))
        let impersonated = kind == .connections ? (ReplicaID(3), try KeyFile.read(from: directory.keyPath(3))) : nil
        let targets = kind == .connections ? config.replicaIDs.filter { $0 != 3 } : config.replicaIDs
        if kind != .none { say("flooding replicas \(targets.map(\.value)) with \(kind)") }
        return Task {
            await Flood.run(kind, config: config, targets: targets, replicaKey: impersonated, until: deadline)
        }
    }
}

// MARK: The load

/// A mutex in a shareable box, for the tasks of one run.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}

extension BenchRun {
    struct LoadResult {
        var tally: LoadTally
        var measuredSeconds: Double
        var replicaCPUSeconds: Double
        var clientCPUSeconds: Double
        var rssSamples: [RSSSample]
    }

    /// Closed loop (or open loop with a rate): each client keeps `outstanding` requests in
    /// flight, while the replicas' CPU is sampled at the warm-up's end and their RSS about 30
    /// times over the run. `pids` are the replicas' process ids in replica order.
    func drive(config: ClusterConfig, pids: [Int32]) async throws -> LoadResult {
        let start = ContinuousClock.now
        let measureFrom = start + .milliseconds(Int64(options.warmup * 1000))
        let stopAt = measureFrom + .milliseconds(Int64(options.duration * 1000))
        let window = MeasuredWindow(measureFrom: measureFrom, stopAt: stopAt)
        let totals = Locked(LoadTally())
        let cpuAtStart = Locked<(replicas: Double, client: Double)?>(nil)
        let rssSamples = Locked<[RSSSample]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await Task.sleep(until: measureFrom)
                let sample = (replicaCPUSeconds(pids), processCPUSeconds())
                cpuAtStart.withLock { $0 = sample }
            }
            group.addTask {
                let samples = try await sampleRSS(pids: pids, from: start, until: window.stopAt)
                rssSamples.withLock { $0 = samples }
            }
            for clientIndex in 0..<options.clients {
                group.addTask {
                    let tally = try await runClient(clientIndex, config: config, window: window)
                    totals.withLock { $0.add(tally) }
                }
            }
            try await group.waitForAll()
        }
        let (cpuEnd, clientCPUEnd) = (replicaCPUSeconds(pids), processCPUSeconds())
        let (cpuStart, clientCPUStart) = cpuAtStart.withLock { $0 } ?? (0, 0)
        return LoadResult(tally: totals.withLock { $0 }, measuredSeconds: options.duration,
                          replicaCPUSeconds: cpuEnd - cpuStart, clientCPUSeconds: clientCPUEnd - clientCPUStart,
                          rssSamples: rssSamples.withLock { $0 })
    }

    /// One client key's load: the open loop with a rate, else the closed loop.
    func runClient(_ clientIndex: Int, config: ClusterConfig, window: MeasuredWindow) async throws -> LoadTally {
        let logger = Logger(label: "stele.bench") { _ in SwiftLogNoOpLogHandler() }
        var settings = SteleClient.Settings()
        settings.retransmitAfter = .seconds(2)
        let payload = [UInt8](repeating: 0x61, count: options.payloadBytes)
        let (clients, outstanding, rate) = (options.clients, options.outstanding, options.rate)
        let key = KeyPair.generate()
        return try await SteleClient.with(config: config, keyPair: key, settings: settings, logger: logger) { client in
            guard rate > 0 else {
                return await ClosedLoop(client: client, payload: payload, window: window).run(chains: outstanding)
            }
            let interval = Duration.nanoseconds(Int64(1e9 * Double(clients * outstanding) / rate))
            return await OpenLoop(client: client, payload: payload, window: window, perRequestInterval: interval,
                                  clientIndex: clientIndex, clients: clients, workers: outstanding).run()
        }
    }

    func sampleRSS(pids: [Int32], from start: ContinuousClock.Instant,
                   until stopAt: ContinuousClock.Instant) async throws -> [RSSSample] {
        let interval = Duration.milliseconds(Int64(max(1, (options.warmup + options.duration) / 30) * 1000))
        var samples: [RSSSample] = []
        var next = start
        while next <= stopAt {
            try await Task.sleep(until: next)
            let bytes = pids.compactMap(ProcessStats.residentBytes)
            samples.append(RSSSample(seconds: Double((next - start).components.seconds), bytes: bytes))
            next += interval
        }
        return samples
    }
}

// MARK: The report

extension BenchRun {
    /// `rates`: the Ed25519 rates measured before and after the run.
    func report(config: ClusterConfig, load: LoadResult, rates: [(verify: Double, sign: Double)],
                statuses: [ReplicaID: ReplicaStatus], rss: [UInt64], ledger: LedgerFigures) -> BenchReport {
        let verify = rates.map(\.verify).reduce(0, +) / Double(rates.count)
        let sign = rates.map(\.sign).reduce(0, +) / Double(rates.count)
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let ceiling = Double(cores) * verify / (Double(config.n) + verify / sign)
        let acknowledged = load.tally.acknowledged
        let throughput = Double(acknowledged) / load.measuredSeconds
        func perThousand(_ seconds: Double) -> Double { acknowledged > 0 ? seconds / Double(acknowledged) * 1000 : 0 }
        let histogram = load.tally.histogram
        return BenchReport(
            replicas: config.n, clients: options.clients, outstandingPerClient: options.outstanding,
            payloadBytes: options.payloadBytes, warmupSeconds: options.warmup, measuredSeconds: load.measuredSeconds,
            acknowledgedTransactions: acknowledged, failedTransactions: load.tally.failed,
            throughputTxPerSecond: throughput,
            latencyMilliseconds: [
                "p50": Double(histogram.valueAtPercentile(50)) / 1000,
                "p90": Double(histogram.valueAtPercentile(90)) / 1000,
                "p99": Double(histogram.valueAtPercentile(99)) / 1000,
                "max": Double(histogram.max) / 1000,
            ],
            cpuSecondsPer1000Tx: perThousand(load.replicaCPUSeconds), replicaCPUSeconds: load.replicaCPUSeconds,
            clientCPUSecondsPer1000Tx: perThousand(load.clientCPUSeconds),
            averageBatchSize: ledger.averageBatchSize,
            viewChanges: statuses.values.map(\.viewChanges).max() ?? 0,
            replicaRSSBytes: rss, replicaRSSOverTime: load.rssSamples,
            ledgerBytesPerTransaction: ledger.bytesPerTransaction,
            ed25519VerifyPerSecondPerCore: verify, ed25519SignPerSecondPerCore: sign,
            ed25519VerifyPerSecondPerCoreBeforeAndAfter: rates.map(\.verify), cores: cores,
            ceilingTxPerSecond: ceiling, throughputOverCeiling: throughput / ceiling)
    }
}
