import SteleCrypto

/// The genesis block (height 0): it pins the format version, the cluster id, n, f and every
/// replica's id and public key. Its hash is the `prevHash` of block 1.
public struct Genesis: Hashable, Sendable {
    public static let formatVersion: UInt16 = 1

    public struct Member: Hashable, Sendable {
        public let id: ReplicaID
        public let publicKey: PublicKey
        public init(id: ReplicaID, publicKey: PublicKey) {
            self.id = id
            self.publicKey = publicKey
        }
    }

    public let formatVersion: UInt16
    public let cluster: ClusterID
    public let f: UInt16
    public let members: [Member]

    public init(formatVersion: UInt16 = Genesis.formatVersion, cluster: ClusterID, f: UInt16, members: [Member]) {
        self.formatVersion = formatVersion
        self.cluster = cluster
        self.f = f
        self.members = members
    }

    public var n: Int { members.count }

    /// Canonical encoding: formatVersion u16, cluster id 16 bytes, n u16, f u16, then n times
    /// (id u16, public key 32 bytes), ordered by id.
    public func encode(into writer: inout ByteWriter) {
        writer.write(formatVersion)
        writer.write(cluster)
        writer.write(UInt16(members.count))
        writer.write(f)
        for member in members {
            writer.write(member.id)
            writer.write(member.publicKey)
        }
    }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 64 + members.count * 34)
        encode(into: &writer)
        return writer.bytes
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> Genesis {
        let version = try reader.readUInt16("genesis.formatVersion")
        guard version == Genesis.formatVersion else {
            throw DecodingError(.unsupportedVersion(UInt8(truncatingIfNeeded: version)), field: "genesis.formatVersion", offset: reader.offset - 2)
        }
        let cluster = try reader.readClusterID("genesis.cluster")
        let nOffset = reader.offset
        let n = Int(try reader.readUInt16("genesis.n"))
        guard n <= reader.limits.membersMax else {
            throw DecodingError(.lengthTooLarge(length: UInt64(n), limit: reader.limits.membersMax), field: "genesis.n", offset: nOffset)
        }
        let f = try reader.readUInt16("genesis.f")
        guard n * 34 <= reader.remaining else {
            throw DecodingError(.truncated(needed: n * 34, remaining: reader.remaining), field: "genesis.members", offset: reader.offset)
        }
        var members = [Member]()
        members.reserveCapacity(n)
        for _ in 0..<n {
            members.append(Member(id: try reader.readReplica("genesis.member.id"), publicKey: try reader.readPublicKey("genesis.member.publicKey")))
        }
        return Genesis(formatVersion: version, cluster: cluster, f: f, members: members)
    }

    /// SHA-256("stele.genesis.v1" || canonical encoding).
    public var hash: Digest {
        var writer = ByteWriter(capacity: 64 + members.count * 34)
        writer.writeFixed(Array("stele.genesis.v1".utf8))
        encode(into: &writer)
        return Digest.of(writer.bytes)
    }
}

/// The hash of the block at `height`: SHA-256("stele.block.v1" || height u64 || prevHash ||
/// batchDigest). The view and the commit certificate are evidence, not part of the hash, so
/// replicas that committed the same batch in different views hold the same chain.
public enum BlockHash {
    public static func compute(height: SequenceNumber, prevHash: Digest, batchDigest: Digest) -> Digest {
        var writer = ByteWriter(capacity: 96)
        writer.writeFixed(Array("stele.block.v1".utf8))
        writer.write(height)
        writer.write(prevHash)
        writer.write(batchDigest)
        return Digest.of(writer.bytes)
    }
}

/// A committed block with its commit certificate: q (ClusterConfig.quorum) COMMIT signatures of distinct replicas
/// over SignedContent(tag commit, certificateView, height, signer, batchDigest).
public struct CertifiedBlock: Hashable, Sendable {
    public let height: SequenceNumber
    public let prevHash: Digest
    public let batch: [Request]
    public let batchDigest: Digest
    public let certificateView: View
    public let commitSignatures: [ReplicaSignature]

    public init(height: SequenceNumber, prevHash: Digest, batch: [Request], certificateView: View, commitSignatures: [ReplicaSignature]) {
        self.height = height
        self.prevHash = prevHash
        self.batch = batch
        self.batchDigest = Batch.digest(batch)
        self.certificateView = certificateView
        self.commitSignatures = commitSignatures
    }

    /// The block of a committed PRE-PREPARE: its batch, under its digest (a PRE-PREPARE's digest
    /// is always its batch's, so the batch is not hashed again) and its view.
    public init(height: SequenceNumber, prevHash: Digest, prePrepare: PrePrepare, commitSignatures: [ReplicaSignature]) {
        self.height = height
        self.prevHash = prevHash
        self.batch = prePrepare.batch
        self.batchDigest = prePrepare.digest
        self.certificateView = prePrepare.view
        self.commitSignatures = commitSignatures
    }

    public var hash: Digest { BlockHash.compute(height: height, prevHash: prevHash, batchDigest: batchDigest) }

    /// The COMMIT votes this certificate stands for, for verification.
    public var commitVotes: [Vote] {
        commitSignatures.map {
            Vote(kind: .commit, view: certificateView, sequence: height, digest: batchDigest, replica: $0.replica, signature: $0.signature)
        }
    }

    static let encodedByteCountMin = 8 + 32 + 4 + 8 + 4

    /// Canonical encoding: height u64, prevHash 32, batch (u32 count, requests), certificate
    /// view u64, signatures (u32 count, (replica u16, signature 64) each).
    public func encode(into writer: inout ByteWriter) {
        writer.write(height)
        writer.write(prevHash)
        writer.writeArray(batch) { $1.encode(into: &$0) }
        writer.write(certificateView)
        writer.writeArray(commitSignatures) { $1.encode(into: &$0) }
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> CertifiedBlock {
        let height = try reader.readSequence("block.height")
        let prevHash = try reader.readDigest("block.prevHash")
        let batch = try reader.readArray("block.batch", limit: reader.limits.batchCountMax, elementSizeMin: Request.encodedByteCountMin) {
            (r: inout ByteReader) throws(DecodingError) in try Request.decode(from: &r)
        }
        let view = try reader.readView("block.certificateView")
        let signatures = try reader.readArray("block.commitSignatures", limit: reader.limits.signaturesMax, elementSizeMin: ReplicaSignature.encodedByteCount) {
            (r: inout ByteReader) throws(DecodingError) in try ReplicaSignature.decode(from: &r)
        }
        return CertifiedBlock(height: height, prevHash: prevHash, batch: batch, certificateView: view, commitSignatures: signatures)
    }
}

/// A stable checkpoint's proof: q CHECKPOINT signatures of distinct replicas over
/// SignedContent(tag checkpoint, view 0, sequence, signer, stateDigest = chain-head hash).
public struct CheckpointCertificate: Hashable, Sendable {
    public let sequence: SequenceNumber
    public let stateDigest: Digest
    public let signatures: [ReplicaSignature]

    public init(sequence: SequenceNumber, stateDigest: Digest, signatures: [ReplicaSignature]) {
        self.sequence = sequence
        self.stateDigest = stateDigest
        self.signatures = signatures
    }

    public init(checkpoints: [Checkpoint]) {
        precondition(!checkpoints.isEmpty)
        self.sequence = checkpoints[0].sequence
        self.stateDigest = checkpoints[0].stateDigest
        self.signatures = checkpoints.map { ReplicaSignature(replica: $0.replica, signature: $0.signature) }
    }

    public var checkpoints: [Checkpoint] {
        signatures.map { Checkpoint(sequence: sequence, stateDigest: stateDigest, replica: $0.replica, signature: $0.signature) }
    }

    public func encode(into writer: inout ByteWriter) {
        writer.write(sequence)
        writer.write(stateDigest)
        writer.writeArray(signatures) { $1.encode(into: &$0) }
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> CheckpointCertificate {
        let sequence = try reader.readSequence("checkpointCertificate.sequence")
        let digest = try reader.readDigest("checkpointCertificate.stateDigest")
        let signatures = try reader.readArray("checkpointCertificate.signatures", limit: reader.limits.signaturesMax, elementSizeMin: ReplicaSignature.encodedByteCount) {
            (r: inout ByteReader) throws(DecodingError) in try ReplicaSignature.decode(from: &r)
        }
        return CheckpointCertificate(sequence: sequence, stateDigest: digest, signatures: signatures)
    }
}
