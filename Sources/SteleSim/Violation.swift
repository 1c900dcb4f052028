import SteleCore

/// One broken invariant, with the replicas involved and where. Compared by `code`.
public struct InvariantViolation: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// Two honest ledgers hold different blocks at one height.
        case fork
        /// Heights do not run 1, 2, 3, ... or a block's prevHash is not its predecessor's hash.
        case brokenChain = "broken-chain"
        /// A commit certificate has fewer than q distinct member signers, or repeats one.
        case uncertifiedBlock = "uncertified-block"
        /// A commit-certificate signature does not verify.
        case badCommitSignature = "bad-commit-signature"
        /// A client request in a block does not carry a valid client signature.
        case badClientSignature = "bad-client-signature"
        /// One (client, timestamp) appears twice in a ledger.
        case duplicateRequest = "duplicate-request"
        /// A stable checkpoint certificate is malformed or names a state the ledger does not have.
        case badCheckpoint = "bad-checkpoint"
        /// An honest replica signed two different digests for one (kind, view, sequence).
        case honestEquivocation = "honest-equivocation"
        /// A restarted replica came back with a lower view than its write-ahead log proves.
        case restartRegression = "restart-regression"
        /// The core asked its shell to commit a block out of height order or off the chain.
        case ledgerOrder = "ledger-order"
        /// A client accepted a result that the honest ledgers contradict.
        case wrongResult = "wrong-result"
        /// A message an honest replica produced did not survive encode/decode unchanged.
        case codec
        /// A replica's core broke one of its own structural invariants
        /// (`ConsensusCore.checkInvariants()`, checked after every event).
        case coreInvariant = "core-invariant"
        /// A submitted request was not accepted within the liveness phase.
        case liveness
        /// After healing, a request was accepted later than the latency bound B (a few
        /// view-change timeouts) after its submission: e.g. a censoring primary went undetected.
        case latency
        /// The replicas flooded the network (message amplification): the run was stopped.
        case overload
    }

    public let code: Code
    /// The replicas involved: for a fork, the holders of the conflicting blocks and the
    /// colluders; for other codes, the replica whose ledger or behaviour broke it.
    public let replicas: [ReplicaID]
    /// For a fork: the replicas that signed commit certificates for both conflicting blocks.
    public let colluders: [ReplicaID]
    public let height: SequenceNumber?
    public let detail: String

    public init(_ code: Code, replicas: [ReplicaID], colluders: [ReplicaID] = [], height: SequenceNumber? = nil, detail: String) {
        self.code = code
        self.replicas = replicas.sorted()
        self.colluders = colluders.sorted()
        self.height = height
        self.detail = detail
    }

    public var description: String {
        var text = "\(code.rawValue)"
        if let height { text += " at height \(height.value)" }
        if !replicas.isEmpty { text += " replicas \(replicas.map(\.description).joined(separator: ","))" }
        if !colluders.isEmpty { text += " colluders \(colluders.map(\.description).joined(separator: ","))" }
        return text + ": " + detail
    }

    public var isSafety: Bool { code != .liveness && code != .latency && code != .overload }
}
