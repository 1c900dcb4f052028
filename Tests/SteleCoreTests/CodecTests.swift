import Foundation
import SteleCrypto
import SteleTestSupport
import Testing
@testable import SteleCore

@Suite("Canonical codec")
struct CodecTests {
    @Test("every message type round-trips byte for byte")
    func roundTrip() throws {
        for message in Samples.allMessages {
            let bytes = message.encode()
            let decoded = try Message.decode(bytes)
            #expect(decoded == message, "\(message.tag)")
            #expect(decoded.encode() == bytes, "\(message.tag)")
        }
    }

    @Test("every strict prefix of every message is rejected with a typed error")
    func truncation() async {
        await offCooperativePool {
            for message in Samples.allMessages {
                let bytes = message.encode()
                for length in 0..<bytes.count {
                    #expect(throws: DecodingError.self, "\(message.tag) cut at \(length)") {
                        _ = try Message.decode(Array(bytes[0..<length]))
                    }
                }
            }
        }
    }

    @Test("trailing bytes are rejected")
    func trailingBytes() {
        let bytes = Message.request(Samples.request(1)).encode() + [0]
        #expect(throws: DecodingError(.trailingBytes(count: 1), field: "message", offset: bytes.count - 1)) {
            _ = try Message.decode(bytes)
        }
    }

    @Test("unknown tags and versions are rejected")
    func unknownTagAndVersion() {
        var bytes = Message.request(Samples.request(1)).encode()
        bytes[1] = 0x7f
        #expect(throws: DecodingError(.unknownTag(0x7f), field: "message.tag", offset: 1)) { _ = try Message.decode(bytes) }
        bytes[1] = 1
        bytes[0] = 2
        #expect(throws: DecodingError(.unsupportedVersion(2), field: "message.version", offset: 0)) { _ = try Message.decode(bytes) }
    }

    @Test("a hostile length or count is refused before allocating")
    func hostileLengths() {
        // A request whose payload claims 4 GiB.
        var writer = ByteWriter()
        writer.write(Message.codecVersion)
        writer.write(MessageTag.request.rawValue)
        writer.write(Samples.clientKey.publicKey)
        writer.write(UInt64(1))
        writer.write(UInt32.max)
        #expect(throws: DecodingError(.lengthTooLarge(length: UInt64(UInt32.max), limit: CodecLimits.standard.payloadBytesMax), field: "request.payload", offset: 42)) {
            _ = try Message.decode(writer.bytes)
        }
        // A pre-prepare whose batch claims 4000 requests (under the limit) with no bytes behind it.
        var batchWriter = ByteWriter()
        batchWriter.write(Message.codecVersion)
        batchWriter.write(MessageTag.prePrepare.rawValue)
        batchWriter.write(UInt64(0))
        batchWriter.write(UInt64(1))
        batchWriter.write(UInt16(0))
        batchWriter.write(UInt32(4000))
        #expect { _ = try Message.decode(batchWriter.bytes) } throws: { error in
            guard let error = error as? DecodingError, case .truncated = error.code else { return false }
            return error.field == "prePrepare.batch"
        }
    }

    @Test("a boolean byte other than 0 or 1 is rejected")
    func booleans() throws {
        let message = Message.stateResponse(StateResponse(blocks: [], checkpoint: nil, replica: 1).signed(by: Samples.signer(1)))
        var bytes = message.encode()
        // version, tag, block count (4), then the boolean.
        bytes[6] = 2
        #expect { _ = try Message.decode(bytes) } throws: { error in
            guard let error = error as? DecodingError, case .invalidValue = error.code else { return false }
            return error.field == "stateResponse.hasCheckpoint"
        }
    }

    @Test("limits are configurable and enforced")
    func configurableLimits() {
        var limits = CodecLimits()
        limits.payloadBytesMax = 4
        let bytes = Message.request(Samples.client.request(timestamp: 1, payload: [1, 2, 3, 4, 5])).encode()
        #expect { _ = try Message.decode(bytes, limits: limits) } throws: { error in
            guard let error = error as? DecodingError, case .lengthTooLarge(5, 4) = error.code else { return false }
            return true
        }
    }

    @Test("genesis round-trips and its hash depends on every member key")
    func genesis() throws {
        let genesis = Samples.config.genesis
        var reader = ByteReader(genesis.encoded())
        let decoded = try Genesis.decode(from: &reader)
        try reader.expectEnd("genesis")
        #expect(decoded == genesis)
        var members = genesis.members
        members[3] = Genesis.Member(id: 3, publicKey: Samples.clientKey.publicKey)
        #expect(Genesis(cluster: genesis.cluster, f: 1, members: members).hash != genesis.hash)
    }
}

/// NEW-VIEW carries each distinct batch once on the wire (round 5).
@Suite("NEW-VIEW batch table")
struct NewViewTableTests {
    static func batch(_ first: UInt64, count: Int, payloadBytes: Int) -> [Request] {
        (0..<count).map { Samples.client.request(timestamp: first + UInt64($0), payload: [UInt8](repeating: 0x61, count: payloadBytes)) }
    }

    /// Three VIEW-CHANGEs holding the same two certificates (sequences 17 and 18, batches A and
    /// B), one of them also a certificate for 19 (batch C); O re-proposes A, B and C.
    static func newView(payloadBytes: Int) -> NewView {
        let batches = [batch(100, count: 20, payloadBytes: payloadBytes), batch(200, count: 20, payloadBytes: payloadBytes), batch(300, count: 5, payloadBytes: payloadBytes)]
        func certificate(_ index: Int) -> PreparedCertificate {
            let prePrepare = PrePrepare(view: 3, sequence: SequenceNumber(UInt64(17 + index)), primary: 3, batch: batches[index]).signed(by: Samples.signer(3))
            let prepares = [0, 1].map { Vote(kind: .prepare, view: 3, sequence: prePrepare.sequence, digest: prePrepare.digest, replica: ReplicaID(UInt16($0))).signed(by: Samples.signer($0)) }
            return PreparedCertificate(prePrepare: prePrepare, prepares: prepares)
        }
        let viewChanges = (0..<3).map { replica in
            ViewChange(newView: 4, stableSequence: 16, checkpointProof: Samples.checkpoints,
                       prepared: replica == 2 ? [certificate(0), certificate(1), certificate(2)] : [certificate(0), certificate(1)],
                       replica: ReplicaID(UInt16(replica))).signed(by: Samples.signer(replica))
        }
        let o = (0..<3).map { PrePrepare(view: 4, sequence: SequenceNumber(UInt64(17 + $0)), primary: 0, batch: batches[$0]).signed(by: Samples.signer(0)) }
        return NewView(view: 4, viewChanges: viewChanges, prePrepares: o, primary: 0).signed(by: Samples.signer(0))
    }

    @Test("each distinct batch is written once, and the message round-trips with its signatures")
    func sharedBatches() throws {
        let newView = Self.newView(payloadBytes: 4_096)
        let bytes = Message.newView(newView).encode()
        let decoded = try Message.decode(bytes)
        #expect(decoded == .newView(newView))
        #expect(decoded.encode() == bytes)
        // 45 distinct requests of ~4.2 KB, against 2 + 2 + 3 certificates and 3 in O (155
        // requests) written out whole.
        let requestBytes = 4_096 + 108
        #expect(bytes.count < 46 * requestBytes)
        #expect(bytes.count > 45 * requestBytes)
        var whole = ByteWriter(capacity: 1 << 20)
        newView.encodeBody(into: &whole)
        #expect(whole.bytes.count > 155 * requestBytes)
        // The signature covers the whole form; decoding rebuilt it exactly.
        #expect(Ed25519.verify(newView.signature, of: newView.signedContent.bytes(cluster: Samples.config.cluster), by: Samples.replicaKeys[0].publicKey))
        if case .newView(let back) = decoded { #expect(back.bodyDigest == newView.bodyDigest) }
    }

    /// A NEW-VIEW with no VIEW-CHANGEs whose O names `indices` of `table`, written by hand.
    static func handWritten(table: [[Request]], indices: [UInt32]) -> [UInt8] {
        var writer = ByteWriter(capacity: 4096)
        writer.write(Message.codecVersion)
        writer.write(MessageTag.newView.rawValue)
        writer.write(View(4))
        writer.writeArray(table) { writer, batch in writer.writeArray(batch) { $1.encode(into: &$0) } }
        writer.write(UInt32(0))
        writer.write(UInt32(indices.count))
        for (position, index) in indices.enumerated() {
            let prePrepare = PrePrepare(view: 4, sequence: SequenceNumber(UInt64(17 + position)), primary: 0, batch: [])
            prePrepare.encodeHeader(batchIndex: index, into: &writer)
        }
        writer.write(ReplicaID(0))
        writer.write(Signature.zero)
        return writer.bytes
    }

    @Test("a table that another encoding of the same NEW-VIEW would not produce is refused")
    func strictTable() throws {
        let a = Self.batch(1, count: 2, payloadBytes: 10)
        let b = Self.batch(5, count: 1, payloadBytes: 10)
        // The canonical form decodes.
        _ = try Message.decode(Self.handWritten(table: [a, b], indices: [0, 1, 0]))
        func refused(_ table: [[Request]], _ indices: [UInt32], _ reason: String) {
            #expect(throws: DecodingError.self, "\(reason)") { _ = try Message.decode(Self.handWritten(table: table, indices: indices)) }
        }
        refused([a, b], [0, 2], "index out of range")
        refused([a, b], [1, 0], "used out of table order")
        refused([a, b], [0, 0], "a batch never used")
        refused([a, a], [0, 1], "the same batch twice")
    }
}

@Suite("Fuzzing the decoder")
struct CodecFuzzTests {
    /// 100,000 seeded inputs: half random bytes, half single or multiple mutations of valid
    /// messages. Every one must decode or throw a DecodingError — never crash — and whatever
    /// decodes must re-encode to exactly the input (the encoding is canonical).
    @Test("100,000 random and mutated inputs give typed errors, never a crash")
    func fuzz() async {
        await offCooperativePool {
            var generator = SeededGenerator(seed: 0x5e1e)
            let valid = Samples.allMessages.map { $0.encode() }
            var decodedCount = 0
            var rejectedCount = 0
            for iteration in 0..<100_000 {
                let input: [UInt8]
                if iteration % 2 == 0 {
                    let length = Int.random(in: 0..<300, using: &generator)
                    var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                    if length >= 2, Bool.random(using: &generator) {
                        bytes[0] = Message.codecVersion
                        bytes[1] = UInt8.random(in: 1...10, using: &generator)
                    }
                    input = bytes
                } else {
                    var bytes = valid[Int.random(in: 0..<valid.count, using: &generator)]
                    let mutations = Int.random(in: 1...4, using: &generator)
                    for _ in 0..<mutations {
                        switch Int.random(in: 0..<4, using: &generator) {
                        case 0 where !bytes.isEmpty:
                            bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                        case 1 where !bytes.isEmpty:
                            bytes.removeLast(Int.random(in: 1...min(bytes.count, 64), using: &generator))
                        case 2:
                            bytes.insert(UInt8.random(in: 0...255, using: &generator), at: Int.random(in: 0...bytes.count, using: &generator))
                        default:
                            if bytes.count > 8 {
                                let at = Int.random(in: 0..<(bytes.count - 4), using: &generator)
                                bytes.replaceSubrange(at..<at + 4, with: [0xff, 0xff, 0xff, UInt8.random(in: 0...255, using: &generator)])
                            }
                        }
                    }
                    input = bytes
                }
                do {
                    let message = try Message.decode(input)
                    decodedCount += 1
                    #expect(message.encode() == input)
                } catch {
                    rejectedCount += 1
                }
            }
            #expect(decodedCount + rejectedCount == 100_000)
            #expect(rejectedCount > 50_000)
        }
    }
}
