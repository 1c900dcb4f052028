import NIOCore
import PBFT
import Synchronization
import Testing
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import SteleNode

private let cluster = ClusterID(bytes: [UInt8](repeating: 3, count: 16))!
private let replicas = TestReplicas(n: 4, cluster: cluster, ports: .from(9000))
private let keys = replicas.keys
private let config = replicas.config

private func sampleFrames() -> [Frame] {
    let client = ClientSigner(cluster: cluster, keyPair: FixedKeys.repeating(9))
    return [
        .hello(Hello(cluster: cluster, identity: .replica(2), nonce: [UInt8](repeating: 5, count: 32))),
        .hello(Hello(cluster: cluster, identity: .client(client.publicKey), nonce: [UInt8](repeating: 6, count: 32))),
        .proof(keys[0].sign([1])),
        .message(.request(client.request(timestamp: 7, payload: Array("hello".utf8)))),
        .statusRequest,
        .statusResponse(Array("{\"view\":1}".utf8)),
        .refusal("go away"),
    ]
}

private func encodeAll(_ frames: [Frame]) -> ByteBuffer {
    var buffer = ByteBuffer()
    for frame in frames { try! FrameEncoder().encode(data: frame, out: &buffer) }
    return buffer
}

@Suite("Wire frames")
struct FrameTests {
    @Test("frames decode the same whether bytes arrive all at once or one at a time")
    func byteAtATime() throws {
        let frames = sampleFrames()
        let encoded = encodeAll(frames)

        var allAtOnce = FrameDecoder(frameBytesMax: 1 << 20)
        var buffer = encoded
        var decoded: [Frame] = []
        while let frame = try allAtOnce.next(from: &buffer) { decoded.append(frame) }
        #expect(decoded == frames)

        var oneByOne = FrameDecoder(frameBytesMax: 1 << 20)
        var pending = ByteBuffer()
        decoded = []
        for byte in encoded.readableBytesView {
            pending.writeInteger(byte)
            while let frame = try oneByOne.next(from: &pending) { decoded.append(frame) }
        }
        #expect(decoded == frames)
    }

    @Test("an oversize length is refused before the body arrives")
    func oversize() {
        var decoder = FrameDecoder(frameBytesMax: 1024)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(1025), endianness: .big)
        #expect(throws: FrameDecoder.Error(code: .frameTooLarge(length: 1025, limit: 1024))) { _ = try decoder.next(from: &buffer) }
    }

    @Test("an empty frame and an unknown kind are typed errors")
    func emptyAndUnknown() {
        var decoder = FrameDecoder(frameBytesMax: 1024)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(0), endianness: .big)
        #expect(throws: FrameDecoder.Error(code: .emptyFrame)) { _ = try decoder.next(from: &buffer) }

        var other = FrameDecoder(frameBytesMax: 1024)
        var garbage = ByteBuffer()
        garbage.writeInteger(UInt32(3), endianness: .big)
        garbage.writeBytes([0x7f, 1, 2])
        #expect(throws: FrameDecoder.Error(code: .malformed(DecodingError(.unknownTag(0x7f), field: "frame.kind", offset: 0)))) {
            _ = try other.next(from: &garbage)
        }
    }

    @Test("seeded garbage never crashes the decoder")
    func garbage() {
        var state: UInt64 = 42
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
        for _ in 0..<5_000 {
            var decoder = FrameDecoder(frameBytesMax: 4096)
            var buffer = ByteBuffer()
            let length = Int(next() % 64)
            buffer.writeInteger(UInt32(length), endianness: .big)
            buffer.writeBytes((0..<length).map { _ in UInt8(truncatingIfNeeded: next()) })
            _ = try? decoder.next(from: &buffer)
        }
    }
}

@Suite("Connection handshake")
struct HandshakeTests {
    let handshake = Handshake(config: config)

    @Test("a replica proves its key by signing the peer's nonce")
    func replicaProof() throws {
        let myNonce = Handshake.freshNonce()
        let theirNonce = Handshake.freshNonce()
        let hello = Hello(cluster: cluster, identity: .replica(2), nonce: theirNonce)
        let proof = Handshake.prove(keyPair: keys[2], cluster: cluster, verifierNonce: myNonce, proverNonce: theirNonce)
        try handshake.check(proof: proof, from: hello, myNonce: myNonce)
    }

    @Test("a wrong key, a replayed proof, an unknown replica and another cluster are refused")
    func refusals() {
        let myNonce = Handshake.freshNonce()
        let theirNonce = Handshake.freshNonce()
        let hello = Hello(cluster: cluster, identity: .replica(2), nonce: theirNonce)
        let wrongKey = Handshake.prove(keyPair: keys[3], cluster: cluster, verifierNonce: myNonce, proverNonce: theirNonce)
        #expect(throws: Handshake.Failure(code: .badProof)) { try handshake.check(proof: wrongKey, from: hello, myNonce: myNonce) }

        let replayed = Handshake.prove(keyPair: keys[2], cluster: cluster, verifierNonce: Handshake.freshNonce(), proverNonce: theirNonce)
        #expect(throws: Handshake.Failure(code: .badProof)) { try handshake.check(proof: replayed, from: hello, myNonce: myNonce) }

        let outsider = Hello(cluster: cluster, identity: .replica(7), nonce: theirNonce)
        #expect(throws: Handshake.Failure(code: .unknownReplica(7))) { _ = try handshake.key(for: outsider) }

        let foreign = Hello(cluster: ClusterID(bytes: [UInt8](repeating: 4, count: 16))!, identity: .replica(1), nonce: theirNonce)
        #expect(throws: Handshake.Failure(code: .wrongCluster)) { _ = try handshake.key(for: foreign) }
    }
}

@Suite("Bounded mailboxes")
struct MailboxTests {
    @Test("a full mailbox drops its oldest items, never blocks, and hands over everything else in order")
    func overflow() async {
        let mailbox = Mailbox<Int>(capacity: 8)
        for value in 0..<9 { mailbox.post(value) }
        #expect(mailbox.droppedCount == 4)
        #expect(await mailbox.takeAll() == [4, 5, 6, 7, 8])
    }

    @Test("past its byte budget a mailbox drops its oldest items, however few they are")
    func byteBudget() async {
        let mailbox = Mailbox<[UInt8]>(capacity: 1_000, byteBudget: 10_000, weigh: { $0.count })
        for value in 0..<4 { mailbox.post([UInt8](repeating: UInt8(value), count: 3_000)) }
        // 4 × 3,000 > 10,000: before the fourth post the oldest half of three (one item) went.
        #expect(mailbox.droppedCount == 1)
        #expect(await mailbox.takeAll().map { $0[0] } == [1, 2, 3])
        // Taking everything empties the budget too.
        for value in 4..<7 { mailbox.post([UInt8](repeating: UInt8(value), count: 3_000)) }
        #expect(mailbox.droppedCount == 1)
        // An item larger than the whole budget empties the queue and is still queued, alone:
        // dropping it would lose the newest message for nothing.
        mailbox.post([UInt8](repeating: 9, count: 20_000))
        #expect(mailbox.droppedCount == 4)
        #expect(await mailbox.takeAll().map { $0[0] } == [9])
    }

    @Test("a pre-prepare's queued size estimate grows with its requests' payloads")
    func frameEstimate() {
        let signer = ClientSigner(cluster: cluster, keyPair: FixedKeys.repeating(5))
        let small = (1...10).map { signer.request(timestamp: UInt64($0), payload: [1]) }
        let large = (1...10).map { signer.request(timestamp: UInt64($0), payload: [UInt8](repeating: 1, count: 4_096)) }
        func estimate(_ batch: [Request]) -> Int {
            Frame.message(.prePrepare(PrePrepare(view: View(0), sequence: SequenceNumber(1), primary: ReplicaID(0), batch: batch))).queuedByteEstimate
        }
        #expect(estimate(large) - estimate(small) == 10 * 4_095)
        let encoded = Frame.message(.prePrepare(PrePrepare(view: View(0), sequence: SequenceNumber(1), primary: ReplicaID(0), batch: large))).encodedPayload()
        #expect(estimate(large) >= encoded.count, "the estimate is not below the real size")
    }

    @Test("a state response is cut to a prefix of blocks that fits the frame budget, never to none")
    func stateResponseFitsAFrame() throws {
        let signer = ClientSigner(cluster: cluster, keyPair: FixedKeys.repeating(5))
        let signatures = (0..<3).map { ReplicaSignature(replica: ReplicaID(UInt16($0)), signature: .zero) }
        var prevHash = Digest.zero
        var blocks: [CertifiedBlock] = []
        for height in 1...64 {
            // 64 blocks of 100 requests of 4 KiB: about 26 MiB, far over one 4 MiB frame.
            let batch = (0..<100).map { signer.request(timestamp: UInt64(height * 1_000 + $0), payload: [UInt8](repeating: 7, count: 4_096)) }
            let block = CertifiedBlock(height: SequenceNumber(UInt64(height)), prevHash: prevHash, batch: batch, certificateView: View(0), commitSignatures: signatures)
            blocks.append(block)
            prevHash = block.hash
        }
        let server = ReplicaSigner(replica: ReplicaID(1), cluster: cluster, keyPair: keys[1])
        func served(_ ledger: [CertifiedBlock], bytesMax: Int) throws -> [CertifiedBlock] {
            let request = StateRequest(fromHeight: 1, toHeight: 64, replica: ReplicaID(0))
            let response = try StateServer.response(
                to: request, from: BlockList(blocks: ledger), blocksMax: 64, bytesMax: bytesMax,
                weight: \.queuedByteEstimate, signer: server)
            return try #require(response).blocks
        }
        let budget = 2 * 1024 * 1024
        let fitting = try served(blocks, bytesMax: budget)
        #expect(fitting.count == 4, "four blocks of about 423 KB (estimated) fit in 2 MiB")
        #expect(fitting.map(\.height) == blocks.prefix(4).map(\.height))
        let response = StateResponse(blocks: fitting, checkpoint: nil, replica: ReplicaID(1))
        let encoded = Frame.message(.stateResponse(response)).encodedPayload()
        #expect(encoded.count <= budget)
        // One block larger than the budget is still served alone.
        #expect(try served(blocks, bytesMax: 1_000).count == 1)
        #expect(try served(Array(blocks.prefix(3)), bytesMax: .max).count == 3)
    }

    @Test("a message over the frame limit is found before it is sent; one within it is not")
    func oversizeFrames() {
        let signer = ClientSigner(cluster: cluster, keyPair: FixedKeys.repeating(5))
        let batch = (1...10).map { signer.request(timestamp: UInt64($0), payload: [UInt8](repeating: 1, count: 1_000)) }
        let frame = Frame.message(.prePrepare(PrePrepare(view: View(0), sequence: SequenceNumber(1), primary: ReplicaID(0), batch: batch)))
        let exact = frame.encodedPayload().count
        #expect(PeerLinks.oversizeBytes(frame, frameBytesMax: exact) == nil)
        #expect(PeerLinks.oversizeBytes(frame, frameBytesMax: exact - 1) == exact)
        #expect(PeerLinks.oversizeBytes(frame, frameBytesMax: 4 * 1024 * 1024) == nil)
        // The decoder on the other side refuses exactly those.
        var buffer = ByteBuffer()
        try? FrameEncoder().encode(data: frame, out: &buffer)
        var decoder = FrameDecoder(frameBytesMax: exact - 1)
        #expect(throws: FrameDecoder.Error.self) { _ = try decoder.next(from: &buffer) }
    }

    @Test("a connection's frame limit can be raised, never lowered, and the decoder applies it at the next header")
    func raisedLimit() throws {
        let frame = Frame.refusal(String(repeating: "x", count: 500))
        var encoded = ByteBuffer()
        try FrameEncoder().encode(data: frame, out: &encoded)
        let limit = FrameLimit(100)
        var decoder = FrameDecoder(limit: limit)
        var tooLarge = encoded
        #expect(throws: FrameDecoder.Error.self) { _ = try decoder.next(from: &tooLarge) }
        limit.raise(to: 1_000)
        limit.raise(to: 10)
        #expect(limit.bytes == 1_000)
        var decoder2 = FrameDecoder(limit: limit)
        var fits = encoded
        #expect(try decoder2.next(from: &fits) == frame)
    }

    @Test("the replica-link limit holds a VIEW-CHANGE of a full window of full batches")
    func peerLimitCoversAViewChange() {
        let parameters = ProtocolParameters()
        let limit = PeerLinks.frameBytesMax(parameters: parameters, floor: 4 * 1024 * 1024)
        #expect(limit >= Int(parameters.watermarkWindow) * parameters.batchBytesMax + 4 * 1024 * 1024)
        #expect(limit < 128 * 1024 * 1024)
        var small = parameters
        small.batchBytesMax = 1_024
        small.watermarkWindow = 4
        small.checkpointInterval = 2
        // 4 certificates of up to 1 KiB batches (or one request of up to 64 KiB), plus headers.
        #expect(PeerLinks.frameBytesMax(parameters: small, floor: 4 * 1024 * 1024) == 4 * (1_024 + 72 * 1_024) + 4 * 1024 * 1024)
        #expect(PeerLinks.frameBytesMax(parameters: small, floor: 64 * 1024 * 1024) == 64 * 1024 * 1024)
    }

    @Test("the verified-signature memo holds a full window of full batches, within a bound")
    func memoCoversTheWindow() {
        let parameters = ProtocolParameters()
        #expect(ReplicaNode.memoCapacity(parameters) == Int(parameters.watermarkWindow) * parameters.batchSizeMax)
        var small = parameters
        small.batchSizeMax = 4
        #expect(ReplicaNode.memoCapacity(small) == 32_768)
        var huge = parameters
        huge.batchSizeMax = Int.max / 2
        #expect(ReplicaNode.memoCapacity(huge) == 262_144)
    }

    @Test("posts while wake-ups are held reach a waiting consumer together, once the last hold ends")
    func heldWakeUps() async throws {
        let (first, second) = (Mailbox<Int>(capacity: 64), Mailbox<Int>(capacity: 64))
        let taken = Mutex<[[Int]]>([])
        let consumer = Task {
            let items = await first.takeAll()
            taken.withLock { $0.append(items) }
        }
        // The consumer is waiting (polled, bounded) before anything is posted.
        #expect(await eventually(timeout: .seconds(30)) { first.hasWaiter })
        let (gotAllPostsTogether, held): (Bool, Bool) = Mailbox.holdingWakeUps(of: [first, second]) {
            let inner: Bool = Mailbox.holdingWakeUps(of: [first]) {
                for value in 0..<3 { first.post(value) }
                return first.hasWaiter
            }
            for value in 3..<5 { first.post(value) }
            second.post(9)
            return (inner, first.hasWaiter)
        }
        #expect(gotAllPostsTogether && held, "no post woke the consumer while a hold was on")
        // Bounded: a lost wake-up would leave the consumer waiting for ever.
        #expect(await eventually(timeout: .seconds(30)) { taken.withLock { !$0.isEmpty } }, "the end of the hold woke the consumer")
        consumer.cancel()
        #expect(taken.withLock { $0 } == [[0, 1, 2, 3, 4]])
        #expect(await second.takeAll() == [9])
        // Without a hold the first post wakes the consumer.
        let next = Task { await first.takeAll() }
        #expect(await eventually(timeout: .seconds(30)) { first.hasWaiter })
        first.post(7)
        #expect(await eventually(timeout: .seconds(30)) { !first.hasWaiter }, "the post woke the consumer")
        next.cancel()
        #expect(await next.value == [7])
    }

    @Test("a wake handler is called once per burst until the items are taken, at once for items already queued, and not during a hold")
    func wakeHandler() {
        let mailbox = Mailbox<Int>(capacity: 64)
        let calls = Mutex(0)
        mailbox.post(1)
        mailbox.setWakeHandler { calls.withLock { $0 += 1 } }
        #expect(calls.withLock { $0 } == 1, "items queued before the handler was set call it at once")
        mailbox.post(2)
        #expect(calls.withLock { $0 } == 1, "not again before the items are taken")
        #expect(mailbox.takeAllNow() == [1, 2])
        #expect(mailbox.takeAllNow() == [])
        mailbox.post(3)
        mailbox.post(4)
        #expect(calls.withLock { $0 } == 2, "once for the next burst")
        #expect(mailbox.takeAllNow() == [3, 4])
        Mailbox.holdingWakeUps(of: [mailbox]) {
            mailbox.post(5)
            #expect(calls.withLock { $0 } == 2, "held")
        }
        #expect(calls.withLock { $0 } == 3, "called when the hold ends")
        #expect(mailbox.takeAllNow() == [5])
        mailbox.setWakeHandler(nil)
        mailbox.post(6)
        #expect(calls.withLock { $0 } == 3, "removed")
        #expect(mailbox.takeAllNow() == [6])
    }

    @Test("a closed mailbox refuses posts and wakes its consumer with nothing")
    func close() async {
        let mailbox = Mailbox<Int>(capacity: 8)
        mailbox.close()
        #expect(!mailbox.post(1))
        #expect(await mailbox.takeAll().isEmpty)
    }
}

/// Blocks in memory, as the ledger a state-transfer server reads.
private struct BlockList: CommittedLedger {
    let blocks: [CertifiedBlock]

    var headHeight: SequenceNumber { SequenceNumber(UInt64(blocks.count)) }
    func block(at height: SequenceNumber) -> CertifiedBlock { blocks[Int(height.value - 1)] }
    func latestCheckpoint(atOrBelow height: SequenceNumber) -> CheckpointCertificate? { nil }
}
