import SteleCore
import SteleCrypto

// The ledger file, at the byte level (docs/ledger-format.md is the full specification):
//
//   file header, 16 bytes:
//     magic        8 bytes  "STELELDG"
//     version      u16      1
//     reserved     6 bytes  zero
//   then records, back to back, the first of which is the genesis record:
//     length       u32      byte count of (type || body), 1 ... recordBytesMax
//     type         u8       1 genesis, 2 block, 3 checkpoint certificate
//     body         length-1 bytes: Genesis / CertifiedBlock / CheckpointCertificate encoding
//     checksum     8 bytes  first 8 bytes of SHA-256(type || body)
//
// All integers are big-endian. The checksum detects torn and partial writes; integrity against
// tampering comes from the hash chain and the signatures, never from the checksum.

public enum LedgerFormat {
    public static let magic: [UInt8] = Array("STELELDG".utf8)
    public static let version: UInt16 = 1
    public static let headerByteCount = 16
    public static let recordOverheadByteCount = 4 + 8   // length prefix + checksum
    public static let checksumByteCount = 8
    /// Largest (type || body) accepted; checked before anything is allocated.
    public static let recordBytesMax = 16 * 1024 * 1024
    /// Byte offset of the first (genesis) record.
    public static let firstRecordOffset = UInt64(headerByteCount)
    /// Bytes of the length prefix.
    public static let lengthByteCount = 4

    public static func header() -> [UInt8] {
        var writer = ByteWriter(capacity: headerByteCount)
        writer.writeFixed(magic)
        writer.write(version)
        writer.writeFixed([UInt8](repeating: 0, count: 6))
        return writer.bytes
    }

    public static func checksum(_ typeAndBody: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(typeAndBody).prefix(checksumByteCount))
    }
}

/// One record of a ledger file.
public enum LedgerRecord: Hashable, Sendable {
    case genesis(Genesis)
    case block(CertifiedBlock)
    case checkpoint(CheckpointCertificate)

    public enum Kind: UInt8, Sendable {
        case genesis = 1
        case block = 2
        case checkpoint = 3
    }

    public var kind: Kind {
        switch self {
        case .genesis: .genesis
        case .block: .block
        case .checkpoint: .checkpoint
        }
    }

    /// The framed bytes: length, type, body, checksum.
    public func framed() -> [UInt8] {
        LedgerRecord.frame(typeAndBody: typeAndBody())
    }

    /// (type || body): what the length field counts and the checksum covers.
    public func typeAndBody() -> [UInt8] {
        var body = ByteWriter(capacity: 512)
        body.write(kind.rawValue)
        switch self {
        case .genesis(let genesis): genesis.encode(into: &body)
        case .block(let block): block.encode(into: &body)
        case .checkpoint(let certificate): certificate.encode(into: &body)
        }
        return body.bytes
    }

    /// Frames (type || body): length, type and body, checksum. The caller has checked that
    /// `typeAndBody.count` is at most `LedgerFormat.recordBytesMax`.
    public static func frame(typeAndBody: [UInt8]) -> [UInt8] {
        precondition(!typeAndBody.isEmpty && typeAndBody.count <= LedgerFormat.recordBytesMax, "record larger than the format allows")
        var writer = ByteWriter(capacity: typeAndBody.count + LedgerFormat.recordOverheadByteCount)
        writer.write(UInt32(typeAndBody.count))
        writer.writeFixed(typeAndBody)
        writer.writeFixed(LedgerFormat.checksum(typeAndBody))
        return writer.bytes
    }

    /// Decodes (type || body) whose checksum already matched.
    public static func decode(typeAndBody: [UInt8], limits: CodecLimits = .standard) throws(DecodingError) -> LedgerRecord {
        var reader = ByteReader(typeAndBody, limits: limits)
        let typeByte = try reader.readUInt8("record.type")
        guard let kind = Kind(rawValue: typeByte) else {
            throw DecodingError(.unknownTag(typeByte), field: "record.type", offset: 0)
        }
        let record: LedgerRecord
        switch kind {
        case .genesis: record = .genesis(try Genesis.decode(from: &reader))
        case .block: record = .block(try CertifiedBlock.decode(from: &reader))
        case .checkpoint: record = .checkpoint(try CheckpointCertificate.decode(from: &reader))
        }
        try reader.expectEnd("record")
        return record
    }
}
