import SteleCore
import SteleCrypto

// The consensus core's contract with its shell (SteleNode) and the simulator (SteleSim).
//
// The core is a value: `mutating func handle(_ event: Event) -> [Action]`. It performs no I/O,
// reads no clock and draws no randomness; time arrives as `.tick` events. Signatures on
// incoming messages are checked by the shell (SignatureVerifier, nested ones included) before
// the event is handed in; the core re-checks quorum shapes. The core signs its own messages
// with the ReplicaSigner it was given (Ed25519 signing is deterministic).
//
// Ordering contract of the returned actions: the shell performs them in order, and every
// `.persist` must be durable before any later action in the same list is performed. The shell
// may group-commit all `.persist` records of one list with one fsync, as long as that fsync
// completes before the first `.send`/`.broadcast`/`.reply` that follows them. `.commit` blocks
// are appended (and made durable) to the ledger before any `.reply` that follows them.

/// Something that happened to a replica.
public enum Event: Sendable {
    /// A message from replica `from` whose signatures (nested ones included) were verified.
    /// `from` is the authenticated transport peer; the core also checks it equals the signer.
    case message(Message, from: ReplicaID)
    /// A client REQUEST whose signature was verified (received directly from a client).
    case clientRequest(Request)
    /// One logical tick of time passed.
    case tick
}

extension Event {
    /// The message this event hands in (a client's REQUEST as `.request`); nil for a tick.
    public var message: Message? {
        switch self {
        case .message(let message, _): message
        case .clientRequest(let request): .request(request)
        case .tick: nil
        }
    }
}

/// Something the shell must do for the core.
public enum Action: Sendable, Equatable {
    /// Make these records durable before performing any later action of the same list.
    case persist([PersistRecord])
    /// Send to one replica.
    case send(Message, to: ReplicaID)
    /// Send to every other replica.
    case broadcast(Message)
    /// Append this block to the ledger (durably) — heights strictly increasing by one.
    case commit(CertifiedBlock)
    /// Deliver this signed reply to the client named in it.
    case reply(Reply)
    /// Append this stable checkpoint certificate to the ledger (after the block at its sequence).
    case commitCheckpoint(CheckpointCertificate)
    /// State transfer, serving side: send request.replica the signed STATE-RESPONSE that
    /// `StateServer.response` builds from the ledger — the committed blocks from
    /// request.fromHeight on (at most `ProtocolParameters.stateTransferBlocksMax`), with the
    /// newest checkpoint certificate at or below the last one. The core keeps only the blocks
    /// above its stable checkpoint in memory; the ledger is the archive.
    case serveState(StateRequest)
}

/// The core's contract as a compiled protocol: what its shells drive. `Replica` is the core;
/// the simulator (SteleSim) is generic over this protocol so that its tests can also drive
/// deliberately broken cores, and SteleNode drives `Replica` through the same calls.
public protocol ConsensusCore {
    init(config: ClusterConfig, signer: ReplicaSigner, recovery: RecoveryState?)
    /// Handles one event and returns what the shell must do, under the ordering contract above.
    mutating func handle(_ event: Event) -> [Action]
    var id: ReplicaID { get }
    var view: View { get }
    var isInViewChange: Bool { get }
    var lastExecuted: SequenceNumber { get }
    var stableCheckpoint: SequenceNumber { get }
    /// The structural invariants of the core's state that do not hold (empty when all hold).
    /// The simulator checks after every event; SteleNode in debug builds.
    func checkInvariants() -> [CoreInvariantViolation]
}

extension Replica: ConsensusCore {}

/// What the core needs to remember across a crash so that it never signs a message that
/// conflicts with one it signed before. Records are appended to a write-ahead log; on
/// restart the shell hands the whole log back in `RecoveryState.records`.
public enum PersistRecord: Sendable, Equatable {
    /// The replica entered (or is changing to) `view`; `inViewChange` when it sent VIEW-CHANGE
    /// for it and has not seen a valid NEW-VIEW yet.
    case view(View, inViewChange: Bool)
    /// The replica accepted (or, as primary, sent) this PRE-PREPARE for (view, sequence).
    case prePrepare(PrePrepare)
    /// The replica sent PREPARE or COMMIT for (view, sequence, digest).
    case vote(Vote)
    /// The replica holds a prepared certificate for (view, sequence).
    case prepared(PreparedCertificate)
    /// The replica sent this VIEW-CHANGE.
    case viewChange(ViewChange)
    /// The NEW-VIEW this replica, as primary of its view, sends: persisted before it is
    /// broadcast, so a restarted primary re-sends this one and never computes another for the
    /// view (O is a choice among the VIEW-CHANGEs it held; a second one could differ).
    case newView(NewView)
    /// A stable checkpoint; everything at or below its sequence may be forgotten.
    case stableCheckpoint(CheckpointCertificate)
}

/// What a restarted replica recovers from disk before it handles any event.
public struct RecoveryState: Sendable {
    /// The ledger's committed blocks (or at least the suffix above the stable checkpoint, plus
    /// the client table below it) — the core rebuilds last-executed, the chain head and the
    /// per-client exactly-once table from them.
    public var ledgerHead: LedgerHead
    /// The write-ahead log of PersistRecords, oldest first.
    public var records: [PersistRecord]

    public init(ledgerHead: LedgerHead, records: [PersistRecord]) {
        self.ledgerHead = ledgerHead
        self.records = records
    }
}

/// The executed state the ledger implies.
public struct LedgerHead: Sendable, Equatable {
    /// Height of the last block in the ledger (0 = only genesis).
    public var height: SequenceNumber
    /// Hash of that block (the genesis hash at height 0).
    public var hash: Digest
    /// For each client: the last executed timestamp and the reply it got (height, block hash).
    public var clients: [PublicKey: ClientRecord]

    public init(height: SequenceNumber, hash: Digest, clients: [PublicKey: ClientRecord]) {
        self.height = height
        self.hash = hash
        self.clients = clients
    }

    /// The head of an empty ledger.
    public static func genesis(_ config: ClusterConfig) -> LedgerHead {
        LedgerHead(height: .genesis, hash: config.genesis.hash, clients: [:])
    }

    /// Applies one committed block (the shell calls this while replaying its ledger).
    public mutating func apply(_ block: CertifiedBlock) {
        precondition(block.height == height.next, "ledger blocks apply in height order")
        precondition(block.prevHash == hash, "ledger blocks chain")
        let blockHash = block.hash
        let result = Reply.Result(height: block.height, blockHash: blockHash)
        for request in block.batch {
            guard case .new = clients[request.client]?.status(of: request.timestamp) ?? .new else { continue }
            // Mutated in place: a copy of the record would copy its table of recent results
            // (up to 2,048 entries) for every transaction.
            clients[request.client, default: ClientRecord()].record(timestamp: request.timestamp, result: result)
        }
        height = block.height
        hash = blockHash
    }
}

/// One client's exactly-once state. Clients may pipeline requests and their timestamps need
/// not be dense (the CLI uses wall-clock microseconds), so the window counts executed
/// requests, not timestamp distance: the results of the client's last `windowSize` or more
/// executed requests are kept, so a retransmission gets its cached reply; when older ones are
/// forgotten, `floor` becomes the largest forgotten timestamp and anything at or below it
/// counts as executed. A client with at most `windowSize` requests outstanding therefore never
/// has a pending request mistaken for an old one. All of it is a function of the executed
/// sequence alone, so every correct replica holds the same state.
public struct ClientRecord: Sendable, Equatable {
    public static let windowSize = 1024

    public enum Status: Equatable, Sendable {
        /// Never executed: may be ordered.
        case new
        /// Executed with this result: answer with the cached reply.
        case executed(Reply.Result)
        /// At or below the forgotten floor: treated as executed, its reply is no longer cached.
        case tooOld
    }

    /// Every timestamp at or below this was executed or is refused (nil: nothing forgotten yet).
    public private(set) var floor: UInt64?
    public private(set) var recent: [UInt64: Reply.Result] = [:]

    public init() {}

    public func status(of timestamp: UInt64) -> Status {
        if let result = recent[timestamp] { return .executed(result) }
        if let floor, timestamp <= floor { return .tooOld }
        return .new
    }

    public mutating func record(timestamp: UInt64, result: Reply.Result) {
        precondition(status(of: timestamp) == .new, "a request executes at most once")
        recent[timestamp] = result
        // Forget in bulk, amortised: only when twice the window is held.
        guard recent.count > 2 * ClientRecord.windowSize else { return }
        let sorted = recent.keys.sorted()
        let forgotten = sorted.prefix(sorted.count - ClientRecord.windowSize)
        for timestamp in forgotten { recent[timestamp] = nil }
        if let largest = forgotten.last { floor = max(floor ?? 0, largest) }
    }
}
