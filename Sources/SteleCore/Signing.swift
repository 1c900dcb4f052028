import SteleCrypto

/// The type of a protocol message; its byte is the wire tag and part of what every signature covers.
public enum MessageTag: UInt8, Sendable, CaseIterable {
    case request = 1
    case prePrepare = 2
    case prepare = 3
    case commit = 4
    case reply = 5
    case checkpoint = 6
    case viewChange = 7
    case newView = 8
    case stateRequest = 9
    case stateResponse = 10
}

/// Exactly what an Ed25519 signature in Stele covers (79 bytes):
///
///     "stele.sig.v1"  12 bytes ASCII domain separator
///     cluster id      16 bytes
///     tag              1 byte  (MessageTag)
///     view             8 bytes big-endian
///     sequence         8 bytes big-endian
///     signer           2 bytes big-endian (replica id; 0xFFFF for a client)
///     digest          32 bytes
///
/// A signature made for one message type, view, sequence, signer or cluster can therefore
/// never verify as another. For PRE-PREPARE, PREPARE and COMMIT the digest is the batch digest;
/// for CHECKPOINT the chain-head hash; for the other messages the SHA-256 of their body.
public struct SignedContent: Hashable, Sendable {
    public static let domain: [UInt8] = Array("stele.sig.v1".utf8)
    public static let clientSigner: UInt16 = 0xFFFF
    public static let byteCount = 79

    public let tag: MessageTag
    public let view: View
    public let sequence: SequenceNumber
    public let signer: UInt16
    public let digest: Digest

    public init(tag: MessageTag, view: View, sequence: SequenceNumber, signer: UInt16, digest: Digest) {
        self.tag = tag
        self.view = view
        self.sequence = sequence
        self.signer = signer
        self.digest = digest
    }

    public func bytes(cluster: ClusterID) -> [UInt8] {
        var writer = ByteWriter(capacity: SignedContent.byteCount)
        writer.writeFixed(SignedContent.domain)
        writer.write(cluster)
        writer.write(tag.rawValue)
        writer.write(view)
        writer.write(sequence)
        writer.write(signer)
        writer.write(digest)
        assert(writer.bytes.count == SignedContent.byteCount)
        return writer.bytes
    }
}

/// Signs protocol messages on behalf of one replica. Ed25519 signing is deterministic, so the
/// consensus core may hold one without losing determinism.
public struct ReplicaSigner: Sendable {
    public let replica: ReplicaID
    public let cluster: ClusterID
    let keyPair: KeyPair

    public init(replica: ReplicaID, cluster: ClusterID, keyPair: KeyPair) {
        self.replica = replica
        self.cluster = cluster
        self.keyPair = keyPair
    }

    public var publicKey: PublicKey { keyPair.publicKey }

    public func sign(_ content: SignedContent) -> Signature {
        precondition(content.signer == replica.value, "a replica signs only as itself")
        return keyPair.sign(content.bytes(cluster: cluster))
    }
}

/// Signs client requests.
public struct ClientSigner: Sendable {
    public let cluster: ClusterID
    let keyPair: KeyPair

    public init(cluster: ClusterID, keyPair: KeyPair) {
        self.cluster = cluster
        self.keyPair = keyPair
    }

    public var publicKey: PublicKey { keyPair.publicKey }

    public func request(timestamp: UInt64, payload: [UInt8]) -> Request {
        let unsigned = Request(client: keyPair.publicKey, timestamp: timestamp, payload: payload, signature: .zero)
        return unsigned.withSignature(keyPair.sign(unsigned.signedContent.bytes(cluster: cluster)))
    }
}
