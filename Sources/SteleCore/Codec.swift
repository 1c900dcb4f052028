import SteleCrypto

/// Why bytes could not be decoded. Compared by `code`; `field` names where decoding stopped and
/// `offset` is the byte offset of that field inside the decoded buffer.
public struct DecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: Equatable, Sendable {
        /// Fewer bytes remained than the field needs.
        case truncated(needed: Int, remaining: Int)
        /// A length or count exceeds its limit (checked before allocating).
        case lengthTooLarge(length: UInt64, limit: Int)
        /// The buffer has bytes after a complete value.
        case trailingBytes(count: Int)
        /// A tag byte names no known variant.
        case unknownTag(UInt8)
        /// A codec version this build does not understand.
        case unsupportedVersion(UInt8)
        /// A field has a value outside its domain.
        case invalidValue(reason: String)
    }

    public let code: Code
    public let field: String
    public let offset: Int

    public init(_ code: Code, field: String, offset: Int) {
        self.code = code
        self.field = field
        self.offset = offset
    }

    public var description: String { "cannot decode \(field) at byte \(offset): \(code)" }
}

/// Limits applied while decoding. Every variable-length field is checked against one of these
/// before anything is allocated for it.
public struct CodecLimits: Sendable, Equatable {
    /// Largest transaction payload.
    public var payloadBytesMax: Int = 64 * 1024
    /// Most requests in one batch.
    public var batchCountMax: Int = 4096
    /// Most signatures in a certificate (bounded by the largest cluster).
    public var signaturesMax: Int = 256
    /// Most prepared certificates in one VIEW-CHANGE (the watermark window bounds it).
    public var preparedCertificatesMax: Int = 1024
    /// Most VIEW-CHANGE messages in one NEW-VIEW.
    public var viewChangesMax: Int = 256
    /// Most pre-prepares in a NEW-VIEW's O set.
    public var newViewPrePreparesMax: Int = 1024
    /// Most blocks in one state-transfer response.
    public var stateTransferBlocksMax: Int = 256
    /// Most replicas in a cluster / genesis block.
    public var membersMax: Int = 256
    /// Largest opaque byte field not covered above (reply results, error text).
    public var opaqueBytesMax: Int = 64 * 1024

    public init() {}
    public static let standard = CodecLimits()
}

/// Appends the canonical big-endian encoding of values to a byte array.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func write(_ value: UInt8) { bytes.append(value) }
    public mutating func write(_ value: UInt16) { writeInteger(value) }
    public mutating func write(_ value: UInt32) { writeInteger(value) }
    public mutating func write(_ value: UInt64) { writeInteger(value) }
    public mutating func write(_ value: Bool) { bytes.append(value ? 1 : 0) }

    private mutating func writeInteger<T: FixedWidthInteger>(_ value: T) {
        var bigEndian = value.bigEndian
        withUnsafeBytes(of: &bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// Fixed-width bytes, no length prefix (keys, digests, signatures).
    public mutating func writeFixed(_ value: [UInt8]) { bytes.append(contentsOf: value) }

    /// UInt32 length prefix, then the bytes.
    public mutating func writeLengthPrefixed(_ value: [UInt8]) {
        write(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    /// UInt32 element count, then each element.
    public mutating func writeArray<T>(_ values: [T], _ writeElement: (inout ByteWriter, T) -> Void) {
        write(UInt32(values.count))
        for value in values { writeElement(&self, value) }
    }

    public mutating func write(_ value: View) { write(value.value) }
    public mutating func write(_ value: SequenceNumber) { write(value.value) }
    public mutating func write(_ value: ReplicaID) { write(value.value) }
    public mutating func write(_ value: Digest) { writeFixed(value.bytes) }
    public mutating func write(_ value: PublicKey) { writeFixed(value.bytes) }
    public mutating func write(_ value: Signature) { writeFixed(value.bytes) }
    public mutating func write(_ value: ClusterID) { writeFixed(value.bytes) }
}

/// Reads canonical big-endian values with bounds checks; every failure is a `DecodingError`.
public struct ByteReader {
    public let bytes: [UInt8]
    public private(set) var offset: Int
    public let limits: CodecLimits

    public init(_ bytes: [UInt8], limits: CodecLimits = .standard) {
        self.bytes = bytes
        self.offset = 0
        self.limits = limits
    }

    public var remaining: Int { bytes.count - offset }

    private func require(_ count: Int, _ field: String) throws(DecodingError) {
        guard count <= remaining else {
            throw DecodingError(.truncated(needed: count, remaining: remaining), field: field, offset: offset)
        }
    }

    public mutating func readUInt8(_ field: String) throws(DecodingError) -> UInt8 {
        try require(1, field)
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readUInt16(_ field: String) throws(DecodingError) -> UInt16 { try readInteger(field) }
    public mutating func readUInt32(_ field: String) throws(DecodingError) -> UInt32 { try readInteger(field) }
    public mutating func readUInt64(_ field: String) throws(DecodingError) -> UInt64 { try readInteger(field) }

    private mutating func readInteger<T: FixedWidthInteger>(_ field: String) throws(DecodingError) -> T {
        let size = MemoryLayout<T>.size
        try require(size, field)
        var value: T = 0
        for index in 0..<size { value = value << 8 | T(bytes[offset + index]) }
        offset += size
        return value
    }

    public mutating func readBool(_ field: String) throws(DecodingError) -> Bool {
        let start = offset
        switch try readUInt8(field) {
        case 0: return false
        case 1: return true
        case let other: throw DecodingError(.invalidValue(reason: "boolean byte \(other)"), field: field, offset: start)
        }
    }

    public mutating func readFixed(_ count: Int, _ field: String) throws(DecodingError) -> [UInt8] {
        try require(count, field)
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// UInt32 length prefix checked against `limit` and the remaining bytes before allocating.
    public mutating func readLengthPrefixed(_ field: String, limit: Int) throws(DecodingError) -> [UInt8] {
        let start = offset
        let length = try readUInt32(field)
        guard Int(length) <= limit else {
            throw DecodingError(.lengthTooLarge(length: UInt64(length), limit: limit), field: field, offset: start)
        }
        return try readFixed(Int(length), field)
    }

    /// UInt32 count checked against `limit` and against `remaining / elementSizeMin` before
    /// reserving, so a hostile count can never cause a large allocation.
    public mutating func readArray<T>(
        _ field: String, limit: Int, elementSizeMin: Int,
        _ readElement: (inout ByteReader) throws(DecodingError) -> T
    ) throws(DecodingError) -> [T] {
        let start = offset
        let count = Int(try readUInt32(field))
        guard count <= limit else {
            throw DecodingError(.lengthTooLarge(length: UInt64(count), limit: limit), field: field, offset: start)
        }
        guard count * max(elementSizeMin, 1) <= remaining else {
            throw DecodingError(.truncated(needed: count * max(elementSizeMin, 1), remaining: remaining), field: field, offset: offset)
        }
        var values = [T]()
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try readElement(&self)) }
        return values
    }

    public mutating func readView(_ field: String) throws(DecodingError) -> View { View(try readUInt64(field)) }
    public mutating func readSequence(_ field: String) throws(DecodingError) -> SequenceNumber { SequenceNumber(try readUInt64(field)) }
    public mutating func readReplica(_ field: String) throws(DecodingError) -> ReplicaID { ReplicaID(try readUInt16(field)) }
    public mutating func readDigest(_ field: String) throws(DecodingError) -> Digest { Digest(bytes: try readFixed(Digest.byteCount, field))! }
    public mutating func readPublicKey(_ field: String) throws(DecodingError) -> PublicKey { PublicKey(bytes: try readFixed(PublicKey.byteCount, field))! }
    public mutating func readSignature(_ field: String) throws(DecodingError) -> Signature { Signature(bytes: try readFixed(Signature.byteCount, field))! }
    public mutating func readClusterID(_ field: String) throws(DecodingError) -> ClusterID { ClusterID(bytes: try readFixed(ClusterID.byteCount, field))! }

    /// Fails unless every byte was consumed.
    public func expectEnd(_ field: String) throws(DecodingError) {
        guard remaining == 0 else {
            throw DecodingError(.trailingBytes(count: remaining), field: field, offset: offset)
        }
    }
}
