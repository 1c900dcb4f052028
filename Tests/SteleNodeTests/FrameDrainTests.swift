import NIOCore
import NIOPosix
import Synchronization
import Testing
import SteleTestSupport
@testable import SteleNode

/// Counts the bytes that arrive; reads only once `startReading` is called (autoRead is off).
private final class SlowReader: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let received = Atomic<Int>(0)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received.add(unwrapInboundIn(data).readableBytes, ordering: .relaxed)
    }
}

@Suite("Writing a link's frames from the event loop")
struct FrameDrainTests {
    @Test("a peer that stops reading leaves frames in the bounded mailbox, not in NIO's buffer; once it reads, the rest arrive")
    func backpressure() async throws {
        let reader = SlowReader()
        let accepted = Mutex<(any Channel)?>(nil)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                accepted.withLock { $0 = channel }
                return channel.pipeline.addHandler(reader)
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let port = server.localAddress!.port!
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in wrapFrameChannel(channel, frameBytesMax: 1 << 20) }
        let capacity = 16
        let mailbox = Mailbox<Frame>(capacity: capacity)
        let frame = Frame.statusResponse(Array(repeating: 7, count: 64 * 1024))
        let frameBytes = 4 + frame.encodedPayload().count
        try await channel.executeThenClose { _, _ in
            try await FrameDrain.install(on: channel.channel, draining: mailbox)
            defer { mailbox.setWakeHandler(nil) }
            // One frame at a time until the drain holds one back: the socket's buffers are full
            // (a few MiB on loopback; bounded at 64 MiB). The channel turns unwritable and
            // writable again while the kernel's buffers still grow, so a hold counts once it
            // lasts.
            var posted = 0
            var held = false
            while !held && posted < 1024 {
                mailbox.post(frame)
                posted += 1
                _ = await eventually(timeout: .seconds(60)) { mailbox.count == 0 || !channel.channel.isWritable }
                if mailbox.count > 0 {
                    held = !(await eventually(timeout: .seconds(3)) { mailbox.count == 0 })
                }
            }
            #expect(held, "the drain held frames back once the peer's unread bytes filled the buffers")
            #expect(!channel.channel.isWritable, "only an unwritable channel holds frames back")
            // While it holds, posts stay queued: a drain that ignored writability would take
            // them into NIO's unbounded buffer within milliseconds; give it a second.
            let queued = mailbox.count
            for _ in 0..<(capacity / 2) {
                mailbox.post(frame)
                posted += 1
            }
            let taken = await eventually(timeout: .seconds(1)) { mailbox.count < queued + capacity / 2 }
            #expect(!taken, "nothing is taken while the channel is unwritable")
            // Past its capacity the mailbox drops the oldest, as it always did.
            for _ in 0..<capacity {
                mailbox.post(frame)
                posted += 1
            }
            #expect(mailbox.droppedCount > 0)
            #expect(mailbox.count <= capacity)
            // The peer reads again: the drain resumes on writability, and every frame that was
            // not dropped arrives.
            let peer = try #require(accepted.withLock { $0 })
            try await peer.setOption(.autoRead, value: true).get()
            let expected = (posted - mailbox.droppedCount) * frameBytes
            let arrived = await eventually(timeout: .seconds(120)) { reader.received.load(ordering: .relaxed) >= expected }
            #expect(arrived, "\(reader.received.load(ordering: .relaxed)) of \(expected) bytes arrived")
            #expect(mailbox.count == 0)
        }
    }
}
