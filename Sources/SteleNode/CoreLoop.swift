import Foundation
import Logging
import PBFT
import SteleAdversary
import SteleCore
import SteleCrypto
import Synchronization

/// The one loop that owns the consensus core, the write-ahead log and the ledger. Each turn
/// takes every event queued since the last, feeds them to the core, and performs the core's
/// actions as one group commit: all persist records and blocks are written and made durable
/// (one WAL fsync, one ledger fsync) before any send or reply of the turn is queued.
final class CoreLoop: Sendable {
    /// Events for the core: verified messages, admitted client requests, ticks.
    let inbox: Mailbox<Event>
    private let core: Mutex<CoreState>
    private let context: NodeContext
    private let peers: PeerLinks
    private let clients: ClientAdmission
    private let status: StatusBoard
    /// Where the core loop's fsyncs run: a serial queue, off Swift's cooperative pool.
    private let durabilityQueue = DispatchQueue(label: "stele.replica.durability", qos: .userInitiated)

    struct RequestKey: Hashable {
        let client: PublicKey
        let timestamp: UInt64
    }

    /// Everything the core loop owns. Only the core loop touches it (the Mutex makes that
    /// checkable, not contended).
    final class CoreState: @unchecked Sendable {
        var replica: Replica
        let wal: WriteAheadLog
        let ledger: LedgerArchive
        var committedBlocks: UInt64 = 0
        var viewChanges: UInt64 = 0
        /// When each pending client request reached this replica (for the latency metric).
        var arrivals: [RequestKey: ContinuousClock.Instant] = [:]
        static let arrivalsMax = 100_000
        /// Set only by `stele replica --byzantine MODE`: rewrites what this replica sends.
        let adversary: ReplicaAdversary?
        var lastAdversaryLog = ContinuousClock.now
        init(replica: Replica, wal: WriteAheadLog, ledger: LedgerArchive, adversary: ReplicaAdversary?) {
            self.replica = replica
            self.wal = wal
            self.ledger = ledger
            self.adversary = adversary
        }
    }

    init(context: NodeContext, state: CoreState, inbox: Mailbox<Event>, peers: PeerLinks, clients: ClientAdmission,
         status: StatusBoard) {
        self.context = context
        self.core = Mutex(state)
        self.inbox = inbox
        self.peers = peers
        self.clients = clients
        self.status = status
    }

    /// Posts a tick every `tickInterval` until the task is cancelled.
    func runClock() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: context.settings.tickInterval)
            inbox.post(.tick)
        }
    }

    /// Turns until the task is cancelled or the inbox closes; a failed write or fsync throws.
    func run() async throws {
        defer { inbox.close() }
        while !Task.isCancelled {
            let events = await inbox.takeAll()
            if events.isEmpty { return }
            context.metrics.groupSize.record(events.count)
            let (actions, staged) = try core.withLock { state in
                let actions = handle(events, state: state)
                return (actions, try stage(actions, state: state))
            }
            // The fsyncs run off Swift's cooperative pool (one thread per core): a blocking call
            // there holds a thread every other task of the process needs. With several replicas
            // in one process (DurabilityOrderTests) their blocked fsyncs took every thread and
            // nothing could run; in the benchmark, one replica per process, it measured neutral.
            try await makeDurable(staged)
            try core.withLock { state in
                try release(actions, staged: staged, state: state)
                if let adversary = state.adversary, events.contains(where: Self.isTick) {
                    for send in adversary.tick(coreView: state.replica.view) { peers.post(send.message, to: send.to) }
                    logAdversary(adversary, state: state)
                }
            }
        }
    }

    private static func isTick(_ event: Event) -> Bool {
        if case .tick = event { true } else { false }
    }

    /// Feeds one turn's events to the core, noting when each client request arrived.
    private func handle(_ events: [Event], state: CoreState) -> [Action] {
        let now = ContinuousClock.now
        var actions: [Action] = []
        for event in events {
            if let adversary = state.adversary, let message = event.message, !adversary.admits(message) {
                continue  // a censor hides its victim's requests from its core
            }
            if case .clientRequest(let request) = event, state.arrivals.count < CoreState.arrivalsMax {
                let key = RequestKey(client: request.client, timestamp: request.timestamp)
                if state.arrivals[key] == nil { state.arrivals[key] = now }
            }
            actions += state.replica.handle(event)
            // Debug builds only (the simulator checks in every build): a broken structural
            // invariant is a bug in the core, so the replica stops rather than run on it.
            assert(state.replica.checkInvariants().isEmpty, "core invariants broken: \(state.replica.checkInvariants())")
        }
        return actions
    }

    // MARK: Group commit

    /// What one turn wrote and must make durable before anything goes out.
    private struct Staged {
        let state: CoreState
        var walTouched = false
        var ledgerTouched = false
        var stableCheckpoint: SequenceNumber?
    }

    /// Group commit, first step: every persist record and every block of the turn is written
    /// (the log's records stay buffered until `makeDurable`); nothing is sent yet.
    private func stage(_ actions: [Action], state: CoreState) throws -> Staged {
        let metrics = context.metrics
        var records: [PersistRecord] = []
        var ledgerTouched = false
        var stableCheckpoint: SequenceNumber?
        for action in actions {
            switch action {
            case .persist(let newRecords):
                records += newRecords
                for case .stableCheckpoint(let certificate) in newRecords { stableCheckpoint = certificate.sequence }
            case .commit(let block):
                try state.ledger.append(block)
                state.committedBlocks += 1
                metrics.blocksCommitted.increment()
                metrics.transactionsCommitted.increment(by: block.batch.count)
                ledgerTouched = true
            case .commitCheckpoint(let certificate):
                try state.ledger.append(certificate)
                ledgerTouched = true
            default:
                break
            }
        }
        if !records.isEmpty { state.wal.append(records) }
        return Staged(state: state, walTouched: !records.isEmpty, ledgerTouched: ledgerTouched,
                      stableCheckpoint: stableCheckpoint)
    }

    /// Group commit, second step: one WAL fsync and one ledger fsync (overlapped) on a thread
    /// of the durability queue. Only the core loop touches the log and the ledger, and it is
    /// suspended here until they return, so handing them to that thread is race-free.
    private func makeDurable(_ staged: Staged) async throws {
        guard staged.walTouched || staged.ledgerTouched else { return }
        let state = staged.state
        let (wal, ledger) = (staged.walTouched, staged.ledgerTouched)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            durabilityQueue.async {
                do {
                    switch (wal, ledger) {
                    case (true, true):
                        let archive = state.ledger
                        try state.wal.sync(alongside: { try archive.sync() })
                    case (true, false): try state.wal.sync()
                    case (false, true): try state.ledger.sync()
                    case (false, false): break
                    }
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// Group commit, last step, once everything staged is durable: the log is compacted after
    /// a stable checkpoint, then messages and replies are sent.
    private func release(_ actions: [Action], staged: Staged, state: CoreState) throws {
        if let stableCheckpoint = staged.stableCheckpoint { try state.wal.compact(above: stableCheckpoint) }
        for action in actions {
            switch action {
            case .send(let message, let to):
                emit(.message(message, to: [to]), state: state)
            case .broadcast(let message):
                emit(.message(message, to: peers.peers), state: state)
            case .reply(let reply):
                recordLatency(of: reply, state: state)
                emit(.reply(reply), state: state)
            case .serveState(let request):
                serveState(request, state: state)
            case .persist, .commit, .commitCheckpoint:
                break
            }
        }
        updateStatus(state)
    }

    // MARK: What leaves the process

    /// A message or reply on its way out of the process.
    private enum Outgoing {
        case message(Message, to: [ReplicaID])
        case reply(Reply)
    }

    /// The one way out for the core's sends and replies. A Byzantine replica's adversary
    /// rewrites, multiplies or swallows each here; an honest replica queues it as it is.
    private func emit(_ outgoing: Outgoing, state: CoreState) {
        switch (outgoing, state.adversary) {
        case (.message(let message, let targets), nil):
            peers.post(message, to: targets)
        case (.message(let message, let targets), let adversary?):
            for send in adversary.outgoing(message, to: targets) { peers.post(send.message, to: send.to) }
        case (.reply(let reply), nil):
            clients.mailbox(of: reply.client)?.post(.message(.reply(reply)))
        case (.reply(let reply), let adversary?):
            let mailbox = clients.mailbox(of: reply.client)
            if let message = adversary.reply(reply) { mailbox?.post(.message(message)) }
        }
    }

    /// From each answered request's arrival to its reply (`stele_request_latency_seconds`).
    private func recordLatency(of reply: Reply, state: CoreState) {
        for timestamp in reply.timestamps {
            let key = RequestKey(client: reply.client, timestamp: timestamp)
            if let arrival = state.arrivals.removeValue(forKey: key) {
                context.metrics.requestLatency.recordNanoseconds(arrival.duration(to: .now).nanoseconds)
            }
        }
    }

    /// State transfer, serving side: the shared server, within the cluster's block limit and
    /// half a frame (the response must fit one).
    private func serveState(_ request: StateRequest, state: CoreState) {
        let signer = ReplicaSigner(replica: context.id, cluster: context.config.cluster, keyPair: context.keyPair)
        do {
            let response = try StateServer.response(
                to: request, from: state.ledger, blocksMax: context.config.parameters.stateTransferBlocksMax,
                bytesMax: context.settings.frameBytesMax / 2, weight: \.queuedByteEstimate, signer: signer)
            if let response { peers.post(.stateResponse(response), to: request.replica) }
        } catch {
            context.logger.error("cannot serve state transfer", metadata: ["error": "\(error)"])
        }
    }

    private func updateStatus(_ state: CoreState) {
        let replica = state.replica
        let metrics = context.metrics
        let connectedPeers = peers.connectedPeers
        metrics.view.record(Double(replica.view.value))
        metrics.height.record(Double(replica.ledgerHead.height.value))
        status.update { status in
            if replica.view.value != status.view {
                state.viewChanges += 1
                metrics.viewChanges.increment()
            }
            status = ReplicaStatus(
                replica: context.id.value, view: replica.view.value, primary: replica.primary.value,
                inViewChange: replica.isInViewChange, height: replica.ledgerHead.height.value,
                headHash: replica.ledgerHead.hash.hex, stableCheckpoint: replica.stableCheckpoint.value,
                connectedPeers: connectedPeers, committedBlocks: state.committedBlocks, viewChanges: state.viewChanges,
                byzantineMode: state.adversary?.mode.rawValue, byzantineMoves: state.adversary?.moves)
        }
    }

    /// A Byzantine replica says so, loudly, every ten seconds.
    private func logAdversary(_ adversary: ReplicaAdversary, state: CoreState) {
        let now = ContinuousClock.now
        guard now - state.lastAdversaryLog >= .seconds(10) else { return }
        state.lastAdversaryLog = now
        let moves = adversary.moves.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        context.logger.warning("BYZANTINE MODE still on", metadata: ["mode": "\(adversary.mode)", "moves": "\(moves)"])
    }
}
