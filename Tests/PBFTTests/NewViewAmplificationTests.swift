import Testing
import SteleCore
import SteleCrypto
@testable import PBFT

/// PBFT §4.5.2 (a replica stuck in a view change is helped by those that moved on) without
/// amplification: the NEW-VIEW sent back is validated against and rate-limited per peer.
@Suite struct NewViewAmplificationTests {
    /// Replica 1 became primary of view 1 (replica 0 silent) and holds its NEW-VIEW.
    static func clusterInViewOne() -> Cluster {
        var cluster = Cluster()
        cluster.isolated = [0]
        cluster.submit(cluster.request(1))
        let entered = cluster.tick(until: { c in [1, 2, 3].allSatisfy { c.replica($0).view == 1 && !c.replica($0).isInViewChange } }, ticksMax: 100)
        #expect(entered)
        #expect(cluster.replica(1).ownNewView?.view == 1)
        return cluster
    }

    static func newViewsSent(_ actions: [Action], to peer: ReplicaID) -> Int {
        actions.filter { if case .send(.newView, let to) = $0 { to == peer } else { false } }.count
    }

    @Test func aReplayedStaleViewChangeGetsAtMostOneNewViewPerInterval() {
        var cluster = NewViewAmplificationTests.clusterInViewOne()
        let stale = try! #require(cluster.sent(by: 2).compactMap { if case .viewChange(let m) = $0, m.newView == 1 { m } else { nil } }.first)
        cluster.tick(Int(cluster.config.parameters.retransmitTicks))
        var answered = 0
        for _ in 0..<50 {
            answered += NewViewAmplificationTests.newViewsSent(cluster.inject(.viewChange(stale), from: 2, to: 1), to: 2)
        }
        #expect(answered == 1, "one NEW-VIEW for 50 replays within one interval")
        #expect(cluster.replica(1).lastViolation?.code == .rateLimited)
        cluster.tick(Int(cluster.config.parameters.retransmitTicks))
        answered = 0
        for _ in 0..<50 {
            answered += NewViewAmplificationTests.newViewsSent(cluster.inject(.viewChange(stale), from: 2, to: 1), to: 2)
        }
        #expect(answered == 1, "and one more in the next interval")
    }

    @Test func anInvalidStaleViewChangeGetsNoNewView() {
        var cluster = NewViewAmplificationTests.clusterInViewOne()
        cluster.tick(Int(cluster.config.parameters.retransmitTicks))
        // A stable checkpoint at 4 with no proof: signed by replica 3, but not valid.
        let invalid = cluster.viewChange(to: 1, by: 3, stable: 4, proof: [])
        var answered = 0
        for _ in 0..<10 {
            answered += NewViewAmplificationTests.newViewsSent(cluster.inject(.viewChange(invalid), from: 3, to: 1), to: 3)
        }
        #expect(answered == 0)
        #expect(cluster.replica(1).lastViolation?.code == .invalidCheckpointProof)
    }
}
