internal import CSHA256
internal import CSodium

/// Which code computes SHA-256. Both give the same digests (SHA256Tests checks
/// them against each other and against FIPS 180-4 vectors); the SHA extensions
/// are used when the CPU has them because they are several times faster
/// (docs/performance-log.md, round 5).
public enum SHA256Implementation: Sendable, CaseIterable {
    /// The x86 SHA instructions (CSHA256), when this CPU has them.
    case shaExtensions
    /// libsodium's portable crypto_hash_sha256.
    case libsodium

    /// The fastest implementation this CPU supports; chosen once per process
    /// (CPUID is asked again only by `isAvailable`).
    public static let preferred: SHA256Implementation =
        stele_sha256_accelerated() != 0 ? .shaExtensions : .libsodium

    /// Whether this CPU can run `self`.
    public var isAvailable: Bool {
        switch self {
        case .shaExtensions: return stele_sha256_accelerated() != 0
        case .libsodium: return true
        }
    }
}

/// Incremental SHA-256.
public struct SHA256Hasher: ~Copyable {
    public static let byteCount = 32
    private let implementation: SHA256Implementation
    private var sodiumState = crypto_hash_sha256_state()
    private var acceleratedState = stele_sha256_state()

    public init(using implementation: SHA256Implementation = .preferred) {
        precondition(implementation == .preferred || implementation.isAvailable, "SHA-256 implementation \(implementation) is not available on this CPU")
        self.implementation = implementation
        switch implementation {
        case .shaExtensions:
            stele_sha256_init(&acceleratedState)
        case .libsodium:
            Sodium.ensureInitialised()
            let status = crypto_hash_sha256_init(&sodiumState)
            precondition(status == 0)
        }
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { update($0) }
    }

    public mutating func update(_ bytes: UnsafeBufferPointer<UInt8>) {
        switch implementation {
        case .shaExtensions:
            stele_sha256_update(&acceleratedState, bytes.baseAddress, bytes.count)
        case .libsodium:
            let status = crypto_hash_sha256_update(&sodiumState, bytes.baseAddress, UInt64(bytes.count))
            precondition(status == 0)
        }
    }

    public consuming func finalize() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: SHA256Hasher.byteCount) { buffer, count in
            switch implementation {
            case .shaExtensions:
                stele_sha256_final(&acceleratedState, buffer.baseAddress!)
            case .libsodium:
                let status = crypto_hash_sha256_final(&sodiumState, buffer.baseAddress!)
                precondition(status == 0)
            }
            count = SHA256Hasher.byteCount
        }
    }
}

public enum SHA256 {
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBufferPointer { hash($0) }
    }

    public static func hash(_ bytes: UnsafeBufferPointer<UInt8>, using implementation: SHA256Implementation = .preferred) -> [UInt8] {
        precondition(implementation == .preferred || implementation.isAvailable, "SHA-256 implementation \(implementation) is not available on this CPU")
        return [UInt8](unsafeUninitializedCapacity: SHA256Hasher.byteCount) { out, count in
            switch implementation {
            case .shaExtensions:
                stele_sha256(bytes.baseAddress, bytes.count, out.baseAddress!)
            case .libsodium:
                Sodium.ensureInitialised()
                let status = crypto_hash_sha256(out.baseAddress!, bytes.baseAddress, UInt64(bytes.count))
                precondition(status == 0)
            }
            count = SHA256Hasher.byteCount
        }
    }
}
