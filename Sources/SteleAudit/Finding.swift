import SteleCore

/// How bad a finding is. Only `violation` changes the verdict (and `stele-check`'s exit code).
public enum Severity: String, Sendable, Codable, Comparable, CaseIterable {
    /// Worth knowing, not a problem (a lagging replica).
    case info
    /// Suspicious or weakening, but no invariant is broken (an unsafe quorum size in the config).
    case warning
    /// An invariant does not hold: the ledger set is not what a correct 3f+1 cluster produces.
    case violation

    private var rank: Int {
        switch self {
        case .info: 0
        case .warning: 1
        case .violation: 2
        }
    }

    public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
}

/// The stable identifier of a kind of finding. The raw values are part of the JSON schema
/// (docs/audit.md): they never change meaning; new codes may be added.
public enum FindingCode: String, Sendable, Codable, CaseIterable {
    // Configuration (the trust anchor).
    case configQuorumIntersection = "config-quorum-intersection"

    // File framing.
    case headerTruncated = "header-truncated"
    case headerBadMagic = "header-bad-magic"
    case headerUnsupportedVersion = "header-unsupported-version"
    case headerReservedNonzero = "header-reserved-nonzero"
    case tornTail = "torn-tail"
    case recordLengthInvalid = "record-length-invalid"
    case recordChecksumMismatch = "record-checksum-mismatch"
    case recordUndecodable = "record-undecodable"

    // Genesis.
    case genesisMissing = "genesis-missing"
    case genesisMismatch = "genesis-mismatch"
    case genesisRepeated = "genesis-repeated"

    // The chain.
    case hashChainBroken = "hash-chain-broken"
    case heightDuplicate = "height-duplicate"
    case blockOutOfOrder = "block-out-of-order"
    case heightGap = "height-gap"

    // Commit certificates.
    case commitSignatureInvalid = "commit-signature-invalid"
    case commitSignerRepeated = "commit-signer-repeated"
    case commitSignerNotMember = "commit-signer-not-member"
    case commitQuorumShort = "commit-quorum-short"

    // Checkpoint certificates.
    case checkpointSignatureInvalid = "checkpoint-signature-invalid"
    case checkpointSignerRepeated = "checkpoint-signer-repeated"
    case checkpointSignerNotMember = "checkpoint-signer-not-member"
    case checkpointQuorumShort = "checkpoint-quorum-short"
    case checkpointStateMismatch = "checkpoint-state-mismatch"
    case checkpointBeyondChain = "checkpoint-beyond-chain"

    // Transactions.
    case clientSignatureInvalid = "client-signature-invalid"
    case duplicateTransaction = "duplicate-transaction"

    // Across files.
    case fork = "fork"
    case divergentBlock = "divergent-block"
    case lagging = "lagging"

    // Bookkeeping.
    case findingsSuppressed = "findings-suppressed"

    /// The severity a finding of this code has unless `AuditOptions` says otherwise.
    public var defaultSeverity: Severity {
        switch self {
        case .lagging: .info
        case .configQuorumIntersection, .findingsSuppressed: .warning
        default: .violation
        }
    }
}

/// One thing the auditor found. `file`, `height` and `byteOffset` say where; `replicas` who.
public struct Finding: Sendable, Hashable, Codable {
    public let severity: Severity
    public let code: FindingCode
    /// The ledger file (as named on the command line), or nil for configuration findings.
    public let file: String?
    /// The block height concerned. For a record that cannot be decoded (framing, checksum), the
    /// height of the last intact block before it.
    public let height: UInt64?
    /// Byte offset in `file` of the record concerned (its length prefix), or of the header.
    public let byteOffset: UInt64?
    /// Replica ids involved (signers of a bad certificate, equivocators), ascending.
    public let replicas: [UInt16]
    public let message: String
    /// For `fork` and `divergent-block`: the evidence.
    public let forensics: Forensics?

    public init(
        severity: Severity, code: FindingCode, file: String?, height: UInt64?, byteOffset: UInt64?,
        replicas: [ReplicaID] = [], message: String, forensics: Forensics? = nil
    ) {
        self.severity = severity
        self.code = code
        self.file = file
        self.height = height
        self.byteOffset = byteOffset
        self.replicas = replicas.map(\.value).sorted()
        self.message = message
        self.forensics = forensics
    }

    enum CodingKeys: String, CodingKey {
        case severity, code, file, height, byteOffset, replicas, message, forensics
    }

    /// Encodes every key, absent values as `null`, so the JSON shape never varies.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(severity, forKey: .severity)
        try container.encode(code, forKey: .code)
        try container.encode(file, forKey: .file)
        try container.encode(height, forKey: .height)
        try container.encode(byteOffset, forKey: .byteOffset)
        try container.encode(replicas, forKey: .replicas)
        try container.encode(message, forKey: .message)
        try container.encode(forensics, forKey: .forensics)
    }
}

/// The evidence behind a fork: two blocks at one height with different hashes.
public struct Forensics: Sendable, Hashable, Codable {
    /// One of the two conflicting blocks, as one ledger file holds it.
    public struct Side: Sendable, Hashable, Codable {
        public let file: String
        public let byteOffset: UInt64
        public let blockHash: String
        public let batchDigest: String
        public let certificateView: UInt64
        /// Distinct member signers whose COMMIT signature verified.
        public let validSigners: [UInt16]
        /// At least q = ceil((n+f+1)/2) valid distinct member signers.
        public let certified: Bool
    }

    public let height: UInt64
    public let sides: [Side]
    /// Replicas with a valid COMMIT signature in both certificates.
    public let signedBoth: [UInt16]
    /// Both certificates are for the same view.
    public let sameView: Bool
    /// The two blocks commit different batches (not only a different history below).
    public let digestsDiffer: Bool
    /// Same view, different digests, and some replica signed both: each replica in
    /// `signedBoth` signed two different digests for one (view, height) — proof it is faulty.
    public let equivocationProven: Bool
    /// More than f replicas are proven equivocators (`equivocators.count > f`).
    public let moreThanFImplicated: Bool
    /// Two valid commit certificates for different digests at one height cannot exist while at
    /// most f replicas are faulty: the 3f+1 assumption was broken.
    public let safetyAssumptionBroken: Bool
    public let explanation: String

    /// The replicas the evidence proves faulty: those that signed COMMIT for both digests in one
    /// view. Signing both in different views is no proof (a correct replica may), so then none.
    public var equivocators: [UInt16] { equivocationProven ? signedBoth : [] }
}
