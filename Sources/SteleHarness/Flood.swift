import Foundation
import NIOCore
import NIOPosix
import SteleCore
import SteleCrypto
import SteleNode
import Synchronization

/// Hostile load against a cluster, for `stele bench --flood` and the end-to-end tests: what a
/// Byzantine client (or one replica-key holder) can throw at the replicas while honest clients
/// are served. Loopback and test clusters only; it stops by itself at its deadline. It lives in
/// the harness, not in SteleNode: a replica's runtime holds nothing that only attacks.
public enum FloodKind: String, CaseIterable, Sendable, Codable {
    case none
    /// Clients sending requests whose signatures do not verify, as fast as TCP takes them.
    case badSignatures = "bad-signatures"
    /// Connections that send a garbage or oversize frame, again and again.
    case malformedFrames = "malformed-frames"
    /// A holder of one replica's key opening connection after connection as that replica.
    case connections
    /// A client re-sending one valid request thousands of times a second.
    case retransmit
}

/// What a flood did, and how often the replicas cut it off.
public struct FloodReport: Codable, Sendable, Equatable {
    public var kind: FloodKind
    public var framesSent = 0
    public var connectionsOpened = 0
    /// Connections that the replica closed or refused (the defence acting).
    public var connectionsClosedByReplica = 0

    public init(kind: FloodKind) { self.kind = kind }
}

public enum Flood {
    /// Floods every replica in `targets` until `deadline` (or until the task is cancelled). `replicaKey` is the key (and id) the
    /// `connections` flood impersonates; the other kinds make up their own client keys.
    public static func run(_ kind: FloodKind, config: ClusterConfig, targets: [ReplicaID], replicaKey: (ReplicaID, KeyPair)? = nil,
                           until deadline: ContinuousClock.Instant, progress: FloodTally? = nil) async -> FloodReport {
        let report = progress ?? FloodTally()
        report.withLock { $0.kind = kind }
        guard kind != .none else { return report.withLock { $0 } }
        await withTaskGroup(of: Void.self) { group in
            for target in targets {
                let endpoint = config.replicas[Int(target.value)]
                switch kind {
                case .none:
                    break
                case .badSignatures:
                    group.addTask { await badSignatures(config: config, endpoint: endpoint, report: report, until: deadline) }
                case .malformedFrames:
                    for _ in 0..<4 { group.addTask { await malformedFrames(endpoint: endpoint, report: report, until: deadline) } }
                case .connections:
                    guard let replicaKey, replicaKey.0 != target else { continue }
                    for _ in 0..<8 { group.addTask { await impersonate(replicaKey, config: config, endpoint: endpoint, report: report, until: deadline) } }
                case .retransmit:
                    group.addTask { await retransmit(config: config, endpoint: endpoint, report: report, until: deadline) }
                }
            }
        }
        return report.withLock { $0 }
    }

    /// Opens a client connection with a fresh key and runs `body` on it; counts a replica's
    /// refusal or close as the defence acting.
    static func asClient(config: ClusterConfig, endpoint: ReplicaEndpoint, key: KeyPair, report: FloodTally,
                         _ body: (_ send: ([Frame]) async throws -> Void) async throws -> Void) async {
        report.withLock { $0.connectionsOpened += 1 }
        do {
            let channel = try await connectFrameChannel(to: endpoint, frameBytesMax: 1 << 20)
            try await channel.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                let driver = HandshakeDriver(handshake: Handshake(config: config), myIdentity: .client(key.publicKey), myKey: key)
                _ = try await driver.asConnector(inbound: &iterator, outbound: outbound, expected: .replica(endpoint.id))
                try await body { frames in try await sendAll(frames, on: channel.channel) }
            }
        } catch {
            report.withLock { $0.connectionsClosedByReplica += 1 }
        }
    }

    /// Writes `frames` and waits until the last is flushed to the socket. (NIOAsyncChannel's
    /// writer hands writes to the event loop without waiting, so a producer faster than the
    /// encoder would queue without bound; waiting here keeps the flood's own memory flat.)
    static func sendAll(_ frames: [Frame], on channel: any Channel) async throws {
        guard let last = frames.last else { return }
        for frame in frames.dropLast() { channel.write(NIOAny(frame), promise: nil) }
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(NIOAny(last), promise: promise)
        try await promise.futureResult.get()
    }

    static func badSignatures(config: ClusterConfig, endpoint: ReplicaEndpoint, report: FloodTally, until deadline: ContinuousClock.Instant) async {
        var timestamp: UInt64 = 0
        while ContinuousClock.now < deadline, !Task.isCancelled {
            let key = KeyPair.generate()
            let signer = ClientSigner(cluster: config.cluster, keyPair: key)
            // One valid signature, then every request a different timestamp under it: none verifies.
            let template = signer.request(timestamp: 1, payload: Array(repeating: 0x62, count: 100))
            await asClient(config: config, endpoint: endpoint, key: key, report: report) { send in
                while ContinuousClock.now < deadline, !Task.isCancelled {
                    let frames: [Frame] = (0..<64).map { _ in
                        timestamp += 1
                        return .message(.request(Request(client: key.publicKey, timestamp: timestamp + 1, payload: template.payload, signature: template.signature)))
                    }
                    try await send(frames)
                    report.withLock { $0.framesSent += frames.count }
                }
            }
            if ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        }
    }

    static func retransmit(config: ClusterConfig, endpoint: ReplicaEndpoint, report: FloodTally, until deadline: ContinuousClock.Instant) async {
        while ContinuousClock.now < deadline, !Task.isCancelled {
            let key = KeyPair.generate()
            let request = ClientSigner(cluster: config.cluster, keyPair: key).request(timestamp: 1, payload: Array("the same request".utf8))
            let frames = [Frame](repeating: .message(.request(request)), count: 64)
            await asClient(config: config, endpoint: endpoint, key: key, report: report) { send in
                while ContinuousClock.now < deadline, !Task.isCancelled {
                    try await send(frames)
                    report.withLock { $0.framesSent += frames.count }
                }
            }
            if ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        }
    }

    /// Connects without any handshake, writes `bytes`, and reports whether the replica hung up
    /// within `bound`.
    public static func sendRawBytes(
        _ bytes: [UInt8], to endpoint: ReplicaEndpoint, waitingForCloseUpTo bound: Duration
    ) async throws -> Bool {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(2))
            .connect(host: endpoint.host, port: Int(endpoint.port)) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        return try await channel.executeThenClose { inbound, outbound -> Bool in
            try await outbound.write(ByteBuffer(bytes: bytes))
            return try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    for try await _ in inbound {}
                    return true
                }
                group.addTask {
                    try await Task.sleep(for: bound)
                    return false
                }
                let first = try await group.next() ?? false
                group.cancelAll()
                return first
            }
        }
    }

    static func malformedFrames(endpoint: ReplicaEndpoint, report: FloodTally, until deadline: ContinuousClock.Instant) async {
        let attacks: [[UInt8]] = [
            [0x7f, 0xff, 0xff, 0xff] + Array(repeating: 1, count: 64),    // a length far over the limit
            [0x00, 0x00, 0x00, 0x08] + Array(repeating: 0xAB, count: 8),  // a frame of an unknown kind
            [0x00, 0x00, 0x00, 0x00],                                     // an empty frame
        ]
        var index = 0
        while ContinuousClock.now < deadline, !Task.isCancelled {
            let bytes = attacks[index % attacks.count]
            index += 1
            report.withLock { $0.connectionsOpened += 1 }
            do {
                let closed = try await sendRawBytes(bytes, to: endpoint, waitingForCloseUpTo: .seconds(2))
                report.withLock { $0.framesSent += 1 }
                if closed { report.withLock { $0.connectionsClosedByReplica += 1 } }
            } catch {
                report.withLock { $0.connectionsClosedByReplica += 1 }
            }
        }
    }

    /// Connects as replica `replicaKey.0` again and again and holds each connection open
    /// (sending nothing) until the replica closes it.
    static func impersonate(_ replicaKey: (ReplicaID, KeyPair), config: ClusterConfig, endpoint: ReplicaEndpoint, report: FloodTally,
                            until deadline: ContinuousClock.Instant) async {
        while ContinuousClock.now < deadline, !Task.isCancelled {
            report.withLock { $0.connectionsOpened += 1 }
            do {
                let channel = try await connectFrameChannel(to: endpoint, frameBytesMax: 1 << 20)
                try await channel.executeThenClose { inbound, outbound in
                    var iterator = inbound.makeAsyncIterator()
                    let driver = HandshakeDriver(handshake: Handshake(config: config), myIdentity: .replica(replicaKey.0), myKey: replicaKey.1)
                    _ = try await driver.asConnector(inbound: &iterator, outbound: outbound, expected: .replica(endpoint.id))
                    report.withLock { $0.framesSent += 1 }
                    // Held open until the replica closes it or the deadline passes.
                    let closer = Task {
                        try? await Task.sleep(until: deadline)
                        try? await channel.channel.close()
                    }
                    defer { closer.cancel() }
                    while try await iterator.next() != nil {}
                }
                if ContinuousClock.now < deadline { report.withLock { $0.connectionsClosedByReplica += 1 } }
            } catch {
                report.withLock { $0.connectionsClosedByReplica += 1 }
            }
        }
    }
}

/// The flood's running counts, shared by its tasks; pass one in to watch a flood as it runs.
public final class FloodTally: Sendable {
    private let mutex = Mutex(FloodReport(kind: .none))
    public init() {}
    public var snapshot: FloodReport { mutex.withLock { $0 } }
    func withLock<T>(_ body: (inout FloodReport) -> T) -> T { mutex.withLock { body(&$0) } }
}
