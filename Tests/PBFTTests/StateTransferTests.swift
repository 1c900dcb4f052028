import Testing
import SteleCore
import SteleCrypto
@testable import PBFT

/// State transfer: a replica that fell behind fetches certified blocks; one honest peer is enough.
@Suite struct StateTransferTests {
    static let parameters = Cluster.parameters(checkpointInterval: 4, watermarkWindow: 8, batchSizeMax: 1, pipelineDepthMax: 1)

    @Test func aReplicaCutOffForSeveralCheckpointsCatchesUp() {
        var cluster = Cluster(parameters: Self.parameters)
        cluster.isolated = [3]
        for timestamp in 1...14 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()
        #expect(cluster.replica(0).stableCheckpoint == 12)
        #expect(cluster.ledger(3).isEmpty)

        cluster.isolated = []
        cluster.submit(cluster.request(15), to: [0])
        cluster.submit(cluster.request(16), to: [0])
        let caughtUp = cluster.tick(until: { c in c.ledger(3).count == 16 && c.ledger(0).count == 16 }, ticksMax: 100)
        #expect(caughtUp)
        #expect(cluster.ledger(3).map(\.hash) == cluster.ledger(0).map(\.hash))
        #expect(cluster.replica(3).ledgerHead == cluster.replica(0).ledgerHead, "same chain head and exactly-once table")
        #expect(cluster.replica(3).stableCheckpoint >= 12)
        cluster.expectExactlyOnce(3)
    }

    @Test func aReplicaThatMissedBlocksButSawTheCheckpointFetchesThem() {
        var cluster = Cluster(parameters: Self.parameters)
        // Replica 3 hears nothing but CHECKPOINTs and state-transfer traffic.
        cluster.drops = { envelope in
            guard envelope.to == 3 else { return false }
            switch envelope.message {
            case .checkpoint, .stateResponse: return false
            default: return true
            }
        }
        for timestamp in 1...4 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()
        #expect(cluster.replica(3).stableCheckpoint == 4)
        #expect(cluster.ledger(3).map(\.hash) == cluster.ledger(0).map(\.hash))
        #expect(cluster.checkpoints[3].map(\.sequence) == [4], "the certificate goes to the ledger after its block")
    }

    @Test func aRestartedReplicaThatIsBehindCatchesUp() {
        var cluster = Cluster(parameters: Self.parameters)
        for timestamp in 1...2 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()
        cluster.isolated = [2]
        for timestamp in 3...13 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()
        cluster.restart(2)
        cluster.isolated = []
        cluster.submit(cluster.request(14), to: [0])
        let caughtUp = cluster.tick(until: { c in c.ledger(2).count == 14 }, ticksMax: 100)
        #expect(caughtUp)
        #expect(cluster.ledger(2).map(\.hash) == cluster.ledger(0).map(\.hash))
    }

    /// A second cluster's replica 3, fresh, and valid blocks 1...2 from the first cluster.
    func freshReplicaAndBlocks() -> (Cluster, [CertifiedBlock]) {
        var cluster = Cluster(parameters: Self.parameters)
        cluster.isolated = [3]
        for timestamp in 1...2 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()
        cluster.isolated = []
        return (cluster, cluster.ledger(0))
    }

    func response(_ cluster: Cluster, _ blocks: [CertifiedBlock], from replica: ReplicaID = 0) -> Message {
        .stateResponse(StateResponse(blocks: blocks, checkpoint: nil, replica: replica).signed(by: cluster.signers[Int(replica.value)]))
    }

    @Test func aBlockWithAShortOrForgedCertificateIsRejected() {
        var (cluster, blocks) = freshReplicaAndBlocks()
        let genuine = blocks[0]
        func variant(_ signatures: [ReplicaSignature]) -> CertifiedBlock {
            CertifiedBlock(height: genuine.height, prevHash: genuine.prevHash, batch: genuine.batch, certificateView: genuine.certificateView, commitSignatures: signatures)
        }
        let signatures = genuine.commitSignatures
        let short = variant(Array(signatures.prefix(2)))
        #expect(cluster.inject(response(cluster, [short]), from: 0, to: 3).blocks.isEmpty)
        #expect(cluster.replica(3).lastViolation?.code == .invalidCommitCertificate(height: 1))

        let repeated = variant([signatures[0], signatures[0], signatures[1]])
        #expect(cluster.inject(response(cluster, [repeated]), from: 0, to: 3).blocks.isEmpty)
        #expect(cluster.replica(3).lastViolation?.code == .invalidCommitCertificate(height: 1))

        let stranger = variant(Array(signatures.prefix(2)) + [ReplicaSignature(replica: 9, signature: signatures[2].signature)])
        #expect(cluster.inject(response(cluster, [stranger]), from: 0, to: 3, verify: false).blocks.isEmpty)
        #expect(cluster.replica(3).lastViolation?.code == .invalidCommitCertificate(height: 1))
        #expect(cluster.replica(3).lastExecuted == 0)

        #expect(cluster.inject(response(cluster, blocks, from: 1), from: 1, to: 3).blocks.map(\.hash) == blocks.map(\.hash))
        #expect(cluster.replica(3).ledgerHead == cluster.replica(0).ledgerHead)
    }

    @Test func aBlockThatDoesNotChainFromTheLedgerHeadIsRejected() {
        var (cluster, blocks) = freshReplicaAndBlocks()
        let genuine = blocks[0]
        // The commit signatures cover (view, height, batch digest), not prevHash: still rejected.
        let unchained = CertifiedBlock(height: 1, prevHash: .zero, batch: genuine.batch, certificateView: genuine.certificateView, commitSignatures: genuine.commitSignatures)
        #expect(cluster.inject(response(cluster, [unchained, blocks[1]]), from: 0, to: 3).blocks.isEmpty)
        #expect(cluster.replica(3).lastViolation?.code == .brokenChain(height: 1))

        #expect(cluster.inject(response(cluster, [blocks[1]]), from: 0, to: 3).blocks.isEmpty, "height 2 cannot come before 1")
        #expect(cluster.replica(3).lastViolation?.code == .unexpectedHeight(height: 2, expected: 1))
        #expect(cluster.replica(3).lastExecuted == 0)
    }

    @Test func aTransferredBlockIsNeverExecutedTwice() {
        var (cluster, blocks) = freshReplicaAndBlocks()
        #expect(cluster.inject(response(cluster, blocks), from: 0, to: 3).blocks.count == 2)
        #expect(cluster.inject(response(cluster, blocks, from: 1), from: 1, to: 3).blocks.isEmpty, "a racing second response changes nothing")
        #expect(cluster.ledger(3).count == 2)
    }

    @Test func aReplicaServesOnlyBlocksItHas() {
        var cluster = Cluster(parameters: Self.parameters)
        cluster.submit(cluster.request(1), to: [0])
        cluster.run()
        let asks = StateRequest(fromHeight: 1, toHeight: 5, replica: 3).signed(by: cluster.signers[3])
        #expect(cluster.replicas[0].handle(.message(.stateRequest(asks), from: 3)) == [.serveState(asks)])
        let tooFar = StateRequest(fromHeight: 2, toHeight: 5, replica: 3).signed(by: cluster.signers[3])
        #expect(cluster.replicas[0].handle(.message(.stateRequest(tooFar), from: 3)).isEmpty)
    }
}

/// The bug classes of docs/invariants.md around state transfer and view changes.
@Suite struct StateTransferAndViewChangeTests {
    @Test func aPeerBelowOurStableCheckpointIsSentTheCertificate() {
        var cluster = Cluster(parameters: StateTransferTests.parameters)
        for timestamp in 1...4 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()
        #expect(cluster.replica(0).stableCheckpoint == 4)
        let stale = Vote(kind: .commit, view: 0, sequence: 2, digest: cluster.ledger(0)[1].batchDigest, replica: 3).signed(by: cluster.signers[3])
        let actions = cluster.replicas[0].handle(.message(.commit(stale), from: 3))
        guard case .send(.stateResponse(let hint), to: 3)? = actions.first else {
            Issue.record("expected a STATE-RESPONSE hint, got \(actions)")
            return
        }
        #expect(hint.blocks.isEmpty)
        #expect(hint.checkpoint?.sequence == 4)
        #expect(cluster.replicas[0].handle(.message(.commit(stale), from: 3)).isEmpty, "at most one hint per interval")
    }

    @Test func aLaggingReplicaAcceptsANewViewAboveItsHeadAndExecutesEachBlockOnce() {
        var cluster = Cluster(parameters: StateTransferTests.parameters)
        cluster.isolated = [3]
        for timestamp in 1...5 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()
        #expect(cluster.replica(1).stableCheckpoint == 4 && cluster.replica(1).lastExecuted == 5)

        // The primary falls silent; replica 3 is back but knows nothing.
        cluster.isolated = [0]
        cluster.submit(cluster.request(6))
        let done = cluster.tick(until: { c in [1, 2, 3].allSatisfy { c.ledger($0).count == 6 } }, ticksMax: 200)
        #expect(done)
        #expect(cluster.replica(3).view == 1)
        for id: ReplicaID in [1, 2, 3] {
            #expect(cluster.ledger(id).map(\.hash) == cluster.ledger(1).map(\.hash))
            cluster.expectExactlyOnce(id)
        }
        let newViews: [NewView] = cluster.sent(by: 1).compactMap { if case .newView(let m) = $0 { m } else { nil } }
        #expect(newViews.first?.prePrepares.map(\.sequence) == [5], "min-s = 4, and s5 was prepared")
    }
}
