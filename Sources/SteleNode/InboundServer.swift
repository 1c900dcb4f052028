import Logging
import NIOCore
import NIOPosix
import PBFT
import SteleCore
import Synchronization

/// The replica's listening socket and every connection it accepts: the handshake (bounded in
/// number and in time), then a replica's messages, verified, into the core's inbox, or a
/// client's connection handed to `ClientAdmission`. Each connection catches its own errors, so
/// one bad peer never takes the server down.
final class InboundServer: Sendable {
    private let context: NodeContext
    private let verifier: SignatureVerifier
    private let inbox: Mailbox<Event>
    private let shed: ShedTally
    private let clients: ClientAdmission
    /// The frame limit a connection gets once it proved it is a replica.
    private let peerFrameBytesMax: Int
    /// The one inbound connection each replica may hold open; a newer one closes the older.
    private let replicaChannels = Mutex<[ReplicaID: any Channel]>([:])
    /// Inbound connections that have not finished their handshake.
    private let handshakesInFlight = Atomic<Int>(0)

    init(context: NodeContext, verifier: SignatureVerifier, inbox: Mailbox<Event>, shed: ShedTally,
         clients: ClientAdmission, peerFrameBytesMax: Int) {
        self.context = context
        self.verifier = verifier
        self.inbox = inbox
        self.shed = shed
        self.clients = clients
        self.peerFrameBytesMax = peerFrameBytesMax
    }

    /// Binds the replica's address from the cluster config.
    func bind(group: MultiThreadedEventLoopGroup) async throws -> NIOAsyncChannel<InboundConnection, Never> {
        let endpoint = context.config.replicas[Int(context.id.value)]
        let frameBytesMax = context.settings.frameBytesMax
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: endpoint.host, port: Int(endpoint.port)) { channel in
                let limit = FrameLimit(frameBytesMax)
                return wrapFrameChannel(channel, limit: limit).map {
                    InboundConnection(accepted: AcceptedChannel($0), frameLimit: limit)
                }
            }
        context.logger.info("listening", metadata: ["address": "\(endpoint.host):\(endpoint.port)"])
        return server
    }

    /// Serves every connection `server` accepts, each in its own task, until cancelled.
    func acceptLoop(_ server: NIOAsyncChannel<InboundConnection, Never>) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { connections in
                for try await connection in connections {
                    group.addTask { await self.serve(connection) }
                }
            }
        }
    }

    /// One inbound connection: handshake, then frames. Catches its own errors: one bad peer
    /// never takes the server down.
    private func serve(_ connection: InboundConnection) async {
        let channel = connection.accepted.take()
        let remote = channel.channel.remoteAddress.map { "\($0)" } ?? "unknown"
        // Cheapest check first: too many connections still in their handshake are closed
        // before any signature is made or checked for them.
        let inFlight = handshakesInFlight.wrappingAdd(1, ordering: .relaxed).newValue
        var handshaking = true
        defer { if handshaking { handshakesInFlight.wrappingSubtract(1, ordering: .relaxed) } }
        guard inFlight <= context.settings.handshakesInFlightMax else {
            shed.record(.connection)
            try? await channel.executeThenClose { _, _ in }
            return
        }
        do {
            try await channel.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                let deadline = Deadline(context.settings.handshakeTimeout, channel: channel.channel)
                let peer = try await context.handshakeDriver().asAcceptor(inbound: &iterator, outbound: outbound) {
                    if case .replica = $0 { connection.frameLimit.raise(to: self.peerFrameBytesMax) }
                }
                deadline.cancel()
                handshaking = false
                handshakesInFlight.wrappingSubtract(1, ordering: .relaxed)
                switch peer {
                case .replica(let peerID):
                    try await serveReplica(peerID, channel: channel.channel, iterator: &iterator)
                case .client(let key):
                    try await clients.serve(key, channel: channel.channel, iterator: &iterator, outbound: outbound)
                }
            }
        } catch {
            context.logger.debug("inbound connection closed", metadata: ["remote": "\(remote)", "reason": "\(error)"])
        }
    }

    /// A replica's inbound connection, after its handshake: it replaces (closes) the replica's
    /// older connection, and holds the replica's slot until it ends.
    private func serveReplica(_ peer: ReplicaID, channel: any Channel,
                              iterator: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator) async throws {
        let previous = replicaChannels.withLock { $0.updateValue(channel, forKey: peer) }
        if let previous {
            shed.record(.connection)
            previous.close(promise: nil)
        }
        defer {
            replicaChannels.withLock { channels in
                if let current = channels[peer], current === channel { channels[peer] = nil }
            }
        }
        try await receive(from: peer, iterator: &iterator)
    }

    /// A replica's messages: each signed by the connected replica (or a client request it
    /// relays, signed by its client), verified, into the core's inbox.
    private func receive(from peer: ReplicaID,
                         iterator: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator) async throws {
        let logger = context.logger
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
                logger.warning("dropping message whose signer is not the connected replica",
                               metadata: ["peer": "\(peer.value)"])
                continue
            }
            do {
                try verifier.verify(message)
            } catch {
                logger.warning("dropping message with a bad signature",
                               metadata: ["peer": "\(peer.value)", "error": "\(error)"])
                continue
            }
            inbox.post(.message(message, from: peer))
        }
    }
}
