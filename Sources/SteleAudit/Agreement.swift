import SteleCore
import SteleLedger

/// Agreement across files: every height two ledgers hold must have one block hash. A ledger that
/// is a strict prefix of another is lagging (info). Where two ledgers diverge, the two blocks at
/// the first divergent height are re-read and their certificates compared (forensics).
struct Agreement {
    struct Chain {
        let source: LedgerSource
        let index: ChainIndex
        let chainBroken: Bool
        var name: String { source.name }
    }

    struct Outcome {
        var findings = [Finding]()
        var lags = [String: Lag]()
    }

    let config: ClusterConfig
    let chains: [Chain]

    func compare() throws(AuditError) -> Outcome {
        var outcome = Outcome()
        var agrees = Array(repeating: Array(repeating: false, count: chains.count), count: chains.count)
        var reported = [DivergenceKey: Int]()
        for i in chains.indices {
            for j in chains.indices where j > i {
                guard let height = firstDivergence(chains[i], chains[j]) else {
                    agrees[i][j] = true
                    agrees[j][i] = true
                    continue
                }
                let key = DivergenceKey(height: height, hashes: [chains[i].index.hash(at: height)!, chains[j].index.hash(at: height)!])
                if let position = reported[key] {
                    outcome.findings[position] = outcome.findings[position].alsoSeen(in: chains[i].name, chains[j].name)
                    continue
                }
                reported[key] = outcome.findings.count
                outcome.findings.append(try divergence(chains[i], chains[j], at: height))
            }
        }
        addLags(agrees: agrees, to: &outcome)
        return outcome
    }

    /// Unordered pair of hashes at one height: one fork seen by several file pairs is one finding.
    struct DivergenceKey: Hashable {
        let height: UInt64
        let hashes: Set<HashWords>
    }

    /// The first height both chains hold with different hashes, or nil if they agree.
    func firstDivergence(_ a: Chain, _ b: Chain) -> UInt64? {
        let common = min(a.index.height, b.index.height)
        guard common > 0 else { return nil }
        // Intact hash chains that agree at the top agree everywhere below.
        if !a.chainBroken, !b.chainBroken, a.index.hash(at: common) == b.index.hash(at: common) { return nil }
        for height in 1...common where a.index.hash(at: height) != b.index.hash(at: height) {
            return height
        }
        return nil
    }

    func addLags(agrees: [[Bool]], to outcome: inout Outcome) {
        for i in chains.indices {
            let behind = chains.indices
                .filter { agrees[i][$0] && chains[$0].index.height > chains[i].index.height }
                .max { chains[$0].index.height < chains[$1].index.height }
            guard let j = behind else { continue }
            let lag = Lag(file: chains[j].name, height: chains[j].index.height, blockCount: chains[j].index.height - chains[i].index.height)
            outcome.lags[chains[i].name] = lag
            outcome.findings.append(Finding(
                severity: FindingCode.lagging.defaultSeverity, code: .lagging, file: chains[i].name,
                height: chains[i].index.height, byteOffset: nil,
                message: "height \(chains[i].index.height) is a prefix of \(chains[j].name) (height \(lag.height)): \(lag.blockCount) block(s) behind"))
        }
    }

    // MARK: - Forensics

    func divergence(_ a: Chain, _ b: Chain, at height: UInt64) throws(AuditError) -> Finding {
        let offsetA = a.index.offset(at: height)!
        let offsetB = b.index.offset(at: height)!
        guard case .block(let blockA)? = try LedgerScanner.record(at: offsetA, in: a.source),
              case .block(let blockB)? = try LedgerScanner.record(at: offsetB, in: b.source) else {
            return Finding(severity: .violation, code: .divergentBlock, file: a.name, height: height, byteOffset: offsetA,
                           message: "\(a.name) and \(b.name) hold different blocks at height \(height); the blocks could not be re-read for forensics")
        }
        let forensics = Forensics.compare(blockA, in: a.name, at: offsetA, blockB, in: b.name, at: offsetB, config: config)
        let bothCertified = forensics.sides.allSatisfy(\.certified)
        return Finding(
            severity: .violation, code: bothCertified ? .fork : .divergentBlock, file: a.name, height: height, byteOffset: offsetA,
            replicas: forensics.equivocators.map { ReplicaID($0) },
            message: "\(a.name) and \(b.name) first disagree at height \(height) (block \(forensics.sides[0].blockHash.prefix(12)) vs \(forensics.sides[1].blockHash.prefix(12))). "
                + forensics.explanation,
            forensics: forensics)
    }
}

/// How far a ledger is behind the longest ledger it agrees with.
public struct Lag: Sendable, Hashable, Codable {
    /// The longer ledger this one is a prefix of.
    public let file: String
    public let height: UInt64
    public let blockCount: UInt64
}

extension Finding {
    /// The same finding, its message noting one more pair of files that shows it.
    func alsoSeen(in first: String, _ second: String) -> Finding {
        Finding(severity: severity, code: code, file: file, height: height, byteOffset: byteOffset,
                replicas: replicas.map { ReplicaID($0) }, message: message + " Also between \(first) and \(second).", forensics: forensics)
    }
}

extension Forensics {
    /// Compares the commit certificates of two blocks at one height.
    static func compare(
        _ a: CertifiedBlock, in fileA: String, at offsetA: UInt64,
        _ b: CertifiedBlock, in fileB: String, at offsetB: UInt64,
        config: ClusterConfig
    ) -> Forensics {
        let sideA = side(a, file: fileA, offset: offsetA, config: config)
        let sideB = side(b, file: fileB, offset: offsetB, config: config)
        let signedBoth = Set(sideA.validSigners).intersection(sideB.validSigners).sorted()
        let sameView = a.certificateView == b.certificateView
        let digestsDiffer = a.batchDigest != b.batchDigest
        let bothCertified = sideA.certified && sideB.certified
        let facts = Facts(
            height: a.height.value, f: config.f, signedBoth: signedBoth, sameView: sameView, digestsDiffer: digestsDiffer,
            bothCertified: bothCertified, views: (a.certificateView.value, b.certificateView.value),
            uncertified: [sideA, sideB].filter { !$0.certified }.map(\.file))
        return Forensics(
            height: a.height.value, sides: [sideA, sideB], signedBoth: signedBoth, sameView: sameView, digestsDiffer: digestsDiffer,
            equivocationProven: facts.equivocationProven, moreThanFImplicated: facts.equivocationProven && signedBoth.count > config.f,
            safetyAssumptionBroken: bothCertified && digestsDiffer, explanation: facts.explanation)
    }

    static func side(_ block: CertifiedBlock, file: String, offset: UInt64, config: ClusterConfig) -> Side {
        let assessment = CertificateAssessment.assess(block.commitSignatures, config: config) { index in
            let entry = block.commitSignatures[index]
            guard let key = config.publicKey(of: entry.replica) else { return false }
            let message = SignedMessages.commit(block, signer: entry.replica, cluster: config.cluster)
            return SignatureBatch.verify(SignatureCheck(key: key, message: message, signature: entry.signature))
        }
        return Side(
            file: file, byteOffset: offset, blockHash: block.hash.hex, batchDigest: block.batchDigest.hex,
            certificateView: block.certificateView.value, validSigners: assessment.valid.map(\.value).sorted(),
            certified: assessment.meetsQuorum(config))
    }

    /// The reasoning, in words.
    struct Facts {
        let height: UInt64
        let f: Int
        let signedBoth: [UInt16]
        let sameView: Bool
        let digestsDiffer: Bool
        let bothCertified: Bool
        let views: (UInt64, UInt64)
        let uncertified: [String]

        var equivocationProven: Bool { sameView && digestsDiffer && !signedBoth.isEmpty }

        var explanation: String {
            guard digestsDiffer else {
                return "Both blocks carry the same batch and differ only in prevHash: the divergence lies below this height."
            }
            guard bothCertified else {
                return "The block in \(uncertified.joined(separator: " and ")) has no valid commit certificate: the cluster never committed it, so that file is corrupt or forged (see its own findings)."
            }
            let who = signedBoth.isEmpty ? "no replica" : signedBoth.map { "r\($0)" }.joined(separator: ", ")
            let crossView = signedBoth.isEmpty
                ? "No replica signed both."
                : "\(who) signed commits for both, in different views: that is not proof of a fault (a correct replica that committed-local in one view may vote for another digest in a later view whose NEW-VIEW was built without its VIEW-CHANGE), so no replica is named."
            let count = "\(signedBoth.count) replica(s) implicated, " + (signedBoth.count > f ? "more than f = \(f)" : "not more than f = \(f)")
            if sameView {
                return "Both certificates are valid and in view \(views.0): \(who) signed COMMIT for two different batch digests at (view \(views.0), height \(height)) — proof of equivocation. \(count). Two conflicting certificates cannot exist while at most f replicas are faulty: the 3f+1 assumption was broken."
            }
            return "Both certificates are valid, in different views (\(views.0) and \(views.1)), for different digests at height \(height). Two conflicting certificates cannot exist while at most f replicas are faulty: the 3f+1 assumption was broken. \(crossView) The faulty replicas are those whose VIEW-CHANGEs between the two views hid a prepared certificate; the ledgers do not hold those messages."
        }
    }
}
