import SteleCore

/// The safety check run after every simulation: pure over the honest replicas' committed logs
/// and the cluster configuration (a `SignatureCache` only memoises Ed25519 answers).
///
/// Per ledger: heights contiguous from 1; prevHash chaining from the genesis hash; every commit
/// certificate with at least q distinct member signers whose signatures verify; every client
/// signature valid; no (client, timestamp) twice; stable checkpoints certified and equal to the
/// chain head at their sequence. Across ledgers: one block hash per height — and when two
/// differ, the replicas that signed commit certificates for both are named as colluders.
public struct SafetyChecker: Sendable {
    public let config: ClusterConfig
    /// At most this many violations are reported per run (the first ones found).
    public let violationsMax: Int

    public init(config: ClusterConfig, violationsMax: Int = 32) {
        precondition(violationsMax > 0, "report at least one violation")
        self.config = config
        self.violationsMax = violationsMax
    }

    public func check(logs: [ReplicaID: [CertifiedBlock]], checkpoints: [ReplicaID: [CheckpointCertificate]] = [:]) -> [InvariantViolation] {
        var cache = SignatureCache(config: config)
        return check(logs: logs, checkpoints: checkpoints, cache: &cache)
    }

    public func check(
        logs: [ReplicaID: [CertifiedBlock]], checkpoints: [ReplicaID: [CheckpointCertificate]] = [:], cache: inout SignatureCache
    ) -> [InvariantViolation] {
        var violations = [InvariantViolation]()
        var verified = [CertifiedBlock: InvariantViolation.Code?]()
        for replica in logs.keys.sorted() {
            let log = logs[replica] ?? []
            violations += checkChain(replica: replica, log: log)
            violations += checkCertificates(replica: replica, log: log, cache: &cache, verified: &verified)
            violations += checkDuplicates(replica: replica, log: log)
            violations += checkCheckpoints(replica: replica, certificates: checkpoints[replica] ?? [], log: log, cache: &cache)
        }
        violations += checkAgreement(logs: logs, cache: &cache)
        return Array(violations.prefix(violationsMax))
    }

    // MARK: - One ledger

    func checkChain(replica: ReplicaID, log: [CertifiedBlock]) -> [InvariantViolation] {
        var previousHash = config.genesis.hash
        for (index, block) in log.enumerated() {
            let expectedHeight = SequenceNumber(UInt64(index + 1))
            guard block.height == expectedHeight else {
                return [InvariantViolation(.brokenChain, replicas: [replica], height: block.height,
                                           detail: "ledger position \(index + 1) holds height \(block.height.value)")]
            }
            guard block.prevHash == previousHash else {
                return [InvariantViolation(.brokenChain, replicas: [replica], height: block.height,
                                           detail: "prevHash \(block.prevHash) is not the hash \(previousHash) of height \(index)")]
            }
            previousHash = block.hash
        }
        return []
    }

    func checkCertificates(
        replica: ReplicaID, log: [CertifiedBlock], cache: inout SignatureCache, verified: inout [CertifiedBlock: InvariantViolation.Code?]
    ) -> [InvariantViolation] {
        var violations = [InvariantViolation]()
        var reported = Set<InvariantViolation.Code>()
        for block in log {
            let failure: InvariantViolation.Code?
            if let known = verified[block] {
                failure = known
            } else {
                failure = certificateFailure(block, cache: &cache)
                verified[block] = failure
            }
            guard let failure, reported.insert(failure).inserted else { continue }
            violations.append(InvariantViolation(failure, replicas: [replica], height: block.height, detail: describe(failure, block)))
        }
        return violations
    }

    func certificateFailure(_ block: CertifiedBlock, cache: inout SignatureCache) -> InvariantViolation.Code? {
        guard QuorumShape.isValidCommitCertificate(block, config: config) else { return .uncertifiedBlock }
        var voteChecks = [SignatureVerifier.Check]()
        for vote in block.commitVotes {
            cache.verifier.appendChecks(vote, path: "commit", into: &voteChecks)
        }
        if cache.firstFailure(voteChecks) != nil { return .badCommitSignature }
        var requestChecks = [SignatureVerifier.Check]()
        for request in block.batch {
            cache.verifier.appendChecks(request, path: "request", into: &requestChecks)
        }
        if cache.firstFailure(requestChecks) != nil { return .badClientSignature }
        return nil
    }

    func describe(_ code: InvariantViolation.Code, _ block: CertifiedBlock) -> String {
        switch code {
        case .uncertifiedBlock:
            let signers = block.commitSignatures.map(\.replica.description).joined(separator: ",")
            return "commit certificate signers [\(signers)] are not \(config.quorum) distinct members"
        case .badCommitSignature: return "a commit signature of block \(block.hash) does not verify"
        case .badClientSignature: return "a client request in block \(block.hash) has an invalid signature"
        default: return "block \(block.hash)"
        }
    }

    struct RequestKey: Hashable {
        let client: [UInt8]
        let timestamp: UInt64
    }

    func checkDuplicates(replica: ReplicaID, log: [CertifiedBlock]) -> [InvariantViolation] {
        var firstHeight = [RequestKey: SequenceNumber]()
        for block in log {
            for request in block.batch {
                let key = RequestKey(client: request.client.bytes, timestamp: request.timestamp)
                if let earlier = firstHeight[key] {
                    return [InvariantViolation(.duplicateRequest, replicas: [replica], height: block.height,
                                               detail: "client \(request.client) timestamp \(request.timestamp) is at height \(earlier.value) and again at \(block.height.value)")]
                }
                firstHeight[key] = block.height
            }
        }
        return []
    }

    func checkCheckpoints(
        replica: ReplicaID, certificates: [CheckpointCertificate], log: [CertifiedBlock], cache: inout SignatureCache
    ) -> [InvariantViolation] {
        for certificate in certificates {
            if let problem = checkpointProblem(certificate, log: log, cache: &cache) {
                return [InvariantViolation(.badCheckpoint, replicas: [replica], height: certificate.sequence, detail: problem)]
            }
        }
        return []
    }

    func checkpointProblem(_ certificate: CheckpointCertificate, log: [CertifiedBlock], cache: inout SignatureCache) -> String? {
        guard QuorumShape.isValidCheckpointCertificate(certificate, config: config) else {
            return "checkpoint certificate at \(certificate.sequence.value) lacks \(config.quorum) distinct member signers"
        }
        var checks = [SignatureVerifier.Check]()
        cache.verifier.appendChecks(certificate, path: "checkpoint", into: &checks)
        if let path = cache.firstFailure(checks) { return "checkpoint signature \(path) does not verify" }
        let sequence = certificate.sequence.value
        guard sequence >= 1, sequence <= UInt64(log.count) else { return nil }
        let block = log[Int(sequence) - 1]
        guard block.height == certificate.sequence, block.hash != certificate.stateDigest else { return nil }
        return "stable checkpoint at \(sequence) names state \(certificate.stateDigest) but the ledger's block there is \(block.hash)"
    }

    // MARK: - Across ledgers

    func checkAgreement(logs: [ReplicaID: [CertifiedBlock]], cache: inout SignatureCache) -> [InvariantViolation] {
        let replicas = logs.keys.sorted()
        let heightMax = replicas.map { logs[$0]?.count ?? 0 }.max() ?? 0
        guard heightMax > 0 else { return [] }
        for index in 0..<heightMax {
            var holders = [Digest: [ReplicaID]]()
            var blocks = [Digest: CertifiedBlock]()
            for replica in replicas {
                guard let log = logs[replica], index < log.count else { continue }
                let block = log[index]
                holders[block.hash, default: []].append(replica)
                blocks[block.hash] = block
            }
            if holders.count > 1 {
                return [forkViolation(height: SequenceNumber(UInt64(index + 1)), holders: holders, blocks: blocks, cache: &cache)]
            }
        }
        return []
    }

    func forkViolation(height: SequenceNumber, holders: [Digest: [ReplicaID]], blocks: [Digest: CertifiedBlock], cache: inout SignatureCache) -> InvariantViolation {
        let hashes = holders.keys.sorted()
        var signedBoth = Set<ReplicaID>()
        var sameViewEquivocators = Set<ReplicaID>()
        for (position, first) in hashes.enumerated() {
            for second in hashes[(position + 1)...] {
                guard let a = blocks[first], let b = blocks[second] else { continue }
                let both = validSigners(a, cache: &cache).intersection(validSigners(b, cache: &cache))
                signedBoth.formUnion(both)
                if a.certificateView == b.certificateView { sameViewEquivocators.formUnion(both) }
            }
        }
        // Two COMMITs for one (view, sequence) with different digests prove equivocation; across
        // views an honest replica can be misled into signing both, so those are named only when
        // no same-view proof exists.
        let colluders = sameViewEquivocators.isEmpty ? signedBoth : sameViewEquivocators
        let involved = Set(holders.values.joined()).union(colluders)
        let holdings = hashes.map { hash in
            "\((holders[hash] ?? []).map(\.description).joined(separator: ",")) hold \(hash) (certified in \(blocks[hash]?.certificateView.description ?? "?"))"
        }
        var detail = "conflicting blocks: " + holdings.joined(separator: "; ")
        if colluders.isEmpty {
            detail += "; no replica signed commit certificates for both"
        } else {
            let names = colluders.sorted().map(\.description).joined(separator: ",")
            detail += sameViewEquivocators.isEmpty
                ? "; commit certificates for both (different views) signed by \(names)"
                : "; \(names) signed COMMITs for both digests in the same view"
        }
        return InvariantViolation(.fork, replicas: Array(involved), colluders: Array(colluders), height: height, detail: detail)
    }

    /// The members whose commit signatures on `block` verify.
    func validSigners(_ block: CertifiedBlock, cache: inout SignatureCache) -> Set<ReplicaID> {
        var signers = Set<ReplicaID>()
        for vote in block.commitVotes where config.isMember(vote.replica) {
            var checks = [SignatureVerifier.Check]()
            cache.verifier.appendChecks(vote, path: "commit", into: &checks)
            if cache.firstFailure(checks) == nil { signers.insert(vote.replica) }
        }
        return signers
    }
}
