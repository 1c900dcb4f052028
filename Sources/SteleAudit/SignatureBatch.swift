import Dispatch
import Foundation
import SteleCore
import SteleCrypto

/// One Ed25519 verification: a key, the exact 79 signed bytes and the signature.
struct SignatureCheck: Hashable, Sendable {
    let key: PublicKey
    let message: [UInt8]
    let signature: Signature

    // Hashing and comparing whole buffers at once keeps deduplication cheap: it runs for every
    // signature of every file, and element-wise hashing costs as much as a verification would
    // save in an unoptimised build.
    func hash(into hasher: inout Hasher) {
        key.bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        message.withUnsafeBytes { hasher.combine(bytes: $0) }
        signature.bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    static func == (lhs: SignatureCheck, rhs: SignatureCheck) -> Bool {
        sameBytes(lhs.signature.bytes, rhs.signature.bytes) && sameBytes(lhs.message, rhs.message) && sameBytes(lhs.key.bytes, rhs.key.bytes)
    }

    private static func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        guard !a.isEmpty else { return true }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, a.count) == 0 } }
    }
}

/// Collects the signature checks of a chunk of records, verifies each distinct one exactly once
/// (the same COMMIT or client signature appears in every replica's ledger), spread over the
/// available cores.
struct SignatureBatch {
    private(set) var checks = [SignatureCheck]()
    private var indexByCheck = [SignatureCheck: Int]()
    private(set) var results = [Bool]()
    /// Checks requested, duplicates included.
    private(set) var requestedCount = 0

    /// Registers a check; the returned index reads its result after `verifyAll`.
    mutating func add(_ check: SignatureCheck) -> Int {
        requestedCount += 1
        if let index = indexByCheck[check] { return index }
        let index = checks.count
        checks.append(check)
        indexByCheck[check] = index
        return index
    }

    func result(_ index: Int) -> Bool { results[index] }

    /// Ed25519 verifications actually performed (cache hits excluded).
    private(set) var verifiedCount = 0

    /// Verifies every registered check, `workerCount` threads at a time, skipping those whose
    /// result `cache` already holds.
    mutating func verifyAll(workerCount: Int, cache: SignatureCache? = nil) {
        guard let cache else {
            results = SignatureBatch.verify(checks, workerCount: workerCount)
            verifiedCount = checks.count
            return
        }
        let cached = cache.results(for: checks)
        let missing = cached.indices.filter { cached[$0] == nil }
        let fresh = SignatureBatch.verify(missing.map { checks[$0] }, workerCount: workerCount)
        cache.store(missing.map { checks[$0] }, fresh)
        var merged = cached.map { $0 ?? false }
        for (position, index) in missing.enumerated() { merged[index] = fresh[position] }
        results = merged
        verifiedCount = missing.count
    }

    static func verify(_ checks: [SignatureCheck], workerCount: Int) -> [Bool] {
        Parallel.map(checks, workerCount: workerCount) { verify($0) }
    }

    static func verify(_ check: SignatureCheck) -> Bool {
        Ed25519.verify(check.signature, of: check.message, by: check.key)
    }
}

/// Order-preserving parallel map over the cores, for pure and independent work (decoding
/// records, verifying signatures).
enum Parallel {
    /// Below this many elements per slice, threads cost more than they save.
    static let elementsPerSliceMin = 16

    static func map<T: Sendable, U: Sendable>(_ input: [T], workerCount: Int, _ transform: @Sendable (T) -> U) -> [U] {
        let sliceCount = min(max(workerCount, 1) * 4, input.count / elementsPerSliceMin)
        guard sliceCount > 1 else { return input.map(transform) }
        return [U](unsafeUninitializedCapacity: input.count) { buffer, initializedCount in
            // Each slice initialises a disjoint range; concurrentPerform returns when all are done.
            let output = SendablePointer(base: buffer.baseAddress!)
            let count = input.count
            DispatchQueue.concurrentPerform(iterations: sliceCount) { slice in
                for index in (count * slice / sliceCount)..<(count * (slice + 1) / sliceCount) {
                    (output.base + index).initialize(to: transform(input[index]))
                }
            }
            initializedCount = count
        }
    }
}

/// A pointer handed to worker threads that write disjoint elements of one buffer.
private struct SendablePointer<Element>: @unchecked Sendable {
    let base: UnsafeMutablePointer<Element>
}

/// Remembers verification results across audits (the simulator re-audits ledgers that only grow;
/// tests audit thousands of mutants of one ledger). Keyed on the whole check — key, signed bytes
/// and signature — so a hit is exact. Thread-safe; bounded: when full it starts over.
public final class SignatureCache: @unchecked Sendable {
    // Guarded by `lock`; `@unchecked` because NSLock does the guarding (Mutex needs macOS 15).
    private let lock = NSLock()
    private var table = [SignatureCheck: Bool]()
    public let capacity: Int

    public init(capacity: Int = 1 << 20) {
        self.capacity = capacity
    }

    public var count: Int { lock.withLock { table.count } }

    func results(for checks: [SignatureCheck]) -> [Bool?] {
        lock.withLock { checks.map { table[$0] } }
    }

    func store(_ checks: [SignatureCheck], _ results: [Bool]) {
        lock.withLock {
            if table.count + checks.count > capacity { table.removeAll(keepingCapacity: true) }
            for (check, result) in zip(checks, results) { table[check] = result }
        }
    }
}
