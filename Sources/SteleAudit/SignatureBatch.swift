import Dispatch
import SteleCore
import SteleCrypto

/// One Ed25519 verification: a key, the exact 79 signed bytes and the signature.
struct SignatureCheck: Hashable, Sendable {
    let key: PublicKey
    let message: [UInt8]
    let signature: Signature
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

    /// Verifies every registered check, `workerCount` threads at a time.
    mutating func verifyAll(workerCount: Int) {
        results = SignatureBatch.verify(checks, workerCount: workerCount)
    }

    static func verify(_ checks: [SignatureCheck], workerCount: Int) -> [Bool] {
        var results = [Bool](repeating: false, count: checks.count)
        let sliceCount = min(max(workerCount, 1) * 4, max(checks.count / 16, 1))
        if sliceCount <= 1 {
            for (index, check) in checks.enumerated() { results[index] = verify(check) }
            return results
        }
        results.withUnsafeMutableBufferPointer { buffer in
            // Each slice writes a disjoint range of `buffer`; concurrentPerform returns only
            // after every slice is done.
            let output = SendablePointer(base: buffer.baseAddress!)
            let count = checks.count
            DispatchQueue.concurrentPerform(iterations: sliceCount) { slice in
                let range = (count * slice / sliceCount)..<(count * (slice + 1) / sliceCount)
                for index in range { output.base[index] = verify(checks[index]) }
            }
        }
        return results
    }

    static func verify(_ check: SignatureCheck) -> Bool {
        Ed25519.verify(check.signature, of: check.message, by: check.key)
    }
}

/// A pointer handed to worker threads that write disjoint elements of one buffer.
private struct SendablePointer: @unchecked Sendable {
    let base: UnsafeMutablePointer<Bool>
}
