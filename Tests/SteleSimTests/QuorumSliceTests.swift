import PBFT
import SteleCore
import Testing
import SteleTestSupport
import SteleSim

/// docs/protocol.md, "Quorums": at n > 3f + 1 a prepared certificate needs q - 1 PREPAREs. With
/// the paper's 2f, one equivocating primary at n = 6 forked the honest replicas (two digests
/// prepared in one view, the view change then re-proposing the wrong one): this seed, with
/// the CLI's default run shape, broke safety that way before the rule was applied. Scripted:
/// PBFTTests' QuorumSizeTests (anEquivocatingPrimaryCannotPrepareTwoDigestsAtSixReplicas).
@Suite struct QuorumSliceTests {
    static let seedsThatForkedWithTwoFPrepares: [UInt64] = [12]

    @Test func oneEquivocatorAtSixReplicasBreaksNeitherSafetyNorLiveness() async {
        await offCooperativePool {
            var failures = [String]()
            for seed in QuorumSliceTests.seedsThatForkedWithTwoFPrepares {
                var options = SimulationOptions(seed: seed)
                options.replicaCount = 6
                options.byzantineCount = 1
                options.strategy = .only(.equivocate)
                failures += Slice.failures(Simulation<Replica>(options: options).run())
            }
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        }
    }
}
