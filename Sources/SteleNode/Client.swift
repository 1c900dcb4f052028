import Foundation
import Logging
import NIOCore
import NIOPosix
import SteleCore
import SteleCrypto
import Synchronization

/// Why a submission or a status query failed.
public struct ClientError: Error, Equatable, CustomStringConvertible {
    public enum Code: Equatable, Sendable {
        /// Fewer than f+1 replicas sent matching replies in time.
        case noQuorum(replies: Int, needed: Int)
        /// The replica did not answer the status query in time.
        case statusUnavailable(ReplicaID)
        case payloadTooLarge(bytes: Int, limit: Int)
    }
    public let code: Code
    public var description: String {
        switch code {
        case .noQuorum(let replies, let needed):
            "no quorum answered in time: \(replies) matching replies, \(needed) needed; is the cluster running? (`stele cluster status`)"
        case .statusUnavailable(let id):
            "replica \(id.value) did not answer"
        case .payloadTooLarge(let bytes, let limit):
            "payload of \(bytes) bytes exceeds the limit of \(limit)"
        }
    }
}

/// Where a submitted transaction landed.
public struct SubmitResult: Sendable, Equatable, Codable {
    public let timestamp: UInt64
    public let height: UInt64
    /// The committed block's hash. Kept as a digest: hex-encoding it for every submit was ~5 %
    /// of the benchmark client's CPU, and most callers never print it.
    public let blockDigest: Digest
    public let latencyMicroseconds: UInt64
    /// The block hash in hex.
    public var blockHash: String { blockDigest.hex }

    public init(timestamp: UInt64, height: UInt64, blockDigest: Digest, latencyMicroseconds: UInt64) {
        (self.timestamp, self.height, self.blockDigest, self.latencyMicroseconds) = (timestamp, height, blockDigest, latencyMicroseconds)
    }

    /// The result of the request sent at `start` with `timestamp`, its latency measured now.
    init(_ result: Reply.Result, timestamp: UInt64, since start: ContinuousClock.Instant) {
        self.init(timestamp: timestamp, height: result.height.value, blockDigest: result.blockHash,
                  latencyMicroseconds: UInt64(start.duration(to: .now).nanoseconds / 1000))
    }

    enum CodingKeys: String, CodingKey { case timestamp, height, blockHash, latencyMicroseconds }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        timestamp = try container.decode(UInt64.self, forKey: .timestamp)
        height = try container.decode(UInt64.self, forKey: .height)
        let hex = try container.decode(String.self, forKey: .blockHash)
        guard let digest = Digest(hex: hex) else {
            throw Swift.DecodingError.dataCorruptedError(forKey: .blockHash, in: container, debugDescription: "not a 32-byte hex digest")
        }
        blockDigest = digest
        latencyMicroseconds = try container.decode(UInt64.self, forKey: .latencyMicroseconds)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(timestamp, forKey: .timestamp)
        try container.encode(height, forKey: .height)
        try container.encode(blockHash, forKey: .blockHash)
        try container.encode(latencyMicroseconds, forKey: .latencyMicroseconds)
    }
}

/// The client library: signs requests with the client key, sends each to the primary it
/// believes in, retransmits to every replica on timeout, and accepts a result once f+1
/// replicas sent the same signed reply — at least one of them is correct, and correct
/// replicas reply only after a batch committed, so the result is the committed one.
/// (BFT-SMaRt's clients wait for a larger reply quorum, ⌈(n+f+1)/2⌉, because its replies
/// carry application results that are not otherwise certified; Stele's result — height and
/// block hash — is fixed by the commit certificate, so f+1 matching replies suffice.)
public final class SteleClient: Sendable {
    typealias Completion = @Sendable (Result<Reply.Result, any Error>) -> Void

    public struct Settings: Sendable {
        /// First retransmission to all replicas after this long without a quorum.
        public var retransmitAfter: Duration = .milliseconds(600)
        public var retransmitAfterMax: Duration = .seconds(4)
        /// How often one background task looks for requests due for retransmission or past
        /// their timeout (instead of a timer per request).
        public var sweepInterval: Duration = .milliseconds(50)
        public var frameBytesMax: Int = 4 * 1024 * 1024
        public init() {}
    }

    let config: ClusterConfig
    let signer: ClientSigner
    let keyPair: KeyPair
    let settings: Settings
    let logger: Logger
    let links: [ReplicaID: Mailbox<Frame>]
    let state = Mutex(State())

    struct Pending {
        var replies: [ReplicaID: Reply.Result] = [:]
        /// Called once: with the result, or with why there is none.
        var completion: Completion?
        var request: Request
        /// When to send the request to every replica, unless f+1 matching replies came first.
        var retransmitAt: ContinuousClock.Instant
        var retransmitInterval: Duration
        var deadline: ContinuousClock.Instant

        /// When the sweep next has something to do for this request.
        var dueAt: ContinuousClock.Instant { min(retransmitAt, deadline) }

        /// Records `replica`'s result; returns how many replicas have sent that same result.
        mutating func recordReply(_ result: Reply.Result, from replica: ReplicaID) -> Int {
            replies[replica] = result
            var matching = 0
            for other in replies.values where other == result { matching += 1 }
            return matching
        }
    }

    struct State {
        var lastTimestamp: UInt64 = 0
        var highestView: View = 0
        var pending: [UInt64: Pending] = [:]
        /// No pending request is due for retransmission or past its deadline before this: the
        /// sweep skips its scan until then (scanning every pending request every 50 ms was 5 %
        /// of the bench client's CPU). Removals leave it early, which only costs a scan.
        var nextDueAt: ContinuousClock.Instant?
        var statusWaiters: [ReplicaID: [CheckedContinuation<ReplicaStatus?, Never>]] = [:]

        mutating func add(_ pending: Pending, timestamp: UInt64) {
            self.pending[timestamp] = pending
            nextDueAt = min(nextDueAt ?? pending.dueAt, pending.dueAt)
        }

        /// The requests due for retransmission at `now` (their next retransmission is
        /// rescheduled, the interval doubling up to `retransmitAfterMax`) and the timestamps of
        /// those past their deadline (left pending for the caller to fail).
        mutating func takeDue(now: ContinuousClock.Instant, retransmitAfterMax: Duration) -> (due: [Request], expired: [UInt64]) {
            guard let nextDueAt, now >= nextDueAt else { return ([], []) }
            var expired: [UInt64] = []
            var due: [UInt64] = []
            var nextDue: ContinuousClock.Instant?
            for (timestamp, pending) in pending {
                if now >= pending.deadline {
                    expired.append(timestamp)
                } else if now >= pending.retransmitAt {
                    due.append(timestamp)
                } else {
                    nextDue = min(nextDue ?? pending.dueAt, pending.dueAt)
                }
            }
            for timestamp in due {
                guard var entry = pending[timestamp] else { continue }
                entry.retransmitInterval = min(entry.retransmitInterval * 2, retransmitAfterMax)
                entry.retransmitAt = min(now + entry.retransmitInterval, entry.deadline)
                pending[timestamp] = entry
                nextDue = min(nextDue ?? entry.dueAt, entry.dueAt)
            }
            self.nextDueAt = nextDue
            return (due.compactMap { pending[$0]?.request }, expired)
        }
    }

    init(config: ClusterConfig, keyPair: KeyPair, settings: Settings, logger: Logger) {
        self.config = config
        self.keyPair = keyPair
        self.signer = ClientSigner(cluster: config.cluster, keyPair: keyPair)
        self.settings = settings
        self.logger = logger
        var links: [ReplicaID: Mailbox<Frame>] = [:]
        for id in config.replicaIDs { links[id] = Mailbox(capacity: 65536) }
        self.links = links
    }

    /// Connects to every replica, runs `body`, then disconnects. Requests still pending then
    /// (submitted with a completion handler and not answered yet) are completed with
    /// `CancellationError`: no handler is left uncalled.
    public static func with<T: Sendable>(
        config: ClusterConfig, keyPair: KeyPair, settings: Settings = Settings(), logger: Logger,
        _ body: (SteleClient) async throws -> T
    ) async throws -> T {
        let client = SteleClient(config: config, keyPair: keyPair, settings: settings, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            for (id, mailbox) in client.links {
                group.addTask { await client.linkLoop(replica: id, mailbox: mailbox) }
            }
            group.addTask { await client.sweepLoop() }
            defer {
                group.cancelAll()
                client.abandonAll()
            }
            return try await body(client)
        }
    }

    /// The client is closing: every pending request is completed with `CancellationError`.
    private func abandonAll() {
        let taken = state.withLock { state in
            defer { state.pending = [:] }
            return Array(state.pending.values)
        }
        for pending in taken { pending.completion?(.failure(CancellationError())) }
    }

    /// Timestamps increase across runs with the same key: wall-clock microseconds, bumped.
    private func nextTimestamp() -> UInt64 {
        let now = UInt64(Date().timeIntervalSince1970 * 1_000_000)
        return state.withLock { state in
            state.lastTimestamp = max(state.lastTimestamp + 1, now)
            return state.lastTimestamp
        }
    }

    /// Submits one transaction and waits until f+1 replicas report the same block. Cancelling
    /// the calling task ends the wait at once with `CancellationError` (the request may still
    /// commit).
    public func submit(_ payload: [UInt8], timeout: Duration = .seconds(30)) async throws -> SubmitResult {
        if let refusal = Self.refusal(of: payload) { throw refusal }
        let start = ContinuousClock.now
        let request = signer.request(timestamp: nextTimestamp(), payload: payload)
        let timestamp = request.timestamp
        let result = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                send(request, start: start, timeout: timeout) { continuation.resume(with: $0) }
                // Cancelled before the request was registered: the handler found nothing to
                // complete, so complete here.
                if Task.isCancelled { abandon(timestamp) }
            }
        } onCancel: {
            abandon(timestamp)
        }
        return SubmitResult(result, timestamp: timestamp, since: start)
    }

    /// Submits one transaction without waiting: `completion` is called exactly once, with the
    /// result once f+1 replicas report the same block, or with the error (`ClientError`) once
    /// `timeout` passed. It runs on one of the client's own tasks — the one that read the
    /// deciding reply — so it must not block; it may submit again. For callers that keep many
    /// requests in flight (a gateway, `stele bench`): no task waits per request, so a result
    /// costs no task switch (a task resumed per request was about a tenth of the benchmark
    /// client's CPU).
    public func submit(_ payload: [UInt8], timeout: Duration = .seconds(30),
                       completion: @escaping @Sendable (Result<SubmitResult, any Error>) -> Void) {
        if let refusal = Self.refusal(of: payload) { return completion(.failure(refusal)) }
        let start = ContinuousClock.now
        let request = signer.request(timestamp: nextTimestamp(), payload: payload)
        let timestamp = request.timestamp
        send(request, start: start, timeout: timeout) { result in
            completion(result.map { SubmitResult($0, timestamp: timestamp, since: start) })
        }
    }

    /// Why `payload` cannot be submitted, if it cannot.
    private static func refusal(of payload: [UInt8]) -> ClientError? {
        let limit = CodecLimits.standard.payloadBytesMax
        return payload.count <= limit ? nil : ClientError(code: .payloadTooLarge(bytes: payload.count, limit: limit))
    }

    /// Registers `request` as pending and sends it to the primary this client believes in.
    private func send(_ request: Request, start: ContinuousClock.Instant, timeout: Duration, completion: @escaping Completion) {
        let primary = state.withLock { state in
            let pending = Pending(
                completion: completion, request: request,
                retransmitAt: start + settings.retransmitAfter, retransmitInterval: settings.retransmitAfter,
                deadline: start + timeout)
            state.add(pending, timestamp: request.timestamp)
            return config.primary(of: state.highestView)
        }
        links[primary]?.post(.message(.request(request)))
    }

    /// Every `sweepInterval`: sends each request due for retransmission to every replica
    /// (doubling its interval up to `retransmitAfterMax`) and fails each past its deadline.
    private func sweepLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: settings.sweepInterval)
            let now = ContinuousClock.now
            let (due, expired) = state.withLock { $0.takeDue(now: now, retransmitAfterMax: settings.retransmitAfterMax) }
            for timestamp in expired { fail(timestamp) }
            for request in due {
                for mailbox in links.values { mailbox.post(.message(.request(request))) }
            }
        }
    }

    /// The caller's task was cancelled: stop waiting for this request (it may still commit).
    private func abandon(_ timestamp: UInt64) {
        let taken = state.withLock { state in state.pending.removeValue(forKey: timestamp) }
        taken?.completion?(.failure(CancellationError()))
    }

    private func fail(_ timestamp: UInt64) {
        let taken = state.withLock { state in state.pending.removeValue(forKey: timestamp) }
        guard let taken else { return }
        let best = Dictionary(grouping: taken.replies.values, by: { $0 }).values.map(\.count).max() ?? 0
        taken.completion?(.failure(ClientError(code: .noQuorum(replies: best, needed: config.weakQuorum))))
    }

    private func accept(_ reply: Reply, from replica: ReplicaID) {
        // A reply only for requests that already have their f+1 matching replies (or were never
        // sent) changes nothing: skip its signature check, the client's largest cost.
        let isAwaited = state.withLock { state in reply.timestamps.contains { state.pending[$0] != nil } }
        guard isAwaited else { return }
        guard reply.replica == replica, reply.client == keyPair.publicKey,
              let key = config.publicKey(of: replica),
              Ed25519.verify(reply.signature, of: reply.signedContent.bytes(cluster: config.cluster), by: key) else {
            logger.debug("ignoring a reply that does not verify", metadata: ["replica": "\(replica.value)"])
            return
        }
        let resolved: [(Completion, Reply.Result)] = state.withLock { state in
            state.highestView = max(state.highestView, reply.view)
            var resolved: [(Completion, Reply.Result)] = []
            for timestamp in reply.timestamps {
                // Mutated in place: copying a `Pending` out and back (its request, payload and
                // reply table) for every timestamp was ~10 % of the benchmark client's CPU.
                guard let matching = state.pending[timestamp]?.recordReply(reply.result, from: replica) else { continue }
                if matching >= config.weakQuorum, let completion = state.pending[timestamp]?.completion {
                    state.pending[timestamp] = nil
                    resolved.append((completion, reply.result))
                }
            }
            return resolved
        }
        guard !resolved.isEmpty else { return }
        // Completion handlers may submit again (`stele bench` does): their requests leave in
        // one write per link, not one each.
        sendingTogether {
            for (completion, result) in resolved { completion(.success(result)) }
        }
    }

    /// Runs `body`; the requests it submits leave together, in one write per replica link,
    /// once it returns (instead of the link waking at the first and racing the rest).
    func sendingTogether<T>(_ body: () throws -> T) rethrows -> T {
        try Mailbox.holdingWakeUps(of: links.values, body)
    }

    /// Asks one replica for its status; nil if it does not answer within `timeout`.
    public func status(of replica: ReplicaID, timeout: Duration = .seconds(2)) async -> ReplicaStatus? {
        await withTaskGroup(of: ReplicaStatus??.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    self.state.withLock { $0.statusWaiters[replica, default: []].append(continuation) }
                    self.links[replica]?.post(.statusRequest)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return .some(nil)
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            // Release a waiter that never got an answer.
            let stale = state.withLock { state in state.statusWaiters.removeValue(forKey: replica) ?? [] }
            for waiter in stale { waiter.resume(returning: nil) }
            return first ?? nil
        }
    }

    private func deliverStatus(_ json: [UInt8], from replica: ReplicaID) {
        let status = try? JSONDecoder().decode(ReplicaStatus.self, from: Data(json))
        let waiters = state.withLock { state in state.statusWaiters.removeValue(forKey: replica) ?? [] }
        for waiter in waiters { waiter.resume(returning: status) }
    }

    /// One connection per replica, reconnecting with backoff; writes queued frames, reads replies.
    private func linkLoop(replica: ReplicaID, mailbox: Mailbox<Frame>) async {
        let endpoint = config.replicas[Int(replica.value)]
        var backoff = Duration.milliseconds(50)
        while !Task.isCancelled {
            do {
                let channel = try await connectFrameChannel(to: endpoint, frameBytesMax: settings.frameBytesMax)
                try await channel.executeThenClose { inbound, outbound in
                    var iterator = inbound.makeAsyncIterator()
                    let deadline = Deadline(.seconds(5), channel: channel.channel)
                    let driver = HandshakeDriver(handshake: Handshake(config: config), myIdentity: .client(keyPair.publicKey), myKey: keyPair)
                    _ = try await driver.asConnector(inbound: &iterator, outbound: outbound, expected: .replica(replica))
                    deadline.cancel()
                    backoff = .milliseconds(50)
                    // Queued requests are written from the event loop itself (`FrameDrain`).
                    try await FrameDrain.install(on: channel.channel, draining: mailbox)
                    defer { mailbox.setWakeHandler(nil) }
                    while let frame = try await iterator.next() {
                        switch frame {
                        case .message(.reply(let reply)): accept(reply, from: replica)
                        case .statusResponse(let json): deliverStatus(json, from: replica)
                        default: break
                        }
                    }
                }
            } catch {
                logger.debug("link to replica down", metadata: ["replica": "\(replica.value)", "reason": "\(error)"])
            }
            if Task.isCancelled { return }
            try? await Task.sleep(for: backoff * Double.random(in: 0.5...1.0))
            backoff = min(backoff * 2, .seconds(2))
        }
    }
}
