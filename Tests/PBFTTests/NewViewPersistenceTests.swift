import Testing
import SteleCore
import SteleCrypto
@testable import PBFT

/// Crash-restart of a new primary (INVARIANTS 4 and 9, PBFT §4.4): the NEW-VIEW it sent is in
/// its write-ahead log before it is broadcast, and after a restart it re-sends that very
/// message — never a different NEW-VIEW for the view.
@Suite struct NewViewPersistenceTests {
    static func newViews(_ messages: [Message], view: View) -> [NewView] {
        messages.compactMap { if case .newView(let m) = $0, m.view == view { m } else { nil } }
    }

    @Test func theNewViewIsPersistedBeforeItIsBroadcast() {
        let cluster = NewViewAmplificationTests.clusterInViewOne()
        let sent = try! #require(cluster.replica(1).ownNewView)
        #expect(cluster.wal[1].contains(.newView(sent)))
        // Harness.expectPersistBeforeSend checked every list: .newView precedes the broadcast.
    }

    @Test func aRestartedNewPrimaryRetransmitsTheSameNewView() {
        var cluster = NewViewAmplificationTests.clusterInViewOne()
        let sent = try! #require(cluster.replica(1).ownNewView)
        cluster.restart(1)
        #expect(cluster.replica(1).view == 1)
        #expect(!cluster.replica(1).isInViewChange)
        #expect(cluster.replica(1).ownNewView == sent)
        let before = cluster.sent(by: 1).count
        cluster.tick(2)
        let resent = NewViewPersistenceTests.newViews(Array(cluster.sent(by: 1).dropFirst(before)), view: 1)
        #expect(!resent.isEmpty, "the restarted primary retransmits its NEW-VIEW")
        #expect(resent.allSatisfy { $0 == sent }, "the identical NEW-VIEW")
    }

    /// A torn group commit: the NEW-VIEW record is durable, the records after it (entering the
    /// view, O's PRE-PREPAREs) are not. The primary resumes with that NEW-VIEW.
    @Test func aNewPrimaryRestartedBeforeItRecordedEnteringTheViewResendsTheSameNewView() {
        var cluster = NewViewAmplificationTests.clusterInViewOne()
        let sent = try! #require(cluster.replica(1).ownNewView)
        let index = try! #require(cluster.wal[1].firstIndex(of: .newView(sent)))
        cluster.wal[1] = Array(cluster.wal[1].prefix(index + 1))
        cluster.restart(1)
        #expect(cluster.replica(1).view == 1)
        #expect(cluster.replica(1).isInViewChange)
        let actions = cluster.replicas[1].handle(.tick)
        cluster.perform(actions, by: 1)
        #expect(!actions.newViews.isEmpty, "re-sent at once")
        #expect(actions.newViews.allSatisfy { $0 == sent }, "the same NEW-VIEW, not a recomputed one")
        #expect(!cluster.replica(1).isInViewChange)
        guard case .persist(let records) = actions.first else {
            Issue.record("entering the view is persisted first")
            return
        }
        #expect(records.contains(.view(1, inViewChange: false)))
        cluster.run()
        cluster.isolated = []
        cluster.submit(cluster.request(2))
        cluster.tick(until: { c in [1, 2, 3].allSatisfy { c.ledger($0).count == 2 } }, ticksMax: 100)
        #expect(Set(NewViewPersistenceTests.newViews(cluster.sent(by: 1), view: 1)) == [sent], "never another NEW-VIEW for view 1")
        #expect(cluster.ledger(3).map(\.hash) == cluster.ledger(1).map(\.hash))
    }
}

/// PBFT §4.4: a request a replica relays is treated like the client's own by its receiver,
/// through one path (`receiveRelayedRequest`), in the runtime and the simulator alike.
@Suite struct RelayedRequestTests {
    @Test func aBackupThatReceivesARelayedRequestStartsItsTimer() {
        var cluster = Cluster()
        let request = cluster.request(1)
        // Replica 3 relays it to replica 2 (say it believes 2 is the primary).
        let actions = cluster.inject(.request(request), from: 3, to: 2)
        #expect(actions.isEmpty, "nothing sent on at once: no amplification")
        #expect(cluster.replica(2).pending.contains(RequestKey(request)))
        #expect(cluster.replica(2).requestDeadline != nil)
        #expect(cluster.replica(2).requestTimerKey == RequestKey(request))
        // The next retransmission round forwards it to the primary, which orders it.
        let committed = cluster.tick(until: { c in c.ids.allSatisfy { c.ledger($0).count == 1 } }, ticksMax: 20)
        #expect(committed)
    }

    @Test func aRelayedRequestReachesThePrimaryAndAnExecutedOneGetsNoReply() {
        var cluster = Cluster()
        let request = cluster.request(1)
        let actions = cluster.inject(.request(request), from: 2, to: 0)
        #expect(actions.prePrepares.map(\.batch) == [[request]])
        cluster.run()
        #expect(cluster.ids.allSatisfy { cluster.ledger($0).count == 1 })
        let replay = cluster.inject(.request(request), from: 2, to: 0)
        #expect(replay.isEmpty, "the relay gets no signed REPLY for it; the client asks itself")
        #expect(cluster.replicas[0].handle(.clientRequest(request)).replies.count == 1, "the client gets its cached reply")
    }
}
