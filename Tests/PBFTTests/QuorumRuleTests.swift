import Testing
import SteleCore
import SteleCrypto
@testable import PBFT

/// §4.2: who may send what, and who counts towards prepared and committed-local.
@Suite struct QuorumRuleTests {
    func prePrepare(_ cluster: Cluster, view: View = 0, sequence: SequenceNumber = 1, primary: ReplicaID = 0, timestamps: [UInt64] = [1]) -> PrePrepare {
        PrePrepare(view: view, sequence: sequence, primary: primary, batch: timestamps.map { cluster.request($0) })
            .signed(by: cluster.signers[Int(primary.value)])
    }

    func vote(_ cluster: Cluster, _ kind: VoteKind, _ prePrepare: PrePrepare, by replica: ReplicaID) -> Vote {
        Vote(kind: kind, view: prePrepare.view, sequence: prePrepare.sequence, digest: prePrepare.digest, replica: replica)
            .signed(by: cluster.signers[Int(replica.value)])
    }

    @Test func aPrePrepareFromANonPrimaryIsIgnored() {
        var cluster = Cluster()
        let forged = prePrepare(cluster, primary: 1)
        #expect(cluster.inject(.prePrepare(forged), from: 1, to: 2).isEmpty)
        #expect(cluster.replica(2).lastViolation?.code == .notPrimary(expected: 0))
    }

    @Test func aPrePrepareRelayedByAnotherReplicaIsIgnored() {
        var cluster = Cluster()
        let genuine = prePrepare(cluster)
        #expect(cluster.inject(.prePrepare(genuine), from: 1, to: 2).isEmpty)
        #expect(cluster.replica(2).lastViolation?.code == .senderMismatch(signer: 0))
    }

    @Test func aSecondPrePrepareWithAnotherDigestForTheSameViewAndSequenceIsIgnored() {
        var cluster = Cluster()
        let first = prePrepare(cluster, timestamps: [1])
        let second = prePrepare(cluster, timestamps: [2])
        #expect(cluster.inject(.prePrepare(first), from: 0, to: 1).prepares.map(\.digest) == [first.digest])
        #expect(cluster.inject(.prePrepare(second), from: 0, to: 1).isEmpty)
        #expect(cluster.replica(1).lastViolation?.code == .conflictingPrePrepare(accepted: first.digest))
        #expect(cluster.inject(.prePrepare(first), from: 0, to: 1).isEmpty, "the same PRE-PREPARE again changes nothing")
    }

    @Test func preparesFromThePrimaryDoNotCount() {
        var cluster = Cluster()
        let proposal = prePrepare(cluster)
        cluster.inject(.prePrepare(proposal), from: 0, to: 1)
        // Backup 1 holds its own PREPARE; the primary's PREPARE must not be the 2f-th.
        #expect(cluster.inject(.prepare(vote(cluster, .prepare, proposal, by: 0)), from: 0, to: 1).commits.isEmpty)
        #expect(cluster.replica(1).lastViolation?.code == .prepareFromPrimary)
        #expect(cluster.replica(1).log[1]?.isPrepared == false)
        // A second backup's PREPARE completes 2f.
        #expect(cluster.inject(.prepare(vote(cluster, .prepare, proposal, by: 2)), from: 2, to: 1).commits.count == 1)
    }

    @Test func aVoteDeliveredTwiceFromOneReplicaDoesNotMakeAQuorum() {
        var cluster = Cluster()
        let proposal = prePrepare(cluster)
        cluster.inject(.prePrepare(proposal), from: 0, to: 1)
        cluster.inject(.prepare(vote(cluster, .prepare, proposal, by: 2)), from: 2, to: 1)
        #expect(cluster.replica(1).log[1]?.isPrepared == true)
        // Own COMMIT + replica 2's COMMIT twice = 2 distinct, not 2f+1 = 3.
        let commit = vote(cluster, .commit, proposal, by: 2)
        #expect(cluster.inject(.commit(commit), from: 2, to: 1).blocks.isEmpty)
        #expect(cluster.inject(.commit(commit), from: 2, to: 1).blocks.isEmpty)
        #expect(cluster.replica(1).lastExecuted == 0)
        #expect(cluster.inject(.commit(vote(cluster, .commit, proposal, by: 3)), from: 3, to: 1).blocks.count == 1)
    }

    @Test func aVoteWhoseSenderIsNotItsSignerIsDropped() {
        var cluster = Cluster()
        let proposal = prePrepare(cluster)
        cluster.inject(.prePrepare(proposal), from: 0, to: 1)
        // Replica 3 relays replica 2's PREPARE (validly signed by 2): it must not count.
        #expect(cluster.inject(.prepare(vote(cluster, .prepare, proposal, by: 2)), from: 3, to: 1).isEmpty)
        #expect(cluster.replica(1).lastViolation?.code == .senderMismatch(signer: 2))
        #expect(cluster.replica(1).log[1]?.isPrepared == false)
    }

    @Test func aMessageFromANonMemberIsDropped() {
        var cluster = Cluster()
        let proposal = prePrepare(cluster)
        let actions = cluster.replicas[1].handle(.message(.prePrepare(proposal), from: 9))
        #expect(actions.isEmpty)
        #expect(cluster.replica(1).lastViolation?.code == .notAMember)
    }

    @Test func votesBeforeThePrePrepareAreBufferedAndCounted() {
        var cluster = Cluster()
        let proposal = prePrepare(cluster)
        cluster.inject(.prepare(vote(cluster, .prepare, proposal, by: 2)), from: 2, to: 1)
        cluster.inject(.commit(vote(cluster, .commit, proposal, by: 2)), from: 2, to: 1)
        cluster.inject(.commit(vote(cluster, .commit, proposal, by: 3)), from: 3, to: 1)
        let actions = cluster.inject(.prePrepare(proposal), from: 0, to: 1)
        #expect(actions.prepares.count == 1 && actions.commits.count == 1)
        #expect(actions.blocks.count == 1, "prepared and committed-local as soon as the PRE-PREPARE arrives")
    }

    @Test func aBatchLargerThanBatchSizeMaxIsRejected() {
        var cluster = Cluster(parameters: Cluster.parameters(batchSizeMax: 2))
        let proposal = prePrepare(cluster, timestamps: [1, 2, 3])
        #expect(cluster.inject(.prePrepare(proposal), from: 0, to: 1).isEmpty)
        #expect(cluster.replica(1).lastViolation?.code == .batchTooLarge(count: 3, limit: 2))
    }

    @Test func aBatchOverBatchBytesMaxIsRejected() {
        var parameters = Cluster.parameters()
        parameters.batchBytesMax = 2 * (108 + "tx-1".count)
        var cluster = Cluster(parameters: parameters)
        let proposal = prePrepare(cluster, timestamps: [1, 2, 3])
        #expect(cluster.inject(.prePrepare(proposal), from: 0, to: 1).isEmpty)
        #expect(cluster.replica(1).lastViolation?.code == .batchBytesTooLarge(bytes: 3 * (108 + 4), limit: 2 * (108 + 4)))
        // The same requests two at a time are within the limit.
        let smaller = prePrepare(cluster, timestamps: [1, 2])
        #expect(!cluster.inject(.prePrepare(smaller), from: 0, to: 1).isEmpty)
    }
}

/// §4.3: watermarks and garbage collection.
@Suite struct WatermarkAndCheckpointTests {
    @Test func aSequenceAboveTheHighWatermarkIsRejected() {
        var cluster = Cluster(parameters: Cluster.parameters(checkpointInterval: 4, watermarkWindow: 8))
        let proposal = PrePrepare(view: 0, sequence: 9, primary: 0, batch: [cluster.request(1)]).signed(by: cluster.signers[0])
        let actions = cluster.inject(.prePrepare(proposal), from: 0, to: 1)
        #expect(actions.prepares.isEmpty)
        #expect(cluster.replica(1).lastViolation?.code == .outsideWatermarks(low: 0, high: 8))
        let inside = PrePrepare(view: 0, sequence: 8, primary: 0, batch: [cluster.request(2)]).signed(by: cluster.signers[0])
        #expect(cluster.inject(.prePrepare(inside), from: 0, to: 1).prepares.count == 1)
    }

    @Test func thePrimaryStopsAtTheHighWatermarkUntilACheckpointIsStable() {
        // Pipeline deeper than the window: the window is what stops the primary.
        var cluster = Cluster(parameters: Cluster.parameters(checkpointInterval: 2, watermarkWindow: 4, batchSizeMax: 1, pipelineDepthMax: 16))
        cluster.isolated = [1, 2, 3]  // nothing commits
        for timestamp in 1...6 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        #expect(cluster.replica(0).nextSequence == 5, "sequences 1...4 proposed, 5 would pass h + L")
    }

    @Test func aStableCheckpointAdvancesTheLowWatermarkAndDiscardsTheLog() {
        var cluster = Cluster(parameters: Cluster.parameters(checkpointInterval: 4, watermarkWindow: 8, batchSizeMax: 1, pipelineDepthMax: 1))
        for timestamp in 1...10 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()
        for id in cluster.ids {
            let replica = cluster.replica(id)
            #expect(replica.lastExecuted == 10)
            #expect(replica.stableCheckpoint == 8)
            #expect(replica.highWatermark == 16)
            #expect(replica.log.keys.allSatisfy { $0 > 8 }, "the log at or below h is gone")
            #expect(replica.preparedCertificates.keys.allSatisfy { $0 > 8 })
            #expect(replica.checkpointMessages.values.allSatisfy { $0.keys.allSatisfy { $0 > 8 } })
            #expect(cluster.checkpoints[Int(id.value)].map(\.sequence) == [4, 8])
            let eighth = cluster.ledger(id)[7].hash
            #expect(cluster.checkpoints[Int(id.value)].last?.stateDigest == eighth)
            #expect(cluster.wal[Int(id.value)].contains { if case .stableCheckpoint(let c) = $0 { c.sequence == 8 } else { false } })
        }
    }

    @Test func messagesAtOrBelowTheLowWatermarkAreDropped() {
        var cluster = Cluster(parameters: Cluster.parameters(checkpointInterval: 4, watermarkWindow: 8, batchSizeMax: 1, pipelineDepthMax: 1))
        for timestamp in 1...4 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()
        #expect(cluster.replica(1).stableCheckpoint == 4)
        let old = PrePrepare(view: 0, sequence: 3, primary: 0, batch: [cluster.request(9)]).signed(by: cluster.signers[0])
        let actions = cluster.inject(.prePrepare(old), from: 0, to: 1)
        #expect(actions.prepares.isEmpty)
        #expect(cluster.replica(1).lastViolation?.code == .outsideWatermarks(low: 4, high: 12))
    }

    @Test func checkpointsNeedTwoFPlusOneMatchingDigests() {
        var cluster = Cluster()
        let digestA = Digest.of([1]), digestB = Digest.of([2])
        func checkpoint(_ replica: ReplicaID, _ digest: Digest) -> Checkpoint {
            Checkpoint(sequence: 4, stateDigest: digest, replica: replica).signed(by: cluster.signers[Int(replica.value)])
        }
        cluster.inject(.checkpoint(checkpoint(0, digestA)), from: 0, to: 3)
        cluster.inject(.checkpoint(checkpoint(1, digestB)), from: 1, to: 3)
        cluster.inject(.checkpoint(checkpoint(2, digestA)), from: 2, to: 3)
        #expect(cluster.replica(3).stableCheckpoint == 0, "two matching of three is not 2f+1")
        cluster.inject(.checkpoint(checkpoint(1, digestA)), from: 1, to: 3)
        #expect(cluster.replica(3).stableCheckpoint == 0, "a replica's second CHECKPOINT for one sequence is ignored")
    }
}
