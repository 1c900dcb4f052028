import SteleCrypto
import SteleTestSupport
@testable import SteleCore

/// Deterministic keys and one sample of every message, shared by the codec tests.
enum Samples {
    static let cluster = ClusterID(bytes: (0..<16).map { UInt8($0) })!
    static let replicas = TestReplicas(n: 4, cluster: cluster)
    static let replicaKeys: [KeyPair] = replicas.keys
    static let clientKey = FixedKeys.repeating(0xc1)
    static let config: ClusterConfig = replicas.config

    static func signer(_ index: Int) -> ReplicaSigner { replicas.signer(index) }

    static let client = ClientSigner(cluster: cluster, keyPair: clientKey)

    static func request(_ timestamp: UInt64) -> Request {
        client.request(timestamp: timestamp, payload: Array("tx-\(timestamp)".utf8))
    }

    static var prePrepare: PrePrepare {
        PrePrepare(view: 3, sequence: 17, primary: 3, batch: [request(1), request(2)]).signed(by: signer(3))
    }

    static func vote(_ kind: VoteKind, replica: Int, digest: Digest) -> Vote {
        Vote(kind: kind, view: 3, sequence: 17, digest: digest, replica: ReplicaID(UInt16(replica))).signed(by: signer(replica))
    }

    static var preparedCertificate: PreparedCertificate {
        let prePrepare = self.prePrepare
        return PreparedCertificate(prePrepare: prePrepare, prepares: [0, 1].map { vote(.prepare, replica: $0, digest: prePrepare.digest) })
    }

    static var checkpoints: [Checkpoint] {
        (0..<3).map { Checkpoint(sequence: 16, stateDigest: Digest.of([9]), replica: ReplicaID(UInt16($0))).signed(by: signer($0)) }
    }

    static var viewChange: ViewChange {
        ViewChange(newView: 4, stableSequence: 16, checkpointProof: checkpoints, prepared: [preparedCertificate], replica: 2).signed(by: signer(2))
    }

    static var block: CertifiedBlock {
        let batch = [request(1), request(2)]
        let digest = Batch.digest(batch)
        let signatures = (0..<3).map { index in
            ReplicaSignature(replica: ReplicaID(UInt16(index)),
                             signature: Vote(kind: .commit, view: 3, sequence: 1, digest: digest, replica: ReplicaID(UInt16(index))).signed(by: signer(index)).signature)
        }
        return CertifiedBlock(height: 1, prevHash: config.genesis.hash, batch: batch, certificateView: 3, commitSignatures: signatures)
    }

    static var allMessages: [Message] {
        let prePrepare = self.prePrepare
        return [
            .request(request(42)),
            .prePrepare(prePrepare),
            .prePrepare(PrePrepare(view: 0, sequence: 1, primary: 0, batch: []).signed(by: signer(0))),
            .prepare(vote(.prepare, replica: 1, digest: prePrepare.digest)),
            .commit(vote(.commit, replica: 2, digest: prePrepare.digest)),
            .reply(Reply(view: 3, timestamp: 42, client: clientKey.publicKey, replica: 1, height: 17, blockHash: Digest.of([1])).signed(by: signer(1))),
            .checkpoint(checkpoints[0]),
            .viewChange(viewChange),
            .newView(NewView(view: 4, viewChanges: [viewChange, viewChange], prePrepares: [
                PrePrepare(view: 4, sequence: 17, primary: 0, batch: prePrepare.batch).signed(by: signer(0)),
            ], primary: 0).signed(by: signer(0))),
            .stateRequest(StateRequest(fromHeight: 1, toHeight: 9, replica: 3).signed(by: signer(3))),
            .stateResponse(StateResponse(blocks: [block], checkpoint: CheckpointCertificate(checkpoints: checkpoints), replica: 1).signed(by: signer(1))),
            .stateResponse(StateResponse(blocks: [], checkpoint: nil, replica: 1).signed(by: signer(1))),
        ]
    }
}

