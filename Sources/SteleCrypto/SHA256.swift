internal import CSodium

/// SHA-256 through libsodium (crypto_hash_sha256).
public struct SHA256Hasher: ~Copyable {
    public static let byteCount = 32
    private var state = crypto_hash_sha256_state()

    public init() {
        Sodium.ensureInitialised()
        let status = crypto_hash_sha256_init(&state)
        precondition(status == 0)
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { update($0) }
    }

    public mutating func update(_ bytes: UnsafeBufferPointer<UInt8>) {
        let status = crypto_hash_sha256_update(&state, bytes.baseAddress, UInt64(bytes.count))
        precondition(status == 0)
    }

    public consuming func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: SHA256Hasher.byteCount)
        let status = crypto_hash_sha256_final(&state, &out)
        precondition(status == 0)
        return out
    }
}

public enum SHA256 {
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        Sodium.ensureInitialised()
        var out = [UInt8](repeating: 0, count: SHA256Hasher.byteCount)
        let status = bytes.withUnsafeBufferPointer { buffer in
            crypto_hash_sha256(&out, buffer.baseAddress, UInt64(buffer.count))
        }
        precondition(status == 0)
        return out
    }
}
