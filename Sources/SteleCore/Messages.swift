import SteleCrypto

/// A signed (replica id, signature) pair inside a compact certificate.
public struct ReplicaSignature: Hashable, Sendable {
    public let replica: ReplicaID
    public let signature: Signature
    public init(replica: ReplicaID, signature: Signature) {
        self.replica = replica
        self.signature = signature
    }
    static let encodedByteCount = 2 + Signature.byteCount
    func encode(into writer: inout ByteWriter) {
        writer.write(replica)
        writer.write(signature)
    }
    static func decode(from reader: inout ByteReader) throws(DecodingError) -> ReplicaSignature {
        ReplicaSignature(replica: try reader.readReplica("signature.replica"), signature: try reader.readSignature("signature.bytes"))
    }
}

// MARK: - REQUEST

/// REQUEST(op, timestamp, client), signed by the client's Ed25519 key.
public struct Request: Hashable, Sendable {
    public let client: PublicKey
    public let timestamp: UInt64
    public let payload: [UInt8]
    public let signature: Signature
    /// SHA-256 over ("stele.request.v1", client, timestamp, payload): the request's identity,
    /// independent of signature bytes (deduplication never keys on signatures). Computed once,
    /// when the request is made or decoded: its signature check, the signature memo, the
    /// client gate and the core all need it, and recomputing it showed in replica profiles.
    public let contentDigest: Digest

    public init(client: PublicKey, timestamp: UInt64, payload: [UInt8], signature: Signature) {
        self.init(client: client, timestamp: timestamp, payload: payload, signature: signature,
                  contentDigest: Request.contentDigest(client: client, timestamp: timestamp, payload: payload))
    }

    private init(client: PublicKey, timestamp: UInt64, payload: [UInt8], signature: Signature, contentDigest: Digest) {
        self.client = client
        self.timestamp = timestamp
        self.payload = payload
        self.signature = signature
        self.contentDigest = contentDigest
    }

    public func withSignature(_ signature: Signature) -> Request {
        Request(client: client, timestamp: timestamp, payload: payload, signature: signature, contentDigest: contentDigest)
    }

    private static let domain = Array("stele.request.v1".utf8)

    static func contentDigest(client: PublicKey, timestamp: UInt64, payload: [UInt8]) -> Digest {
        var writer = ByteWriter(capacity: 64 + payload.count)
        writer.writeFixed(domain)
        writer.write(client)
        writer.write(timestamp)
        writer.writeLengthPrefixed(payload)
        return Digest.of(writer.bytes)
    }

    /// Requests are equal when every field is; the digest follows from the others.
    public static func == (lhs: Request, rhs: Request) -> Bool {
        lhs.timestamp == rhs.timestamp && lhs.contentDigest == rhs.contentDigest && lhs.client == rhs.client
            && lhs.signature == rhs.signature && lhs.payload == rhs.payload
    }

    /// The digest stands for client, timestamp and payload (requests differing only in their
    /// signature share a hash and stay unequal).
    public func hash(into hasher: inout Hasher) {
        hasher.combine(contentDigest)
    }

    public var signedContent: SignedContent {
        SignedContent(tag: .request, view: 0, sequence: SequenceNumber(timestamp), signer: SignedContent.clientSigner, digest: contentDigest)
    }

    public func verifySignature(cluster: ClusterID) -> Bool {
        Ed25519.verify(signature, of: signedContent.bytes(cluster: cluster), by: client)
    }

    static let encodedByteCountMin = PublicKey.byteCount + 8 + 4 + Signature.byteCount

    /// The request's size in a batch (its canonical encoding).
    public var encodedByteCount: Int { Request.encodedByteCountMin + payload.count }

    public func encode(into writer: inout ByteWriter) {
        writer.write(client)
        writer.write(timestamp)
        writer.writeLengthPrefixed(payload)
        writer.write(signature)
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> Request {
        let client = try reader.readPublicKey("request.client")
        let timestamp = try reader.readUInt64("request.timestamp")
        let payload = try reader.readLengthPrefixed("request.payload", limit: reader.limits.payloadBytesMax)
        let signature = try reader.readSignature("request.signature")
        return Request(client: client, timestamp: timestamp, payload: payload, signature: signature)
    }
}

/// The digest a PRE-PREPARE, PREPARE, COMMIT and ledger block name for a batch:
/// SHA-256("stele.batch.v1" || UInt32 count || each request's full encoding, signature included).
/// The empty batch is PBFT's null request.
public enum Batch {
    public static func digest(_ requests: [Request]) -> Digest {
        var writer = ByteWriter(capacity: 32 + requests.count * 160)
        writer.writeFixed(Array("stele.batch.v1".utf8))
        writer.writeArray(requests) { $1.encode(into: &$0) }
        return Digest.of(writer.bytes)
    }

    public static let nullDigest = digest([])
}

// MARK: - PRE-PREPARE, PREPARE, COMMIT

/// PRE-PREPARE(v, s, d, batch) from primary(v). `digest` is always `Batch.digest(batch)`.
public struct PrePrepare: Hashable, Sendable {
    public let view: View
    public let sequence: SequenceNumber
    public let primary: ReplicaID
    public let batch: [Request]
    public let digest: Digest
    public let signature: Signature

    public init(view: View, sequence: SequenceNumber, primary: ReplicaID, batch: [Request], signature: Signature = .zero) {
        self.init(view: view, sequence: sequence, primary: primary, batch: batch, digest: Batch.digest(batch), signature: signature)
    }

    init(view: View, sequence: SequenceNumber, primary: ReplicaID, batch: [Request], digest: Digest, signature: Signature) {
        self.view = view
        self.sequence = sequence
        self.primary = primary
        self.batch = batch
        self.digest = digest
        self.signature = signature
    }

    public var signedContent: SignedContent {
        SignedContent(tag: .prePrepare, view: view, sequence: sequence, signer: primary.value, digest: digest)
    }

    public func signed(by signer: ReplicaSigner) -> PrePrepare {
        PrePrepare(view: view, sequence: sequence, primary: primary, batch: batch, digest: digest, signature: signer.sign(signedContent))
    }

    public func withSignature(_ signature: Signature) -> PrePrepare {
        PrePrepare(view: view, sequence: sequence, primary: primary, batch: batch, digest: digest, signature: signature)
    }

    static let encodedByteCountMin = 8 + 8 + 2 + 4 + Signature.byteCount

    public func encode(into writer: inout ByteWriter) {
        writer.write(view)
        writer.write(sequence)
        writer.write(primary)
        writer.writeArray(batch) { $1.encode(into: &$0) }
        writer.write(signature)
    }

    /// The encoding with the batch replaced by its index in a NEW-VIEW's table of batches.
    func encodeHeader(batchIndex: UInt32, into writer: inout ByteWriter) {
        writer.write(view)
        writer.write(sequence)
        writer.write(primary)
        writer.write(batchIndex)
        writer.write(signature)
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> PrePrepare {
        let view = try reader.readView("prePrepare.view")
        let sequence = try reader.readSequence("prePrepare.sequence")
        let primary = try reader.readReplica("prePrepare.primary")
        let batch = try reader.readArray("prePrepare.batch", limit: reader.limits.batchCountMax, elementSizeMin: Request.encodedByteCountMin) {
            (r: inout ByteReader) throws(DecodingError) in try Request.decode(from: &r)
        }
        let signature = try reader.readSignature("prePrepare.signature")
        return PrePrepare(view: view, sequence: sequence, primary: primary, batch: batch, signature: signature)
    }
}

/// The kind of a vote: PREPARE or COMMIT share one layout.
public enum VoteKind: Sendable, Hashable {
    case prepare, commit
    public var tag: MessageTag { self == .prepare ? .prepare : .commit }
}

/// PREPARE(v, s, d, i) or COMMIT(v, s, d, i).
public struct Vote: Hashable, Sendable {
    public let kind: VoteKind
    public let view: View
    public let sequence: SequenceNumber
    public let digest: Digest
    public let replica: ReplicaID
    public let signature: Signature

    public init(kind: VoteKind, view: View, sequence: SequenceNumber, digest: Digest, replica: ReplicaID, signature: Signature = .zero) {
        self.kind = kind
        self.view = view
        self.sequence = sequence
        self.digest = digest
        self.replica = replica
        self.signature = signature
    }

    public var signedContent: SignedContent {
        SignedContent(tag: kind.tag, view: view, sequence: sequence, signer: replica.value, digest: digest)
    }

    public func signed(by signer: ReplicaSigner) -> Vote {
        Vote(kind: kind, view: view, sequence: sequence, digest: digest, replica: replica, signature: signer.sign(signedContent))
    }

    public func withSignature(_ signature: Signature) -> Vote {
        Vote(kind: kind, view: view, sequence: sequence, digest: digest, replica: replica, signature: signature)
    }

    public static let encodedByteCount = 8 + 8 + Digest.byteCount + 2 + Signature.byteCount

    public func encode(into writer: inout ByteWriter) {
        writer.write(view)
        writer.write(sequence)
        writer.write(digest)
        writer.write(replica)
        writer.write(signature)
    }

    public static func decode(kind: VoteKind, from reader: inout ByteReader) throws(DecodingError) -> Vote {
        let name = kind == .prepare ? "prepare" : "commit"
        let view = try reader.readView("\(name).view")
        let sequence = try reader.readSequence("\(name).sequence")
        let digest = try reader.readDigest("\(name).digest")
        let replica = try reader.readReplica("\(name).replica")
        let signature = try reader.readSignature("\(name).signature")
        return Vote(kind: kind, view: view, sequence: sequence, digest: digest, replica: replica, signature: signature)
    }
}

// MARK: - REPLY

/// REPLY(v, c, i, height, block hash, timestamps): the client's requests at `timestamps`
/// executed in the block at `height`, whose hash is `blockHash`. A replica sends one signed
/// reply per (client, block) however many of that client's requests the block holds, so a
/// pipelining client costs one signature per block, not one per request; a retransmitted
/// request gets its cached result with just its own timestamp.
public struct Reply: Hashable, Sendable {
    public let view: View
    /// 1 ... `CodecLimits.batchCountMax` timestamps of this client, all with the same result.
    public let timestamps: [UInt64]
    public let client: PublicKey
    public let replica: ReplicaID
    public let height: SequenceNumber
    public let blockHash: Digest
    public let signature: Signature

    public init(view: View, timestamps: [UInt64], client: PublicKey, replica: ReplicaID, height: SequenceNumber, blockHash: Digest, signature: Signature = .zero) {
        precondition(!timestamps.isEmpty, "a reply answers at least one request")
        self.view = view
        self.timestamps = timestamps
        self.client = client
        self.replica = replica
        self.height = height
        self.blockHash = blockHash
        self.signature = signature
    }

    /// A reply to one request.
    public init(view: View, timestamp: UInt64, client: PublicKey, replica: ReplicaID, height: SequenceNumber, blockHash: Digest, signature: Signature = .zero) {
        self.init(view: view, timestamps: [timestamp], client: client, replica: replica, height: height, blockHash: blockHash, signature: signature)
    }

    /// The part f+1 replicas must agree on for a client to accept the reply.
    public struct Result: Hashable, Sendable {
        public let height: SequenceNumber
        public let blockHash: Digest
        public init(height: SequenceNumber, blockHash: Digest) {
            self.height = height
            self.blockHash = blockHash
        }
    }
    public var result: Result { Result(height: height, blockHash: blockHash) }

    var bodyDigest: Digest {
        var writer = ByteWriter(capacity: 112 + 8 * timestamps.count)
        writer.writeFixed(Array("stele.reply.v2".utf8))
        writer.write(client)
        writer.write(height)
        writer.write(blockHash)
        writer.writeArray(timestamps) { $0.write($1) }
        return Digest.of(writer.bytes)
    }

    public var signedContent: SignedContent {
        SignedContent(tag: .reply, view: view, sequence: height, signer: replica.value, digest: bodyDigest)
    }

    public func signed(by signer: ReplicaSigner) -> Reply {
        withSignature(signer.sign(signedContent))
    }

    public func withSignature(_ signature: Signature) -> Reply {
        Reply(view: view, timestamps: timestamps, client: client, replica: replica, height: height, blockHash: blockHash, signature: signature)
    }

    public func encode(into writer: inout ByteWriter) {
        writer.write(view)
        writer.writeArray(timestamps) { $0.write($1) }
        writer.write(client)
        writer.write(replica)
        writer.write(height)
        writer.write(blockHash)
        writer.write(signature)
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> Reply {
        let view = try reader.readView("reply.view")
        let countOffset = reader.offset
        let timestamps = try reader.readArray("reply.timestamps", limit: reader.limits.batchCountMax, elementSizeMin: 8) {
            (r: inout ByteReader) throws(DecodingError) in try r.readUInt64("reply.timestamp")
        }
        guard !timestamps.isEmpty else {
            throw DecodingError(.invalidValue(reason: "a reply answers at least one request"), field: "reply.timestamps", offset: countOffset)
        }
        return Reply(
            view: view,
            timestamps: timestamps,
            client: try reader.readPublicKey("reply.client"),
            replica: try reader.readReplica("reply.replica"),
            height: try reader.readSequence("reply.height"),
            blockHash: try reader.readDigest("reply.blockHash"),
            signature: try reader.readSignature("reply.signature"))
    }
}

// MARK: - CHECKPOINT

/// CHECKPOINT(s, d, i): replica i's ledger chain-head hash after executing sequence s.
public struct Checkpoint: Hashable, Sendable {
    public let sequence: SequenceNumber
    public let stateDigest: Digest
    public let replica: ReplicaID
    public let signature: Signature

    public init(sequence: SequenceNumber, stateDigest: Digest, replica: ReplicaID, signature: Signature = .zero) {
        self.sequence = sequence
        self.stateDigest = stateDigest
        self.replica = replica
        self.signature = signature
    }

    public var signedContent: SignedContent {
        SignedContent(tag: .checkpoint, view: 0, sequence: sequence, signer: replica.value, digest: stateDigest)
    }

    public func signed(by signer: ReplicaSigner) -> Checkpoint {
        Checkpoint(sequence: sequence, stateDigest: stateDigest, replica: replica, signature: signer.sign(signedContent))
    }

    static let encodedByteCount = 8 + Digest.byteCount + 2 + Signature.byteCount

    public func encode(into writer: inout ByteWriter) {
        writer.write(sequence)
        writer.write(stateDigest)
        writer.write(replica)
        writer.write(signature)
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> Checkpoint {
        Checkpoint(
            sequence: try reader.readSequence("checkpoint.sequence"),
            stateDigest: try reader.readDigest("checkpoint.stateDigest"),
            replica: try reader.readReplica("checkpoint.replica"),
            signature: try reader.readSignature("checkpoint.signature"))
    }
}

// MARK: - VIEW-CHANGE, NEW-VIEW

/// A prepared certificate: a PRE-PREPARE and q - 1 matching PREPAREs from distinct backups.
public struct PreparedCertificate: Hashable, Sendable {
    public let prePrepare: PrePrepare
    public let prepares: [Vote]

    public init(prePrepare: PrePrepare, prepares: [Vote]) {
        self.prePrepare = prePrepare
        self.prepares = prepares
    }

    public var view: View { prePrepare.view }
    public var sequence: SequenceNumber { prePrepare.sequence }
    public var digest: Digest { prePrepare.digest }

    static let encodedByteCountMin = PrePrepare.encodedByteCountMin + 4

    public func encode(into writer: inout ByteWriter) {
        encode(into: &writer) { $1.encode(into: &$0) }
    }

    /// The layout with the PRE-PREPARE written by `writePrePrepare` (a NEW-VIEW writes it with
    /// a batch index instead of the batch).
    func encode(into writer: inout ByteWriter, writePrePrepare: (inout ByteWriter, PrePrepare) -> Void) {
        writePrePrepare(&writer, prePrepare)
        writer.writeArray(prepares) { $1.encode(into: &$0) }
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> PreparedCertificate {
        try decode(from: &reader) { (r: inout ByteReader) throws(DecodingError) in try PrePrepare.decode(from: &r) }
    }

    static func decode(from reader: inout ByteReader, readPrePrepare: (inout ByteReader) throws(DecodingError) -> PrePrepare) throws(DecodingError) -> PreparedCertificate {
        let prePrepare = try readPrePrepare(&reader)
        let prepares = try reader.readArray("preparedCertificate.prepares", limit: reader.limits.signaturesMax, elementSizeMin: Vote.encodedByteCount) {
            (r: inout ByteReader) throws(DecodingError) in try Vote.decode(kind: .prepare, from: &r)
        }
        return PreparedCertificate(prePrepare: prePrepare, prepares: prepares)
    }
}

/// VIEW-CHANGE(v+1, n, C, P, i): replica i moves to `newView`; its stable checkpoint is
/// `stableSequence`, proven by `checkpointProof` (q CHECKPOINTs, empty when it is 0), and
/// `prepared` holds its prepared certificates above that checkpoint.
public struct ViewChange: Hashable, Sendable {
    public let newView: View
    public let stableSequence: SequenceNumber
    public let checkpointProof: [Checkpoint]
    public let prepared: [PreparedCertificate]
    public let replica: ReplicaID
    public let signature: Signature

    public init(newView: View, stableSequence: SequenceNumber, checkpointProof: [Checkpoint], prepared: [PreparedCertificate], replica: ReplicaID, signature: Signature = .zero) {
        self.newView = newView
        self.stableSequence = stableSequence
        self.checkpointProof = checkpointProof
        self.prepared = prepared
        self.replica = replica
        self.signature = signature
    }

    func encodeBody(into writer: inout ByteWriter) {
        encodeBody(into: &writer) { $1.encode(into: &$0) }
    }

    /// The body with each certificate's PRE-PREPARE written by `writePrePrepare`.
    func encodeBody(into writer: inout ByteWriter, writePrePrepare: (inout ByteWriter, PrePrepare) -> Void) {
        writer.write(newView)
        writer.write(stableSequence)
        writer.writeArray(checkpointProof) { $1.encode(into: &$0) }
        writer.writeArray(prepared) { $1.encode(into: &$0, writePrePrepare: writePrePrepare) }
        writer.write(replica)
    }

    var bodyDigest: Digest {
        var writer = ByteWriter(capacity: 1024)
        writer.writeFixed(Array("stele.viewchange.v1".utf8))
        encodeBody(into: &writer)
        return Digest.of(writer.bytes)
    }

    public var signedContent: SignedContent {
        SignedContent(tag: .viewChange, view: newView, sequence: stableSequence, signer: replica.value, digest: bodyDigest)
    }

    public func signed(by signer: ReplicaSigner) -> ViewChange {
        ViewChange(newView: newView, stableSequence: stableSequence, checkpointProof: checkpointProof, prepared: prepared, replica: replica, signature: signer.sign(signedContent))
    }

    public func withSignature(_ signature: Signature) -> ViewChange {
        ViewChange(newView: newView, stableSequence: stableSequence, checkpointProof: checkpointProof, prepared: prepared, replica: replica, signature: signature)
    }

    static let encodedByteCountMin = 8 + 8 + 4 + 4 + 2 + Signature.byteCount

    public func encode(into writer: inout ByteWriter) {
        encodeBody(into: &writer)
        writer.write(signature)
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> ViewChange {
        try decode(from: &reader) { (r: inout ByteReader) throws(DecodingError) in try PrePrepare.decode(from: &r) }
    }

    /// Reads each certificate's PRE-PREPARE with `readPrePrepare`.
    static func decode(from reader: inout ByteReader, readPrePrepare: (inout ByteReader) throws(DecodingError) -> PrePrepare) throws(DecodingError) -> ViewChange {
        let newView = try reader.readView("viewChange.newView")
        let stableSequence = try reader.readSequence("viewChange.stableSequence")
        let proof = try reader.readArray("viewChange.checkpointProof", limit: reader.limits.signaturesMax, elementSizeMin: Checkpoint.encodedByteCount) {
            (r: inout ByteReader) throws(DecodingError) in try Checkpoint.decode(from: &r)
        }
        let prepared = try reader.readArray("viewChange.prepared", limit: reader.limits.preparedCertificatesMax, elementSizeMin: PreparedCertificate.encodedByteCountMin) {
            (r: inout ByteReader) throws(DecodingError) in try PreparedCertificate.decode(from: &r, readPrePrepare: readPrePrepare)
        }
        let replica = try reader.readReplica("viewChange.replica")
        let signature = try reader.readSignature("viewChange.signature")
        return ViewChange(newView: newView, stableSequence: stableSequence, checkpointProof: proof, prepared: prepared, replica: replica, signature: signature)
    }
}

/// NEW-VIEW(v+1, V, O) from primary(v+1): V holds q VIEW-CHANGEs, O the re-proposed
/// PRE-PREPAREs (null requests as empty batches) for every sequence in (min-s, max-s].
public struct NewView: Hashable, Sendable {
    public let view: View
    public let viewChanges: [ViewChange]
    public let prePrepares: [PrePrepare]
    public let primary: ReplicaID
    public let signature: Signature

    public init(view: View, viewChanges: [ViewChange], prePrepares: [PrePrepare], primary: ReplicaID, signature: Signature = .zero) {
        self.view = view
        self.viewChanges = viewChanges
        self.prePrepares = prePrepares
        self.primary = primary
        self.signature = signature
    }

    func encodeBody(into writer: inout ByteWriter) {
        writer.write(view)
        writer.writeArray(viewChanges) { $1.encode(into: &$0) }
        writer.writeArray(prePrepares) { $1.encode(into: &$0) }
        writer.write(primary)
    }

    var bodyDigest: Digest {
        var writer = ByteWriter(capacity: 4096)
        writer.writeFixed(Array("stele.newview.v1".utf8))
        encodeBody(into: &writer)
        return Digest.of(writer.bytes)
    }

    public var signedContent: SignedContent {
        SignedContent(tag: .newView, view: view, sequence: 0, signer: primary.value, digest: bodyDigest)
    }

    public func signed(by signer: ReplicaSigner) -> NewView {
        NewView(view: view, viewChanges: viewChanges, prePrepares: prePrepares, primary: primary, signature: signer.sign(signedContent))
    }

    public func withSignature(_ signature: Signature) -> NewView {
        NewView(view: view, viewChanges: viewChanges, prePrepares: prePrepares, primary: primary, signature: signature)
    }

    // On the wire a NEW-VIEW carries each distinct batch once. Its q VIEW-CHANGEs mostly
    // hold the same prepared certificates, and O re-proposes their batches, so written out
    // whole it carried about four copies of every unstable batch, and outgrew a 4 MiB frame under
    // load with 4 KiB payloads (docs/security.md). The signature still covers the whole
    // encoding (`bodyDigest`); only the wire form is shared:
    //
    //     view u64
    //     batches     u32 count, each a u32 count of requests — distinct, in order of first use
    //     viewChanges u32 count, each a VIEW-CHANGE whose certificates' PRE-PREPAREs name their
    //                 batch by a u32 index into `batches` instead of carrying it
    //     prePrepares u32 count, each a PRE-PREPARE with a u32 batch index
    //     primary u16, signature 64 bytes
    //
    // Decoding is strict, so decode-then-encode gives the same bytes: every index in range,
    // first uses in table order, every batch used, no batch twice.

    public func encode(into writer: inout ByteWriter) {
        var table: [[Request]] = []
        var indexOf: [Digest: UInt32] = [:]
        func index(of prePrepare: PrePrepare) -> UInt32 {
            if let index = indexOf[prePrepare.digest] { return index }
            let index = UInt32(table.count)
            indexOf[prePrepare.digest] = index
            table.append(prePrepare.batch)
            return index
        }
        // The table goes first, so every batch gets its index before anything is written.
        for viewChange in viewChanges { for certificate in viewChange.prepared { _ = index(of: certificate.prePrepare) } }
        for prePrepare in prePrepares { _ = index(of: prePrepare) }
        let writeHeader = { (writer: inout ByteWriter, prePrepare: PrePrepare) in
            prePrepare.encodeHeader(batchIndex: indexOf[prePrepare.digest]!, into: &writer)
        }

        writer.write(view)
        writer.writeArray(table) { writer, batch in writer.writeArray(batch) { $1.encode(into: &$0) } }
        writer.writeArray(viewChanges) { writer, viewChange in
            viewChange.encodeBody(into: &writer, writePrePrepare: writeHeader)
            writer.write(viewChange.signature)
        }
        writer.writeArray(prePrepares) { writeHeader(&$0, $1) }
        writer.write(primary)
        writer.write(signature)
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> NewView {
        let view = try reader.readView("newView.view")
        let tableLimit = reader.limits.newViewPrePreparesMax + reader.limits.viewChangesMax * reader.limits.preparedCertificatesMax
        let batches = try reader.readArray("newView.batches", limit: tableLimit, elementSizeMin: 4) {
            (r: inout ByteReader) throws(DecodingError) -> (batch: [Request], digest: Digest) in
            let batch = try r.readArray("newView.batch", limit: r.limits.batchCountMax, elementSizeMin: Request.encodedByteCountMin) {
                (r: inout ByteReader) throws(DecodingError) in try Request.decode(from: &r)
            }
            return (batch, Batch.digest(batch))
        }
        var distinct = Set<Digest>()
        for (index, entry) in batches.enumerated() where !distinct.insert(entry.digest).inserted {
            throw DecodingError(.invalidValue(reason: "batch \(index) repeats an earlier batch"), field: "newView.batches", offset: reader.offset)
        }
        var firstUnused = 0
        func batch(_ r: inout ByteReader) throws(DecodingError) -> (batch: [Request], digest: Digest) {
            let offset = r.offset
            let index = Int(try r.readUInt32("newView.batchIndex"))
            guard index < batches.count else {
                throw DecodingError(.invalidValue(reason: "batch index \(index) of \(batches.count)"), field: "newView.batchIndex", offset: offset)
            }
            guard index <= firstUnused else {
                throw DecodingError(.invalidValue(reason: "batch \(index) used before batch \(firstUnused)"), field: "newView.batchIndex", offset: offset)
            }
            if index == firstUnused { firstUnused += 1 }
            return batches[index]
        }
        func prePrepare(_ r: inout ByteReader) throws(DecodingError) -> PrePrepare {
            let view = try r.readView("prePrepare.view")
            let sequence = try r.readSequence("prePrepare.sequence")
            let primary = try r.readReplica("prePrepare.primary")
            let entry = try batch(&r)
            let signature = try r.readSignature("prePrepare.signature")
            return PrePrepare(view: view, sequence: sequence, primary: primary, batch: entry.batch, digest: entry.digest, signature: signature)
        }
        let viewChanges = try reader.readArray("newView.viewChanges", limit: reader.limits.viewChangesMax, elementSizeMin: ViewChange.encodedByteCountMin) {
            (r: inout ByteReader) throws(DecodingError) in try ViewChange.decode(from: &r, readPrePrepare: prePrepare)
        }
        let prePrepares = try reader.readArray("newView.prePrepares", limit: reader.limits.newViewPrePreparesMax, elementSizeMin: PrePrepare.encodedByteCountMin) {
            (r: inout ByteReader) throws(DecodingError) in try prePrepare(&r)
        }
        guard firstUnused == batches.count else {
            throw DecodingError(.invalidValue(reason: "batch \(firstUnused) of \(batches.count) is never used"), field: "newView.batches", offset: reader.offset)
        }
        let primary = try reader.readReplica("newView.primary")
        let signature = try reader.readSignature("newView.signature")
        return NewView(view: view, viewChanges: viewChanges, prePrepares: prePrepares, primary: primary, signature: signature)
    }
}

// MARK: - State transfer

/// Asks a peer for the committed blocks at heights fromHeight ... toHeight.
public struct StateRequest: Hashable, Sendable {
    public let fromHeight: SequenceNumber
    public let toHeight: SequenceNumber
    public let replica: ReplicaID
    public let signature: Signature

    public init(fromHeight: SequenceNumber, toHeight: SequenceNumber, replica: ReplicaID, signature: Signature = .zero) {
        self.fromHeight = fromHeight
        self.toHeight = toHeight
        self.replica = replica
        self.signature = signature
    }

    var bodyDigest: Digest {
        var writer = ByteWriter(capacity: 48)
        writer.writeFixed(Array("stele.staterequest.v1".utf8))
        writer.write(fromHeight)
        writer.write(toHeight)
        return Digest.of(writer.bytes)
    }

    public var signedContent: SignedContent {
        SignedContent(tag: .stateRequest, view: 0, sequence: fromHeight, signer: replica.value, digest: bodyDigest)
    }

    public func signed(by signer: ReplicaSigner) -> StateRequest {
        StateRequest(fromHeight: fromHeight, toHeight: toHeight, replica: replica, signature: signer.sign(signedContent))
    }

    public func encode(into writer: inout ByteWriter) {
        writer.write(fromHeight)
        writer.write(toHeight)
        writer.write(replica)
        writer.write(signature)
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> StateRequest {
        StateRequest(
            fromHeight: try reader.readSequence("stateRequest.fromHeight"),
            toHeight: try reader.readSequence("stateRequest.toHeight"),
            replica: try reader.readReplica("stateRequest.replica"),
            signature: try reader.readSignature("stateRequest.signature"))
    }
}

/// Committed blocks for a lagging replica; each block carries its own commit certificate, so
/// one honest peer is enough. `checkpoint`, when present, proves a stable chain head.
public struct StateResponse: Hashable, Sendable {
    public let blocks: [CertifiedBlock]
    public let checkpoint: CheckpointCertificate?
    public let replica: ReplicaID
    public let signature: Signature

    public init(blocks: [CertifiedBlock], checkpoint: CheckpointCertificate?, replica: ReplicaID, signature: Signature = .zero) {
        self.blocks = blocks
        self.checkpoint = checkpoint
        self.replica = replica
        self.signature = signature
    }

    func encodeBody(into writer: inout ByteWriter) {
        writer.writeArray(blocks) { $1.encode(into: &$0) }
        if let checkpoint {
            writer.write(true)
            checkpoint.encode(into: &writer)
        } else {
            writer.write(false)
        }
        writer.write(replica)
    }

    var bodyDigest: Digest {
        var writer = ByteWriter(capacity: 4096)
        writer.writeFixed(Array("stele.stateresponse.v1".utf8))
        encodeBody(into: &writer)
        return Digest.of(writer.bytes)
    }

    public var signedContent: SignedContent {
        SignedContent(tag: .stateResponse, view: 0, sequence: blocks.first?.height ?? 0, signer: replica.value, digest: bodyDigest)
    }

    public func signed(by signer: ReplicaSigner) -> StateResponse {
        StateResponse(blocks: blocks, checkpoint: checkpoint, replica: replica, signature: signer.sign(signedContent))
    }

    public func encode(into writer: inout ByteWriter) {
        encodeBody(into: &writer)
        writer.write(signature)
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> StateResponse {
        let blocks = try reader.readArray("stateResponse.blocks", limit: reader.limits.stateTransferBlocksMax, elementSizeMin: CertifiedBlock.encodedByteCountMin) {
            (r: inout ByteReader) throws(DecodingError) in try CertifiedBlock.decode(from: &r)
        }
        let checkpoint: CheckpointCertificate? = try reader.readBool("stateResponse.hasCheckpoint") ? try CheckpointCertificate.decode(from: &reader) : nil
        let replica = try reader.readReplica("stateResponse.replica")
        let signature = try reader.readSignature("stateResponse.signature")
        return StateResponse(blocks: blocks, checkpoint: checkpoint, replica: replica, signature: signature)
    }
}

// MARK: - The envelope

/// Every protocol message, as it travels: version byte 1, tag byte, then the message's fields.
public enum Message: Hashable, Sendable {
    case request(Request)
    case prePrepare(PrePrepare)
    case prepare(Vote)
    case commit(Vote)
    case reply(Reply)
    case checkpoint(Checkpoint)
    case viewChange(ViewChange)
    case newView(NewView)
    case stateRequest(StateRequest)
    case stateResponse(StateResponse)

    public static let codecVersion: UInt8 = 1

    public var tag: MessageTag {
        switch self {
        case .request: .request
        case .prePrepare: .prePrepare
        case .prepare: .prepare
        case .commit: .commit
        case .reply: .reply
        case .checkpoint: .checkpoint
        case .viewChange: .viewChange
        case .newView: .newView
        case .stateRequest: .stateRequest
        case .stateResponse: .stateResponse
        }
    }

    /// The replica that signed this message, or nil for a client REQUEST.
    public var sender: ReplicaID? {
        switch self {
        case .request: nil
        case .prePrepare(let m): m.primary
        case .prepare(let m), .commit(let m): m.replica
        case .reply(let m): m.replica
        case .checkpoint(let m): m.replica
        case .viewChange(let m): m.replica
        case .newView(let m): m.primary
        case .stateRequest(let m): m.replica
        case .stateResponse(let m): m.replica
        }
    }

    public var signedContent: SignedContent {
        switch self {
        case .request(let m): m.signedContent
        case .prePrepare(let m): m.signedContent
        case .prepare(let m), .commit(let m): m.signedContent
        case .reply(let m): m.signedContent
        case .checkpoint(let m): m.signedContent
        case .viewChange(let m): m.signedContent
        case .newView(let m): m.signedContent
        case .stateRequest(let m): m.signedContent
        case .stateResponse(let m): m.signedContent
        }
    }

    public var signature: Signature {
        switch self {
        case .request(let m): m.signature
        case .prePrepare(let m): m.signature
        case .prepare(let m), .commit(let m): m.signature
        case .reply(let m): m.signature
        case .checkpoint(let m): m.signature
        case .viewChange(let m): m.signature
        case .newView(let m): m.signature
        case .stateRequest(let m): m.signature
        case .stateResponse(let m): m.signature
        }
    }

    public func encode() -> [UInt8] {
        var writer = ByteWriter(capacity: 512)
        encode(into: &writer)
        return writer.bytes
    }

    public func encode(into writer: inout ByteWriter) {
        writer.write(Message.codecVersion)
        writer.write(tag.rawValue)
        switch self {
        case .request(let m): m.encode(into: &writer)
        case .prePrepare(let m): m.encode(into: &writer)
        case .prepare(let m), .commit(let m): m.encode(into: &writer)
        case .reply(let m): m.encode(into: &writer)
        case .checkpoint(let m): m.encode(into: &writer)
        case .viewChange(let m): m.encode(into: &writer)
        case .newView(let m): m.encode(into: &writer)
        case .stateRequest(let m): m.encode(into: &writer)
        case .stateResponse(let m): m.encode(into: &writer)
        }
    }

    /// Strict decoding: known version and tag, every length bounded, no trailing bytes.
    public static func decode(_ bytes: [UInt8], limits: CodecLimits = .standard) throws(DecodingError) -> Message {
        var reader = ByteReader(bytes, limits: limits)
        let version = try reader.readUInt8("message.version")
        guard version == codecVersion else {
            throw DecodingError(.unsupportedVersion(version), field: "message.version", offset: 0)
        }
        let tagByte = try reader.readUInt8("message.tag")
        guard let tag = MessageTag(rawValue: tagByte) else {
            throw DecodingError(.unknownTag(tagByte), field: "message.tag", offset: 1)
        }
        let message: Message
        switch tag {
        case .request: message = .request(try Request.decode(from: &reader))
        case .prePrepare: message = .prePrepare(try PrePrepare.decode(from: &reader))
        case .prepare: message = .prepare(try Vote.decode(kind: .prepare, from: &reader))
        case .commit: message = .commit(try Vote.decode(kind: .commit, from: &reader))
        case .reply: message = .reply(try Reply.decode(from: &reader))
        case .checkpoint: message = .checkpoint(try Checkpoint.decode(from: &reader))
        case .viewChange: message = .viewChange(try ViewChange.decode(from: &reader))
        case .newView: message = .newView(try NewView.decode(from: &reader))
        case .stateRequest: message = .stateRequest(try StateRequest.decode(from: &reader))
        case .stateResponse: message = .stateResponse(try StateResponse.decode(from: &reader))
        }
        try reader.expectEnd("message")
        return message
    }
}
