import Foundation
import Logging
import Testing
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import SteleNode

@Suite("Client library")
struct ClientTests {
    /// A config whose replicas listen nowhere: no reply will ever come.
    func unreachableConfig() throws -> ClusterConfig {
        let ports = try LocalPorts.free(4).map { UInt16($0) }
        let cluster = ClusterID(bytes: [UInt8](repeating: 1, count: 16))!
        return TestReplicas(n: 4, cluster: cluster, ports: .listed(ports)).config
    }

    @Test("a submit result's JSON names the block hash in hex and refuses one that is not a digest")
    func submitResultJSON() throws {
        let digest = Digest.of(Array("block".utf8))
        let result = SubmitResult(timestamp: 7, height: 3, blockDigest: digest, latencyMicroseconds: 1_234)
        #expect(result.blockHash == digest.hex)
        let json = try JSONEncoder().encode(result)
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(object["blockHash"] as? String == digest.hex)
        #expect(Set(object.keys) == ["timestamp", "height", "blockHash", "latencyMicroseconds"])
        #expect(try JSONDecoder().decode(SubmitResult.self, from: json) == result)
        let bad = Data(#"{"timestamp":7,"height":3,"blockHash":"abc","latencyMicroseconds":1}"#.utf8)
        #expect(throws: Swift.DecodingError.self) { try JSONDecoder().decode(SubmitResult.self, from: bad) }
    }

    @Test("a pending request counts matching results per replica, a replica's later reply replacing its earlier one")
    func pendingCountsMatchingReplies() throws {
        let request = ClientSigner(cluster: try unreachableConfig().cluster, keyPair: KeyPair.generate()).request(timestamp: 1, payload: [1])
        let now = ContinuousClock.now
        var pending = SteleClient.Pending(request: request, retransmitAt: now, retransmitInterval: .seconds(1), deadline: now)
        let a = Reply.Result(height: 1, blockHash: Digest.of([1]))
        let b = Reply.Result(height: 1, blockHash: Digest.of([2]))
        #expect(pending.recordReply(a, from: 0) == 1)
        #expect(pending.recordReply(b, from: 1) == 1)
        #expect(pending.recordReply(a, from: 2) == 2)
        #expect(pending.recordReply(a, from: 1) == 3)
        #expect(pending.recordReply(b, from: 1) == 1)
    }

    @Test("the sweep finds requests due for retransmission or past their deadline, including ones added after a scan, and reschedules with doubling")
    func sweepFindsDueRequests() throws {
        let signer = ClientSigner(cluster: try unreachableConfig().cluster, keyPair: KeyPair.generate())
        let start = ContinuousClock.now
        var state = SteleClient.State()
        func pending(_ timestamp: UInt64, retransmitAt: Duration, deadline: Duration) -> SteleClient.Pending {
            SteleClient.Pending(request: signer.request(timestamp: timestamp, payload: [1]), retransmitAt: start + retransmitAt,
                                retransmitInterval: retransmitAt, deadline: start + deadline)
        }
        state.add(pending(1, retransmitAt: .seconds(1), deadline: .seconds(10)), timestamp: 1)
        var taken = state.takeDue(now: start + .milliseconds(500), retransmitAfterMax: .seconds(4))
        #expect(taken.due.isEmpty && taken.expired.isEmpty)
        // Added after a scan, and due before the first one: found at its own time.
        state.add(pending(2, retransmitAt: .milliseconds(600), deadline: .milliseconds(700)), timestamp: 2)
        taken = state.takeDue(now: start + .milliseconds(650), retransmitAfterMax: .seconds(4))
        #expect(taken.due.map(\.timestamp) == [2])
        #expect(taken.expired.isEmpty)
        // Its next retransmission is capped by its deadline, where it expires.
        #expect(state.pending[2]?.retransmitAt == start + .milliseconds(700))
        taken = state.takeDue(now: start + .milliseconds(700), retransmitAfterMax: .seconds(4))
        #expect(taken.due.isEmpty)
        #expect(taken.expired == [2])
        state.pending[2] = nil
        taken = state.takeDue(now: start + .seconds(1), retransmitAfterMax: .seconds(4))
        #expect(taken.due.map(\.timestamp) == [1])
        // The interval doubled: nothing until two seconds later.
        #expect(state.takeDue(now: start + .milliseconds(2_900), retransmitAfterMax: .seconds(4)).due.isEmpty)
        #expect(state.takeDue(now: start + .seconds(3), retransmitAfterMax: .seconds(4)).due.map(\.timestamp) == [1])
    }

    @Test("cancelling a submit that no replica answers ends it with CancellationError instead of hanging")
    func cancelledSubmitReturns() async throws {
        let config = try unreachableConfig()
        try await SteleClient.with(config: config, keyPair: KeyPair.generate(), logger: Logger(label: "test.client")) { client in
            let outcome = OutcomeBox()
            let submission = Task {
                do {
                    _ = try await client.submit(Array("never answered".utf8), timeout: .seconds(600))
                    outcome.set("returned a result")
                } catch is CancellationError {
                    outcome.set("cancelled")
                } catch {
                    outcome.set("threw \(error)")
                }
            }
            try await Task.sleep(for: .milliseconds(100))
            submission.cancel()
            // Bounded: if cancellation were ignored, only the 600 s timeout would end the call.
            let ended = await eventually(timeout: .seconds(30)) { outcome.value != nil }
            #expect(ended, "the cancelled submit returned")
            #expect(outcome.value == "cancelled")
        }
    }

    @Test("a submit no replica answers fails with noQuorum at its deadline, not before and not never")
    func unansweredSubmitTimesOut() async throws {
        let config = try unreachableConfig()
        var settings = SteleClient.Settings()
        settings.retransmitAfter = .milliseconds(100)
        try await SteleClient.with(config: config, keyPair: KeyPair.generate(), settings: settings, logger: Logger(label: "test.client")) { client in
            let start = ContinuousClock.now
            await #expect(throws: ClientError(code: .noQuorum(replies: 0, needed: config.weakQuorum))) {
                _ = try await client.submit(Array("never answered".utf8), timeout: .milliseconds(500))
            }
            let waited = start.duration(to: .now)
            #expect(waited >= .milliseconds(500), "failed before its deadline: \(waited)")
            // Generous: the sweeper runs every 50 ms, but long synchronous simulator tests in the
            // same process can hold the cooperative threads for many seconds; a lost timeout
            // would wait forever.
            #expect(waited < .seconds(120), "failed long after its deadline: \(waited)")
        }
    }

    @Test("a submit with a completion handler that no replica answers calls it once, with noQuorum, at its deadline")
    func unansweredCompletionTimesOut() async throws {
        let config = try unreachableConfig()
        var settings = SteleClient.Settings()
        settings.retransmitAfter = .milliseconds(100)
        try await SteleClient.with(config: config, keyPair: KeyPair.generate(), settings: settings, logger: Logger(label: "test.client")) { client in
            let calls = CallLog()
            let start = ContinuousClock.now
            client.submit(Array("never answered".utf8), timeout: .milliseconds(500)) { result in
                calls.append(start.duration(to: .now), result)
            }
            #expect(await eventually(timeout: .seconds(120)) { calls.count >= 1 }, "the handler was called")
            // Past the deadline the request is gone: the sweep cannot call the handler again.
            try await Task.sleep(for: .milliseconds(300))
            let recorded = calls.entries
            #expect(recorded.count == 1)
            let (waited, result) = try #require(recorded.first)
            #expect(waited >= .milliseconds(500), "failed before its deadline: \(waited)")
            #expect(throws: ClientError(code: .noQuorum(replies: 0, needed: config.weakQuorum))) { _ = try result.get() }
        }
    }

    @Test("a completion handler still waiting when the client closes is called once, with CancellationError")
    func closingCompletesPendingHandlers() async throws {
        let config = try unreachableConfig()
        let calls = CallLog()
        try await SteleClient.with(config: config, keyPair: KeyPair.generate(), logger: Logger(label: "test.client")) { client in
            client.submit(Array("never answered".utf8), timeout: .seconds(600)) { result in calls.append(.zero, result) }
            #expect(calls.count == 0)
        }
        let recorded = calls.entries
        #expect(recorded.count == 1)
        #expect(throws: CancellationError.self) { _ = try recorded.first?.1.get() }
    }

    @Test("a submit with a completion handler refuses an oversize payload at once, without sending it")
    func oversizeCompletionFailsAtOnce() async throws {
        let config = try unreachableConfig()
        try await SteleClient.with(config: config, keyPair: KeyPair.generate(), logger: Logger(label: "test.client")) { client in
            let calls = CallLog()
            let limit = CodecLimits.standard.payloadBytesMax
            client.submit([UInt8](repeating: 1, count: limit + 1)) { result in calls.append(.zero, result) }
            // Called before `submit` returned.
            let recorded = calls.entries
            #expect(recorded.count == 1)
            #expect(throws: ClientError(code: .payloadTooLarge(bytes: limit + 1, limit: limit))) { _ = try recorded.first?.1.get() }
            #expect(client.state.withLock { $0.pending.isEmpty }, "nothing was registered or sent")
        }
    }
}

/// The calls a completion handler received, with when.
final class CallLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [(Duration, Result<SubmitResult, any Error>)] = []
    var entries: [(Duration, Result<SubmitResult, any Error>)] { lock.withLock { stored } }
    var count: Int { lock.withLock { stored.count } }
    func append(_ after: Duration, _ result: Result<SubmitResult, any Error>) { lock.withLock { stored.append((after, result)) } }
}

final class OutcomeBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: String?
    var value: String? { lock.withLock { stored } }
    func set(_ text: String) { lock.withLock { stored = text } }
}
