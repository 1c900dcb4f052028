#if canImport(Glibc)
import Glibc
#endif
internal import CSodium

/// An Ed25519 public key: exactly 32 bytes.
public struct PublicKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public static let byteCount = 32
    public let bytes: [UInt8]

    /// Hashes the first eight bytes, one word (the synthesized conformance fed the hasher one
    /// byte at a time, the hottest Swift symbol in replica profiles). A public key is a curve
    /// point fixed by a secret: making keys share eight bytes costs ~2^64 work per key, and the
    /// hasher is seeded per process, so this is no opening for hash flooding.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    }

    /// Byte-wise equality in one `memcmp` rather than an element loop.
    public static func == (lhs: PublicKey, rhs: PublicKey) -> Bool {
        lhs.bytes.withUnsafeBytes { l in rhs.bytes.withUnsafeBytes { r in l.count == r.count && memcmp(l.baseAddress!, r.baseAddress!, l.count) == 0 } }
    }

    /// Returns nil unless `bytes` is exactly 32 bytes long.
    public init?(bytes: [UInt8]) {
        guard bytes.count == PublicKey.byteCount else { return nil }
        self.bytes = bytes
    }

    public init?(hex: String) {
        guard let decoded = Hex.decode(hex) else { return nil }
        self.init(bytes: decoded)
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { String(hex.prefix(16)) }

    public static func < (lhs: PublicKey, rhs: PublicKey) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}

/// A detached Ed25519 signature: exactly 64 bytes.
public struct Signature: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 64
    public let bytes: [UInt8]

    /// Hashes the bytes in one call, as PublicKey does.
    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == Signature.byteCount else { return nil }
        self.bytes = bytes
    }

    /// All-zero placeholder, used only for messages that are about to be signed.
    public static let zero = Signature(bytes: [UInt8](repeating: 0, count: 64))!

    public var hex: String { Hex.encode(bytes) }
    public var description: String { String(hex.prefix(16)) }
}

/// An Ed25519 key pair. The 32-byte seed is the secret; libsodium's 64-byte secret key is
/// derived from it.
public struct KeyPair: Sendable {
    public static let seedByteCount = 32
    public let publicKey: PublicKey
    /// libsodium's expanded secret key (seed || public key), 64 bytes.
    let secretKey: [UInt8]

    public var seed: [UInt8] { Array(secretKey.prefix(KeyPair.seedByteCount)) }

    /// Derives the key pair deterministically from a 32-byte seed (RFC 8032 "private key").
    public init?(seed: [UInt8]) {
        guard seed.count == KeyPair.seedByteCount else { return nil }
        Sodium.ensureInitialised()
        var pk = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        var sk = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        let status = crypto_sign_seed_keypair(&pk, &sk, seed)
        guard status == 0 else { return nil }
        self.publicKey = PublicKey(bytes: pk)!
        self.secretKey = sk
    }

    /// A fresh key pair from libsodium's CSPRNG.
    public static func generate() -> KeyPair {
        Sodium.ensureInitialised()
        var seed = [UInt8](repeating: 0, count: seedByteCount)
        randombytes_buf(&seed, seedByteCount)
        return KeyPair(seed: seed)!
    }

    public func sign(_ message: [UInt8]) -> Signature {
        Ed25519.sign(message, with: self)
    }
}

public enum Ed25519 {
    /// Signs `message` (detached, deterministic per RFC 8032).
    public static func sign(_ message: [UInt8], with keyPair: KeyPair) -> Signature {
        Sodium.ensureInitialised()
        precondition(keyPair.secretKey.count == Int(crypto_sign_SECRETKEYBYTES))
        var signature = [UInt8](repeating: 0, count: Signature.byteCount)
        var signatureLength: UInt64 = 0
        let status = message.withUnsafeBufferPointer { messageBuffer in
            crypto_sign_detached(
                &signature, &signatureLength,
                messageBuffer.baseAddress, UInt64(messageBuffer.count),
                keyPair.secretKey)
        }
        precondition(status == 0, "crypto_sign_detached failed")
        precondition(signatureLength == UInt64(Signature.byteCount))
        return Signature(bytes: signature)!
    }

    /// True only if `signature` is a valid, canonical signature of `message` by `publicKey`.
    /// libsodium rejects non-canonical S (S >= L) and small-order public keys.
    public static func verify(_ signature: Signature, of message: [UInt8], by publicKey: PublicKey) -> Bool {
        Sodium.ensureInitialised()
        guard signature.bytes.count == Signature.byteCount,
              publicKey.bytes.count == PublicKey.byteCount else { return false }
        let status = message.withUnsafeBufferPointer { messageBuffer in
            crypto_sign_verify_detached(
                signature.bytes, messageBuffer.baseAddress, UInt64(messageBuffer.count), publicKey.bytes)
        }
        return status == 0
    }
}

/// Fills a buffer from libsodium's CSPRNG (nonces, cluster ids). Not for the consensus core,
/// which receives all randomness as input.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        Sodium.ensureInitialised()
        var buffer = [UInt8](repeating: 0, count: count)
        randombytes_buf(&buffer, count)
        return buffer
    }
}
