import Testing
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import PBFT

/// PBFT §4.2, normal-case operation.
@Suite struct NormalCaseTests {
    @Test func oneRequestCommitsOnAllReplicasWithTheSameBlock() {
        var cluster = Cluster()
        let request = cluster.request(1)
        cluster.submit(request, to: [0])
        cluster.run()

        let reference = cluster.ledger(0)
        #expect(reference.count == 1)
        for id in cluster.ids {
            #expect(cluster.ledger(id).map(\.hash) == reference.map(\.hash), "replica \(id) holds the same block")
            #expect(cluster.replica(id).lastExecuted == 1)
            #expect(cluster.replica(id).ledgerHead.hash == reference[0].hash)
        }
        let block = try! #require(reference.first)
        #expect(block.batch == [request])
        #expect(block.certificateView == 0)
        #expect(Set(block.commitSignatures.map(\.replica)).count >= cluster.config.quorum)

        let replies = cluster.replies.flatMap { $0 }
        #expect(replies.count == 4, "every replica replies")
        #expect(Set(replies.map(\.replica)) == Set(cluster.ids))
        #expect(Set(replies.map(\.result)) == [Reply.Result(height: 1, blockHash: block.hash)])
        for reply in replies { cluster.expectVerified(.reply(reply), from: reply.replica) }
    }

    @Test func aBackupForwardsARequestToThePrimary() {
        var cluster = Cluster()
        let actions = cluster.replicas[2].handle(.clientRequest(cluster.request(1)))
        #expect(actions == [.send(.request(cluster.request(1)), to: 0)])
        cluster.perform(actions, by: 2)
        cluster.run()
        #expect(cluster.ids.allSatisfy { cluster.ledger($0).count == 1 })
    }

    @Test func manyRequestsAreBatchedIntoFewBlocks() {
        var cluster = Cluster(parameters: Cluster.parameters(batchSizeMax: 8, pipelineDepthMax: 1))
        for timestamp in 1...20 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()

        let ledger = cluster.ledger(0)
        // The first request is cut alone (the pipeline was empty); the rest queue behind it.
        #expect(ledger.map(\.batch.count) == [1, 8, 8, 3])
        #expect(ledger.flatMap(\.batch).map(\.timestamp) == Array(1...20))
        for id in cluster.ids {
            #expect(cluster.ledger(id).map(\.hash) == ledger.map(\.hash))
            cluster.expectExactlyOnce(id)
        }
    }

    @Test func batchesAreCutByBytesAsWellAsByCount() {
        var parameters = Cluster.parameters(batchSizeMax: 8, pipelineDepthMax: 1)
        // Room for three of the 600-byte requests below, not four.
        parameters.batchBytesMax = 3 * (600 + 108) + 10
        var cluster = Cluster(parameters: parameters)
        let payload = String(repeating: "p", count: 600 - "-10".count)
        for timestamp in 1...10 { cluster.submit(cluster.request(UInt64(timestamp), payload), to: [0]) }
        // One request larger than the whole budget still gets a batch of its own.
        cluster.submit(cluster.request(11, String(repeating: "q", count: 4000)), to: [0])
        cluster.submit(cluster.request(12, payload), to: [0])
        cluster.run()

        let ledger = cluster.ledger(0)
        #expect(ledger.flatMap(\.batch).map(\.timestamp) == Array(1...12))
        #expect(ledger.map(\.batch.count) == [1, 3, 3, 3, 1, 1])
        for block in ledger where block.batch.count > 1 {
            #expect(block.batch.reduce(0) { $0 + $1.encodedByteCount } <= parameters.batchBytesMax)
        }
        for id in cluster.ids {
            #expect(cluster.ledger(id).map(\.hash) == ledger.map(\.hash))
            cluster.expectExactlyOnce(id)
        }
    }

    @Test func thePrimaryPipelinesSeveralSequences() {
        var cluster = Cluster(parameters: Cluster.parameters(batchSizeMax: 1, pipelineDepthMax: 3))
        var proposed = [PrePrepare]()
        for timestamp in 1...5 {
            let actions = cluster.replicas[0].handle(.clientRequest(cluster.request(UInt64(timestamp))))
            proposed += actions.prePrepares
            cluster.perform(actions, by: 0)
        }
        #expect(proposed.map(\.sequence) == [1, 2, 3], "three sequences in flight before any executes")
        cluster.run()
        #expect(cluster.ledger(0).count == 5, "the queued requests follow as the pipeline drains")
        #expect(cluster.ids.allSatisfy { cluster.ledger($0).map(\.hash) == cluster.ledger(0).map(\.hash) })
    }

    @Test func batchesCutOnATickWhenThePipelineFreesUp() {
        var cluster = Cluster(parameters: Cluster.parameters(batchSizeMax: 4, pipelineDepthMax: 1))
        cluster.submit(cluster.request(1), to: [0])
        cluster.submit(cluster.request(2), to: [0])
        #expect(cluster.replica(0).nextSequence == 2, "request 2 waits: one batch in flight")
        cluster.run()
        cluster.tick()
        #expect(cluster.ledger(0).map(\.batch.count) == [1, 1])
    }
}

/// Exactly-once semantics (§4.1: the last reply per client is part of the state).
@Suite struct ExactlyOnceTests {
    @Test func aRetransmittedRequestGetsTheCachedReplyAndIsNotExecutedAgain() {
        var cluster = Cluster()
        let request = cluster.request(1)
        cluster.submit(request)
        cluster.run()
        let first = cluster.replies[1]

        for id in cluster.ids {
            let actions = cluster.replicas[Int(id.value)].handle(.clientRequest(request))
            #expect(actions.blocks.isEmpty && actions.prePrepares.isEmpty && actions.messages.isEmpty)
            #expect(actions.replies.map(\.result) == [Reply.Result(height: 1, blockHash: cluster.ledger(id)[0].hash)])
        }
        cluster.tick(3)
        #expect(cluster.ledger(1).count == 1)
        #expect(first.count == 1)
    }

    @Test func aBatchWithTheSameRequestTwiceIsRejectedByBackups() {
        var cluster = Cluster()
        let request = cluster.request(1)
        let prePrepare = PrePrepare(view: 0, sequence: 1, primary: 0, batch: [request, request]).signed(by: cluster.signers[0])
        let actions = cluster.inject(.prePrepare(prePrepare), from: 0, to: 1)
        #expect(actions.prepares.isEmpty)
        #expect(cluster.replica(1).lastViolation?.code == .duplicateRequestInBatch(timestamp: 1))
    }

    @Test func theSameRequestInTwoPrePreparesIsRejected() {
        var cluster = Cluster()
        let request = cluster.request(1)
        let first = PrePrepare(view: 0, sequence: 1, primary: 0, batch: [request]).signed(by: cluster.signers[0])
        let second = PrePrepare(view: 0, sequence: 2, primary: 0, batch: [request]).signed(by: cluster.signers[0])
        #expect(cluster.inject(.prePrepare(first), from: 0, to: 1).prepares.count == 1)
        #expect(cluster.inject(.prePrepare(second), from: 0, to: 1).prepares.isEmpty)
        #expect(cluster.replica(1).lastViolation?.code == .requestInFlight(timestamp: 1, at: 1))
    }

    @Test func anExecutedRequestInANewBatchIsRejected() {
        var cluster = Cluster()
        let request = cluster.request(1)
        cluster.submit(request, to: [0])
        cluster.run()
        let again = PrePrepare(view: 0, sequence: 2, primary: 0, batch: [request]).signed(by: cluster.signers[0])
        #expect(cluster.inject(.prePrepare(again), from: 0, to: 2).prepares.isEmpty)
        #expect(cluster.replica(2).lastViolation?.code == .requestAlreadyExecuted(timestamp: 1))
    }

    @Test func aRequestSignedTwiceIsStillOneRequest() {
        // Deduplication keys on (client, timestamp), never on signature bytes.
        var cluster = Cluster()
        let request = cluster.request(1)
        let resigned = request.withSignature(Signature(bytes: [UInt8](repeating: 9, count: 64))!)
        let prePrepare = PrePrepare(view: 0, sequence: 1, primary: 0, batch: [request, resigned]).signed(by: cluster.signers[0])
        let actions = cluster.replicas[1].handle(.message(.prePrepare(prePrepare), from: 0))
        #expect(actions.prepares.isEmpty)
        #expect(cluster.replica(1).lastViolation?.code == .duplicateRequestInBatch(timestamp: 1))
    }
}

/// Bounds: every buffer has a limit; excess is dropped, never an unbounded allocation.
@Suite struct BoundTests {
    @Test func thePrimaryDropsRequestsBeyondItsQueueBound() {
        var cluster = Cluster(parameters: Cluster.parameters(batchSizeMax: 1, pipelineDepthMax: 1))
        cluster.isolated = [1, 2, 3]  // nothing executes, so everything queues
        let bound = cluster.replica(0).limits.pendingRequestsMax
        for timestamp in 1...(bound + 10) { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        #expect(cluster.replica(0).pending.count == bound)
    }

    @Test func futureViewMessagesAreBoundedPerSender() {
        var cluster = Cluster()
        let limit = cluster.replica(1).limits.futureMessagesPerReplicaMax
        for sequence in 1...(limit + 5) {
            // View 3 (primary 3): within `futureViewsMax` of view 0, and not from its primary.
            let vote = Vote(kind: .prepare, view: 3, sequence: SequenceNumber(UInt64(sequence)), digest: Batch.nullDigest, replica: 2)
                .signed(by: cluster.signers[2])
            cluster.inject(.prepare(vote), from: 2, to: 1)
        }
        #expect(cluster.replica(1).futureMessages.count == limit)
    }

    @Test func checkpointMessagesAreBoundedPerReplica() {
        var cluster = Cluster()
        let limit = cluster.replica(1).limits.checkpointsPerReplicaMax
        for index in 1...(limit + 5) {
            let checkpoint = Checkpoint(sequence: SequenceNumber(UInt64(index * 4)), stateDigest: .zero, replica: 2).signed(by: cluster.signers[2])
            cluster.inject(.checkpoint(checkpoint), from: 2, to: 1)
        }
        #expect(cluster.replica(1).checkpointMessages[2]?.count == limit)
    }

    /// Invariant 7 across view changes: a request in a prepared certificate (of an older view)
    /// for an unexecuted sequence may come back in a NEW-VIEW's O, so it is neither accepted
    /// nor proposed afresh at another sequence.
    @Test func aRequestInAPreparedCertificateIsNotOrderedAfreshAtAnotherSequence() {
        var cluster = Cluster()
        let request = cluster.request(1)
        // Replica 3 holds a certificate for the request at sequence 2 from an older view.
        cluster.replicas[3].preparedCertificates[2] = cluster.certificate(view: 0, sequence: 2, batch: [request])
        cluster.replicas[3].view = 4  // primary(4) == 0
        let fresh = cluster.prePrepare(view: 4, sequence: 1, batch: [request])
        let actions = cluster.inject(.prePrepare(fresh), from: 0, to: 3)
        #expect(actions.prepares.isEmpty)
        #expect(cluster.replica(3).lastViolation?.code == .requestInFlight(timestamp: 1, at: 2))
        // As primary (of view 3), it does not propose it either.
        cluster.replicas[3].view = 3
        let proposed = cluster.inject(.request(request), from: 1, to: 3)
        #expect(proposed.prePrepares.allSatisfy { !$0.batch.contains(request) }, "only null batches fill the gap up to sequence 2")
    }

    /// Invariant 7 across view changes: a request accepted in a PRE-PREPARE of an earlier view at
    /// a still-unexecuted sequence — even one never prepared here — may have prepared elsewhere
    /// and come back in a later NEW-VIEW's O; it is not accepted afresh at another sequence, and
    /// a primary holding it back fills the gap up to that sequence with null batches.
    @Test func aRequestAcceptedInAnEarlierViewIsNotOrderedAfreshAtAnotherSequence() {
        var cluster = Cluster()
        let request = cluster.request(1)
        let old = cluster.prePrepare(view: 0, sequence: 2, batch: [request])
        #expect(!cluster.inject(.prePrepare(old), from: 0, to: 3).prepares.isEmpty)
        cluster.replicas[3].leaveCurrentView()
        cluster.replicas[3].view = 4  // primary(4) == 0
        #expect(cluster.replica(3).inFlight.isEmpty)
        let fresh = cluster.prePrepare(view: 4, sequence: 1, batch: [request])
        let actions = cluster.inject(.prePrepare(fresh), from: 0, to: 3)
        #expect(actions.prepares.isEmpty)
        #expect(cluster.replica(3).lastViolation?.code == .requestInFlight(timestamp: 1, at: 2))
        // At the same sequence it is fine.
        let same = cluster.prePrepare(view: 4, sequence: 2, batch: [request])
        #expect(!cluster.inject(.prePrepare(same), from: 0, to: 3).prepares.isEmpty)
        // As primary (of view 7), it proposes null batches up to that sequence, not the request.
        cluster.replicas[3].leaveCurrentView()
        cluster.replicas[3].view = 7
        let proposed = cluster.inject(.request(request), from: 1, to: 3).prePrepares
        #expect(!proposed.isEmpty)
        #expect(proposed.allSatisfy { $0.batch.isEmpty && $0.sequence <= 2 })
    }
}

/// The pending-request queue is bounded by bytes as well as by count.
@Suite struct RequestQueueBytesTests {
    @Test func theQueueRefusesRequestsBeyondItsByteCapacityAndFreesBytesOnRemoval() {
        let client = ClientSigner(cluster: Cluster.clusterID, keyPair: FixedKeys.repeating(201))
        func request(_ timestamp: UInt64, bytes: Int) -> Request {
            client.request(timestamp: timestamp, payload: [UInt8](repeating: 7, count: bytes))
        }
        let size = request(1, bytes: 1_000).encodedByteCount
        var queue = RequestQueue(capacity: 100, bytesCapacity: 3 * size)
        for timestamp in UInt64(1)...3 {
            let inserted = queue.insert(request(timestamp, bytes: 1_000))
            #expect(inserted)
        }
        #expect(queue.bytes == 3 * size)
        let fourth = queue.insert(request(4, bytes: 1_000))
        #expect(!fourth, "a fourth would exceed the byte capacity")
        let small = queue.insert(request(5, bytes: 10))
        #expect(!small, "even a small one: the queue is at its byte capacity")
        queue.remove(RequestKey(request(1, bytes: 1_000)))
        #expect(queue.bytes == 2 * size)
        let again = queue.insert(request(4, bytes: 1_000))
        #expect(again)
        // An empty queue takes one request however large, so no request is refused forever.
        var empty = RequestQueue(capacity: 100, bytesCapacity: 10)
        let large = empty.insert(request(9, bytes: 1_000))
        #expect(large)
        let next = empty.insert(request(10, bytes: 1))
        #expect(!next)
    }

    @Test func theDefaultsBoundPendingBytesAt128MiB() {
        var parameters = ProtocolParameters()
        parameters.pipelineDepthMax = 32
        parameters.batchBytesMax = 1024 * 1024
        let config = TestReplicas(n: 4, cluster: Cluster.clusterID, parameters: parameters).config
        #expect(ReplicaLimits(config: config).pendingRequestBytesMax == 128 * 1024 * 1024)
    }
}
