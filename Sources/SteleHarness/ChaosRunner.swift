import Foundation
import SteleAudit
import SteleCore
import SteleCrypto
import SteleLedger
import SteleNode
import Synchronization

/// How a chaos run goes. Every wait is bounded; the run stops by itself.
public struct ChaosOptions: Sendable {
    public var rounds = 20
    public var seed: UInt64 = 1
    /// The `stele` executable (runs `stele replica`).
    public var executable: String
    /// The scratch directory for the cluster; must not exist or be empty.
    public var root: String
    /// Keep the scratch directory at the end (it is always kept when a violation was found
    /// and this is nil; removed when false).
    public var keepDirectory: Bool?
    /// Submissions kept in flight by the load (one client, pipelined).
    public var concurrentSubmits = 8
    /// While a fault holds, wait for this many new acknowledgements before healing it.
    public var acksPerFault = 10
    /// Every this many rounds, the fault is a torn write (0: never).
    public var tornWriteEvery = 4
    public var submitTimeout: Duration = .seconds(20)
    /// Bound on waiting for acknowledgements while a fault holds (a liveness violation past it).
    public var progressTimeout: Duration = .seconds(60)
    /// Bound on waiting for a healed replica to reach the others' height.
    public var catchUpTimeout: Duration = .seconds(60)
    public var tickMilliseconds = 20

    public init(executable: String, root: String) {
        self.executable = executable
        self.root = root
    }
}

/// What one fault did.
public enum ChaosFault: String, Sendable {
    case kill = "SIGKILL + restart"
    case pause = "SIGSTOP + SIGCONT"
    case tornWrite = "SIGKILL + torn ledger + restart"
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

public struct ChaosSummary: Sendable, CustomStringConvertible {
    public var seed: UInt64 = 0
    public var roundsPlanned = 0
    public var roundsRun = 0
    public var kills = 0
    public var pauses = 0
    public var tornWrites: [TornWrite] = []
    public var acknowledged = 0
    /// Submissions that got no f+1 matching replies in time (not an error: unacknowledged).
    public var unacknowledged = 0
    public var heights: [ReplicaID: UInt64] = [:]
    public var views: [ReplicaID: UInt64] = [:]
    public var auditVerdict = "not run"
    public var auditedBlocks = 0
    public var violations: [ChaosViolation] = []
    public var duration: Duration = .zero
    public var directory = ""

    public var passed: Bool { violations.isEmpty }

    public var description: String {
        var lines = [
            "chaos summary (seed \(seed))",
            "  rounds       \(roundsRun) of \(roundsPlanned) completed",
            "  faults       \(kills) SIGKILL+restart (\(tornWrites.count) of them with a torn ledger tail), \(pauses) SIGSTOP+SIGCONT",
            "  acks         \(acknowledged) acknowledged (f+1 matching replies), \(unacknowledged) submissions unacknowledged",
            "  heights      " + heights.sorted { $0.key < $1.key }.map { "r\($0.key.value)=\($0.value)" }.joined(separator: " "),
            "  final views  " + views.sorted { $0.key < $1.key }.map { "r\($0.key.value)=\($0.value)" }.joined(separator: " "),
            "  stele-check  \(auditVerdict) (\(auditedBlocks) blocks audited)",
            String(format: "  time         %.1f s", seconds(duration)),
        ]
        if violations.isEmpty {
            lines.append("  verdict      PASS: every ack in every ledger exactly once, ledgers agree, stele-check passes")
        } else {
            lines.append("  verdict      FAIL: \(violations.count) violations")
            // In the order first seen, a count per kind and replica, then the first few of each.
            var kinds: [ChaosViolation.Kind] = []
            for violation in violations where !kinds.contains(violation.kind) { kinds.append(violation.kind) }
            for kind in kinds {
                let ofKind = violations.filter { $0.kind == kind }
                let perReplica = Dictionary(grouping: ofKind, by: { $0.replica.map { "r\($0.value)" } ?? "cluster" })
                    .sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value.count)" }.joined(separator: ", ")
                lines.append("    \(kind.rawValue) ×\(ofKind.count) (\(perReplica))")
                for violation in ofKind.prefix(5) { lines.append("      - \(violation)") }
                if ofKind.count > 5 { lines.append("      ... and \(ofKind.count - 5) more") }
            }
        }
        if !directory.isEmpty { lines.append("  directory    \(directory)") }
        return lines.joined(separator: "\n")
    }
}

/// The client load: `concurrentSubmits` submissions always in flight from one client, each
/// acknowledgement recorded. Stops after `stop()` once the submissions in flight return.
final class ChaosLoad: Sendable {
    let client: PublicKey
    let timeout: Duration
    private let acks = Mutex<[Acknowledgement]>([])
    private let failures = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)

    init(client: PublicKey, timeout: Duration) {
        self.client = client
        self.timeout = timeout
    }

    var acknowledged: [Acknowledgement] { acks.withLock { $0 } }
    var ackCount: Int { acks.withLock { $0.count } }
    var failureCount: Int { failures.load(ordering: .relaxed) }

    func stop() { stopping.store(true, ordering: .relaxed) }

    func worker(_ index: Int, client: SteleClient) async {
        var count = 0
        while !stopping.load(ordering: .relaxed) {
            _ = await submit(Array("chaos-w\(index)-\(count)".utf8), client: client)
            count += 1
        }
    }

    /// One submission; the acknowledgement, or nil if it was not acknowledged in time.
    func submit(_ payload: [UInt8], client: SteleClient) async -> Acknowledgement? {
        do {
            let result = try await client.submit(payload, timeout: timeout)
            let ack = Acknowledgement(client: self.client, timestamp: result.timestamp, height: result.height, blockHash: result.blockHash)
            acks.withLock { $0.append(ack) }
            return ack
        } catch {
            failures.add(1, ordering: .relaxed)
            return nil
        }
    }
}

/// A Jepsen-style crash-restart run against real replica processes. Each round has a crash —
/// SIGKILL and restart, or SIGKILL, a torn ledger tail and restart — and a pause — SIGSTOP and
/// SIGCONT —, in a seeded order with seeded victims. Each fault is held while the other three
/// keep acknowledging client submissions, until they hold a stable checkpoint above the
/// victim's height; then it is healed, and the run waits until the victim holds what the
/// others held when it came back. At most one replica (f = 1) is down or stopped at a time,
/// and the next fault waits until the last victim has caught up. At the end it brings all
/// four ledgers to the same height and checks that every acknowledged transaction is in every
/// ledger exactly once at its acknowledged height and block, that the ledgers agree, and that
/// stele-check passes.
public final class ChaosRunner {
    let options: ChaosOptions
    let report: @Sendable (String) -> Void
    private var generator: SeededGenerator
    private var summary = ChaosSummary()

    public init(options: ChaosOptions, report: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.report = report
        self.generator = SeededGenerator(seed: options.seed)
    }

    public func run() async throws -> ChaosSummary {
        let started = ContinuousClock.now
        summary = ChaosSummary()
        summary.seed = options.seed
        summary.roundsPlanned = options.rounds
        var settings = ScratchCluster.Settings(executable: options.executable, root: options.root)
        settings.tickMilliseconds = options.tickMilliseconds
        let cluster = try ScratchCluster(settings: settings)
        summary.directory = cluster.directory.root
        var finished = false
        defer {
            // Thrown out of the run: still stop every process; keep the directory unless told not to.
            if !finished { cluster.shutdown(keepDirectory: options.keepDirectory ?? true) }
        }
        report("chaos: seed \(options.seed), \(options.rounds) rounds, 4 replicas (f = 1, K = \(cluster.config.parameters.checkpointInterval)) in \(cluster.directory.root)")
        try cluster.startAll()
        let load = ChaosLoad(client: cluster.clientKey.publicKey, timeout: options.submitTimeout)
        try await cluster.withClient { client in
            let serving = await pollUntil(timeout: .seconds(60)) { await self.statuses(client, cluster).count == cluster.replicaIDs.count }
            guard serving else {
                summary.violations.append(ChaosViolation(.noProgress, replica: nil, "the replicas did not all answer within 60 s of starting"))
                return
            }
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<options.concurrentSubmits {
                    group.addTask { await load.worker(index, client: client) }
                }
                await runRounds(cluster: cluster, client: client, load: load)
                load.stop()
                await group.waitForAll()
            }
            await catchUpAll(cluster: cluster, client: client, load: load)
            for (id, status) in await statuses(client, cluster) { summary.views[id] = status.view }
        }
        // A replica that died on its own since the last fault is a violation too.
        summary.violations += exitedReplicas(cluster) ?? []
        cluster.stopAll()
        summary.acknowledged = load.ackCount
        summary.unacknowledged = load.failureCount
        verify(cluster: cluster, acks: load.acknowledged)
        let keep = options.keepDirectory ?? !summary.passed
        cluster.shutdown(keepDirectory: keep)
        finished = true
        if !keep { summary.directory = "" }
        summary.duration = started.duration(to: .now)
        return summary
    }

    // MARK: Rounds

    /// Each round: a crash (SIGKILL and restart, or every `tornWriteEvery`-th round a torn
    /// ledger tail) and a pause (SIGSTOP and SIGCONT), in a seeded order, each of a seeded
    /// victim, one after the other.
    private func runRounds(cluster: ScratchCluster, client: SteleClient, load: ChaosLoad) async {
        for round in 1...max(1, options.rounds) where options.rounds > 0 {
            let crash: ChaosFault = options.tornWriteEvery > 0 && round % options.tornWriteEvery == 0 ? .tornWrite : .kill
            let faults: [ChaosFault] = generator.next() % 2 == 0 ? [crash, .pause] : [.pause, crash]
            for fault in faults {
                let started = ContinuousClock.now
                let victim = ReplicaID(UInt16(generator.next() % UInt64(cluster.replicaIDs.count)))
                let outcome = await runFault(fault, victim: victim, cluster: cluster, client: client, load: load)
                let problems = outcome.problems
                let heights = await statuses(client, cluster).sorted { $0.key < $1.key }.map { "r\($0.key.value)=\($0.value.height)" }
                report(String(format: "round %3d/%d  %-31@ r%d  %5.1f s (held %4.1f, caught up in %4.1f)  acks %6d  heights %@",
                              round, options.rounds, fault.rawValue as NSString, Int(victim.value), seconds(started.duration(to: .now)),
                              seconds(outcome.held), seconds(outcome.catchUp), load.ackCount, heights.joined(separator: " ") as NSString)
                       + (problems.isEmpty ? "" : "  VIOLATION"))
                for problem in problems { report("  \(problem)") }
                summary.violations += problems
                if !problems.isEmpty {
                    report("chaos: stopping the rounds after a violation; checking what was acknowledged so far")
                    return
                }
            }
            summary.roundsRun = round
        }
    }

    struct FaultOutcome {
        var problems: [ChaosViolation] = []
        /// From injecting the fault to healing it.
        var held: Duration = .zero
        /// From healing it to the victim holding what the others held then.
        var catchUp: Duration = .zero
    }

    private func runFault(_ fault: ChaosFault, victim: ReplicaID, cluster: ScratchCluster, client: SteleClient, load: ChaosLoad) async -> FaultOutcome {
        if let exited = exitedReplicas(cluster) { return FaultOutcome(problems: exited) }
        let acksBefore = load.ackCount
        let acksWanted = options.acksPerFault + Int(generator.next() % UInt64(2 * options.acksPerFault + 1))
        let victimHeight = await client.status(of: victim, timeout: .seconds(1))?.height ?? 0
        let others = cluster.replicaIDs.filter { $0 != victim }
        var torn: TornWrite?
        let injected = ContinuousClock.now
        switch fault {
        case .kill:
            cluster.kill9(victim)
            summary.kills += 1
        case .pause:
            cluster.pause(victim)
            summary.pauses += 1
        case .tornWrite:
            cluster.kill9(victim)
            summary.kills += 1
            do {
                // Alternately the last block record (a torn append) and one up to K blocks
                // below the head (a torn group-commit write of several blocks, which may reach
                // below the replica's stable checkpoint).
                let interval = cluster.config.parameters.checkpointInterval
                let depth = summary.tornWrites.count % 2 == 0 ? 0 : 1 + generator.next() % interval
                torn = try cluster.tearLedgerTail(victim, blocksBelowHead: depth, using: &generator)
            } catch {
                report("  (no torn write: \(error))")
            }
        }
        if let torn {
            summary.tornWrites.append(torn)
            report("  torn write: \(torn)")
        }
        var problems: [ChaosViolation] = []
        // Hold the fault while the other three keep acknowledging, at least until they have a
        // stable checkpoint above the victim's height: they have then discarded the protocol
        // messages for what the victim misses, and it can only catch up by state transfer.
        let target = acksBefore + acksWanted
        var othersStable: UInt64 = 0
        let progressed = await pollUntil(timeout: options.progressTimeout) {
            guard load.ackCount >= target else { return false }
            othersStable = await self.statuses(client, cluster, only: others).values.map(\.stableCheckpoint).max() ?? 0
            return othersStable > victimHeight
        }
        if !progressed {
            problems.append(ChaosViolation(.noProgress, replica: nil,
                "\(load.ackCount - acksBefore) acks (wanted \(acksWanted)) and the others' stable checkpoint at \(othersStable) (wanted above \(victimHeight)) after \(options.progressTimeout) with replica \(victim.value) faulty (\(fault.rawValue))"))
        }
        // Heal, then wait until the victim holds what the others held when it came back.
        let heightTarget = await statuses(client, cluster, only: others).values.map(\.height).max() ?? 0
        let logOffset = cluster.logByteCount(victim)
        let healed = ContinuousClock.now
        switch fault {
        case .kill, .tornWrite:
            do {
                try cluster.start(victim)
            } catch {
                return FaultOutcome(problems: problems + [ChaosViolation(.processExited, replica: victim, "cannot restart: \(error)")])
            }
        case .pause:
            cluster.resume(victim)
        }
        let caughtUp = await pollUntil(timeout: options.catchUpTimeout) {
            guard cluster.isRunning(victim) else { return true }  // reported below
            return (await client.status(of: victim, timeout: .milliseconds(500))?.height ?? 0) >= heightTarget
        }
        let recovered = ContinuousClock.now
        if !cluster.isRunning(victim) {
            problems.append(ChaosViolation(.processExited, replica: victim, "exited after the restart:\n\(cluster.logTail(victim))"))
        } else if !caughtUp {
            let height = await client.status(of: victim)?.height
            problems.append(ChaosViolation(.notCaughtUp, replica: victim,
                "height \(height.map(String.init) ?? "unknown") after \(options.catchUpTimeout), the others had \(heightTarget) when it came back\n\(cluster.logTail(victim))"))
        }
        if let torn { problems += checkTornTailReported(torn, log: cluster.log(victim, after: logOffset)) }
        return FaultOutcome(problems: problems, held: injected.duration(to: healed), catchUp: healed.duration(to: recovered))
    }

    /// The restarted replica must have found the torn record, dropped it and started from the
    /// block below it: its log says so.
    private func checkTornTailReported(_ torn: TornWrite, log: String) -> [ChaosViolation] {
        let expected = "torn tail at byte \(torn.recordOffset) after height \(torn.height - 1)"
        guard log.contains(expected) else {
            return [ChaosViolation(.tornTailNotReported, replica: torn.replica,
                "its log after the restart does not say \"\(expected)\":\n\(log.split(separator: "\n").prefix(10).joined(separator: "\n"))")]
        }
        return []
    }

    private func exitedReplicas(_ cluster: ScratchCluster) -> [ChaosViolation]? {
        let exited = cluster.replicaIDs.filter { !cluster.isRunning($0) }
        guard !exited.isEmpty else { return nil }
        return exited.map { ChaosViolation(.processExited, replica: $0, "exited on its own:\n\(cluster.logTail($0))") }
    }

    // MARK: The end

    /// Brings every replica to the same height: a replica that was behind catches up by state
    /// transfer at checkpoint granularity, so submit (one at a time) past the next checkpoint
    /// and poll until all four report the same height; a few attempts, each bounded.
    private func catchUpAll(cluster: ScratchCluster, client: SteleClient, load: ChaosLoad) async {
        let interval = Int(cluster.config.parameters.checkpointInterval)
        for attempt in 1...6 {
            let equal = await pollUntil(timeout: .seconds(attempt == 1 ? 5 : 20)) {
                let statuses = await self.statuses(client, cluster)
                return statuses.count == cluster.replicaIDs.count && Set(statuses.values.map(\.height)).count == 1
            }
            if equal { return }
            let heights = await statuses(client, cluster).sorted { $0.key < $1.key }.map { "r\($0.key.value)=\($0.value.height)" }
            report("catch-up \(attempt): heights \(heights.joined(separator: " ")); submitting \(interval + 1) more, one at a time")
            for index in 0..<(interval + 1) {
                // Bounded: an unacknowledged submission ends this attempt.
                guard await load.submit(Array("chaos-catch-up-\(attempt)-\(index)".utf8), client: client) != nil else { break }
            }
        }
        let heights = await statuses(client, cluster).sorted { $0.key < $1.key }.map { "r\($0.key.value)=\($0.value.height)" }
        summary.violations.append(ChaosViolation(.notCaughtUp, replica: nil, "the replicas did not reach one height: \(heights.joined(separator: " "))"))
    }

    /// The four ledger files, read after every replica stopped.
    private func verify(cluster: ScratchCluster, acks: [Acknowledgement]) {
        var ledgers: [ReplicaID: [CertifiedBlock]] = [:]
        for id in cluster.replicaIDs {
            do {
                let store = try cluster.openLedger(id)
                if let torn = store.openReport.tornTail {
                    summary.violations.append(ChaosViolation(.ledgerUnreadable, replica: id, "a torn tail after a clean stop: \(torn)"))
                }
                ledgers[id] = try cluster.ledgerBlocks(id)
                summary.heights[id] = UInt64(ledgers[id]?.count ?? 0)
            } catch {
                summary.violations.append(ChaosViolation(.ledgerUnreadable, replica: id, "\(error)"))
            }
        }
        summary.violations += AckChecker.check(acks: acks, ledgers: ledgers, requireEqualHeights: true)
        for torn in summary.tornWrites {
            guard let blocks = ledgers[torn.replica], blocks.count >= Int(torn.height) else { continue }
            let hash = blocks[Int(torn.height) - 1].hash
            if hash != torn.blockHash {
                summary.violations.append(ChaosViolation(.tornBlockServed, replica: torn.replica,
                    "block \(torn.height) is \(hash.hex.prefix(16)) after recovery; the committed one was \(torn.blockHash.hex.prefix(16))"))
            }
        }
        do {
            let report = try Auditor(config: cluster.config).audit(paths: cluster.replicaIDs.map { cluster.ledgerPath($0) })
            summary.auditVerdict = report.verdict == .pass ? "pass" : "VIOLATION"
            summary.auditedBlocks = report.files.reduce(0) { $0 + $1.blockCount }
            for finding in report.violations {
                summary.violations.append(ChaosViolation(.auditFailed, replica: nil, "\(finding)"))
            }
        } catch {
            summary.auditVerdict = "error"
            summary.violations.append(ChaosViolation(.auditFailed, replica: nil, "\(error)"))
        }
    }

    // MARK: Status

    /// The status of every replica (or of `only`) that answers within half a second.
    private func statuses(_ client: SteleClient, _ cluster: ScratchCluster, only: [ReplicaID]? = nil) async -> [ReplicaID: ReplicaStatus] {
        await withTaskGroup(of: (ReplicaID, ReplicaStatus?).self) { group in
            for id in only ?? cluster.replicaIDs {
                group.addTask { (id, await client.status(of: id, timeout: .milliseconds(500))) }
            }
            var result: [ReplicaID: ReplicaStatus] = [:]
            for await (id, status) in group {
                if let status { result[id] = status }
            }
            return result
        }
    }
}
