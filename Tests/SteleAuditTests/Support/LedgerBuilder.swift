import Foundation
import SteleCore
import SteleCrypto
import SteleLedger
import SteleTestSupport
@testable import SteleAudit

/// TEST-ONLY keys derived from fixed labels: seed = SHA-256("stele test-only key: " + label).
/// Ed25519 is deterministic, so everything signed with them is byte-stable: Fixtures/ holds it.
enum TestKeys {
    static func keyPair(_ label: String) -> KeyPair { FixedKeys.labelled(label) }

    static let cluster = ClusterID(bytes: Array("stele-fixture-01".utf8))!
    static let replicas: [KeyPair] = (0..<4).map { keyPair("replica-\($0)") }
    static let alice = keyPair("client-alice")
    static let bob = keyPair("client-bob")
    static let outsider = keyPair("outsider")

    /// n = 4, f = 1; checkpoints every 8 sequences so a 20-block ledger holds two.
    static let config = makeConfig(cluster: cluster, replicas: replicas, f: 1)

    static func makeConfig(cluster: ClusterID, replicas: [KeyPair], f: Int) -> ClusterConfig {
        var parameters = ProtocolParameters()
        parameters.checkpointInterval = 8
        parameters.watermarkWindow = 16
        let members = TestReplicas(n: replicas.count, f: f, cluster: cluster, keys: replicas, ports: .from(7100),
                                   parameters: parameters)
        return members.config
    }
}

/// Builds certified blocks, checkpoint certificates and ledger files with real signatures.
struct LedgerBuilder {
    var cluster = TestKeys.cluster
    var replicaKeys = TestKeys.replicas

    func signer(_ replica: Int) -> ReplicaSigner {
        ReplicaSigner(replica: ReplicaID(UInt16(replica)), cluster: cluster, keyPair: replicaKeys[replica])
    }

    func request(_ client: KeyPair, timestamp: UInt64, payload: String) -> Request {
        ClientSigner(cluster: cluster, keyPair: client).request(timestamp: timestamp, payload: Array(payload.utf8))
    }

    func commitSignature(height: UInt64, view: UInt64, digest: Digest, by replica: Int) -> ReplicaSignature {
        let vote = Vote(kind: .commit, view: View(view), sequence: SequenceNumber(height), digest: digest, replica: ReplicaID(UInt16(replica)))
        return ReplicaSignature(replica: vote.replica, signature: vote.signed(by: signer(replica)).signature)
    }

    /// A signature for signer id `claimedID` made with a key that is not that member's.
    func foreignCommitSignature(height: UInt64, view: UInt64, digest: Digest, claimedID: UInt16, key: KeyPair) -> ReplicaSignature {
        let content = SignedContent(tag: .commit, view: View(view), sequence: SequenceNumber(height), signer: claimedID, digest: digest)
        return ReplicaSignature(replica: ReplicaID(claimedID), signature: key.sign(content.bytes(cluster: cluster)))
    }

    func block(height: UInt64, view: UInt64, prevHash: Digest, batch: [Request], signers: [Int]) -> CertifiedBlock {
        let digest = Batch.digest(batch)
        return CertifiedBlock(
            height: SequenceNumber(height), prevHash: prevHash, batch: batch, certificateView: View(view),
            commitSignatures: signers.map { commitSignature(height: height, view: view, digest: digest, by: $0) })
    }

    func checkpoint(sequence: UInt64, stateDigest: Digest, signers: [Int]) -> CheckpointCertificate {
        let checkpoints = signers.map {
            Checkpoint(sequence: SequenceNumber(sequence), stateDigest: stateDigest, replica: ReplicaID(UInt16($0))).signed(by: signer($0))
        }
        return CheckpointCertificate(checkpoints: checkpoints)
    }

    static func fileBytes(_ records: [LedgerRecord]) -> [UInt8] {
        records.reduce(LedgerFormat.header()) { $0 + $1.framed() }
    }
}

extension CertifiedBlock {
    /// The same block with other commit signatures (the block hash does not change).
    func withSignatures(_ signatures: [ReplicaSignature]) -> CertifiedBlock {
        CertifiedBlock(height: height, prevHash: prevHash, batch: batch, certificateView: certificateView, commitSignatures: signatures)
    }
}

extension LedgerRecord {
    var block: CertifiedBlock? {
        if case .block(let block) = self { return block }
        return nil
    }
}
