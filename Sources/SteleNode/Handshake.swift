import SteleCore
import SteleCrypto

/// The connection handshake: each side proves its key by signing the other's fresh nonce.
///
///     A -> B  HELLO(cluster, identity A, nonce a)
///     B -> A  HELLO(cluster, identity B, nonce b)
///     A -> B  PROOF(sign_A("stele.handshake.v1" || cluster || key A || b || a))
///     B -> A  PROOF(sign_B("stele.handshake.v1" || cluster || key B || a || b))
///
/// A replica identity must be a member whose key is in the config; a client identity is its
/// public key (any key may connect as a client: requests are authenticated by their own
/// signatures). A peer that fails any step is refused and disconnected.
public struct Handshake: Sendable {
    public static let domain: [UInt8] = Array("stele.handshake.v1".utf8)

    public struct Failure: Error, Equatable, CustomStringConvertible {
        public enum Code: Equatable, Sendable {
            case wrongCluster
            case unknownReplica(ReplicaID)
            case badProof
            case unexpectedFrame(String)
            case clientNotAllowed
        }
        public let code: Code
        public var description: String {
            switch code {
            case .wrongCluster: "peer belongs to another cluster"
            case .unknownReplica(let id): "replica \(id.value) is not a member of this cluster"
            case .badProof: "peer's handshake signature does not verify under its key"
            case .unexpectedFrame(let what): "unexpected \(what) during the handshake"
            case .clientNotAllowed: "clients may not connect here"
            }
        }
    }

    public let config: ClusterConfig

    public init(config: ClusterConfig) { self.config = config }

    public static func freshNonce() -> [UInt8] { SecureRandom.bytes(Hello.nonceByteCount) }

    /// The public key a HELLO's identity must prove, or why it is refused.
    public func key(for hello: Hello) throws(Failure) -> PublicKey {
        guard hello.cluster == config.cluster else { throw Failure(code: .wrongCluster) }
        switch hello.identity {
        case .replica(let id):
            guard let key = config.publicKey(of: id) else { throw Failure(code: .unknownReplica(id)) }
            return key
        case .client(let key):
            return key
        }
    }

    public static func proofContent(cluster: ClusterID, prover: PublicKey, verifierNonce: [UInt8], proverNonce: [UInt8]) -> [UInt8] {
        domain + cluster.bytes + prover.bytes + verifierNonce + proverNonce
    }

    public static func prove(keyPair: KeyPair, cluster: ClusterID, verifierNonce: [UInt8], proverNonce: [UInt8]) -> Signature {
        keyPair.sign(proofContent(cluster: cluster, prover: keyPair.publicKey, verifierNonce: verifierNonce, proverNonce: proverNonce))
    }

    public func check(proof: Signature, from hello: Hello, myNonce: [UInt8]) throws(Failure) {
        let key = try key(for: hello)
        let content = Handshake.proofContent(cluster: config.cluster, prover: key, verifierNonce: myNonce, proverNonce: hello.nonce)
        guard Ed25519.verify(proof, of: content, by: key) else { throw Failure(code: .badProof) }
    }
}
