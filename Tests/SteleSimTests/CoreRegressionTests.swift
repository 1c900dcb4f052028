import PBFT
import SteleCore
import SteleSim
import Testing

/// Seeds on which the simulator found bugs in the PBFT core, replayed exactly as `stele-sim`
/// runs them (the replay command is in each test). Each bug is pinned twice: here as a smoke
/// run of the whole cluster, and as a scripted scenario on PBFTTests' in-memory cluster that
/// does not depend on the simulator's random streams (named in each test's comment).
@Suite struct CoreRegressionTests {
    static func run(seed: UInt64, byzantine: Int, strategy: StrategySelection, adjust: (inout SimulationOptions) -> Void = { _ in }) -> [String] {
        var options = SimulationOptions(seed: seed)
        options.byzantineCount = byzantine
        options.strategy = strategy
        // These seeds found their bugs before the liveness phase had sustained load.
        options.sustainedLoad = false
        adjust(&options)
        return Slice.failures(Simulation<Replica>(options: options).run())
    }

    /// §4.5.2 liveness. `stele-sim --seed 11 --byzantine 1 --strategy silent --no-crashes
    /// --no-network-faults`: no loss and no crashes, only partitions. r3 (primary of v3) cannot
    /// send; r0 and r1 move to v4 and r3 joins them, but r3's VIEW-CHANGE for v4 never arrives
    /// and r3 then times out to v5. After healing r0, r1 hold 2 VIEW-CHANGEs for v4 and r3 one
    /// for v5: nobody starts a NEW-VIEW timer (it needs 2f+1), nobody sees f+1 for a higher
    /// view, and r3 no longer re-sends its v4 VIEW-CHANGE — stuck for good. Scripted:
    /// ViewChangeTests.aReplicaReSendsItsViewChangeForALowerViewToAPeerStuckThere and
    /// aLateViewChangeForThePendingViewCountsAfterItsSenderMovedOn.
    @Test func viewChangeDoesNotDeadlockWhenAVoteForALowerViewWasLost() {
        let failures = CoreRegressionTests.run(seed: 11, byzantine: 1, strategy: .only(.silent)) {
            $0.crashes = false
            $0.networkFaults = false
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    /// `stele-sim --seed 253 --byzantine 1`: r2, primary of v2, sends NEW-VIEW, crashes and
    /// restarts "in v2" — but no PersistRecord holds the NEW-VIEW, so it cannot re-send it, and
    /// r0, which missed it, waits in view change forever (its NEW-VIEW timer never starts).
    /// Scripted: NewViewPersistenceTests.aRestartedNewPrimaryRetransmitsTheSameNewView.
    @Test func aBackupThatMissedTheNewViewOfARestartedPrimaryStillEntersTheView() {
        let failures = CoreRegressionTests.run(seed: 253, byzantine: 1, strategy: .all)
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    /// Invariant 7. `stele-sim --seed 227 --byzantine 1`: a request ordered at height 11 is
    /// ordered again at height 12 after a view change; LedgerHead skips it on execution, but the
    /// ledger holds it twice (stele-check reports duplicate-transaction too). Scripted:
    /// NormalCaseTests.aRequestAcceptedInAnEarlierViewIsNotOrderedAfreshAtAnotherSequence.
    @Test func aRequestAlreadyOrderedIsNotOrderedAgain() {
        let failures = CoreRegressionTests.run(seed: 227, byzantine: 1, strategy: .all)
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }
}
