import SteleCore
import SteleCrypto
import SteleSim
import SteleTestSupport

/// A four-replica cluster with deterministic keys, and helpers to build signed blocks by hand.
struct Fixture {
    let config: ClusterConfig
    let signers: [ReplicaSigner]
    let client: ClientSigner

    init(n: Int = 4) {
        let replicas = TestReplicas(n: n, cluster: ClusterID(bytes: [UInt8](repeating: 7, count: ClusterID.byteCount))!)
        config = replicas.config
        signers = replicas.signers
        client = ClientSigner(cluster: replicas.cluster, keyPair: FixedKeys.repeating(99))
    }

    func request(_ timestamp: UInt64, _ payload: String = "op") -> Request {
        client.request(timestamp: timestamp, payload: Array(payload.utf8))
    }

    /// A block at `height` after `previous` (genesis if nil), its commit certificate signed by `signers`.
    func block(_ height: UInt64, after previous: CertifiedBlock?, batch: [Request], signedBy signerIDs: [UInt16] = [0, 1, 2], view: View = 0) -> CertifiedBlock {
        let prevHash = previous?.hash ?? config.genesis.hash
        let digest = Batch.digest(batch)
        let signatures = signerIDs.map { id -> ReplicaSignature in
            let signer = signers[Int(id) % signers.count]
            let vote = Vote(kind: .commit, view: view, sequence: SequenceNumber(height), digest: digest, replica: signer.replica).signed(by: signer)
            return ReplicaSignature(replica: ReplicaID(id), signature: vote.signature)
        }
        return CertifiedBlock(height: SequenceNumber(height), prevHash: prevHash, batch: batch, certificateView: view, commitSignatures: signatures)
    }

    /// A chain of `count` blocks, one request each, with timestamps from `firstTimestamp`.
    func chain(_ count: Int, firstTimestamp: UInt64 = 1) -> [CertifiedBlock] {
        var blocks = [CertifiedBlock]()
        for index in 0..<count {
            blocks.append(block(UInt64(index + 1), after: blocks.last, batch: [request(firstTimestamp + UInt64(index))]))
        }
        return blocks
    }

    func checkpoint(_ sequence: UInt64, digest: Digest, signedBy signerIDs: [UInt16] = [0, 1, 2]) -> CheckpointCertificate {
        CheckpointCertificate(checkpoints: signerIDs.map { id in
            Checkpoint(sequence: SequenceNumber(sequence), stateDigest: digest, replica: ReplicaID(id)).signed(by: signers[Int(id)])
        })
    }
}
