import Testing
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import PBFT

/// Issue 18, point 3: what one Byzantine replica can make an honest replica hold is bounded by
/// bytes as well as count (`ReplicaLimits.bytesHeldPerReplicaMax`, docs/security.md).
private let byzantine: ReplicaID = 3
private let honest: ReplicaID = 1

@Suite struct PeerMemoryBoundTests {
    /// The default figure docs/security.md gives (n = 4, default parameters).
    @Test func theDefaultBoundIsDocumented() {
        let config = TestReplicas(n: 4, cluster: Cluster.clusterID).config
        let limits = ReplicaLimits(config: config)
        #expect(limits.bytesHeldPerReplicaMax == 210_347_664)
        #expect(limits.viewChangeBytesMax == 67_144_324)
        #expect(limits.prePrepareBytesMax == 1_048_664)
    }

    /// Requests of a key the Byzantine replica controls, each with a maximal payload.
    static func maximalRequests(_ cluster: Cluster, count: Int, from first: UInt64 = 1) -> [Request] {
        let signer = ClientSigner(cluster: Cluster.clusterID, keyPair: FixedKeys.repeating(66))
        let payload = [UInt8](repeating: 0x5a, count: CodecLimits.standard.payloadBytesMax)
        return (0..<UInt64(count)).map { signer.request(timestamp: first + $0, payload: payload) }
    }

    /// A VIEW-CHANGE to `newView` by the Byzantine replica carrying a prepared certificate of
    /// view 0 with a maximal batch for every sequence of the window (made with every key: the
    /// largest VIEW-CHANGE that is valid).
    static func maximalViewChange(_ cluster: Cluster, to newView: View, batch: [Request], sequences: ClosedRange<UInt64>) -> ViewChange {
        let certificates = sequences.map { cluster.certificate(view: 0, sequence: SequenceNumber($0), batch: batch) }
        return cluster.viewChange(to: newView, by: byzantine, prepared: certificates)
    }

    @Test func aByzantineReplicaFloodingEveryBufferedKindStaysUnderTheBound() {
        var cluster = Cluster()
        let limits = cluster.replica(honest).limits
        let window = cluster.config.parameters.watermarkWindow
        let batch = PeerMemoryBoundTests.maximalRequests(cluster, count: cluster.config.parameters.batchSizeMax)
        func flood(_ message: Message) { cluster.inject(message, from: byzantine, to: honest) }

        // PRE-PREPAREs for later views: as primary(v) where it is, as someone else elsewhere.
        for view in UInt64(1)...12 {
            for sequence in UInt64(1)...window {
                flood(.prePrepare(cluster.prePrepare(view: View(view), sequence: SequenceNumber(sequence), batch: batch, signedBy: byzantine)))
            }
        }
        // Votes for later views and for the current one, every sequence of the window.
        for view in UInt64(0)...12 {
            for sequence in UInt64(1)...window {
                for kind in [VoteKind.prepare, .commit] {
                    let vote = Vote(kind: kind, view: View(view), sequence: SequenceNumber(sequence), digest: Digest.of([UInt8(view), UInt8(sequence)]), replica: byzantine)
                        .signed(by: cluster.signers[3])
                    flood(kind == .prepare ? .prepare(vote) : .commit(vote))
                }
            }
        }
        // CHECKPOINTs far and wide.
        for index in UInt64(1)...200 {
            flood(.checkpoint(Checkpoint(sequence: SequenceNumber(index * 4), stateDigest: Digest.of([UInt8(index % 256)]), replica: 3).signed(by: cluster.signers[3])))
        }
        // The largest valid VIEW-CHANGEs, and one larger than any valid one.
        for view in UInt64(1)...3 {
            flood(.viewChange(PeerMemoryBoundTests.maximalViewChange(cluster, to: View(view), batch: batch, sequences: 1...window)))
        }
        let oversize = PeerMemoryBoundTests.maximalViewChange(cluster, to: 4, batch: batch, sequences: 1...(3 * window))
        flood(.viewChange(oversize))
        #expect(cluster.replica(honest).viewChanges[3]?.newView == 3, "the oversize one is not kept")
        // Relayed requests, each maximal.
        for request in PeerMemoryBoundTests.maximalRequests(cluster, count: 3 * limits.relayedRequestsPerReplicaMax, from: 1_000) {
            flood(.request(request))
        }

        let replica = cluster.replica(honest)
        let held = replica.bytesHeld(for: byzantine)
        #expect(held > 0)
        #expect(held <= limits.bytesHeldPerReplicaMax, "\(held) bytes held for the Byzantine replica; bound \(limits.bytesHeldPerReplicaMax)")
        let futureBytes = replica.futureMessages.filter { $0.from == 3 }.reduce(0) { $0 + $1.byteCount }
        #expect(futureBytes <= limits.futureBytesPerReplicaMax)
        #expect(replica.futureMessages.allSatisfy { $0.view.value <= limits.futureViewsMax })
        #expect(replica.pending.relayedBytes(by: 3) <= limits.relayedRequestBytesPerReplicaMax)
        #expect(replica.pending.relayedCount(by: 3) <= limits.relayedRequestsPerReplicaMax)
        #expect(replica.pending.count <= limits.relayedRequestsPerReplicaMax)
    }

    @Test func aByzantinePrimaryFillingItsWindowStaysUnderTheBound() {
        var cluster = Cluster()
        let limits = cluster.replica(honest).limits
        let batch = PeerMemoryBoundTests.maximalRequests(cluster, count: cluster.config.parameters.batchSizeMax)
        for sequence in UInt64(1)...(2 * cluster.config.parameters.watermarkWindow) {
            // Another batch each time (the same requests may be accepted only once).
            let requests = PeerMemoryBoundTests.maximalRequests(cluster, count: batch.count, from: 10_000 * sequence)
            cluster.inject(.prePrepare(cluster.prePrepare(view: 0, sequence: SequenceNumber(sequence), batch: requests)), from: 0, to: honest)
        }
        let held = cluster.replica(honest).bytesHeld(for: 0)
        #expect(held > 0)
        #expect(held <= limits.bytesHeldPerReplicaMax)
    }

    /// Cheap validity before buffering: a later view's PRE-PREPARE must come from its primary,
    /// and views far ahead are not buffered at all.
    @Test func onlyPlausibleFutureMessagesAreBuffered() {
        var cluster = Cluster()
        // View 2's primary is 2: replica 3's PRE-PREPARE for it is not buffered.
        cluster.inject(.prePrepare(cluster.prePrepare(view: 2, sequence: 1, batch: [cluster.request(1)], signedBy: 3)), from: 3, to: 1)
        #expect(cluster.replica(1).futureMessages.isEmpty)
        guard case .notBuffered = cluster.replica(1).lastViolation?.code else {
            Issue.record("expected notBuffered, got \(String(describing: cluster.replica(1).lastViolation))")
            return
        }
        // View 3's is 3: buffered.
        cluster.inject(.prePrepare(cluster.prePrepare(view: 3, sequence: 1, batch: [cluster.request(1)])), from: 3, to: 1)
        #expect(cluster.replica(1).futureMessages.count == 1)
        // View 103 is too far ahead.
        let far = Vote(kind: .commit, view: 103, sequence: 1, digest: Batch.nullDigest, replica: 3).signed(by: cluster.signers[3])
        cluster.inject(.commit(far), from: 3, to: 1)
        #expect(cluster.replica(1).futureMessages.count == 1)
    }

    /// acceptedRequests stays bounded: a sequence that never executes takes at most
    /// `acceptedRequestsPerSequenceMax` keys from normal-case PRE-PREPAREs, over any views.
    @Test func acceptedRequestsAreBoundedPerSequence() {
        var cluster = Cluster()
        let limit = cluster.replica(1).limits.acceptedRequestsPerSequenceMax
        let batchSize = cluster.config.parameters.batchSizeMax
        var view: UInt64 = 0
        var out = Outbox()
        for round in 0..<(2 * limit / batchSize + 4) {
            if cluster.config.primary(of: View(view)) != 1 {
                let requests = (0..<batchSize).map { cluster.request(UInt64(round * 100 + $0 + 1)) }
                let prePrepare = cluster.prePrepare(view: View(view), sequence: 1, batch: requests)
                cluster.inject(.prePrepare(prePrepare), from: cluster.config.primary(of: View(view)), to: 1)
            }
            // Replica 1 moves to the next view (a NEW-VIEW with nothing prepared): sequence 1
            // stays unexecuted, so what it accepted there is remembered.
            view += 1
            cluster.replicas[1].startViewChange(to: View(view), &out)
            cluster.replicas[1].enterView(View(view), plan: NewViewPlan(viewChanges: []), prePrepares: [], &out)
        }
        let held = cluster.replica(1).acceptedRequests[1]?.count ?? 0
        #expect(held >= batchSize)
        #expect(held <= limit)
    }
}
