import Testing
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import PBFT

/// A committed ledger in memory: the blocks and the stable checkpoint certificates, in order.
struct LedgerInMemory: CommittedLedger {
    let blocks: [CertifiedBlock]
    let checkpoints: [CheckpointCertificate]

    var headHeight: SequenceNumber { SequenceNumber(UInt64(blocks.count)) }

    func block(at height: SequenceNumber) -> CertifiedBlock {
        precondition(height.value >= 1 && height <= headHeight, "block \(height.value) is not in the ledger")
        return blocks[Int(height.value - 1)]
    }

    func latestCheckpoint(atOrBelow height: SequenceNumber) -> CheckpointCertificate? {
        checkpoints.last { $0.sequence <= height }
    }
}

/// Castro & Liskov §5.3 (state transfer), serving side: one server for every shell, one limit
/// from the cluster's parameters.
@Suite struct StateServerTests {
    static let signer = ReplicaSigner(replica: 2, cluster: Cluster.clusterID, keyPair: FixedKeys.replica(2))

    /// Twenty chained blocks (their certificates are not checked here) and a checkpoint at 8 and 16.
    static func ledger() -> LedgerInMemory {
        var blocks: [CertifiedBlock] = []
        for height in UInt64(1)...20 {
            let prevHash = blocks.last?.hash ?? .zero
            blocks.append(CertifiedBlock(
                height: SequenceNumber(height), prevHash: prevHash, batch: [], certificateView: 0, commitSignatures: []))
        }
        let checkpoints = [UInt64(8), 16].map { sequence in
            let digest = blocks[Int(sequence) - 1].hash
            let checkpoint = Checkpoint(sequence: SequenceNumber(sequence), stateDigest: digest, replica: 2)
            return CheckpointCertificate(checkpoints: [checkpoint])
        }
        return LedgerInMemory(blocks: blocks, checkpoints: checkpoints)
    }

    static func serve(_ from: UInt64, _ to: UInt64, blocksMax: Int, bytesMax: Int = .max) throws -> StateResponse? {
        let request = StateRequest(fromHeight: SequenceNumber(from), toHeight: SequenceNumber(to), replica: 0)
        return try StateServer.response(
            to: request, from: ledger(), blocksMax: blocksMax, bytesMax: bytesMax, weight: { _ in 10 }, signer: signer)
    }

    @Test func aResponseHoldsAtMostTheConfiguredNumberOfBlocks() throws {
        let response = try #require(try Self.serve(3, 20, blocksMax: 5))
        #expect(response.blocks.map(\.height.value) == [3, 4, 5, 6, 7])
        #expect(response.checkpoint == nil, "no checkpoint at or below height 7")
        #expect(response.replica == 2)
        let verifier = Cluster().verifier
        #expect(throws: Never.self, "signed by the serving replica") { try verifier.verify(.stateResponse(response)) }
        let wide = try #require(try Self.serve(1, 20, blocksMax: 17))
        #expect(wide.blocks.count == 17)
        #expect(wide.checkpoint?.sequence == 16, "the newest checkpoint at or below the last block sent")
    }

    @Test func aResponseStopsAtTheRequestsEndAndTheLedgersHead() throws {
        #expect(try Self.serve(4, 6, blocksMax: 64)?.blocks.map(\.height.value) == [4, 5, 6])
        #expect(try Self.serve(18, 40, blocksMax: 64)?.blocks.map(\.height.value) == [18, 19, 20])
    }

    @Test func aRequestForNothingTheLedgerHoldsGetsNoResponse() throws {
        #expect(try Self.serve(21, 30, blocksMax: 64) == nil, "above the head")
        #expect(try Self.serve(0, 5, blocksMax: 64) == nil, "height 0 is the genesis, never sent")
        #expect(try Self.serve(6, 5, blocksMax: 64) == nil, "an empty range")
    }

    @Test func theByteBudgetCutsTheResponseButNeverToNothing() throws {
        #expect(try Self.serve(1, 20, blocksMax: 64, bytesMax: 35)?.blocks.count == 3)
        #expect(try Self.serve(1, 20, blocksMax: 64, bytesMax: 1)?.blocks.count == 1)
    }

    @Test func theLimitIsAClusterParameterWithinTheCodecsCap() throws {
        let cap = CodecLimits.standard.stateTransferBlocksMax
        #expect(ProtocolParameters().stateTransferBlocksMax <= cap)
        for (blocksMax, valid) in [(0, false), (1, true), (cap, true), (cap + 1, false)] {
            var parameters = Cluster.parameters()
            parameters.stateTransferBlocksMax = blocksMax
            let endpoints = TestReplicas.endpoints(keys: FixedKeys.replicas(4))
            let config = try? ClusterConfig(cluster: Cluster.clusterID, f: 1, replicas: endpoints, parameters: parameters)
            #expect((config != nil) == valid, "stateTransferBlocksMax = \(blocksMax)")
        }
    }

    /// The core asks for no more than the cluster's limit, and a replica far behind still
    /// catches up through responses of that size.
    @Test func aReplicaBehindFetchesInSteps() {
        var parameters = StateTransferTests.parameters
        parameters.stateTransferBlocksMax = 3
        var cluster = Cluster(parameters: parameters)
        cluster.isolated = [3]
        for timestamp in 1...14 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        cluster.run()
        cluster.isolated = []
        for timestamp in 15...16 { cluster.submit(cluster.request(UInt64(timestamp)), to: [0]) }
        let caughtUp = cluster.tick(until: { c in c.ledger(3).count == 16 }, ticksMax: 200)
        #expect(caughtUp)
        let requests = cluster.actionLists[3].joined().compactMap { action -> StateRequest? in
            if case .send(.stateRequest(let request), _) = action { return request }
            return nil
        }
        #expect(requests.count >= 4, "at least 12 blocks, three at a time")
        let ranges = requests.map { ($0.fromHeight.value, $0.toHeight.value) }
        #expect(ranges.allSatisfy { $0.1 - $0.0 < 3 }, "\(ranges)")
    }
}
