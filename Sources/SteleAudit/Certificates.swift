import SteleCore
import SteleCrypto

/// What a certificate's signatures amount to, signer by signer. Only a member's first signature
/// counts; repeated and foreign signers count for nothing, whatever their signature.
struct CertificateAssessment: Equatable {
    var valid = [ReplicaID]()
    var invalid = [ReplicaID]()
    var repeated = [ReplicaID]()
    var nonMembers = [ReplicaID]()

    /// `verdict(i)` says whether signature i verified; it is asked only for a member's first
    /// signature.
    static func assess(_ signatures: [ReplicaSignature], config: ClusterConfig, verdict: (Int) -> Bool) -> CertificateAssessment {
        var assessment = CertificateAssessment()
        var seen = Set<ReplicaID>()
        for (index, entry) in signatures.enumerated() {
            guard config.isMember(entry.replica) else {
                assessment.nonMembers.append(entry.replica)
                continue
            }
            guard seen.insert(entry.replica).inserted else {
                assessment.repeated.append(entry.replica)
                continue
            }
            if verdict(index) {
                assessment.valid.append(entry.replica)
            } else {
                assessment.invalid.append(entry.replica)
            }
        }
        return assessment
    }

    func meetsQuorum(_ config: ClusterConfig) -> Bool { valid.count >= config.quorum }
}

/// The exact signed content behind each signature of a block or checkpoint certificate.
enum SignedMessages {
    static func commit(_ block: CertifiedBlock, signer: ReplicaID, cluster: ClusterID) -> [UInt8] {
        SignedContent(tag: .commit, view: block.certificateView, sequence: block.height, signer: signer.value, digest: block.batchDigest)
            .bytes(cluster: cluster)
    }

    static func checkpoint(_ certificate: CheckpointCertificate, signer: ReplicaID, cluster: ClusterID) -> [UInt8] {
        SignedContent(tag: .checkpoint, view: 0, sequence: certificate.sequence, signer: signer.value, digest: certificate.stateDigest)
            .bytes(cluster: cluster)
    }

    /// The checks for a certificate's signatures, nil for a non-member signer (no key to check).
    static func checks(_ signatures: [ReplicaSignature], config: ClusterConfig, message: (ReplicaID) -> [UInt8]) -> [SignatureCheck?] {
        signatures.map { entry in
            guard let key = config.publicKey(of: entry.replica) else { return nil }
            return SignatureCheck(key: key, message: message(entry.replica), signature: entry.signature)
        }
    }

    static func client(_ request: Request, cluster: ClusterID) -> SignatureCheck {
        SignatureCheck(key: request.client, message: request.signedContent.bytes(cluster: cluster), signature: request.signature)
    }
}

/// A SHA-256 digest as four words: compact and allocation-free, for per-height indexes.
struct HashWords: Hashable, Sendable {
    let w0, w1, w2, w3: UInt64

    init(_ digest: Digest) {
        let bytes = digest.bytes
        func word(_ start: Int) -> UInt64 {
            var value: UInt64 = 0
            for index in start..<start + 8 { value = value << 8 | UInt64(bytes[index]) }
            return value
        }
        w0 = word(0)
        w1 = word(8)
        w2 = word(16)
        w3 = word(24)
    }

    var digest: Digest {
        var bytes = [UInt8]()
        bytes.reserveCapacity(Digest.byteCount)
        for word in [w0, w1, w2, w3] {
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        return Digest(bytes: bytes)!
    }
}

/// The contiguous chain of one file from genesis: per height its block hash, record offset and
/// whether its commit certificate held. About 41 bytes per block, the only per-block state the
/// auditor keeps after a chunk is done.
struct ChainIndex {
    private(set) var hashes: [HashWords]
    private(set) var offsets: [UInt64]
    private(set) var certified: [Bool]

    init(genesisHash: Digest, genesisOffset: UInt64) {
        hashes = [HashWords(genesisHash)]
        offsets = [genesisOffset]
        certified = [true]
    }

    /// Height of the last block in the contiguous chain (0 = genesis only).
    var height: UInt64 { UInt64(hashes.count - 1) }

    func hash(at height: UInt64) -> HashWords? { height <= self.height ? hashes[Int(height)] : nil }
    func offset(at height: UInt64) -> UInt64? { height <= self.height ? offsets[Int(height)] : nil }
    func isCertified(at height: UInt64) -> Bool { height <= self.height && certified[Int(height)] }

    mutating func append(hash: HashWords, offset: UInt64, certified isCertified: Bool) {
        hashes.append(hash)
        offsets.append(offset)
        certified.append(isCertified)
    }
}
