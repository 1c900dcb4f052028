import Testing
import SteleCore
import SteleCrypto
@testable import PBFT

/// Crash-restart safety (INVARIANTS 4 and 9): persist before send, never sign a conflicting
/// message after a restart.
@Suite struct RecoveryTests {
    @Test func everyRecordPrecedesTheSendItProtects() {
        var cluster = Cluster()
        let request = cluster.request(1)
        let primaryActions = cluster.replicas[0].handle(.clientRequest(request))
        let prePrepare = try! #require(primaryActions.prePrepares.first)
        #expect(primaryActions == [.persist([.prePrepare(prePrepare)]), .broadcast(.prePrepare(prePrepare))])

        let backupActions = cluster.replicas[1].handle(.message(.prePrepare(prePrepare), from: 0))
        let prepare = try! #require(backupActions.prepares.first)
        #expect(backupActions == [.persist([.prePrepare(prePrepare), .vote(prepare)]), .broadcast(.prepare(prepare))])

        let other = Vote(kind: .prepare, view: 0, sequence: 1, digest: prePrepare.digest, replica: 2).signed(by: cluster.signers[2])
        let preparedActions = cluster.replicas[1].handle(.message(.prepare(other), from: 2))
        let commit = try! #require(preparedActions.commits.first)
        guard case .persist(let records) = preparedActions.first else {
            Issue.record("the first action must persist the prepared certificate and the COMMIT")
            return
        }
        #expect(records.contains(.vote(commit)))
        #expect(records.contains { if case .prepared(let c) = $0 { c.digest == prePrepare.digest && c.prepares.count == 2 } else { false } })
        #expect(preparedActions.last == .broadcast(.commit(commit)))
    }

    @Test func aRestartedBackupNeverPreparesAConflictingDigest() {
        var cluster = Cluster()
        let first = cluster.prePrepare(view: 0, sequence: 1, batch: [cluster.request(1)])
        let conflicting = cluster.prePrepare(view: 0, sequence: 1, batch: [cluster.request(2)])
        #expect(cluster.inject(.prePrepare(first), from: 0, to: 1).prepares.count == 1)

        cluster.restart(1)
        #expect(cluster.inject(.prePrepare(conflicting), from: 0, to: 1).prepares.isEmpty)
        #expect(cluster.replica(1).lastViolation?.code == .conflictingPrePrepare(accepted: first.digest))
        cluster.tick(5)
        let prepares = cluster.sent(by: 1).compactMap { if case .prepare(let v) = $0 { v } else { nil } }
        #expect(Set(prepares.map(\.digest)) == [first.digest], "only the digest it prepared before the crash, re-sent")
    }

    @Test func aRestartedReplicaNeverCommitsAConflictingDigest() {
        var cluster = Cluster()
        cluster.drops = { if case .commit = $0.message { true } else { false } }
        let request = cluster.request(1)
        cluster.submit(request, to: [0])
        cluster.run()
        let prepared = try! #require(cluster.replica(2).preparedCertificates[1])
        for id in cluster.ids { cluster.restart(id) }
        #expect(cluster.replica(2).preparedCertificates[1] == prepared, "the prepared certificate survives for the next VIEW-CHANGE")
        #expect(cluster.replica(2).ownMessages[OwnMessageKey(kind: .commit, view: 0, sequence: 1)] == prepared.digest)

        cluster.drops = { _ in false }
        cluster.tick(until: { c in c.ids.allSatisfy { c.ledger($0).count == 1 } }, ticksMax: 50)
        for id in cluster.ids {
            let commits = cluster.sent(by: id).compactMap { if case .commit(let v) = $0 { v } else { nil } }
            #expect(Set(commits.map(\.digest)) == [prepared.digest])
            #expect(cluster.ledger(id).first?.batch == [request])
        }
    }

    @Test func aRestartedPrimaryDoesNotReuseASequenceNumber() {
        // One request fills a batch, so the primary proposes it at once although sequence 1 is
        // still in flight (adaptive batching holds back only partial batches).
        var cluster = Cluster(parameters: Cluster.parameters(batchSizeMax: 1))
        cluster.isolated = [1, 2, 3]
        cluster.submit(cluster.request(1), to: [0])
        cluster.restart(0)
        let actions = cluster.replicas[0].handle(.clientRequest(cluster.request(2)))
        #expect(actions.prePrepares.map(\.sequence) == [2], "sequence 1 was proposed before the crash")
        cluster.perform(actions, by: 0)
        cluster.isolated = []
        cluster.tick(until: { c in c.ids.allSatisfy { c.ledger($0).count == 2 } }, ticksMax: 50)
        #expect(cluster.ledger(3).map(\.batch) == [[cluster.request(1)], [cluster.request(2)]], "the retransmitted s1 and the new s2")
    }

    @Test func aReplicaRestartedDuringAViewChangeResumesIt() {
        var cluster = Cluster()
        cluster.inject(.viewChange(cluster.viewChange(to: 1, by: 0)), from: 0, to: 3)
        let joined = cluster.inject(.viewChange(cluster.viewChange(to: 1, by: 2)), from: 2, to: 3)
        let own = try! #require(joined.viewChanges.first)

        cluster.restart(3)
        #expect(cluster.replica(3).view == 1)
        #expect(cluster.replica(3).isInViewChange)
        let resent = cluster.replicas[3].handle(.tick).viewChanges
        #expect(resent == [own], "it re-sends the VIEW-CHANGE it persisted")
    }

    @Test func aReplicaRestartedMidRunKeepsTheSameLedger() {
        var cluster = Cluster(parameters: Cluster.parameters(checkpointInterval: 2, watermarkWindow: 4, batchSizeMax: 2, pipelineDepthMax: 2))
        for timestamp in 1...6 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()
        cluster.restart(2)
        #expect(cluster.replica(2).lastExecuted == cluster.replica(0).lastExecuted)
        #expect(cluster.replica(2).stableCheckpoint == cluster.replica(0).stableCheckpoint)
        for timestamp in 7...12 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.tick(until: { c in c.ids.allSatisfy { c.replica($0).pending.isEmpty && c.ledger($0).count == c.ledger(0).count } }, ticksMax: 50)
        for id in cluster.ids {
            #expect(cluster.ledger(id).map(\.hash) == cluster.ledger(0).map(\.hash))
            cluster.expectExactlyOnce(id)
        }
        #expect(cluster.ledger(0).flatMap(\.batch).count == 12)
    }
}
