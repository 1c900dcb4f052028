import SteleCore
import SteleCrypto

/// A request's identity for exactly-once purposes: (client, timestamp). Never the signature
/// bytes — a key holder can make many valid signatures for one request.
struct RequestKey: Hashable, Sendable {
    let client: PublicKey
    let timestamp: UInt64

    init(_ request: Request) {
        client = request.client
        timestamp = request.timestamp
    }

    /// The synthesized hash fed the 32 key bytes to the hasher one at a time, which dominated
    /// the primary's profile (every batch touches these tables); `PublicKey` hashes one word.
    func hash(into hasher: inout Hasher) {
        hasher.combine(timestamp)
        hasher.combine(client)
    }
}

/// Which of its own messages for one (view, sequence) a replica remembers signing.
enum OwnMessageKind: Hashable, Sendable {
    case prePrepare, prepare, commit
}

/// The key of one own signed message: it never signs two digests under one key.
struct OwnMessageKey: Hashable, Sendable {
    let kind: OwnMessageKind
    let view: View
    let sequence: SequenceNumber
}

/// Everything the current view's log holds for one sequence number.
struct Slot: Sendable {
    let view: View
    var prePrepare: PrePrepare?
    /// At most one PREPARE per backup (the first one wins; a correct replica sends one digest).
    var prepares: [ReplicaID: Vote] = [:]
    /// At most one COMMIT per member.
    var commits: [ReplicaID: Vote] = [:]
    var preparedCertificate: PreparedCertificate?
    var isCommittedLocal = false

    init(view: View) { self.view = view }

    var isPrepared: Bool { preparedCertificate != nil }

    /// The matching PREPAREs, ordered by replica (deterministic certificates).
    func matchingPrepares(_ digest: Digest) -> [Vote] {
        prepares.values.filter { $0.digest == digest }.sorted { $0.replica < $1.replica }
    }

    func matchingCommits(_ digest: Digest) -> [Vote] {
        commits.values.filter { $0.digest == digest }.sorted { $0.replica < $1.replica }
    }
}

/// A batch with its commit certificate, waiting for every lower sequence to execute.
struct CommittedBatch: Sendable {
    let prePrepare: PrePrepare
    let signatures: [ReplicaSignature]
}

/// One sequence number of one peer.
struct PeerSequence: Hashable, Sendable {
    let peer: ReplicaID
    let sequence: SequenceNumber
}

/// A normal-case message that arrived for a view this replica has not entered yet.
struct BufferedMessage: Sendable {
    let message: Message
    let from: ReplicaID
    let view: View
    /// Its encoded size (`EncodedSize.of`), charged to `from`'s quota.
    let byteCount: Int
}

/// The bounds on every buffer the core keeps, derived from the cluster's parameters.
struct ReplicaLimits: Sendable {
    /// Client requests known and not yet executed.
    let pendingRequestsMax: Int
    /// ... and their encoded bytes: four pipelines of full batches (128 MiB by default).
    let pendingRequestBytesMax: Int
    /// Normal-case messages for views not yet entered, per sending replica.
    let futureMessagesPerReplicaMax: Int
    /// CHECKPOINT messages kept per replica.
    let checkpointsPerReplicaMax: Int
    /// STATE-REQUESTs served per peer per tick.
    let stateServesPerTickMax: Int
    /// Blocks asked for in one STATE-REQUEST, and taken from one STATE-RESPONSE: the cluster's
    /// `stateTransferBlocksMax`, within the codec's cap (ClusterConfig validates it).
    let stateTransferBlocksMax: Int
    /// Client requests forwarded to the primary per retransmission round.
    let forwardsPerRetransmitMax: Int
    /// Retransmission rounds in which a new primary re-broadcasts its NEW-VIEW.
    let newViewRetransmitRounds: Int
    /// Probes for one sequence seen from a peer without progress before giving up.
    let probesPerTargetMax: Int
    /// The highest view number the core accepts (so `view.next` can never overflow).
    let viewMax: View

    // Bytes a peer can make this replica hold (docs/security.md, "Memory a peer can pin").
    // Each bound is what a correct replica needs, derived from the parameters.

    /// Normal-case messages are buffered only for views at most this far above ours: a correct
    /// replica is at most a view change or two ahead of a correct replica that is live.
    let futureViewsMax: UInt64
    /// The largest PRE-PREPARE a correct primary sends: a batch of at most `batchBytesMax`
    /// encoded requests, or one larger request alone (at most a maximal payload).
    let prePrepareBytesMax: Int
    /// The largest valid VIEW-CHANGE: a proof of at most n CHECKPOINTs and a prepared
    /// certificate (at most n PREPAREs) for each sequence of one watermark window.
    let viewChangeBytesMax: Int
    /// Bytes buffered for later views per sender: four maximal PRE-PREPAREs and a full count
    /// of votes (a correct primary's NEW-VIEW precedes its PRE-PREPAREs on the link, so only
    /// a lost NEW-VIEW makes them wait here; retransmission covers the rest).
    let futureBytesPerReplicaMax: Int
    /// Requests relayed by one replica and pending: two batches, by count and by bytes.
    /// Relays are a liveness aid (a client retransmits to every replica itself).
    let relayedRequestsPerReplicaMax: Int
    let relayedRequestBytesPerReplicaMax: Int
    /// Request keys kept per unexecuted sequence in `acceptedRequests` from normal-case
    /// PRE-PREPAREs: four views' full batches. A PRE-PREPARE past it is not accepted (not
    /// preparing is always safe); O's, mandated by a NEW-VIEW, always are.
    let acceptedRequestsPerSequenceMax: Int
    /// The bound on `Replica.bytesHeld(for:)`: everything above held for one peer at once.
    let bytesHeldPerReplicaMax: Int

    /// Tiny batch and pipeline settings still queue this many requests.
    static let pendingRequestsFloor = 64
    /// ... and this many bytes of them (64 of the largest).
    static let pendingRequestBytesFloor = 64 * (64 * 1024 + 128)

    init(config: ClusterConfig) {
        let parameters = config.parameters
        pendingRequestsMax = max(4 * parameters.batchSizeMax * parameters.pipelineDepthMax, ReplicaLimits.pendingRequestsFloor)
        let (bytes, overflow) = (4 * parameters.pipelineDepthMax).multipliedReportingOverflow(by: parameters.batchBytesMax)
        pendingRequestBytesMax = overflow ? Int.max : max(bytes, ReplicaLimits.pendingRequestBytesFloor)
        futureMessagesPerReplicaMax = 2 * Int(parameters.watermarkWindow) + 8
        checkpointsPerReplicaMax = Int(parameters.watermarkWindow / parameters.checkpointInterval) + 2
        stateServesPerTickMax = 4
        stateTransferBlocksMax = parameters.stateTransferBlocksMax
        precondition(stateTransferBlocksMax >= 1, "state transfer moves at least one block at a time")
        precondition(stateTransferBlocksMax <= CodecLimits.standard.stateTransferBlocksMax, "a response must decode")
        forwardsPerRetransmitMax = parameters.batchSizeMax
        newViewRetransmitRounds = 3
        probesPerTargetMax = 2 * (config.n - 1)
        viewMax = View(UInt64.max / 2)
        futureViewsMax = 4
        let n = config.n
        let window = Int(clamping: parameters.watermarkWindow)
        let largestRequest = EncodedSize.requestHeader + CodecLimits.standard.payloadBytesMax
        prePrepareBytesMax = Bound.sum(EncodedSize.prePrepareHeader, max(parameters.batchBytesMax, largestRequest))
        let certificateBytesMax = Bound.sum(prePrepareBytesMax - EncodedSize.envelope + 4, n * (EncodedSize.vote - EncodedSize.envelope))
        viewChangeBytesMax = Bound.sum(EncodedSize.viewChangeHeader + n * (EncodedSize.checkpoint - EncodedSize.envelope), Bound.product(window, certificateBytesMax))
        futureBytesPerReplicaMax = Bound.sum(Bound.product(4, prePrepareBytesMax), futureMessagesPerReplicaMax * EncodedSize.vote)
        relayedRequestsPerReplicaMax = max(2 * parameters.batchSizeMax, 64)
        relayedRequestBytesPerReplicaMax = Bound.product(2, max(parameters.batchBytesMax, largestRequest))
        acceptedRequestsPerSequenceMax = Bound.product(4, parameters.batchSizeMax)
        let slotBytesMax = Bound.sum(2 * EncodedSize.vote + prePrepareBytesMax, Bound.product(parameters.batchSizeMax, EncodedSize.requestKey))
        bytesHeldPerReplicaMax = [
            futureBytesPerReplicaMax,
            checkpointsPerReplicaMax * EncodedSize.checkpoint,
            Bound.product(2, viewChangeBytesMax),  // its latest VIEW-CHANGE and one for our pending view
            Bound.product(window, slotBytesMax),  // its votes (and, as primary, PRE-PREPAREs) in the log
            relayedRequestBytesPerReplicaMax,
        ].reduce(0, Bound.sum)
    }
}

/// Saturating arithmetic for limits derived from parameters (never an overflow trap).
enum Bound {
    static func sum(_ a: Int, _ b: Int) -> Int {
        let (value, overflow) = a.addingReportingOverflow(b)
        return overflow ? Int.max : value
    }

    static func product(_ a: Int, _ b: Int) -> Int {
        let (value, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? Int.max : value
    }
}

extension SequenceNumber {
    /// `self + count`, saturating at the largest sequence number.
    func adding(_ count: UInt64) -> SequenceNumber {
        let (sum, overflow) = value.addingReportingOverflow(count)
        return SequenceNumber(overflow ? UInt64.max : sum)
    }
}

extension UInt64 {
    func saturatingAdd(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? UInt64.max : sum
    }
}
