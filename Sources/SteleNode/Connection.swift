import Logging
import NIOCore
import NIOPosix
import SteleCore
import SteleCrypto
import Synchronization

public typealias FrameChannel = NIOAsyncChannel<Frame, Frame>

/// Limits and timings of the runtime shell.
public struct NodeSettings: Sendable {
    /// Wall-clock length of one core tick.
    public var tickInterval: Duration = .milliseconds(50)
    /// Largest frame accepted on a connection (checked before the body is buffered).
    public var frameBytesMax: Int = 4 * 1024 * 1024
    /// Frames queued per peer replica before the oldest are dropped.
    public var peerQueueFramesMax: Int = 8192
    /// Bytes (estimated) queued per peer replica before the oldest frames are dropped: while a
    /// peer is down, 8,192 pre-prepares of large requests would otherwise pile up gigabytes.
    public var peerQueueBytesMax: Int = 64 * 1024 * 1024
    /// Frames queued per client connection before the oldest are dropped.
    public var clientQueueFramesMax: Int = 4096
    /// Events queued for the core before the oldest are dropped.
    public var inboxEventsMax: Int = 65536
    /// A peer must finish the handshake within this time.
    public var handshakeTimeout: Duration = .seconds(5)
    /// Reconnection backoff: starts here, doubles, capped, with jitter.
    public var reconnectBackoffMin: Duration = .milliseconds(50)
    public var reconnectBackoffMax: Duration = .seconds(2)
    /// Most client connections served at once.
    public var clientConnectionsMax: Int = 1024
    /// Connections still in their handshake at once; more are closed at once, before any
    /// cryptography is spent on them.
    public var handshakesInFlightMax: Int = 256
    /// Per-client-connection admission: rate, retransmissions, bad signatures.
    var requestLimits = RequestGate.Limits()

    public init() {}
}

/// Installs the frame codec on a fresh channel and wraps it for async use.
func wrapFrameChannel(_ channel: Channel, frameBytesMax: Int) -> EventLoopFuture<FrameChannel> {
    wrapFrameChannel(channel, limit: FrameLimit(frameBytesMax))
}

/// The same, with a frame limit the connection may raise later.
func wrapFrameChannel(_ channel: Channel, limit: FrameLimit) -> EventLoopFuture<FrameChannel> {
    channel.eventLoop.makeCompletedFuture {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limit: limit)))
        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
        return try FrameChannel(wrappingChannelSynchronously: channel)
    }
}

/// Dials a replica and installs the frame codec. (`package`: the harness's floods dial with it.)
package func connectFrameChannel(to endpoint: ReplicaEndpoint, frameBytesMax: Int) async throws -> FrameChannel {
    try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .connectTimeout(.seconds(2))
        .connect(host: endpoint.host, port: Int(endpoint.port)) { channel in
            wrapFrameChannel(channel, frameBytesMax: frameBytesMax)
        }
}

/// An accepted channel on its way to the task that serves it.
///
/// NIO hands accepted channels over through a buffer, and a cancelled accept loop (a replica
/// stopping on SIGTERM) drops that buffer unread. NIO traps when a channel's writer is released
/// unfinished, so a channel dropped before anyone took it closes itself here (NIO issue 2813;
/// the test is `ShutdownTests`).
final class AcceptedChannel<Inbound: Sendable, Outbound: Sendable>: Sendable {
    private let channel: NIOAsyncChannel<Inbound, Outbound>
    private let taken = Atomic<Bool>(false)

    init(_ channel: NIOAsyncChannel<Inbound, Outbound>) { self.channel = channel }

    /// The channel, for the one task that serves it; that task closes it with `executeThenClose`.
    func take() -> NIOAsyncChannel<Inbound, Outbound> {
        taken.store(true, ordering: .releasing)
        return channel
    }

    deinit {
        guard !taken.load(ordering: .acquiring) else { return }
        let channel = self.channel
        Task { try? await channel.executeThenClose { _, _ in } }
    }
}

/// An accepted replica or client connection and its frame limit.
struct InboundConnection: Sendable {
    let accepted: AcceptedChannel<Frame, Frame>
    let frameLimit: FrameLimit
}

/// Why a connection ended during or after its handshake.
struct ConnectionError: Error, CustomStringConvertible {
    let description: String
}

/// Runs the handshake on an established channel. `expected` pins the identity the connector
/// dialled (an outbound link to replica j accepts only replica j). (`package`: the harness's
/// floods connect as a client or as an impersonated replica with it.)
package struct HandshakeDriver {
    let handshake: Handshake
    let myIdentity: PeerIdentity
    let myKey: KeyPair

    package init(handshake: Handshake, myIdentity: PeerIdentity, myKey: KeyPair) {
        self.handshake = handshake
        self.myIdentity = myIdentity
        self.myKey = myKey
    }

    /// As the side that dialled: HELLO, read HELLO, PROOF, read PROOF.
    package func asConnector(
        inbound: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<Frame>,
        expected: PeerIdentity
    ) async throws -> PeerIdentity {
        let myNonce = Handshake.freshNonce()
        try await outbound.write(.hello(Hello(cluster: handshake.config.cluster, identity: myIdentity, nonce: myNonce)))
        guard case .hello(let theirs)? = try await inbound.next() else { throw ConnectionError(description: "peer sent no HELLO") }
        _ = try handshake.key(for: theirs)
        guard theirs.identity == expected else { throw ConnectionError(description: "dialled \(expected) but \(theirs.identity) answered") }
        try await outbound.write(.proof(Handshake.prove(keyPair: myKey, cluster: handshake.config.cluster, verifierNonce: theirs.nonce, proverNonce: myNonce)))
        guard case .proof(let proof)? = try await inbound.next() else { throw ConnectionError(description: "peer sent no PROOF") }
        try handshake.check(proof: proof, from: theirs, myNonce: myNonce)
        return theirs.identity
    }

    /// As the side that accepted: read HELLO, HELLO, read PROOF, PROOF.
    /// `authenticated` runs once the peer's proof checked out and before our PROOF is sent:
    /// the peer sends nothing else before it has that PROOF.
    func asAcceptor(
        inbound: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<Frame>,
        authenticated: (PeerIdentity) -> Void = { _ in }
    ) async throws -> PeerIdentity {
        guard case .hello(let theirs)? = try await inbound.next() else { throw ConnectionError(description: "peer sent no HELLO") }
        do {
            _ = try handshake.key(for: theirs)
        } catch {
            try? await outbound.write(.refusal(error.description))
            throw error
        }
        let myNonce = Handshake.freshNonce()
        try await outbound.write(.hello(Hello(cluster: handshake.config.cluster, identity: myIdentity, nonce: myNonce)))
        guard case .proof(let proof)? = try await inbound.next() else { throw ConnectionError(description: "peer sent no PROOF") }
        do {
            try handshake.check(proof: proof, from: theirs, myNonce: myNonce)
        } catch {
            try? await outbound.write(.refusal(error.description))
            throw error
        }
        authenticated(theirs.identity)
        try await outbound.write(.proof(Handshake.prove(keyPair: myKey, cluster: handshake.config.cluster, verifierNonce: theirs.nonce, proverNonce: myNonce)))
        return theirs.identity
    }
}

/// Closes `channel` unless `cancel()` is called first: a deadline for the handshake.
struct Deadline: Sendable {
    private let scheduled: Scheduled<Void>

    init(_ duration: Duration, channel: Channel) {
        let nanoseconds = Int64(duration.components.seconds) * 1_000_000_000 + Int64(duration.components.attoseconds / 1_000_000_000)
        scheduled = channel.eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) {
            channel.close(promise: nil)
        }
    }

    func cancel() { scheduled.cancel() }
}

extension Duration {
    /// The duration in whole nanoseconds (negative if it is).
    public var nanoseconds: Int64 { Int64(components.seconds) * 1_000_000_000 + Int64(components.attoseconds / 1_000_000_000) }
}
