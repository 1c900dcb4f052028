import PBFT
import SteleCore
import SteleTestSupport
import SteleSim
import Testing

/// Issue 18 (5): adversaries aimed at quorum intersection. With K = f+1 colluders the colluders
/// plus honest group A form a quorum and so do the colluders plus the disjoint group B; votes
/// sent per group make both groups commit different batches at one height.
@Suite struct TargetedAdversaryTests {
    static func options(seed: UInt64, replicas: Int, byzantine: Int, strategy: ByzantineStrategy) -> SimulationOptions {
        var options = Slice.options(seed: seed, byzantine: byzantine, strategy: .only(strategy))
        options.replicaCount = replicas
        options.safetyPhaseTicks = 400
        return options
    }

    /// K = f+1 split-vote colluders fork the honest ledgers at n = 4 and n = 7, and the fork
    /// names colluders among those that signed both sides.
    @Test(arguments: [(4, [UInt64](1...4)), (7, [UInt64](1...3))])
    func splitVoteBeyondFForksTheCluster(_ replicas: Int, _ seeds: [UInt64]) async throws {
        try await offCooperativePool {
            let f = (replicas - 1) / 3
            var forks = [InvariantViolation]()
            for seed in seeds where forks.isEmpty {
                let report = Simulation<Replica>(options: TargetedAdversaryTests.options(seed: seed, replicas: replicas, byzantine: f + 1, strategy: .splitVote)).run()
                #expect(!report.livenessChecked)
                forks += report.forks
            }
            let fork = try #require(forks.first, "no fork at n = \(replicas) within seeds \(seeds)")
            #expect(!fork.colluders.isEmpty)
        }
    }

    /// K = f: the targeted strategies at n = 7 keep safety and (latency-bounded) liveness.
    @Test(arguments: [ByzantineStrategy.splitVote, .equivocatingNewView, .equivocatingViewChange])
    func targetedStrategiesAtFAreHarmlessOnSevenReplicas(_ strategy: ByzantineStrategy) async {
        await offCooperativePool {
            var failures = [String]()
            for seed in UInt64(1)...3 {
                failures += Slice.failures(Simulation<Replica>(options: TargetedAdversaryTests.options(seed: seed, replicas: 7, byzantine: 2, strategy: strategy)).run())
            }
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        }
    }
}

/// Issue 18 (6): the latency-bounded liveness check under sustained load.
@Suite struct LatencyBoundTests {
    /// The check's mechanism, independent of the real core: the tiny normal-case core never
    /// leaves view 0 and has no request timer, so a censoring r0 (it never lets client 0's
    /// requests into its core) goes unpunished while the other clients' requests commit. The
    /// check must name client 0's requests, and only a liveness failure is reported.
    @Test func aPrimaryThatNeverOrdersOneClientsRequestsFailsTheCheck() throws {
        var caught: SimulationReport?
        for seed in UInt64(1)...16 where caught == nil {
            var options = HarnessTests.calm(seed: seed)
            options.sustainedLoad = true
            options.byzantineCount = 1
            options.strategy = .only(.censor)
            options.requestsPerClient = 3
            let simulation = Simulation<NormalCaseCore>(options: options)
            guard simulation.byzantine[0] == .censor else { continue }
            caught = simulation.run()
        }
        let report = try #require(caught, "no seed in 1...16 makes r0 the censor")
        let liveness = report.violations.filter { $0.code == .liveness || $0.code == .latency }
        #expect(!liveness.isEmpty, "\(report.violations)")
        #expect(report.violations.allSatisfy { !$0.isSafety }, "\(report.violations)")
        #expect(liveness.allSatisfy { $0.detail.contains("c0 t") && !$0.detail.contains("c1 t") }, "\(liveness)")
        #expect(report.adversaryMoves["censor.dropped", default: 0] > 0)
        #expect(report.acceptedCount > 0, "the other clients' requests still commit")
    }

    /// Without the censor the same harness passes the check under the same sustained load.
    @Test func theNormalCaseUnderSustainedLoadPassesTheCheck() {
        var options = HarnessTests.calm(seed: 3)
        options.sustainedLoad = true
        let report = Simulation<NormalCaseCore>(options: options).run()
        #expect(report.violations == [])
        #expect(report.submittedCount > 3 * 6 + 3, "clients kept submitting after healing")
    }

    /// `censor` at K = f on the real core. PBFT §4.4: a backup's timer waits for one request
    /// (the oldest pending), so a primary that orders everyone's requests but one victim's is
    /// replaced within the bound. With the old timer, restarted whenever anything executed,
    /// both seeds failed the latency bound: the censor was never replaced while others' requests
    /// flowed. Scripted: PBFTTests' RequestTimerTests.
    @Test func aCensoringPrimaryIsReplacedWithinTheBound() async {
        await offCooperativePool {
            var failures = [String]()
            // Seeds 6 and 10 of `stele-sim --byzantine 1 --strategy censor`: the censor is
            // primary after healing.
            for seed: UInt64 in [6, 10] {
                var options = SimulationOptions(seed: seed)
                options.byzantineCount = 1
                options.strategy = .only(.censor)
                failures += Slice.failures(Simulation<Replica>(options: options).run())
            }
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        }
    }
}

extension LatencyBoundTests {
    /// Found by the latency check on the old core, with no censor: under sustained load a
    /// request was left out of the batches of an honest primary while newer requests committed,
    /// and since every execution restarted the backups' request timers no view change freed it;
    /// it committed only once the load stopped. The timer now waits for the oldest request.
    /// `stele-sim --seed 227 --byzantine 1` (r0 silent) and `stele-sim --seed 204 --byzantine 1`
    /// (r2 equivocate-viewchange); both failed the bound with the old timer.
    @Test(arguments: [(UInt64(227), StrategySelection.all), (204, .all)])
    func noRequestStarvesUnderSustainedLoad(_ seed: UInt64, _ strategy: StrategySelection) async {
        await offCooperativePool {
            var options = SimulationOptions(seed: seed)
            options.byzantineCount = 1
            options.strategy = strategy
            let failures = Slice.failures(Simulation<Replica>(options: options).run())
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        }
    }
}

/// Issue 18 (7): f replicas down beside a recovering one, and SteleNode's group commit.
@Suite struct CrashModelTests {
    @Test func fDownBesideARecoveringReplicaAndGroupCommitCrashesKeepSafetyAndLiveness() async {
        await offCooperativePool {
            var failures = [String]()
            var stats = [SimulationStats]()
            for seed in UInt64(200)...205 {
                var options = Slice.options(seed: seed)
                options.replicaCount = 7
                options.crashChanceOneIn = 10
                options.partitions = false
                let report = Simulation<Replica>(options: options).run()
                failures += Slice.failures(report)
                stats.append(report.stats)
            }
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
            #expect(stats.reduce(0) { $0 + $1.crashedBesideRecoveringCount } > 0, "f down beside a recovering replica never happened")
            #expect(stats.reduce(0) { $0 + $1.groupSyncCrashCount } > 0, "no crash struck a group commit")
            #expect(stats.reduce(0) { $0 + $1.ledgerWritesLostCount } > 0, "no crash lost a ledger append")
        }
    }
}
