import NIOCore

/// Writes a link's queued frames from the channel's own event loop.
///
/// A link's mailbox used to be drained by a writer task: each burst woke that task on Swift's
/// cooperative pool, which then handed the frames to the event loop: two thread hand-offs per
/// burst, and at half of peak a burst is often one request or one reply. Here a post schedules
/// one drain on the event loop, which writes everything queued and flushes once.
///
/// The drain honours the channel's writability. While the socket's send buffer is past NIO's
/// high watermark nothing is taken, so frames wait in the mailbox, whose bounds drop the oldest
/// as they always did; a peer that stops reading cannot grow the process's memory. The drain
/// resumes when the channel becomes writable again. Frames are not taken for a closed channel
/// either: they stay for the next connection of the same link.
final class FrameDrain: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    private let mailbox: Mailbox<Frame>
    private let prepare: (@Sendable ([Frame]) -> [Frame])?
    private var context: ChannelHandlerContext?

    private init(mailbox: Mailbox<Frame>, prepare: (@Sendable ([Frame]) -> [Frame])?) {
        self.mailbox = mailbox
        self.prepare = prepare
    }

    /// Makes `channel`'s event loop the consumer of `mailbox` until `mailbox.setWakeHandler(nil)`,
    /// which the link calls when it ends (the mailbox may outlive the channel and be drained by
    /// the link's next connection). `prepare` may filter each burst before it is written.
    static func install(on channel: any Channel, draining mailbox: Mailbox<Frame>,
                        prepare: (@Sendable ([Frame]) -> [Frame])? = nil) async throws {
        let bound = try await channel.eventLoop.submit {
            let drain = FrameDrain(mailbox: mailbox, prepare: prepare)
            try channel.pipeline.syncOperations.addHandler(drain)
            return NIOLoopBound(drain, eventLoop: channel.eventLoop)
        }.get()
        let eventLoop = channel.eventLoop
        mailbox.setWakeHandler {
            eventLoop.execute { bound.value.drain() }
        }
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        drain()
        context.fireChannelWritabilityChanged()
    }

    /// On the event loop: writes everything queued if the channel can take it. A drain that
    /// takes nothing leaves the mailbox's wake handler disarmed; writability re-arms it here,
    /// and a new connection's `install` re-arms it there.
    private func drain() {
        guard let context, context.channel.isActive, context.channel.isWritable else { return }
        var frames = mailbox.takeAllNow()
        guard !frames.isEmpty else { return }
        if let prepare { frames = prepare(frames) }
        for frame in frames { context.write(wrapOutboundOut(frame), promise: nil) }
        context.flush()
    }
}
