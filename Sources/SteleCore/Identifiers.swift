#if canImport(Glibc)
import Glibc
#endif
import SteleCrypto

/// A replica's index in the cluster, 0 ..< n. The primary of view v is replica v mod n.
public struct ReplicaID: Hashable, Comparable, Sendable, Codable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    public let value: UInt16
    public init(_ value: UInt16) { self.value = value }
    public init(integerLiteral value: UInt16) { self.value = value }
    public static func < (lhs: ReplicaID, rhs: ReplicaID) -> Bool { lhs.value < rhs.value }
    public var description: String { "r\(value)" }
    public init(from decoder: Decoder) throws { value = try decoder.singleValueContainer().decode(UInt16.self) }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}

/// A PBFT view number.
public struct View: Hashable, Comparable, Sendable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    public let value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public init(integerLiteral value: UInt64) { self.value = value }
    public static func < (lhs: View, rhs: View) -> Bool { lhs.value < rhs.value }
    public var next: View { View(value + 1) }
    public var description: String { "v\(value)" }
}

/// A PBFT sequence number; also the height of the ledger block it produces. Genesis is 0.
public struct SequenceNumber: Hashable, Comparable, Sendable, ExpressibleByIntegerLiteral, CustomStringConvertible, Strideable {
    public let value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public init(integerLiteral value: UInt64) { self.value = value }
    public static func < (lhs: SequenceNumber, rhs: SequenceNumber) -> Bool { lhs.value < rhs.value }
    public static let genesis = SequenceNumber(0)
    public var next: SequenceNumber { SequenceNumber(value + 1) }
    public var description: String { "s\(value)" }
    public func distance(to other: SequenceNumber) -> Int64 { Int64(bitPattern: other.value &- value) }
    public func advanced(by n: Int64) -> SequenceNumber { SequenceNumber(UInt64(bitPattern: Int64(bitPattern: value) &+ n)) }
}

/// A SHA-256 digest (32 bytes).
public struct Digest: Hashable, Sendable, Comparable, CustomStringConvertible {
    public static let byteCount = 32
    public let bytes: [UInt8]

    /// Hashes the first eight bytes, one word (the synthesized conformance fed the hasher one
    /// byte at a time, the hottest Swift symbol in replica profiles). A digest is a SHA-256
    /// output: digests sharing eight bytes cost ~2^32 work for a pair and ~2^64 for each further
    /// one, and the hasher is seeded per process, so this is no opening for hash flooding.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    }

    /// Byte-wise equality in one `memcmp` rather than an element loop.
    public static func == (lhs: Digest, rhs: Digest) -> Bool {
        lhs.bytes.withUnsafeBytes { l in rhs.bytes.withUnsafeBytes { r in l.count == r.count && memcmp(l.baseAddress!, r.baseAddress!, l.count) == 0 } }
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == Digest.byteCount else { return nil }
        self.bytes = bytes
    }

    public init?(hex: String) {
        guard let decoded = Hex.decode(hex) else { return nil }
        self.init(bytes: decoded)
    }

    public static let zero = Digest(bytes: [UInt8](repeating: 0, count: 32))!

    /// SHA-256 of `bytes`.
    public static func of(_ bytes: [UInt8]) -> Digest { Digest(bytes: SHA256.hash(bytes))! }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { String(hex.prefix(12)) }
    public static func < (lhs: Digest, rhs: Digest) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }
}

/// Identifies one cluster (16 random bytes chosen at `cluster init`). Every signature covers it,
/// so a message from one cluster can never be replayed into another.
public struct ClusterID: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 16
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == ClusterID.byteCount else { return nil }
        self.bytes = bytes
    }

    public init?(hex: String) {
        guard let decoded = Hex.decode(hex) else { return nil }
        self.init(bytes: decoded)
    }

    public static func random() -> ClusterID { ClusterID(bytes: SecureRandom.bytes(byteCount))! }
    public var hex: String { Hex.encode(bytes) }
    public var description: String { hex }
}
