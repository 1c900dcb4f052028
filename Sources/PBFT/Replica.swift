import SteleCore
import SteleCrypto

/// One PBFT replica (Castro & Liskov): a pure, deterministic value. Events go in, actions come
/// out; no clock, no I/O, no randomness. See API.swift for the contract with the shell.
///
/// The code is split by concern: NormalCase.swift (requests, batching, PRE-PREPARE, PREPARE,
/// COMMIT, execution), Checkpoints.swift, ViewChange.swift, NewView.swift,
/// StateTransfer.swift, Retransmission.swift and Recovery.swift.
public struct Replica: Sendable {
    let config: ClusterConfig
    let signer: ReplicaSigner
    let limits: ReplicaLimits

    // MARK: Public state

    public internal(set) var view: View = 0
    public internal(set) var isInViewChange = false
    public internal(set) var ledgerHead: LedgerHead
    /// h, the low watermark: the sequence of the last stable checkpoint.
    public internal(set) var stableCheckpoint: SequenceNumber = .genesis
    /// Why the last dropped message was dropped (diagnostics; nil if none was).
    public internal(set) var lastViolation: ProtocolViolation?

    // MARK: Normal case

    /// The current view's log, for sequences in (h, h + L].
    var log: [SequenceNumber: Slot] = [:]
    /// Requests in accepted, unexecuted PRE-PREPAREs of the current view, and where.
    var inFlight: [RequestKey: SequenceNumber] = [:]
    /// Invariant 7 across view changes: for each unexecuted sequence in the window, the requests
    /// of every PRE-PREPARE this replica accepted there, in any view (also O's, and the prepared
    /// certificates of a NEW-VIEW's V). Unlike `inFlight` it survives view changes: any of them
    /// may have prepared and come back in a later NEW-VIEW's O, so none is ordered afresh at
    /// another sequence until the sequence executes. Rebuilt from the `.prePrepare` WAL records.
    var acceptedRequests: [SequenceNumber: Set<RequestKey>] = [:]
    /// Client requests known and not executed.
    var pending: RequestQueue
    /// The primary's next sequence number to assign.
    var nextSequence: SequenceNumber = 1
    /// Digests of every PRE-PREPARE / PREPARE / COMMIT this replica signed in its current view.
    var ownMessages: [OwnMessageKey: Digest] = [:]
    /// Committed-local batches waiting for every lower sequence to execute (any view).
    var committed: [SequenceNumber: CommittedBatch] = [:]
    /// Batch digests of executed blocks in (h, lastExecuted].
    var executedDigests: [SequenceNumber: Digest] = [:]
    /// For each sequence above h, the prepared certificate of the highest view this replica holds.
    var preparedCertificates: [SequenceNumber: PreparedCertificate] = [:]
    /// Normal-case messages for views not entered yet.
    var futureMessages: [BufferedMessage] = []

    // MARK: Checkpoints

    var stableCertificate: CheckpointCertificate?
    /// CHECKPOINT messages received, per replica, keyed by sequence.
    var checkpointMessages: [ReplicaID: [SequenceNumber: Checkpoint]] = [:]
    /// This replica's own CHECKPOINTs at h and above.
    var ownCheckpoints: [SequenceNumber: Checkpoint] = [:]
    /// A stable checkpoint whose block this replica has not executed yet.
    var checkpointAwaitingBlock: CheckpointCertificate?

    // MARK: View change

    /// The latest valid VIEW-CHANGE of each replica (a correct replica only moves up).
    var viewChanges: [ReplicaID: ViewChange] = [:]
    var ownViewChange: ViewChange?
    /// VIEW-CHANGEs for our pending view from replicas whose latest VIEW-CHANGE (in
    /// `viewChanges`) is for a higher view. Such a replica moved on, but what it signed for
    /// our view still counts towards its q (a late or re-sent VIEW-CHANGE, §4.5.2).
    var pendingViewChanges: [ReplicaID: ViewChange] = [:]
    /// The NEW-VIEW this replica sent as primary of its current view.
    var ownNewView: NewView?
    /// The VIEW-CHANGEs this replica signed for its most recent views (bounded by
    /// `sentViewChangesMax`): re-sent to a peer still stuck in one of those views (§4.5.2
    /// liveness assumes eventual delivery; once we moved on, plain retransmission stops).
    var sentViewChanges: [View: ViewChange] = [:]
    /// When this replica last answered each peer stuck in a lower view (its NEW-VIEW and
    /// VIEW-CHANGEs): at most once per retransmission interval per peer (one entry per member).
    var helpSentTicks: [ReplicaID: UInt64] = [:]
    var newViewRetransmitsLeft = 0

    // MARK: Time

    var now: UInt64 = 0
    /// The current view-change timeout; doubles per view change without progress.
    var timeoutTicks: UInt64
    /// A backup's view-change timer (§4.4): when it fires unless `requestTimerKey` executes.
    var requestDeadline: UInt64?
    /// The request the timer waits for: the oldest pending one when the timer (re)started.
    /// Executing other requests does not move the deadline, so a primary that orders everyone
    /// else's requests cannot keep one client's waiting for ever.
    var requestTimerKey: RequestKey?
    /// The timer for a NEW-VIEW, started once q VIEW-CHANGEs for the view are in.
    var newViewDeadline: UInt64?
    /// How long this view change waits for its NEW-VIEW.
    var newViewWaitTicks: UInt64
    var nextRetransmitTick: UInt64
    /// The unexecuted sequences of `view` whose own messages were already in the log at the
    /// last retransmission round: only those are re-sent at the next round, so a message is
    /// re-sent once it has gone a whole period unanswered, never moments after it was first
    /// sent (under load a PRE-PREPARE of ~150 requests would otherwise be re-sent, and every
    /// request signature in it re-verified, while it was still on its way through the protocol).
    var retransmitCandidates: (view: View, sequences: Set<SequenceNumber>) = (0, [])
    /// When this replica last sent each peer its stable CHECKPOINT as a hint that it is behind.
    var checkpointHintTicks: [ReplicaID: UInt64] = [:]
    var stateServesThisTick: [ReplicaID: Int] = [:]
    /// (peer, sequence) pairs whose votes this replica re-sent to a lagging peer this tick.
    var votesResentThisTick: Set<PeerSequence> = []

    // MARK: State transfer

    /// The height this replica is fetching up to, while it is behind.
    var stateTarget: SequenceNumber?
    var stateTransferAttempt = 0
    /// When the outstanding STATE-REQUEST was sent (nil: none outstanding).
    var stateRequestTick: UInt64?
    /// When this replica last probed a peer that seemed far ahead.
    var stateProbeTick: UInt64?
    /// The highest sequence a peer sent above our window, untrusted: probed for while behind it.
    var probeTarget: SequenceNumber?
    /// Probes left for `probeTarget` before giving up on it (reset on progress).
    var probesLeft = 0

    // MARK: Accessors

    public var id: ReplicaID { signer.replica }
    public var primary: ReplicaID { config.primary(of: view) }
    public var isPrimary: Bool { primary == id }
    public var lastExecuted: SequenceNumber { ledgerHead.height }
    /// H = h + L, the high watermark.
    public var highWatermark: SequenceNumber { stableCheckpoint.adding(config.parameters.watermarkWindow) }
    /// The current view-change timeout in ticks.
    public var viewChangeTimeoutTicks: UInt64 { timeoutTicks }

    /// A replica starting from `recovery` (its ledger and write-ahead log), or fresh at genesis.
    public init(config: ClusterConfig, signer: ReplicaSigner, recovery: RecoveryState? = nil) {
        precondition(config.isMember(signer.replica), "the signer must be a member")
        precondition(signer.cluster == config.cluster, "the signer must sign for this cluster")
        self.config = config
        self.signer = signer
        self.limits = ReplicaLimits(config: config)
        self.ledgerHead = recovery?.ledgerHead ?? .genesis(config)
        self.pending = RequestQueue(
            capacity: limits.pendingRequestsMax, bytesCapacity: limits.pendingRequestBytesMax,
            relayCapacity: limits.relayedRequestsPerReplicaMax, relayBytesCapacity: limits.relayedRequestBytesPerReplicaMax)
        self.timeoutTicks = config.parameters.viewChangeTimeoutTicks
        self.newViewWaitTicks = config.parameters.viewChangeTimeoutTicks
        self.nextRetransmitTick = config.parameters.retransmitTicks
        if let recovery { recover(from: recovery) }
    }

    /// Handles one event and returns what the shell must do, in order. All `.persist` records
    /// come first, as one group commit, so every record precedes the sends it protects.
    public mutating func handle(_ event: Event) -> [Action] {
        var out = Outbox()
        if isInViewChange, ownNewView?.view == view { resumeOwnNewView(&out) }
        switch event {
        case .message(let message, let from): receive(message, from: from, &out)
        case .clientRequest(let request): receiveClientRequest(request, &out)
        case .tick: tick(&out)
        }
        continueStateTransfer(&out)
        return out.actions
    }

    // MARK: Dispatch

    mutating func receive(_ message: Message, from: ReplicaID, _ out: inout Outbox) {
        guard config.isMember(from), from != id else {
            reject(.notAMember, from: from, message.tag)
            return
        }
        if let signer = message.sender, signer != from {
            reject(.senderMismatch(signer: signer), from: from, message.tag)
            return
        }
        switch message {
        case .request(let request): receiveRelayedRequest(request, from: from, &out)
        case .prePrepare(let prePrepare): receivePrePrepare(prePrepare, from: from, &out)
        case .prepare(let vote): receivePrepare(vote, from: from, &out)
        case .commit(let vote): receiveCommit(vote, from: from, &out)
        case .reply: break
        case .checkpoint(let checkpoint): receiveCheckpoint(checkpoint, &out)
        case .viewChange(let viewChange): receiveViewChange(viewChange, &out)
        case .newView(let newView): receiveNewView(newView, &out)
        case .stateRequest(let request): receiveStateRequest(request, &out)
        case .stateResponse(let response): receiveStateResponse(response, &out)
        }
    }

    mutating func tick(_ out: inout Outbox) {
        now += 1
        stateServesThisTick = [:]
        votesResentThisTick = []
        checkTimers(&out)
        if now >= nextRetransmitTick {
            nextRetransmitTick = now.saturatingAdd(config.parameters.retransmitTicks)
            retransmit(&out)
        }
        proposeBatches(&out)
    }

    mutating func reject(_ code: ProtocolViolation.Code, from: ReplicaID, _ tag: MessageTag, view: View? = nil, sequence: SequenceNumber? = nil) {
        lastViolation = ProtocolViolation(code, replica: from, message: tag, view: view, sequence: sequence)
    }
}

/// The actions of one event, with the persist records gathered for one group commit.
struct Outbox {
    private var records: [PersistRecord] = []
    private var others: [Action] = []

    mutating func persist(_ record: PersistRecord) { records.append(record) }
    mutating func broadcast(_ message: Message) { others.append(.broadcast(message)) }
    mutating func send(_ message: Message, to replica: ReplicaID) { others.append(.send(message, to: replica)) }
    mutating func commit(_ block: CertifiedBlock) { others.append(.commit(block)) }
    mutating func reply(_ reply: Reply) { others.append(.reply(reply)) }
    mutating func commitCheckpoint(_ certificate: CheckpointCertificate) { others.append(.commitCheckpoint(certificate)) }
    mutating func serveState(_ request: StateRequest) { others.append(.serveState(request)) }

    /// The persist records first (durable before anything they protect), then the rest in order.
    var actions: [Action] { records.isEmpty ? others : [.persist(records)] + others }
}
