import PBFT
import SteleCore

/// The byte encoding of the core's PersistRecords in the write-ahead log: a tag byte, then the
/// record's fields in SteleCore's canonical encoding.
enum PersistCodec {
    enum Tag: UInt8 {
        case view = 1
        case prePrepare = 2
        case prepareVote = 3
        case commitVote = 4
        case prepared = 5
        case viewChange = 6
        case stableCheckpoint = 7
        /// A prepared certificate whose PRE-PREPARE's batch is in an earlier record of the log:
        /// the PRE-PREPARE without its batch (view, sequence, primary, digest, signature), then
        /// the PREPAREs. Each batch is written once instead of twice.
        case preparedSharingBatch = 8
        /// The NEW-VIEW a primary sent, in its wire form (each distinct batch once).
        case newView = 9
    }

    /// `loggedBatches`: digests of the non-empty batches of the PRE-PREPARE records already
    /// written to the log before this one.
    static func encode(_ record: PersistRecord, loggedBatches: Set<Digest> = []) -> [UInt8] {
        var writer = ByteWriter(capacity: 256)
        if case .prepared(let certificate) = record, !certificate.prePrepare.batch.isEmpty, loggedBatches.contains(certificate.digest) {
            let prePrepare = certificate.prePrepare
            writer.write(Tag.preparedSharingBatch.rawValue)
            writer.write(prePrepare.view)
            writer.write(prePrepare.sequence)
            writer.write(prePrepare.primary)
            writer.write(prePrepare.digest)
            writer.write(prePrepare.signature)
            writer.writeArray(certificate.prepares) { $1.encode(into: &$0) }
            return writer.bytes
        }
        switch record {
        case .view(let view, let inViewChange):
            writer.write(Tag.view.rawValue)
            writer.write(view)
            writer.write(inViewChange)
        case .prePrepare(let prePrepare):
            writer.write(Tag.prePrepare.rawValue)
            prePrepare.encode(into: &writer)
        case .vote(let vote):
            writer.write((vote.kind == .prepare ? Tag.prepareVote : Tag.commitVote).rawValue)
            vote.encode(into: &writer)
        case .prepared(let certificate):
            writer.write(Tag.prepared.rawValue)
            certificate.encode(into: &writer)
        case .viewChange(let viewChange):
            writer.write(Tag.viewChange.rawValue)
            viewChange.encode(into: &writer)
        case .stableCheckpoint(let certificate):
            writer.write(Tag.stableCheckpoint.rawValue)
            certificate.encode(into: &writer)
        case .newView(let newView):
            writer.write(Tag.newView.rawValue)
            newView.encode(into: &writer)
        }
        return writer.bytes
    }

    /// `loggedBatches`: the batches of the PRE-PREPARE records before this one, by digest.
    static func decode(_ bytes: [UInt8], loggedBatches: [Digest: [Request]] = [:]) throws(DecodingError) -> PersistRecord {
        var reader = ByteReader(bytes)
        let tagByte = try reader.readUInt8("wal.tag")
        guard let tag = Tag(rawValue: tagByte) else { throw DecodingError(.unknownTag(tagByte), field: "wal.tag", offset: 0) }
        let record: PersistRecord
        switch tag {
        case .preparedSharingBatch:
            let view = try reader.readView("wal.prepared.view")
            let sequence = try reader.readSequence("wal.prepared.sequence")
            let primary = try reader.readReplica("wal.prepared.primary")
            let digestOffset = reader.offset
            let digest = try reader.readDigest("wal.prepared.digest")
            let signature = try reader.readSignature("wal.prepared.signature")
            let prepares = try reader.readArray("wal.prepared.prepares", limit: reader.limits.signaturesMax, elementSizeMin: Vote.encodedByteCount) {
                (r: inout ByteReader) throws(DecodingError) in try Vote.decode(kind: .prepare, from: &r)
            }
            guard let batch = loggedBatches[digest] else {
                throw DecodingError(.invalidValue(reason: "names a batch no earlier PRE-PREPARE record holds"), field: "wal.prepared.digest", offset: digestOffset)
            }
            let prePrepare = PrePrepare(view: view, sequence: sequence, primary: primary, batch: batch, signature: signature)
            record = .prepared(PreparedCertificate(prePrepare: prePrepare, prepares: prepares))
        case .view: record = .view(try reader.readView("wal.view"), inViewChange: try reader.readBool("wal.inViewChange"))
        case .prePrepare: record = .prePrepare(try PrePrepare.decode(from: &reader))
        case .prepareVote: record = .vote(try Vote.decode(kind: .prepare, from: &reader))
        case .commitVote: record = .vote(try Vote.decode(kind: .commit, from: &reader))
        case .prepared: record = .prepared(try PreparedCertificate.decode(from: &reader))
        case .viewChange: record = .viewChange(try ViewChange.decode(from: &reader))
        case .stableCheckpoint: record = .stableCheckpoint(try CheckpointCertificate.decode(from: &reader))
        case .newView: record = .newView(try NewView.decode(from: &reader))
        }
        try reader.expectEnd("wal.record")
        return record
    }

    /// The highest sequence a record is about, or nil for records that are never obsolete.
    static func sequence(of record: PersistRecord) -> SequenceNumber? {
        switch record {
        case .view, .viewChange, .newView, .stableCheckpoint: nil
        case .prePrepare(let prePrepare): prePrepare.sequence
        case .vote(let vote): vote.sequence
        case .prepared(let certificate): certificate.sequence
        }
    }
}
