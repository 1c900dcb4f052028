import PBFT
import SteleCore
import SteleTestSupport
import SteleSim
import Testing

/// The real consensus core (`PBFT.Replica`) under the simulator. Runs are kept short so the
/// whole suite stays within its debug-build time budget; `stele-sim` runs the long versions.
enum Slice {
    /// A short run: fewer requests and ticks than the CLI's defaults, every fault still on.
    static func options(seed: UInt64, byzantine: Int = 0, strategy: StrategySelection = .all) -> SimulationOptions {
        var options = SimulationOptions(seed: seed)
        options.byzantineCount = byzantine
        options.strategy = strategy
        options.clientCount = 3
        options.requestsPerClient = 3
        options.safetyPhaseTicks = 500
        // Enough for three view changes at the largest timeout the slice's parameters allow.
        options.livenessPhaseTicksMax = 2500
        // One request per client after healing (still under the latency bound): sustained load
        // lengthens every run by B ticks, too slow for a debug build's slice; LatencyBoundTests
        // and stele-sim run with it.
        options.sustainedLoad = false
        return options
    }

    /// One line per violation, with the command that replays it.
    static func failures(_ report: SimulationReport) -> [String] {
        report.violations.map { "seed \(report.options.seed): \($0) — replay: \(report.options.replayCommand)" }
    }
}

@Suite struct DeterminismTests {
    /// VOPR's first rule: one seed drives everything, so a run replays byte for byte.
    @Test func sameSeedReplaysTheSameTraceAndLedgers() async {
        await offCooperativePool {
            let options = Slice.options(seed: 5, byzantine: 1)
            let first = Simulation<Replica>(options: options).run()
            let second = Simulation<Replica>(options: options).run()
            #expect(first.traceHash == second.traceHash)
            #expect(first.stats == second.stats)
            #expect(first.ledgers == second.ledgers)
            #expect(first.ticks == second.ticks)
        }
    }

    @Test func differentSeedsTakeDifferentPaths() {
        let hashes = Set((UInt64(20)...22).map { Simulation<Replica>(options: Slice.options(seed: $0)).run().traceHash })
        #expect(hashes.count == 3)
    }
}

@Suite struct SeedSliceTests {
    static let seedsPerStrategy: UInt64 = 20

    /// No Byzantine replica: a faulty network, partitions, crashes and torn writes only.
    @Test func withoutByzantineReplicasEverySeedKeepsSafetyAndLiveness() async {
        await offCooperativePool {
            var failures = [String]()
            for seed in UInt64(1)...SeedSliceTests.seedsPerStrategy {
                failures += Slice.failures(Simulation<Replica>(options: Slice.options(seed: seed)).run())
            }
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        }
    }

    /// K = f = 1 on n = 4, for each strategy: Castro & Liskov's guarantee — safety always, and
    /// liveness once the network heals (Byzantine replicas stay Byzantine). `censor` is left to
    /// LatencyBoundTests until the core's censorship-resistant request timer lands.
    @Test(arguments: ByzantineStrategy.allCases.filter { $0 != .censor })
    func oneByzantineReplicaNeverBreaksSafetyOrLiveness(_ strategy: ByzantineStrategy) async {
        await offCooperativePool {
            var failures = [String]()
            var moves = [String: Int]()
            for seed in UInt64(1)...SeedSliceTests.seedsPerStrategy {
                let report = Simulation<Replica>(options: Slice.options(seed: seed, byzantine: 1, strategy: .only(strategy))).run()
                failures += Slice.failures(report)
                moves.merge(report.adversaryMoves, uniquingKeysWith: +)
            }
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
            // The slice is not vacuous: the strategy really misbehaved in these seeds.
            #expect(moves.contains { $0.key.hasPrefix(strategy.rawValue + ".") && $0.value > 0 }, "\(strategy) never acted: \(moves)")
        }
    }
}

@Suite struct CrashRestartTests {
    /// Invariant 9 and the WAL contract: crashes at random points of an action list (torn
    /// persists included) and restarts from ledger + WAL never break safety or liveness.
    @Test func crashesAndTornWritesKeepSafetyAndLiveness() async {
        await offCooperativePool {
            var failures = [String]()
            var crashCount = 0
            var tornWriteCount = 0
            for seed in UInt64(100)...123 {
                var options = Slice.options(seed: seed)
                options.crashChanceOneIn = 15
                options.partitions = false
                let report = Simulation<Replica>(options: options).run()
                failures += Slice.failures(report)
                crashCount += report.stats.crashCount
                tornWriteCount += report.stats.tornWriteCount
            }
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
            #expect(crashCount > 100, "the slice must really crash replicas")
            #expect(tornWriteCount > 0, "the slice must really tear writes")
        }
    }
}

@Suite struct ForkTests {
    /// The checker has teeth: with K = 2 > f colluding equivocators (one of them primary, batch A
    /// to one honest backup and B to the other, both colluders voting for both), honest ledgers
    /// fork, and the fork names the colluders.
    @Test func twoColludingEquivocatorsForkTheClusterAndAreNamed() async throws {
        try await offCooperativePool {
            var forks = [(report: SimulationReport, fork: InvariantViolation)]()
            // Seeds are tried in order until a few forks are found (timing decides whether an
            // equivocation lands on both honest backups before they hear each other).
            for seed in UInt64(1)...60 where forks.count < 3 {
                var options = Slice.options(seed: seed, byzantine: 2, strategy: .only(.equivocate))
                options.safetyPhaseTicks = 300
                let report = Simulation<Replica>(options: options).run()
                #expect(!report.livenessChecked)
                forks += report.forks.map { (report, $0) }
            }
            try #require(!forks.isEmpty, "no fork within the fixed seeds")
            let named = forks.filter { Set($0.fork.colluders) == Set($0.report.byzantine.keys) }
            #expect(!named.isEmpty, "\(forks.map { "seed \($0.report.options.seed): \($0.fork)" })")
        }
    }
}
