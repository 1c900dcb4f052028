import ArgumentParser
import Foundation
import Histogram
import Logging
import SteleCore
import SteleCrypto
import SteleHarness
import SteleLedger
import SteleNode
import Synchronization

/// Every figure of one benchmark run (`stele bench --json` prints this object).
struct BenchReport: Codable {
    var replicas: Int
    var clients: Int
    var outstandingPerClient: Int
    var payloadBytes: Int
    var warmupSeconds: Double
    var measuredSeconds: Double
    var acknowledgedTransactions: Int
    var failedTransactions: Int
    var throughputTxPerSecond: Double
    var latencyMilliseconds: [String: Double]
    var cpuSecondsPer1000Tx: Double
    var replicaCPUSeconds: Double
    /// The bench process's own CPU (its clients, plus the flood with `--flood`) over the
    /// measured window: with the replicas', every cycle the cluster and its load used.
    var clientCPUSecondsPer1000Tx: Double
    var averageBatchSize: Double
    var viewChanges: UInt64
    var replicaRSSBytes: [UInt64]
    /// Replica RSS sampled over the whole run (warm-up included), to show memory stays flat.
    var replicaRSSOverTime: [RSSSample]
    var ledgerBytesPerTransaction: Double
    var ed25519VerifyPerSecondPerCore: Double
    var ed25519SignPerSecondPerCore: Double
    /// The verify rate measured before the cluster started and again once the load stopped
    /// (the two figures above are their means): this shared machine's per-core speed drifts
    /// by up to a quarter between runs, so the ceiling is taken on both sides of the run.
    var ed25519VerifyPerSecondPerCoreBeforeAndAfter: [Double]
    var cores: Int
    var ceilingTxPerSecond: Double
    var throughputOverCeiling: Double
    /// With `--flood KIND`: what the hostile load did while the honest clients were measured.
    var flood: FloodReport? = nil
}

/// Every replica's resident memory at one moment of a run.
struct RSSSample: Codable {
    var seconds: Double
    var bytes: [UInt64]
}

/// Measures this machine's Ed25519 rates on one core, for the ceiling: operations per second
/// of this thread's CPU time, so that other processes competing for the cores (a shared,
/// noisy machine) do not make the ceiling look lower than what a core can do.
func measureEd25519(seconds: Double = 1.0) -> (verify: Double, sign: Double) {
    let keyPair = KeyPair(seed: [UInt8](repeating: 7, count: 32))!
    let message = [UInt8](repeating: 0x5a, count: 79)
    let signature = keyPair.sign(message)
    var signs = 0
    var start = threadCPUSeconds()
    while threadCPUSeconds() - start < seconds {
        for _ in 0..<100 { _ = keyPair.sign(message) }
        signs += 100
    }
    let signRate = Double(signs) / (threadCPUSeconds() - start)
    var verifies = 0
    start = threadCPUSeconds()
    while threadCPUSeconds() - start < seconds {
        for _ in 0..<100 { precondition(Ed25519.verify(signature, of: message, by: keyPair.publicKey)) }
        verifies += 100
    }
    return (Double(verifies) / (threadCPUSeconds() - start), signRate)
}

/// CPU seconds this whole process has used.
func processCPUSeconds() -> Double { cpuSeconds(CLOCK_PROCESS_CPUTIME_ID) }

/// CPU seconds the calling thread has used.
func threadCPUSeconds() -> Double { cpuSeconds(CLOCK_THREAD_CPUTIME_ID) }

private func cpuSeconds(_ clock: clockid_t) -> Double {
    var time = timespec()
    clock_gettime(clock, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark a local 4-replica cluster: throughput, latency, CPU, memory, and the Ed25519 ceiling.",
        discussion: """
        Starts its own cluster (separate processes, real TCP on 127.0.0.1, fsync'd ledgers in a
        scratch directory), drives it closed-loop with --clients keys each keeping --outstanding
        requests in flight, excludes --warmup seconds, measures --duration seconds, and stops
        every process it started (also on Ctrl-C). Build with `swift build -c release` first.
        """)

    @Option(help: "Seconds measured (after warm-up).")
    var duration: Double = 30

    @Option(help: "Seconds of warm-up, not measured.")
    var warmup: Double = 5

    @Option(help: "Client keys.")
    var clients: Int = 16

    @Option(help: "Requests each client keeps in flight.")
    var outstanding: Int = 64

    @Option(help: "Payload bytes per transaction.")
    var payload: Int = 100

    @Option(help: "Open loop: offered transactions per second over all clients, latency counted from each request's due time (0 = closed loop).")
    var rate: Double = 0

    @Option(name: .customLong("pipeline-depth"), help: "Batches the primary keeps in flight (protocol parameter pipelineDepthMax).")
    var pipelineDepth: Int?

    @Option(name: .customLong("batch-size"), help: "Most requests per batch (protocol parameter batchSizeMax).")
    var batchSize: Int?

    @Flag(help: "Print one JSON object with every figure.")
    var json = false

    @Option(help: "Keep the scratch directory here instead of a temporary one.")
    var dir: String?

    @Option(help: ArgumentHelp("Hostile load during the run: \(FloodKind.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "kind"))
    var flood: FloodKind = .none

    @Option(name: .customLong("replica-executable"),
            help: ArgumentHelp("Profiling: start the replicas with this executable (e.g. tools/profile-replica, which runs one replica under perf) instead of this one.", visibility: .hidden))
    var replicaExecutable: String?

    func validate() throws {
        guard duration > 0, warmup >= 0 else { throw ValidationError("--duration must be positive and --warmup non-negative") }
        guard clients >= 1, outstanding >= 1 else { throw ValidationError("--clients and --outstanding must be at least 1") }
        guard payload >= 0, payload <= CodecLimits.standard.payloadBytesMax else { throw ValidationError("--payload must be 0 ... \(CodecLimits.standard.payloadBytesMax)") }
    }

    func say(_ text: String) {
        if !json { print(text) } else { FileHandle.standardError.write(Data((text + "\n").utf8)) }
    }

    func run() async throws {
        say("measuring Ed25519 on one core ...")
        let ratesBefore = measureEd25519()
        let cores = ProcessInfo.processInfo.activeProcessorCount

        let root = dir ?? FileManager.default.temporaryDirectory.appendingPathComponent("stele-bench-\(UUID().uuidString.prefix(8))").path
        var parameters = ProtocolParameters()
        if let pipelineDepth { parameters.pipelineDepthMax = pipelineDepth }
        if let batchSize { parameters.batchSizeMax = batchSize }
        let config = try ClusterDirectory.initializeOnFreePorts(root: root, replicas: 4, parameters: parameters, force: true)
        let directory = ClusterDirectory(root)
        _ = FileManager.default.createFile(atPath: "\(root)/replicas.log", contents: nil)
        var settings = ReplicaLauncher.Settings(executable: replicaExecutable ?? currentExecutablePath(), directory: directory)
        settings.logLevel = "warning"
        settings.output = .prefixed(try FileHandle(forWritingTo: URL(fileURLWithPath: "\(root)/replicas.log")))
        let supervisor = ReplicaLauncher(settings: settings)
        let stopper = supervisor.stopAllAndExitOnSignal()
        defer {
            stopper.cancel()
            supervisor.stopAll()
            if dir == nil { try? FileManager.default.removeItem(atPath: root) }
        }
        try supervisor.start(config.replicaIDs)
        say("cluster started in \(root); driving it with \(clients) clients × \(outstanding) outstanding, \(payload)-byte payloads")

        let pids = supervisor.pids
        let floodTask = try startFlood(config: config, directory: directory)
        let result = try await drive(config: config, pids: config.replicaIDs.compactMap { pids[$0] })
        floodTask.cancel()
        let floodReport = await floodTask.value
        say("measuring Ed25519 on one core again ...")
        let ratesAfter = measureEd25519()
        let rates = (verify: (ratesBefore.verify + ratesAfter.verify) / 2, sign: (ratesBefore.sign + ratesAfter.sign) / 2)
        let statuses = try await collectStatuses(config: config, directory: directory)
        let rss = config.replicaIDs.compactMap { pids[$0].flatMap(ProcessStats.residentBytes) }
        let ledgerFacts = ledgerFigures(directory: directory, config: config)

        let ceiling = Double(cores) * rates.verify / (Double(config.n) + rates.verify / rates.sign)
        let throughput = Double(result.acknowledged) / result.measuredSeconds
        let cpuPerThousand = result.acknowledged > 0 ? result.cpuSeconds / Double(result.acknowledged) * 1000 : 0
        let clientCPUPerThousand = result.acknowledged > 0 ? result.clientCPUSeconds / Double(result.acknowledged) * 1000 : 0
        var report = BenchReport(
            replicas: config.n, clients: clients, outstandingPerClient: outstanding, payloadBytes: payload,
            warmupSeconds: warmup, measuredSeconds: result.measuredSeconds,
            acknowledgedTransactions: result.acknowledged, failedTransactions: result.failed,
            throughputTxPerSecond: throughput,
            latencyMilliseconds: [
                "p50": Double(result.histogram.valueAtPercentile(50)) / 1000,
                "p90": Double(result.histogram.valueAtPercentile(90)) / 1000,
                "p99": Double(result.histogram.valueAtPercentile(99)) / 1000,
                "max": Double(result.histogram.max) / 1000,
            ],
            cpuSecondsPer1000Tx: cpuPerThousand, replicaCPUSeconds: result.cpuSeconds, clientCPUSecondsPer1000Tx: clientCPUPerThousand,
            averageBatchSize: ledgerFacts.averageBatchSize,
            viewChanges: statuses.values.map(\.viewChanges).max() ?? 0,
            replicaRSSBytes: rss, replicaRSSOverTime: result.rssSamples, ledgerBytesPerTransaction: ledgerFacts.bytesPerTransaction,
            ed25519VerifyPerSecondPerCore: rates.verify, ed25519SignPerSecondPerCore: rates.sign,
            ed25519VerifyPerSecondPerCoreBeforeAndAfter: [ratesBefore.verify, ratesAfter.verify], cores: cores,
            ceilingTxPerSecond: ceiling, throughputOverCeiling: throughput / ceiling)
        if flood != .none { report.flood = floodReport }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            printHuman(report)
        }
        // The report must survive whatever happens while the cluster is torn down (stdout is
        // fully buffered when redirected to a file).
        fflush(nil)
    }

    struct DriveResult {
        var acknowledged: Int
        var failed: Int
        var measuredSeconds: Double
        var histogram: Histogram<UInt64>
        var cpuSeconds: Double
        var clientCPUSeconds: Double
        var rssSamples: [RSSSample]
    }

    /// Closed loop (or open loop with --rate): each client keeps `outstanding` requests in flight.
    /// `pids` are the replicas' process ids in replica order.
    func drive(config: ClusterConfig, pids: [Int32]) async throws -> DriveResult {
        let start = ContinuousClock.now
        let measureFrom = start + .milliseconds(Int64(warmup * 1000))
        let stopAt = measureFrom + .milliseconds(Int64(duration * 1000))
        let payloadBytes = [UInt8](repeating: 0x61, count: payload)
        let totals = Locked(LoadTally())
        let cpuAtStart = Locked<(replicas: Double, client: Double)?>(nil)
        let rssSamples = Locked<[RSSSample]>([])
        let rssInterval = Duration.milliseconds(Int64(max(1, (warmup + duration) / 30) * 1000))
        let logger = Logger(label: "stele.bench") { _ in SwiftLogNoOpLogHandler() }
        var clientSettings = SteleClient.Settings()
        clientSettings.retransmitAfter = .seconds(2)
        let settings = clientSettings
        let outstanding = self.outstanding
        let perRequestInterval: Duration? = rate > 0 ? .nanoseconds(Int64(1e9 * Double(clients * outstanding) / rate)) : nil

        try await withThrowingTaskGroup(of: Void.self) { group in
            // Samples the replicas' CPU time when the warm-up ends.
            group.addTask {
                try await Task.sleep(until: measureFrom)
                cpuAtStart.withLock { $0 = (replicaCPU(pids), processCPUSeconds()) }
            }
            // Samples the replicas' RSS about 30 times over the run.
            group.addTask {
                var next = start
                while next <= stopAt {
                    try await Task.sleep(until: next)
                    let sample = RSSSample(seconds: Double((next - start).components.seconds), bytes: pids.compactMap(ProcessStats.residentBytes))
                    rssSamples.withLock { $0.append(sample) }
                    next += rssInterval
                }
            }
            for clientIndex in 0..<clients {
                group.addTask {
                    try await SteleClient.with(config: config, keyPair: KeyPair.generate(), settings: settings, logger: logger) { client in
                        let tally: LoadTally
                        if let perRequestInterval {
                            tally = await openLoop(client: client, clientIndex: clientIndex, perRequestInterval: perRequestInterval,
                                                   payload: payloadBytes, measureFrom: measureFrom, stopAt: stopAt)
                        } else {
                            tally = await ClosedLoop(client: client, payload: payloadBytes, measureFrom: measureFrom, stopAt: stopAt).run(chains: outstanding)
                        }
                        totals.withLock { $0.add(tally) }
                    }
                }
            }
            try await group.waitForAll()
        }
        let (cpuEnd, clientCPUEnd) = (replicaCPU(pids), processCPUSeconds())
        let (cpuStart, clientCPUStart) = cpuAtStart.withLock { $0 } ?? (0, 0)
        return totals.withLock { totals in
            DriveResult(acknowledged: totals.acknowledged, failed: totals.failed, measuredSeconds: duration,
                        histogram: totals.histogram, cpuSeconds: cpuEnd - cpuStart,
                        clientCPUSeconds: clientCPUEnd - clientCPUStart, rssSamples: rssSamples.withLock { $0 })
        }
    }

    /// The open loop of one client: `outstanding` workers, each sending a request every
    /// `perRequestInterval` (late if its previous one is still outstanding), their phases spread
    /// evenly over the interval across all clients' workers (in phase they would arrive as one
    /// burst per interval). One pacer per client sending what is due through completion
    /// handlers measured worse at a quarter of peak (docs/performance-log.md, round 8).
    func openLoop(client: SteleClient, clientIndex: Int, perRequestInterval: Duration, payload: [UInt8],
                  measureFrom: ContinuousClock.Instant, stopAt: ContinuousClock.Instant) async -> LoadTally {
        let outstanding = self.outstanding
        let workers = clients * outstanding
        return await withTaskGroup(of: LoadTally.self) { group in
            for workerIndex in 0..<outstanding {
                group.addTask {
                    var tally = LoadTally()
                    let worker = clientIndex * outstanding + workerIndex
                    var nextSend = ContinuousClock.now + perRequestInterval * (Double(worker) / Double(workers))
                    while ContinuousClock.now < stopAt {
                        // A send due after the run would only stretch it (and its CPU figures).
                        if nextSend >= stopAt { break }
                        let due = nextSend
                        if due > ContinuousClock.now { try? await Task.sleep(until: due) }
                        nextSend += perRequestInterval
                        let result: Result<SubmitResult, any Error>
                        do { result = .success(try await client.submit(payload, timeout: .seconds(20))) } catch { result = .failure(error) }
                        // Counted from when the request was due, not from when it went out: a
                        // late timer or a previous request still outstanding delays the send,
                        // and that wait belongs to the latency an open-loop user sees.
                        tally.record(result, sent: due, now: .now, measureFrom: measureFrom, stopAt: stopAt, latencyFrom: due)
                    }
                    return tally
                }
            }
            var total = LoadTally()
            for await tally in group { total.add(tally) }
            return total
        }
    }

    /// Floods the replicas for the whole run (`--flood`); the `connections` flood impersonates
    /// replica 3 (a replica-key holder) against the other three.
    func startFlood(config: ClusterConfig, directory: ClusterDirectory) throws -> Task<FloodReport, Never> {
        let kind = flood
        let deadline = ContinuousClock.now + .milliseconds(Int64((warmup + duration) * 1000))
        let impersonated = kind == .connections ? (ReplicaID(3), try KeyFile.read(from: directory.keyPath(3))) : nil
        let targets = kind == .connections ? config.replicaIDs.filter { $0 != 3 } : config.replicaIDs
        if kind != .none { say("flooding replicas \(targets.map(\.value)) with \(kind)") }
        return Task { await Flood.run(kind, config: config, targets: targets, replicaKey: impersonated, until: deadline) }
    }

    /// Sum of the replica processes' CPU seconds.
    func replicaCPU(_ pids: [Int32]) -> Double {
        pids.compactMap(ProcessStats.cpuSeconds).reduce(0, +)
    }

    func collectStatuses(config: ClusterConfig, directory: ClusterDirectory) async throws -> [ReplicaID: ReplicaStatus] {
        let key = try KeyFile.read(from: directory.clientKeyPath)
        let logger = Logger(label: "stele.bench") { _ in SwiftLogNoOpLogHandler() }
        return try await SteleClient.with(config: config, keyPair: key, logger: logger) { client in
            var result: [ReplicaID: ReplicaStatus] = [:]
            for id in config.replicaIDs { if let status = await client.status(of: id) { result[id] = status } }
            return result
        }
    }

    func ledgerFigures(directory: ClusterDirectory, config: ClusterConfig) -> (averageBatchSize: Double, bytesPerTransaction: Double) {
        guard let store = try? LedgerStore.open(path: directory.ledgerPath(0), expectedGenesis: config.genesis, access: .readOnly) else { return (0, 0) }
        var blocks = 0
        var transactions = 0
        var cursor = store.entries()
        while let entry = try? cursor.next() {
            if case .block(let block) = entry.record {
                blocks += 1
                transactions += block.batch.count
            }
        }
        let nonEmpty = max(blocks, 1)
        return (Double(transactions) / Double(nonEmpty), transactions > 0 ? Double(store.byteCount) / Double(transactions) : 0)
    }

    func printHuman(_ report: BenchReport) {
        func f(_ value: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", value) }
        print("""

        stele bench: \(report.replicas) replicas, \(report.clients) clients × \(report.outstandingPerClient) outstanding, \(report.payloadBytes)-byte payloads, \(f(report.measuredSeconds, 0)) s measured
          throughput           \(f(report.throughputTxPerSecond)) tx/s  (\(report.acknowledgedTransactions) acknowledged, \(report.failedTransactions) failed)
          latency              p50 \(f(report.latencyMilliseconds["p50"] ?? 0, 2)) ms  p90 \(f(report.latencyMilliseconds["p90"] ?? 0, 2)) ms  p99 \(f(report.latencyMilliseconds["p99"] ?? 0, 2)) ms  max \(f(report.latencyMilliseconds["max"] ?? 0, 2)) ms
          replica CPU          \(f(report.cpuSecondsPer1000Tx, 3)) s per 1,000 tx  (bench clients: \(f(report.clientCPUSecondsPer1000Tx, 3)))
          average batch        \(f(report.averageBatchSize)) tx
          view changes         \(report.viewChanges)
          replica RSS          \(report.replicaRSSBytes.map { "\($0 / 1_048_576) MiB" }.joined(separator: ", "))
          largest RSS over run \(report.replicaRSSOverTime.map { "\(($0.bytes.max() ?? 0) / 1_048_576)" }.joined(separator: " ")) MiB
          ledger bytes per tx  \(f(report.ledgerBytesPerTransaction))
          Ed25519 per core     verify \(f(report.ed25519VerifyPerSecondPerCore, 0))/s, sign \(f(report.ed25519SignPerSecondPerCore, 0))/s, \(report.cores) cores
          ceiling              \(f(report.ceilingTxPerSecond, 0)) tx/s  →  throughput is \(f(report.throughputOverCeiling * 100)) % of it
        """)
        if let flood = report.flood {
            print("  flood                \(flood.kind): \(flood.framesSent) frames, \(flood.connectionsOpened) connections opened, \(flood.connectionsClosedByReplica) closed by the replicas")
        }
    }
}


/// What one client's load counted: requests sent after the warm-up that were acknowledged by
/// `stopAt` (with their latency) or failed.
struct LoadTally: Sendable {
    var acknowledged = 0
    var failed = 0
    var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)

    mutating func add(_ other: LoadTally) {
        acknowledged += other.acknowledged
        failed += other.failed
        histogram.add(other.histogram)
    }

    /// `latencyFrom`: the open loop's due time; without it the latency is the client's, from
    /// the submit call to the accepted result.
    mutating func record(_ result: Result<SubmitResult, any Error>, sent: ContinuousClock.Instant, now: ContinuousClock.Instant,
                         measureFrom: ContinuousClock.Instant, stopAt: ContinuousClock.Instant,
                         latencyFrom due: ContinuousClock.Instant? = nil) {
        guard sent >= measureFrom else { return }
        switch result {
        case .success(let result):
            guard now <= stopAt else { return }
            acknowledged += 1
            let latency = due.map { UInt64(max(0, $0.duration(to: now).nanoseconds) / 1000) } ?? result.latencyMicroseconds
            _ = histogram.record(latency)
        case .failure:
            failed += 1
        }
    }
}

/// The closed loop of one client: `chains` requests in flight, each chain sending its next
/// request from the completion of the one before (`SteleClient.submit(_:timeout:completion:)`),
/// so no task waits per request.
final class ClosedLoop: Sendable {
    private struct State {
        var tally = LoadTally()
        var running = 0
        var stopped = false
        var done: CheckedContinuation<Void, Never>?
    }

    let client: SteleClient
    let payload: [UInt8]
    let measureFrom: ContinuousClock.Instant
    let stopAt: ContinuousClock.Instant
    private let state = Mutex(State())

    init(client: SteleClient, payload: [UInt8], measureFrom: ContinuousClock.Instant, stopAt: ContinuousClock.Instant) {
        (self.client, self.payload, self.measureFrom, self.stopAt) = (client, payload, measureFrom, stopAt)
    }

    /// Runs until every chain has seen `stopAt` pass, or the calling task is cancelled (then at
    /// once, leaving requests in flight uncounted).
    func run(chains: Int) async -> LoadTally {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                let startNow = state.withLock { state -> Bool in
                    if Task.isCancelled || chains == 0 { return false }
                    state.running = chains
                    state.done = done
                    return true
                }
                guard startNow else { return done.resume() }
                for _ in 0..<chains { next() }
            }
        } onCancel: {
            let done = state.withLock { state in
                state.stopped = true
                defer { state.done = nil }
                return state.done
            }
            done?.resume()
        }
        return state.withLock { $0.tally }
    }

    private func next() {
        guard ContinuousClock.now < stopAt, !state.withLock({ $0.stopped }) else { return chainEnded() }
        let sent = ContinuousClock.now
        client.submit(payload, timeout: .seconds(20)) { result in
            let now = ContinuousClock.now
            self.state.withLock { $0.tally.record(result, sent: sent, now: now, measureFrom: self.measureFrom, stopAt: self.stopAt) }
            // A payload refused before sending fails at once, inside `submit`: going on would
            // recurse without end. A cancelled request means the client is closing.
            if case .failure(let error as ClientError) = result, case .payloadTooLarge = error.code { return self.chainEnded() }
            if case .failure(is CancellationError) = result { return self.chainEnded() }
            self.next()
        }
    }

    private func chainEnded() {
        let done = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.running -= 1
            guard state.running == 0 else { return nil }
            defer { state.done = nil }
            return state.done
        }
        done?.resume()
    }
}

/// A mutex in a shareable box.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}

extension FloodKind: ExpressibleByArgument {
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}
