import NIOCore
import SteleCore
import SteleCrypto
import Synchronization

/// What travels on a Stele TCP connection, one length-prefixed frame at a time:
///
///     length  u32   byte count of (kind || payload), 1 ... frameBytesMax
///     kind    u8    FrameKind
///     payload length-1 bytes
public enum Frame: Sendable, Equatable {
    /// Opens the handshake: who I claim to be and a fresh nonce for you to sign.
    case hello(Hello)
    /// Closes the handshake: my signature over your nonce (and mine).
    case proof(Signature)
    /// A protocol message (SteleCore's canonical encoding).
    case message(Message)
    /// Asks a replica for its status (view, height, ...).
    case statusRequest
    /// A replica's status, as UTF-8 JSON (bounded).
    case statusResponse([UInt8])
    /// Why the peer is closing the connection, as UTF-8 text (bounded).
    case refusal(String)

    public enum Kind: UInt8, Sendable {
        case hello = 1
        case proof = 2
        case message = 3
        case statusRequest = 4
        case statusResponse = 5
        case refusal = 6
    }

    public var kind: Kind {
        switch self {
        case .hello: .hello
        case .proof: .proof
        case .message: .message
        case .statusRequest: .statusRequest
        case .statusResponse: .statusResponse
        case .refusal: .refusal
        }
    }

    public static let textBytesMax = 64 * 1024

    public func encodedPayload() -> [UInt8] {
        var writer = ByteWriter(capacity: 256)
        writer.write(kind.rawValue)
        switch self {
        case .hello(let hello): hello.encode(into: &writer)
        case .proof(let signature): writer.write(signature)
        case .message(let message): message.encode(into: &writer)
        case .statusRequest: break
        case .statusResponse(let json): writer.writeFixed(Array(json.prefix(Frame.textBytesMax)))
        case .refusal(let text): writer.writeFixed(Array(text.utf8.prefix(Frame.textBytesMax)))
        }
        return writer.bytes
    }

    /// Decodes (kind || payload); every failure is a typed DecodingError.
    public static func decode(_ bytes: [UInt8], limits: CodecLimits) throws(DecodingError) -> Frame {
        var reader = ByteReader(bytes, limits: limits)
        let kindByte = try reader.readUInt8("frame.kind")
        guard let kind = Kind(rawValue: kindByte) else {
            throw DecodingError(.unknownTag(kindByte), field: "frame.kind", offset: 0)
        }
        switch kind {
        case .hello:
            let hello = try Hello.decode(from: &reader)
            try reader.expectEnd("frame.hello")
            return .hello(hello)
        case .proof:
            let signature = try reader.readSignature("frame.proof")
            try reader.expectEnd("frame.proof")
            return .proof(signature)
        case .message:
            return .message(try Message.decode(Array(bytes.dropFirst()), limits: limits))
        case .statusRequest:
            try reader.expectEnd("frame.statusRequest")
            return .statusRequest
        case .statusResponse, .refusal:
            guard reader.remaining <= textBytesMax else {
                throw DecodingError(.lengthTooLarge(length: UInt64(reader.remaining), limit: textBytesMax), field: "frame.text", offset: 1)
            }
            let text = try reader.readFixed(reader.remaining, "frame.text")
            return kind == .statusResponse ? .statusResponse(text) : .refusal(String(decoding: text, as: UTF8.self))
        }
    }
}

/// Who a peer claims to be.
public enum PeerIdentity: Hashable, Sendable, CustomStringConvertible {
    case replica(ReplicaID)
    case client(PublicKey)

    public var description: String {
        switch self {
        case .replica(let id): "replica \(id.value)"
        case .client(let key): "client \(key)"
        }
    }
}

/// HELLO: role (0 replica / 1 client), cluster id, identity (u16 replica id or 32-byte client
/// key), a fresh 32-byte nonce.
public struct Hello: Sendable, Equatable {
    public static let nonceByteCount = 32
    public let cluster: ClusterID
    public let identity: PeerIdentity
    public let nonce: [UInt8]

    public init(cluster: ClusterID, identity: PeerIdentity, nonce: [UInt8]) {
        precondition(nonce.count == Hello.nonceByteCount)
        self.cluster = cluster
        self.identity = identity
        self.nonce = nonce
    }

    func encode(into writer: inout ByteWriter) {
        switch identity {
        case .replica(let id):
            writer.write(UInt8(0))
            writer.write(cluster)
            writer.write(id)
        case .client(let key):
            writer.write(UInt8(1))
            writer.write(cluster)
            writer.write(key)
        }
        writer.writeFixed(nonce)
    }

    static func decode(from reader: inout ByteReader) throws(DecodingError) -> Hello {
        let roleOffset = reader.offset
        let role = try reader.readUInt8("hello.role")
        let cluster = try reader.readClusterID("hello.cluster")
        let identity: PeerIdentity
        switch role {
        case 0: identity = .replica(try reader.readReplica("hello.replica"))
        case 1: identity = .client(try reader.readPublicKey("hello.client"))
        default: throw DecodingError(.invalidValue(reason: "role \(role)"), field: "hello.role", offset: roleOffset)
        }
        let nonce = try reader.readFixed(nonceByteCount, "hello.nonce")
        return Hello(cluster: cluster, identity: identity, nonce: nonce)
    }
}

/// A connection's frame limit, shared by its decoder and its connection task: an inbound
/// connection starts at the small limit every peer gets and is raised once the peer has proven
/// it is a replica (before our last handshake frame goes out, so no frame of the peer's can
/// arrive in between), because VIEW-CHANGE and NEW-VIEW carry whole batches.
public final class FrameLimit: Sendable {
    private let value: Atomic<Int>
    public init(_ bytes: Int) { value = Atomic(bytes) }
    public var bytes: Int { value.load(ordering: .acquiring) }
    public func raise(to bytes: Int) { value.store(max(bytes, self.bytes), ordering: .releasing) }
}

/// Splits a byte stream into frames. An explicit state machine: the length is checked against
/// `frameBytesMax` before a byte of the body is buffered, so an oversize frame is refused
/// without allocating it.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame

    public enum ReadState: Sendable {
        case waitingForHeader
        case waitingForBody(length: Int)
    }

    public struct Error: Swift.Error, Equatable, CustomStringConvertible {
        public enum Code: Equatable, Sendable {
            case frameTooLarge(length: UInt32, limit: Int)
            case emptyFrame
            case malformed(DecodingError)
        }
        public let code: Code
        public var description: String {
            switch code {
            case .frameTooLarge(let length, let limit): "frame of \(length) bytes exceeds the limit of \(limit)"
            case .emptyFrame: "empty frame"
            case .malformed(let error): "malformed frame: \(error)"
            }
        }
    }

    public private(set) var state: ReadState = .waitingForHeader
    /// The limit in force, read at every frame header.
    public let limit: FrameLimit
    public let limits: CodecLimits

    public var frameBytesMax: Int { limit.bytes }

    public init(frameBytesMax: Int, limits: CodecLimits = .standard) {
        self.init(limit: FrameLimit(frameBytesMax), limits: limits)
    }

    public init(limit: FrameLimit, limits: CodecLimits = .standard) {
        self.limit = limit
        self.limits = limits
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    /// The frame-cutting state machine, independent of a channel (tested byte by byte).
    public mutating func next(from buffer: inout ByteBuffer) throws(Error) -> Frame? {
        while true {
            switch state {
            case .waitingForHeader:
                guard let length = buffer.readInteger(endianness: .big, as: UInt32.self) else { return nil }
                guard length > 0 else { throw Error(code: .emptyFrame) }
                guard Int(length) <= frameBytesMax else { throw Error(code: .frameTooLarge(length: length, limit: frameBytesMax)) }
                state = .waitingForBody(length: Int(length))
            case .waitingForBody(let length):
                guard let bytes = buffer.readBytes(length: length) else { return nil }
                state = .waitingForHeader
                do {
                    return try Frame.decode(bytes, limits: limits)
                } catch {
                    throw Error(code: .malformed(error))
                }
            }
        }
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A truncated frame at EOF is simply dropped with the connection.
        try decode(context: context, buffer: &buffer)
    }
}

public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Frame
    public init() {}
    public func encode(data: Frame, out: inout ByteBuffer) throws {
        let payload = data.encodedPayload()
        out.writeInteger(UInt32(payload.count), endianness: .big)
        out.writeBytes(payload)
    }
}

extension Frame {
    /// About how many bytes the frame takes queued, for the mailboxes' byte budgets: request
    /// payloads dominate, so everything else is a rough constant. Cheap: no encoding.
    var queuedByteEstimate: Int {
        switch self {
        case .message(let message): message.queuedByteEstimate
        case .statusResponse(let bytes): 64 + bytes.count
        case .refusal(let reason): 64 + reason.utf8.count
        case .hello, .proof, .statusRequest: 128
        }
    }
}

extension CertifiedBlock {
    /// About how many bytes the block takes in a STATE-RESPONSE.
    var queuedByteEstimate: Int { 512 + batch.reduce(0) { $0 + 128 + $1.payload.count } }
}

extension Message {
    var queuedByteEstimate: Int {
        func requests(_ batch: [Request]) -> Int { batch.reduce(0) { $0 + 128 + $1.payload.count } }
        switch self {
        case .request(let request): return 128 + request.payload.count
        case .prePrepare(let prePrepare): return 256 + requests(prePrepare.batch)
        case .viewChange(let viewChange): return 512 + viewChange.prepared.reduce(0) { $0 + 512 + requests($1.prePrepare.batch) }
        case .newView(let newView):
            // Each distinct batch travels once (NewView.encode); everything else is headers.
            var seen = Set<Digest>()
            var bytes = 512
            for viewChange in newView.viewChanges {
                bytes += 512
                for certificate in viewChange.prepared {
                    bytes += 512
                    if seen.insert(certificate.digest).inserted { bytes += requests(certificate.prePrepare.batch) }
                }
            }
            for prePrepare in newView.prePrepares {
                bytes += 256
                if seen.insert(prePrepare.digest).inserted { bytes += requests(prePrepare.batch) }
            }
            return bytes
        case .stateResponse(let response): return 512 + response.blocks.reduce(0) { $0 + $1.queuedByteEstimate }
        default: return 256
        }
    }
}
