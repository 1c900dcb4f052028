#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import SteleCrypto
import Synchronization

/// Why a message's signatures do not check out.
public struct VerificationError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: Equatable, Sendable {
        /// A signer id is not a member of the cluster.
        case unknownSigner(UInt16)
        /// The signature at `path` does not verify under the claimed signer's key.
        case badSignature
    }
    public let code: Code
    /// Where inside the message: e.g. "viewChange.prepared[2].prepares[0]".
    public let path: String

    public var description: String { "\(path): \(code)" }
}

/// Checks every Ed25519 signature in a message, nested ones included (client requests in
/// batches, prepares inside prepared certificates, view changes inside a new view, commit
/// certificates of transferred blocks), each under the key of the signer it names. This is
/// the shell's job; the consensus core then checks only quorum shapes.
public struct SignatureVerifier: Sendable {
    public let config: ClusterConfig
    /// Signatures already verified, so the same signed bytes are never verified twice (a
    /// re-sent PRE-PREPARE, a request relayed by a backup, prepared certificates in a
    /// VIEW-CHANGE). Nil: verify everything every time (the auditor, which verifies once anyway).
    public let memo: VerifiedSignatures?

    public init(config: ClusterConfig, memo: VerifiedSignatures? = nil) {
        self.config = config
        self.memo = memo
    }

    /// One signature to check.
    public struct Check: Sendable {
        public let content: SignedContent
        public let signature: Signature
        public let key: PublicKey?
        /// The path of the message holding the signature, or of the batch holding the request.
        let basePath: String
        /// The request's index in that batch, or -1 (a batch's paths are rendered only when one
        /// fails: formatting one per request showed up in backup profiles).
        let batchIndex: Int

        init(content: SignedContent, signature: Signature, key: PublicKey?, path: String, batchIndex: Int = -1) {
            self.content = content
            self.signature = signature
            self.key = key
            self.basePath = path
            self.batchIndex = batchIndex
        }

        /// Where inside the message: e.g. "prePrepare.batch[3]".
        public var path: String { batchIndex < 0 ? basePath : "\(basePath).batch[\(batchIndex)]" }
    }

    public func verify(_ message: Message) throws(VerificationError) {
        var checks = checks(for: message)
        var signingBytes = checks.map { $0.content.bytes(cluster: config.cluster) }
        var memoKeys = [Digest]()
        if let memo {
            memoKeys = checks.indices.map { VerifiedSignatures.key(signingBytes: signingBytes[$0], check: checks[$0]) }
            let known = memo.contains(memoKeys)
            let unknown = known.indices.filter { !known[$0] }
            if unknown.count < checks.count {
                checks = unknown.map { checks[$0] }
                signingBytes = unknown.map { signingBytes[$0] }
                memoKeys = unknown.map { memoKeys[$0] }
            }
        }
        if checks.count >= SignatureVerifier.parallelChecksMin {
            try verifyInParallel(checks, signingBytes: signingBytes)
        } else {
            for index in checks.indices { try verify(checks[index], signingBytes: signingBytes[index]) }
        }
        memo?.insert(memoKeys)
    }

    /// Verifies one client request's signature, or finds it in `memo`.
    public func verify(_ request: Request) -> Bool {
        (try? verify(.request(request))) != nil
    }

    /// A message carrying at least this many signatures (a PRE-PREPARE with its batch of client
    /// requests, a NEW-VIEW, a STATE-RESPONSE) is verified in chunks on every core.
    public static let parallelChecksMin = 16
    static let chunksPerCore = 4

    /// Verifies `checks` in chunks on all cores; throws the failure with the lowest index, as
    /// the sequential loop would (the other chunks stop early once any check failed).
    func verifyInParallel(_ checks: [Check], signingBytes: [[UInt8]]) throws(VerificationError) {
        let chunkCount = min(checks.count, SignatureVerifier.chunksPerCore * ProcessorCount.active)
        let firstFailure = Mutex<(index: Int, error: VerificationError)?>(nil)
        DispatchQueue.concurrentPerform(iterations: chunkCount) { chunk in
            var index = checks.count * chunk / chunkCount
            let end = checks.count * (chunk + 1) / chunkCount
            while index < end {
                if let known = firstFailure.withLock({ $0?.index }), known < index { return }
                do throws(VerificationError) {
                    try verify(checks[index], signingBytes: signingBytes[index])
                } catch {
                    firstFailure.withLock { failure in
                        if failure == nil || failure!.index > index { failure = (index, error) }
                    }
                    return
                }
                index += 1
            }
        }
        if let failure = firstFailure.withLock({ $0 }) { throw failure.error }
    }

    public func verify(_ check: Check) throws(VerificationError) {
        try verify(check, signingBytes: check.content.bytes(cluster: config.cluster))
    }

    func verify(_ check: Check, signingBytes: [UInt8]) throws(VerificationError) {
        guard let key = check.key else { throw VerificationError(code: .unknownSigner(check.content.signer), path: check.path) }
        guard Ed25519.verify(check.signature, of: signingBytes, by: key) else {
            throw VerificationError(code: .badSignature, path: check.path)
        }
    }

    /// Every signature a message carries, outermost first.
    public func checks(for message: Message) -> [Check] {
        var out = [Check]()
        switch message {
        case .request(let m): appendChecks(m, path: "request", into: &out)
        case .prePrepare(let m): appendChecks(m, path: "prePrepare", into: &out)
        case .prepare(let m): appendChecks(m, path: "prepare", into: &out)
        case .commit(let m): appendChecks(m, path: "commit", into: &out)
        case .reply(let m): out.append(replicaCheck(m.signedContent, m.signature, "reply"))
        case .checkpoint(let m): out.append(replicaCheck(m.signedContent, m.signature, "checkpoint"))
        case .viewChange(let m): appendChecks(m, path: "viewChange", into: &out)
        case .newView(let m):
            out.append(replicaCheck(m.signedContent, m.signature, "newView"))
            for (index, viewChange) in m.viewChanges.enumerated() { appendChecks(viewChange, path: "newView.viewChanges[\(index)]", into: &out) }
            for (index, prePrepare) in m.prePrepares.enumerated() { appendChecks(prePrepare, path: "newView.prePrepares[\(index)]", into: &out) }
        case .stateRequest(let m): out.append(replicaCheck(m.signedContent, m.signature, "stateRequest"))
        case .stateResponse(let m):
            out.append(replicaCheck(m.signedContent, m.signature, "stateResponse"))
            for (index, block) in m.blocks.enumerated() { appendChecks(block, path: "stateResponse.blocks[\(index)]", into: &out) }
            if let checkpoint = m.checkpoint { appendChecks(checkpoint, path: "stateResponse.checkpoint", into: &out) }
        }
        return out
    }

    func replicaCheck(_ content: SignedContent, _ signature: Signature, _ path: String) -> Check {
        Check(content: content, signature: signature, key: config.publicKey(of: ReplicaID(content.signer)), path: path)
    }

    public func appendChecks(_ request: Request, path: String, into out: inout [Check]) {
        out.append(Check(content: request.signedContent, signature: request.signature, key: request.client, path: path))
    }

    /// The checks of `batch`'s requests, at "\(path).batch[i]".
    func appendChecks(batch: [Request], path: String, into out: inout [Check]) {
        out.reserveCapacity(out.count + batch.count)
        for (index, request) in batch.enumerated() {
            out.append(Check(content: request.signedContent, signature: request.signature, key: request.client, path: path, batchIndex: index))
        }
    }

    public func appendChecks(_ prePrepare: PrePrepare, path: String, into out: inout [Check]) {
        out.append(replicaCheck(prePrepare.signedContent, prePrepare.signature, path))
        appendChecks(batch: prePrepare.batch, path: path, into: &out)
    }

    public func appendChecks(_ vote: Vote, path: String, into out: inout [Check]) {
        out.append(replicaCheck(vote.signedContent, vote.signature, path))
    }

    public func appendChecks(_ viewChange: ViewChange, path: String, into out: inout [Check]) {
        out.append(replicaCheck(viewChange.signedContent, viewChange.signature, path))
        for (index, checkpoint) in viewChange.checkpointProof.enumerated() {
            out.append(replicaCheck(checkpoint.signedContent, checkpoint.signature, "\(path).checkpointProof[\(index)]"))
        }
        for (index, certificate) in viewChange.prepared.enumerated() {
            appendChecks(certificate.prePrepare, path: "\(path).prepared[\(index)].prePrepare", into: &out)
            for (voteIndex, prepare) in certificate.prepares.enumerated() {
                appendChecks(prepare, path: "\(path).prepared[\(index)].prepares[\(voteIndex)]", into: &out)
            }
        }
    }

    public func appendChecks(_ block: CertifiedBlock, path: String, into out: inout [Check]) {
        appendChecks(batch: block.batch, path: path, into: &out)
        for (index, vote) in block.commitVotes.enumerated() { appendChecks(vote, path: "\(path).commitSignatures[\(index)]", into: &out) }
    }

    public func appendChecks(_ certificate: CheckpointCertificate, path: String, into out: inout [Check]) {
        for (index, checkpoint) in certificate.checkpoints.enumerated() {
            out.append(replicaCheck(checkpoint.signedContent, checkpoint.signature, "\(path).signatures[\(index)]"))
        }
    }
}

/// A bounded, thread-safe set of signatures that verified, keyed by
/// SHA-256(signing bytes ‖ signature ‖ public key): hashing a request's ~200 signed bytes costs
/// about a microsecond, verifying its signature about 80. Only successes are remembered, and
/// the oldest entries are forgotten first once `capacity` is reached, so a forgotten signature
/// is simply verified again.
public final class VerifiedSignatures: Sendable {
    public let capacity: Int
    private struct State {
        var keys = Set<Digest>()
        var order: [Digest?]
        var next = 0
    }
    private let state: Mutex<State>

    public init(capacity: Int = 32_768) {
        precondition(capacity > 0, "the memo must hold at least one entry")
        self.capacity = capacity
        state = Mutex(State(order: [Digest?](repeating: nil, count: capacity)))
    }

    public static func key(signingBytes: [UInt8], check: SignatureVerifier.Check) -> Digest {
        var bytes = signingBytes
        bytes.append(contentsOf: check.signature.bytes)
        bytes.append(contentsOf: check.key?.bytes ?? [])
        return Digest.of(bytes)
    }

    public var count: Int { state.withLock { $0.keys.count } }

    func contains(_ keys: [Digest]) -> [Bool] {
        state.withLock { state in keys.map { state.keys.contains($0) } }
    }

    func insert(_ keys: [Digest]) {
        guard !keys.isEmpty else { return }
        state.withLock { state in
            for key in keys where state.keys.insert(key).inserted {
                if let evicted = state.order[state.next] { state.keys.remove(evicted) }
                state.order[state.next] = key
                state.next = (state.next + 1) % capacity
            }
        }
    }
}

/// Quorum-shape checks shared by the core, the ledger verifier and the auditor.
public enum QuorumShape {
    /// The distinct member signers among `signers`, or nil if any signer repeats or is not a member.
    public static func distinctMembers(_ signers: [ReplicaID], config: ClusterConfig) -> Set<ReplicaID>? {
        var seen = Set<ReplicaID>()
        for signer in signers {
            guard config.isMember(signer), seen.insert(signer).inserted else { return nil }
        }
        return seen
    }

    /// True if `block`'s certificate has at least q (ClusterConfig.quorum) distinct member signers and none repeated
    /// or foreign (signatures themselves are checked by `SignatureVerifier`).
    public static func isValidCommitCertificate(_ block: CertifiedBlock, config: ClusterConfig) -> Bool {
        guard let signers = distinctMembers(block.commitSignatures.map(\.replica), config: config) else { return false }
        return signers.count >= config.quorum
    }

    public static func isValidCheckpointCertificate(_ certificate: CheckpointCertificate, config: ClusterConfig) -> Bool {
        guard let signers = distinctMembers(certificate.signatures.map(\.replica), config: config) else { return false }
        return signers.count >= config.quorum
    }
}

/// The number of cores this process may use (at least 1).
enum ProcessorCount {
    static let active: Int = {
        #if canImport(Glibc)
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #else
        return 1
        #endif
    }()
}
