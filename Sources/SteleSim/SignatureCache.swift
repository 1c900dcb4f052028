import SteleCore
import SteleCrypto

/// Memoised Ed25519 verification for the simulated shells, clients and the safety checker.
///
/// A message broadcast to n-1 replicas, duplicated by the network, carried again inside a
/// VIEW-CHANGE, a NEW-VIEW and a commit certificate is still verified once: results are keyed
/// by SHA-256(signing bytes || signature || public key). The cache only remembers answers, so
/// clearing it (when it reaches `entryCountMax`) never changes what a run does.
public struct SignatureCache: Sendable {
    public let verifier: SignatureVerifier
    public let entryCountMax: Int
    private var results: [Digest: Bool] = [:]
    public private(set) var hitCount = 0
    public private(set) var verificationCount = 0

    public init(config: ClusterConfig, entryCountMax: Int = 200_000) {
        precondition(entryCountMax > 0, "the cache must hold at least one entry")
        self.verifier = SignatureVerifier(config: config)
        self.entryCountMax = entryCountMax
    }

    /// True if every signature in `message`, nested ones included, verifies.
    public mutating func isAuthentic(_ message: Message) -> Bool {
        firstFailure(verifier.checks(for: message)) == nil
    }

    /// The path of the first check that fails, or nil if all pass.
    public mutating func firstFailure(_ checks: [SignatureVerifier.Check]) -> String? {
        for check in checks where !verify(check) {
            return check.path
        }
        return nil
    }

    public mutating func verify(_ check: SignatureVerifier.Check) -> Bool {
        guard let key = check.key else { return false }
        let signingBytes = check.content.bytes(cluster: verifier.config.cluster)
        let cacheKey = VerifiedSignatures.key(signingBytes: signingBytes, check: check)
        if let known = results[cacheKey] {
            hitCount += 1
            return known
        }
        let valid = Ed25519.verify(check.signature, of: signingBytes, by: key)
        verificationCount += 1
        if results.count >= entryCountMax { results.removeAll(keepingCapacity: true) }
        results[cacheKey] = valid
        return valid
    }

    /// Checks of a client request alone (its one signature).
    public mutating func isAuthentic(_ request: Request) -> Bool {
        var checks = [SignatureVerifier.Check]()
        verifier.appendChecks(request, path: "request", into: &checks)
        return firstFailure(checks) == nil
    }
}
