import Logging
import NIOCore
import NIOPosix
import SteleCore
import Synchronization

/// The outbound links to the other replicas: one bounded mailbox per peer, and one task per
/// peer that keeps a connection open and drains that mailbox into it. Messages to a peer are
/// posted here and leave the process when its link is up; the protocol retransmits what a full
/// mailbox or a broken link loses.
final class PeerLinks: Sendable {
    private let context: NodeContext
    private let mailboxes: [ReplicaID: Mailbox<Frame>]
    /// Every other replica, in order: the targets of a broadcast.
    let peers: [ReplicaID]
    /// The peers whose link finished its handshake and is up now.
    private let connected = Mutex<Set<ReplicaID>>([])
    /// The frame limit of links between replicas (`frameBytesMax(parameters:floor:)`).
    let frameBytesMax: Int

    init(context: NodeContext) {
        self.context = context
        let settings = context.settings
        var mailboxes: [ReplicaID: Mailbox<Frame>] = [:]
        for peer in context.config.replicaIDs where peer != context.id {
            mailboxes[peer] = Mailbox(capacity: settings.peerQueueFramesMax, byteBudget: settings.peerQueueBytesMax,
                                      weigh: { $0.queuedByteEstimate })
        }
        self.mailboxes = mailboxes
        self.peers = mailboxes.keys.sorted()
        self.frameBytesMax = Self.frameBytesMax(parameters: context.config.parameters, floor: settings.frameBytesMax)
    }

    /// Queues `message` for each of `targets`.
    func post(_ message: Message, to targets: [ReplicaID]) {
        let frame = Frame.message(message)
        for target in targets { mailboxes[target]?.post(frame) }
    }

    func post(_ message: Message, to target: ReplicaID) {
        mailboxes[target]?.post(.message(message))
    }

    /// The ids of the peers whose link is up, in order (for the status).
    var connectedPeers: [UInt16] {
        connected.withLock { $0.map(\.value).sorted() }
    }

    /// Runs every link until the task is cancelled.
    func run() async {
        await withDiscardingTaskGroup { group in
            for (peer, mailbox) in mailboxes {
                group.addTask { await self.keepLink(to: peer, draining: mailbox) }
            }
        }
    }

    /// Keeps one connection to `peer` open, reconnecting with exponential backoff and jitter,
    /// and writes the peer's queued frames to it.
    private func keepLink(to peer: ReplicaID, draining mailbox: Mailbox<Frame>) async {
        let settings = context.settings
        let endpoint = context.config.replicas[Int(peer.value)]
        var backoff = settings.reconnectBackoffMin
        var generator = SystemRandomNumberGenerator()
        while !Task.isCancelled {
            do {
                let channel = try await connectFrameChannel(to: endpoint, frameBytesMax: settings.frameBytesMax)
                try await channel.executeThenClose { inbound, outbound in
                    var iterator = inbound.makeAsyncIterator()
                    let deadline = Deadline(settings.handshakeTimeout, channel: channel.channel)
                    _ = try await context.handshakeDriver()
                        .asConnector(inbound: &iterator, outbound: outbound, expected: .replica(peer))
                    deadline.cancel()
                    backoff = settings.reconnectBackoffMin
                    try await drain(mailbox, into: channel.channel, peer: peer, until: &iterator)
                }
            } catch {
                context.logger.debug("peer link down", metadata: ["peer": "\(peer.value)", "reason": "\(error)"])
            }
            let jitter = Double.random(in: 0.5...1.0, using: &generator)
            try? await Task.sleep(for: backoff * jitter)
            backoff = min(backoff * 2, settings.reconnectBackoffMax)
        }
    }

    /// A link that finished its handshake: writes the mailbox's frames to it until it closes.
    private func drain(_ mailbox: Mailbox<Frame>, into channel: any Channel, peer: ReplicaID,
                       until iterator: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator) async throws {
        connected.withLock { _ = $0.insert(peer) }
        defer { connected.withLock { _ = $0.remove(peer) } }
        context.logger.info("connected to peer", metadata: ["peer": "\(peer.value)"])
        // Queued frames are written from the event loop itself (`FrameDrain`). The size
        // estimate is cheap; only a frame it puts over the limit is looked at.
        try await FrameDrain.install(on: channel, draining: mailbox) { frames in
            let oversize = frames.contains { $0.queuedByteEstimate > self.frameBytesMax }
            return oversize ? frames.filter { self.fitsOneFrame($0, to: peer) } : frames
        }
        defer { mailbox.setWakeHandler(nil) }
        // The peer sends nothing on this link: the inbound side ends when the connection
        // closes, and the link reconnects.
        while try await iterator.next() != nil {}
    }

    /// Whether `frame` is within the replica-link frame limit. One that is not would only make
    /// the peer close the connection (losing what follows it on the link), so it is dropped
    /// here, loudly. Batches (batchBytesMax), state-transfer responses and view-change messages
    /// are sized to fit; this is the last guard.
    func fitsOneFrame(_ frame: Frame, to peer: ReplicaID) -> Bool {
        guard let bytes = Self.oversizeBytes(frame, frameBytesMax: frameBytesMax) else { return true }
        context.metrics.framesOversize.increment()
        let kind = if case .message(let message) = frame { "\(message.tag)" } else { "\(frame.kind)" }
        context.logger.error("dropping a message too large for one frame: the peer would close the connection",
                             metadata: ["peer": "\(peer.value)", "message": "\(kind)", "bytes": "\(bytes)",
                                        "frameBytesMax": "\(frameBytesMax)"])
        return false
    }

    /// The frame limit on links between replicas, once the peer proved it is one: a
    /// VIEW-CHANGE holds at most a watermark window of prepared certificates, each with a batch
    /// of at most `batchBytesMax`, and a NEW-VIEW carries each distinct batch once, so this
    /// covers both (about 72.5 MiB with the defaults). Clients and unauthenticated peers keep
    /// `NodeSettings.frameBytesMax`.
    static func frameBytesMax(parameters: ProtocolParameters, floor: Int) -> Int {
        let window = Int(parameters.watermarkWindow)
        let perCertificate = parameters.batchBytesMax + 64 * 1024 + 8 * 1024
        return max(floor, window * perCertificate + 4 * 1024 * 1024)
    }

    /// The encoded size of `frame` if it exceeds `frameBytesMax`, else nil. The size estimate
    /// is never below the real size, so only the rare frame it puts over the limit is encoded.
    static func oversizeBytes(_ frame: Frame, frameBytesMax: Int) -> Int? {
        guard frame.queuedByteEstimate > frameBytesMax else { return nil }
        let bytes = frame.encodedPayload().count
        return bytes > frameBytesMax ? bytes : nil
    }
}
