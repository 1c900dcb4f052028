import Foundation
import Logging
import Testing
import SteleCore
import SteleCrypto
@testable import SteleNode

@Suite("Client library")
struct ClientTests {
    /// A config whose replicas listen nowhere: no reply will ever come.
    func unreachableConfig() throws -> ClusterConfig {
        let ports = try LocalPorts.free(4)
        let endpoints = (0..<4).map { index in
            ReplicaEndpoint(id: ReplicaID(UInt16(index)), host: "127.0.0.1", port: UInt16(ports[index]), publicKey: KeyPair.generate().publicKey)
        }
        return try ClusterConfig(cluster: ClusterID(bytes: [UInt8](repeating: 1, count: 16))!, f: 1, replicas: endpoints)
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
}

final class OutcomeBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: String?
    var value: String? { lock.withLock { stored } }
    func set(_ text: String) { lock.withLock { stored = text } }
}
