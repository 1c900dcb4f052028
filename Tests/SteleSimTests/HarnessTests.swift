import PBFT
import SteleCore
import SteleTestSupport
import SteleSim
import Testing

/// The simulator checked against a tiny normal-case core, independent of the real one.
@Suite struct HarnessTests {
    static func calm(seed: UInt64) -> SimulationOptions {
        var options = SimulationOptions(seed: seed)
        options.crashes = false
        options.partitions = false
        options.networkFaults = false
        options.safetyPhaseTicks = 300
        options.livenessPhaseTicksMax = 300
        // One request per client after healing, so the counts below are exact.
        options.sustainedLoad = false
        return options
    }

    @Test func normalCaseOnACalmNetworkCommitsEveryRequest() {
        let report = Simulation<NormalCaseCore>(options: HarnessTests.calm(seed: 1)).run()
        #expect(report.violations == [])
        #expect(report.submittedCount == 3 * 6 + 3)
        #expect(report.acceptedCount == report.submittedCount)
        #expect(report.committedHeightMax == UInt64(report.submittedCount))
    }
}

extension HarnessTests {
    @Test func sameSeedSameTraceDifferentSeedDifferentTrace() {
        var options = SimulationOptions(seed: 11)
        options.safetyPhaseTicks = 300
        options.crashes = false
        let first = Simulation<NormalCaseCore>(options: options).run()
        let second = Simulation<NormalCaseCore>(options: options).run()
        options.seed = 12
        let other = Simulation<NormalCaseCore>(options: options).run()
        #expect(first.traceHash == second.traceHash)
        #expect(first.stats == second.stats)
        #expect(first.traceHash != other.traceHash)
    }

    /// Two colluding equivocators, one of them primary: batch A to one honest backup, B to the
    /// other, both colluders vote for both — the honest replicas commit different blocks at
    /// one height, and the checker names the colluders.
    @Test func colludingEquivocatorsForkTheNormalCaseAndAreNamed() async throws {
        try await offCooperativePool {
            var forks = [(SimulationReport, InvariantViolation)]()
            for seed in UInt64(1)...12 {
                var options = HarnessTests.calm(seed: seed)
                options.byzantineCount = 2
                options.strategy = .only(.equivocate)
                let report = Simulation<NormalCaseCore>(options: options).run()
                forks += report.forks.map { (report, $0) }
            }
            let (report, fork) = try #require(forks.first)
            #expect(fork.colluders == report.byzantine.keys.sorted())
            #expect(report.byzantine[0] == .equivocate, "the normal-case core never leaves view 0, so r0 must be a colluder")
        }
    }
}

extension HarnessTests {
    /// A core that ignores its WAL after a crash re-proposes sequence numbers it already used
    /// for other requests: the shell-side check of invariant 4 must name it.
    @Test func amnesiaAfterACrashIsCaughtAsHonestEquivocation() throws {
        var caught = [InvariantViolation]()
        for seed in UInt64(1)...40 where caught.isEmpty {
            var options = HarnessTests.calm(seed: seed)
            options.crashes = true
            options.requestsPerClient = 10
            options.safetyPhaseTicks = 600
            let report = Simulation<AmnesiacCore>(options: options).run()
            caught += report.violations.filter { $0.code == .honestEquivocation }
        }
        let violation = try #require(caught.first)
        #expect(violation.replicas == [0], "only the primary proposes in the normal-case core")
    }
}

extension HarnessTests {
    /// The simulator asks the core for its structural invariants after every event: a core
    /// that breaks one is reported, once per replica, as `core-invariant`, a safety violation.
    @Test func aCoreThatBreaksItsOwnInvariantIsReportedOncePerReplica() {
        let report = Simulation<UntidyCore>(options: HarnessTests.calm(seed: 3)).run()
        let broken = report.violations.filter { $0.code == .coreInvariant }
        #expect(Set(broken.flatMap(\.replicas)).count == 4, "\(broken)")
        #expect(broken.count == 4, "one report per replica, not one per event")
        #expect(broken.allSatisfy { $0.isSafety && $0.detail.contains("committed-at-or-below-executed") })
        #expect(Simulation<NormalCaseCore>(options: HarnessTests.calm(seed: 3)).run().violations == [])
    }
}
