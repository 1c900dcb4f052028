import Foundation
import Logging
import NIOCore
import NIOPosix
import PBFT
import SteleAdversary
import SteleCore
import SteleCrypto
import Synchronization

/// A replica's status, served to `stele cluster status`.
public struct ReplicaStatus: Codable, Sendable, Equatable {
    public var replica: UInt16
    public var view: UInt64
    public var primary: UInt16
    public var inViewChange: Bool
    public var height: UInt64
    public var headHash: String
    public var stableCheckpoint: UInt64
    public var connectedPeers: [UInt16]
    public var committedBlocks: UInt64
    public var viewChanges: UInt64
    /// The Byzantine mode this replica was started in (`stele replica --byzantine`), if any,
    /// and how often each kind of misbehaviour happened so far.
    public var byzantineMode: String? = nil
    public var byzantineMoves: [String: Int]? = nil
    /// Client requests and connections shed by the defences, by reason ("rate", "duplicate",
    /// "signature", "connection").
    public var shed: [String: Int]? = nil
}

/// The runtime shell around the PBFT core: it verifies signatures, feeds events to the core,
/// and performs the core's actions — durably persisting before it sends, appending blocks
/// before it replies. It adds no protocol logic.
public final class ReplicaNode: Sendable {
    public let config: ClusterConfig
    public let id: ReplicaID
    let keyPair: KeyPair
    let settings: NodeSettings
    let logger: Logger
    let verifier: SignatureVerifier
    let inbox: Mailbox<Event>
    let peerLinks: [ReplicaID: Mailbox<Frame>]
    let clients = Mutex<[PublicKey: Mailbox<Frame>]>([:])
    let connectedPeers = Mutex<Set<ReplicaID>>([])
    /// The one inbound connection each replica may hold open; a newer one closes the older.
    let inboundReplicaChannels = Mutex<[ReplicaID: any Channel]>([:])
    /// Inbound connections that have not finished their handshake.
    let handshakesInFlight = Atomic<Int>(0)
    /// What the defences shed, by reason (served in the status, next to the metrics).
    let shedCounts = Mutex<[String: Int]>([:])

    func shed(_ reason: String) {
        shedCounts.withLock { $0[reason, default: 0] += 1 }
        switch reason {
        case "rate": metrics.requestsRateLimited.increment()
        case "duplicate": metrics.requestsDuplicate.increment()
        case "signature": metrics.requestsBadSignature.increment()
        default: metrics.connectionsShed.increment()
        }
    }
    let status: Mutex<ReplicaStatus>
    let core: Mutex<CoreState>
    let metrics = NodeMetrics()
    /// The frame limit of links between replicas (`peerFrameBytesMax(parameters:floor:)`).
    let peerFrameBytesMax: Int
    /// Where the core loop's fsyncs run: a serial queue, off Swift's cooperative pool.
    let durabilityQueue = DispatchQueue(label: "stele.replica.durability", qos: .userInitiated)

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

    public init(config: ClusterConfig, id: ReplicaID, keyPair: KeyPair, ledger: LedgerArchive, walPath: String,
                settings: NodeSettings = NodeSettings(), byzantine: ByzantineMode? = nil, logger: Logger) throws {
        guard config.publicKey(of: id) == keyPair.publicKey else {
            throw ConnectionError(description: "the key file's public key is not replica \(id.value)'s key in the cluster config")
        }
        self.config = config
        self.id = id
        self.keyPair = keyPair
        self.settings = settings
        self.peerFrameBytesMax = Self.peerFrameBytesMax(parameters: config.parameters, floor: settings.frameBytesMax)
        self.logger = logger
        self.verifier = SignatureVerifier(config: config, memo: VerifiedSignatures(capacity: Self.memoCapacity(config.parameters)))
        self.inbox = Mailbox(capacity: settings.inboxEventsMax)
        var links: [ReplicaID: Mailbox<Frame>] = [:]
        for peer in config.replicaIDs where peer != id { links[peer] = Mailbox(capacity: settings.peerQueueFramesMax, byteBudget: settings.peerQueueBytesMax, weigh: { $0.queuedByteEstimate }) }
        self.peerLinks = links

        let wal = try WriteAheadLog(path: walPath)
        if wal.tornBytesDropped > 0 {
            logger.warning("write-ahead log had a torn tail; dropped it", metadata: ["bytes": "\(wal.tornBytesDropped)", "file": "\(walPath)"])
        }
        let head = try ledger.replayHead(config: config)
        let signer = ReplicaSigner(replica: id, cluster: config.cluster, keyPair: keyPair)
        let replica = Replica(config: config, signer: signer, recovery: RecoveryState(ledgerHead: head, records: wal.records))
        var adversary: ReplicaAdversary?
        if let byzantine {
            let seed = UInt64.random(in: 0...UInt64.max)
            adversary = ReplicaAdversary(mode: byzantine, config: config, signer: signer, seed: seed)
            logger.critical("BYZANTINE MODE: this replica attacks its own cluster on purpose; for fault-injection tests only",
                            metadata: ["mode": "\(byzantine)", "seed": "\(seed)"])
        }
        self.core = Mutex(CoreState(replica: replica, wal: wal, ledger: ledger, adversary: adversary))
        self.status = Mutex(ReplicaStatus(
            replica: id.value, view: replica.view.value, primary: replica.primary.value, inViewChange: replica.isInViewChange,
            height: head.height.value, headHash: head.hash.hex, stableCheckpoint: replica.stableCheckpoint.value,
            connectedPeers: [], committedBlocks: 0, viewChanges: 0))
        logger.info("recovered", metadata: ["view": "\(replica.view.value)", "height": "\(head.height.value)", "walRecords": "\(wal.records.count)"])
    }

    public var currentStatus: ReplicaStatus {
        var current = status.withLock { $0 }
        let shed = shedCounts.withLock { $0 }
        current.shed = shed.isEmpty ? nil : shed
        return current
    }

    /// Runs until the task is cancelled: the server, the peer links, the clock and the core.
    public func run(group: MultiThreadedEventLoopGroup = .singleton) async throws {
        let endpoint = config.replicas[Int(id.value)]
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: endpoint.host, port: Int(endpoint.port)) { channel in
                let limit = FrameLimit(self.settings.frameBytesMax)
                return wrapFrameChannel(channel, limit: limit).map { InboundConnection(accepted: AcceptedChannel($0), frameLimit: limit) }
            }
        logger.info("listening", metadata: ["address": "\(endpoint.host):\(endpoint.port)"])
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await self.acceptLoop(server) }
            for (peer, mailbox) in peerLinks {
                group.addTask { await self.peerLinkLoop(peer: peer, mailbox: mailbox) }
            }
            group.addTask { await self.clockLoop() }
            group.addTask { try await self.coreLoop() }
        }
    }

    // MARK: The core loop

    private func clockLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: settings.tickInterval)
            inbox.post(.tick)
        }
    }

    private func coreLoop() async throws {
        defer { inbox.close() }
        while !Task.isCancelled {
            let events = await inbox.takeAll()
            if events.isEmpty { return }
            metrics.groupSize.record(events.count)
            let (actions, staged) = try core.withLock { state in
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
                }
                return (actions, try stage(actions, state: state))
            }
            // The fsyncs run off Swift's cooperative pool (one thread per core): a blocking call
            // there holds a thread every other task of the process needs. With several replicas
            // in one process (DurabilityOrderTests) their blocked fsyncs took every thread and
            // nothing could run; in the benchmark, one replica per process, it measured neutral.
            try await makeDurable(staged)
            try core.withLock { state in
                try release(actions, staged: staged, state: state)
                if let adversary = state.adversary, events.contains(where: { if case .tick = $0 { true } else { false } }) {
                    for send in adversary.tick(coreView: state.replica.view) { peerLinks[send.to]?.post(.message(send.message)) }
                    logAdversary(adversary, state: state)
                }
            }
        }
    }

    /// What one core-loop iteration wrote and must make durable before anything goes out.
    private struct Staged {
        let state: CoreState
        var walTouched = false
        var ledgerTouched = false
        var stableCheckpoint: SequenceNumber?
    }

    /// Group commit, first step: every persist record and every block of the iteration is
    /// written (the log's records stay buffered until `makeDurable`); nothing is sent yet.
    private func stage(_ actions: [Action], state: CoreState) throws -> Staged {
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
        return Staged(state: state, walTouched: !records.isEmpty, ledgerTouched: ledgerTouched, stableCheckpoint: stableCheckpoint)
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
                if let adversary = state.adversary {
                    for send in adversary.outgoing(message, to: [to]) { peerLinks[send.to]?.post(.message(send.message)) }
                } else {
                    peerLinks[to]?.post(.message(message))
                }
            case .broadcast(let message):
                if let adversary = state.adversary {
                    for send in adversary.outgoing(message, to: peerLinks.keys.sorted()) { peerLinks[send.to]?.post(.message(send.message)) }
                } else {
                    let frame = Frame.message(message)
                    for mailbox in peerLinks.values { mailbox.post(frame) }
                }
            case .reply(let reply):
                for timestamp in reply.timestamps {
                    if let arrival = state.arrivals.removeValue(forKey: RequestKey(client: reply.client, timestamp: timestamp)) {
                        metrics.requestLatency.recordNanoseconds(arrival.duration(to: .now).nanoseconds)
                    }
                }
                let mailbox = clients.withLock { $0[reply.client] }
                if let adversary = state.adversary {
                    if let message = adversary.reply(reply) { mailbox?.post(.message(message)) }
                } else {
                    mailbox?.post(.message(.reply(reply)))
                }
            case .serveState(let request):
                serveState(request, state: state)
            case .persist, .commit, .commitCheckpoint:
                break
            }
        }
        updateStatus(state)
    }

    /// State transfer, serving side: the shared server, within the cluster's block limit and
    /// half a frame (the response must fit one).
    private func serveState(_ request: StateRequest, state: CoreState) {
        let signer = ReplicaSigner(replica: id, cluster: config.cluster, keyPair: keyPair)
        do {
            let response = try StateServer.response(
                to: request, from: state.ledger, blocksMax: config.parameters.stateTransferBlocksMax,
                bytesMax: settings.frameBytesMax / 2, weight: \.queuedByteEstimate, signer: signer)
            if let response { peerLinks[request.replica]?.post(.message(.stateResponse(response))) }
        } catch {
            logger.error("cannot serve state transfer", metadata: ["error": "\(error)"])
        }
    }

    private func updateStatus(_ state: CoreState) {
        let replica = state.replica
        let peers = connectedPeers.withLock { $0.map(\.value).sorted() }
        metrics.view.record(Double(replica.view.value))
        metrics.height.record(Double(replica.ledgerHead.height.value))
        status.withLock { status in
            if replica.view.value != status.view {
                state.viewChanges += 1
                metrics.viewChanges.increment()
            }
            status = ReplicaStatus(
                replica: id.value, view: replica.view.value, primary: replica.primary.value, inViewChange: replica.isInViewChange,
                height: replica.ledgerHead.height.value, headHash: replica.ledgerHead.hash.hex,
                stableCheckpoint: replica.stableCheckpoint.value, connectedPeers: peers,
                committedBlocks: state.committedBlocks, viewChanges: state.viewChanges,
                byzantineMode: state.adversary?.mode.rawValue, byzantineMoves: state.adversary?.moves)
        }
    }

    /// A Byzantine replica says so, loudly, every ten seconds.
    private func logAdversary(_ adversary: ReplicaAdversary, state: CoreState) {
        let now = ContinuousClock.now
        guard now - state.lastAdversaryLog >= .seconds(10) else { return }
        state.lastAdversaryLog = now
        let moves = adversary.moves.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        logger.warning("BYZANTINE MODE still on", metadata: ["mode": "\(adversary.mode)", "moves": "\(moves)"])
    }

    // MARK: Inbound connections

    private func acceptLoop(_ server: NIOAsyncChannel<InboundConnection, Never>) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { connections in
                for try await connection in connections {
                    group.addTask { await self.serveConnection(connection) }
                }
            }
        }
    }

    /// One inbound connection: handshake, then frames. Catches its own errors: one bad peer
    /// never takes the server down.
    private func serveConnection(_ connection: InboundConnection) async {
        let channel = connection.accepted.take()
        let remote = channel.channel.remoteAddress.map { "\($0)" } ?? "unknown"
        // Cheapest check first: too many connections still in their handshake are closed
        // before any signature is made or checked for them.
        let inFlight = handshakesInFlight.wrappingAdd(1, ordering: .relaxed).newValue
        var handshaking = true
        defer { if handshaking { handshakesInFlight.wrappingSubtract(1, ordering: .relaxed) } }
        guard inFlight <= settings.handshakesInFlightMax else {
            shed("connection")
            try? await channel.executeThenClose { _, _ in }
            return
        }
        do {
            try await channel.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                let deadline = Deadline(settings.handshakeTimeout, channel: channel.channel)
                let driver = HandshakeDriver(handshake: Handshake(config: config), myIdentity: .replica(id), myKey: keyPair)
                let peer = try await driver.asAcceptor(inbound: &iterator, outbound: outbound) { identity in
                    if case .replica = identity { connection.frameLimit.raise(to: self.peerFrameBytesMax) }
                }
                deadline.cancel()
                handshaking = false
                handshakesInFlight.wrappingSubtract(1, ordering: .relaxed)
                switch peer {
                case .replica(let peerID):
                    let previous = inboundReplicaChannels.withLock { $0.updateValue(channel.channel, forKey: peerID) }
                    if let previous {
                        shed("connection")
                        previous.close(promise: nil)
                    }
                    defer {
                        inboundReplicaChannels.withLock { channels in
                            if let current = channels[peerID], current === channel.channel { channels[peerID] = nil }
                        }
                    }
                    try await serveReplica(peerID, iterator: &iterator)
                case .client(let key):
                    try await serveClient(key, channel: channel.channel, iterator: &iterator, outbound: outbound)
                }
            }
        } catch {
            logger.debug("inbound connection closed", metadata: ["remote": "\(remote)", "reason": "\(error)"])
        }
    }

    private func serveReplica(_ peer: ReplicaID, iterator: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator) async throws {
        while let frame = try await iterator.next() {
            guard case .message(let message) = frame else {
                throw ConnectionError(description: "replica \(peer.value) sent a \(frame.kind) frame")
            }
            if case .request(let request) = message {
                // A client request relayed by a replica: authenticated by its client signature,
                // handed in as the relay's message (the core's one relayed-request path, as in
                // the simulator), never as a client request of its own.
                guard verifier.verify(request) else { continue }
                inbox.post(.message(.request(request), from: peer))
                continue
            }
            guard message.sender == peer else {
                logger.warning("dropping message whose signer is not the connected replica", metadata: ["peer": "\(peer.value)"])
                continue
            }
            do {
                try verifier.verify(message)
            } catch {
                logger.warning("dropping message with a bad signature", metadata: ["peer": "\(peer.value)", "error": "\(error)"])
                continue
            }
            inbox.post(.message(message, from: peer))
        }
    }

    private func serveClient(_ key: PublicKey, channel: any Channel, iterator: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
                             outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        let mailbox = Mailbox<Frame>(capacity: settings.clientQueueFramesMax)
        let accepted = clients.withLock { clients -> Bool in
            guard clients.count < settings.clientConnectionsMax || clients[key] != nil else { return false }
            clients[key]?.close()
            clients[key] = mailbox
            return true
        }
        guard accepted else {
            try? await outbound.write(.refusal("too many client connections"))
            return
        }
        defer {
            clients.withLock { clients in
                if clients[key] === mailbox { clients[key] = nil }
            }
            mailbox.close()
        }
        // Replies are written from the event loop itself (`FrameDrain`).
        try await FrameDrain.install(on: channel, draining: mailbox)
        defer { mailbox.setWakeHandler(nil) }
        var gate = RequestGate(limits: settings.requestLimits)
        while let frame = try await iterator.next() {
            switch frame {
            case .message(.request(let request)):
                guard request.client == key else {
                    throw ConnectionError(description: "client sent a request signed by another key")
                }
                let now = ContinuousClock.now
                switch gate.admit(request, now: now) {
                case .drop(.rateLimited):
                    shed("rate")
                    continue
                case .drop(.duplicate):
                    shed("duplicate")
                    continue
                case .forwardVerified:
                    inbox.post(.clientRequest(request))
                    continue
                case .verify:
                    break
                }
                guard verifier.verify(request) else {
                    shed("signature")
                    logger.debug("dropping request with a bad signature", metadata: ["client": "\(key)"])
                    do {
                        try gate.badSignature()
                    } catch {
                        shed("connection")
                        try? await outbound.write(.refusal("\(error)"))
                        throw ConnectionError(description: "client \(key): \(error)")
                    }
                    continue
                }
                gate.verified(request, now: now)
                inbox.post(.clientRequest(request))
            case .statusRequest:
                let json = (try? JSONEncoder().encode(currentStatus)).map { Array($0) } ?? []
                mailbox.post(.statusResponse(json))
            default:
                throw ConnectionError(description: "client sent a \(frame.kind) frame")
            }
        }
    }

    // MARK: The signature memo

    /// Entries of the verified-signature memo: at least a full window of full batches, so the
    /// requests of every certificate a VIEW-CHANGE or NEW-VIEW can carry were seen recently
    /// enough to be remembered (bounded: ~80 bytes an entry).
    static func memoCapacity(_ parameters: ProtocolParameters) -> Int {
        let window = Int(clamping: parameters.watermarkWindow).multipliedReportingOverflow(by: parameters.batchSizeMax)
        return min(max(32_768, window.overflow ? Int.max : window.partialValue), 262_144)
    }

    // MARK: Outbound peer links

    /// The frame limit on links between replicas, once the peer proved it is one: a
    /// VIEW-CHANGE holds at most a watermark window of prepared certificates, each with a batch
    /// of at most `batchBytesMax`, and a NEW-VIEW carries each distinct batch once, so this
    /// covers both (about 72.5 MiB with the defaults). Clients and unauthenticated peers keep
    /// `NodeSettings.frameBytesMax`.
    static func peerFrameBytesMax(parameters: ProtocolParameters, floor: Int) -> Int {
        let window = Int(parameters.watermarkWindow)
        let perCertificate = parameters.batchBytesMax + 64 * 1024 + 8 * 1024
        return max(floor, window * perCertificate + 4 * 1024 * 1024)
    }

    /// Whether `frame` is within the replica-link frame limit. One that is not would only make
    /// the peer close the connection (losing what follows it on the link), so it is dropped
    /// here, loudly. Batches (batchBytesMax), state-transfer responses and view-change messages
    /// are sized to fit; this is the last guard.
    func fitsOneFrame(_ frame: Frame, to peer: ReplicaID) -> Bool {
        guard let bytes = Self.oversizeBytes(frame, frameBytesMax: peerFrameBytesMax) else { return true }
        metrics.framesOversize.increment()
        let kind = if case .message(let message) = frame { "\(message.tag)" } else { "\(frame.kind)" }
        logger.error("dropping a message too large for one frame: the peer would close the connection",
                     metadata: ["peer": "\(peer.value)", "message": "\(kind)", "bytes": "\(bytes)", "frameBytesMax": "\(peerFrameBytesMax)"])
        return false
    }

    /// The encoded size of `frame` if it exceeds `frameBytesMax`, else nil. The size estimate
    /// is never below the real size, so only the rare frame it puts over the limit is encoded.
    static func oversizeBytes(_ frame: Frame, frameBytesMax: Int) -> Int? {
        guard frame.queuedByteEstimate > frameBytesMax else { return nil }
        let bytes = frame.encodedPayload().count
        return bytes > frameBytesMax ? bytes : nil
    }

    /// Keeps one connection to `peer` open, reconnecting with exponential backoff and jitter,
    /// and writes the peer's queued frames to it.
    private func peerLinkLoop(peer: ReplicaID, mailbox: Mailbox<Frame>) async {
        let endpoint = config.replicas[Int(peer.value)]
        var backoff = settings.reconnectBackoffMin
        var generator = SystemRandomNumberGenerator()
        while !Task.isCancelled {
            do {
                let channel = try await connectFrameChannel(to: endpoint, frameBytesMax: settings.frameBytesMax)
                try await channel.executeThenClose { inbound, outbound in
                    var iterator = inbound.makeAsyncIterator()
                    let deadline = Deadline(settings.handshakeTimeout, channel: channel.channel)
                    let driver = HandshakeDriver(handshake: Handshake(config: config), myIdentity: .replica(id), myKey: keyPair)
                    _ = try await driver.asConnector(inbound: &iterator, outbound: outbound, expected: .replica(peer))
                    deadline.cancel()
                    backoff = settings.reconnectBackoffMin
                    connectedPeers.withLock { _ = $0.insert(peer) }
                    defer { connectedPeers.withLock { _ = $0.remove(peer) } }
                    logger.info("connected to peer", metadata: ["peer": "\(peer.value)"])
                    // Queued frames are written from the event loop itself (`FrameDrain`). The
                    // size estimate is cheap; only a frame it puts over the limit is looked at.
                    try await FrameDrain.install(on: channel.channel, draining: mailbox) { frames in
                        let oversize = frames.contains { $0.queuedByteEstimate > self.peerFrameBytesMax }
                        return oversize ? frames.filter { self.fitsOneFrame($0, to: peer) } : frames
                    }
                    defer { mailbox.setWakeHandler(nil) }
                    // The peer sends nothing on this link: the inbound side ends when the
                    // connection closes, and the link reconnects.
                    while try await iterator.next() != nil {}
                }
            } catch {
                logger.debug("peer link down", metadata: ["peer": "\(peer.value)", "reason": "\(error)"])
            }
            let jitter = Double.random(in: 0.5...1.0, using: &generator)
            try? await Task.sleep(for: backoff * jitter)
            backoff = min(backoff * 2, settings.reconnectBackoffMax)
        }
    }
}
