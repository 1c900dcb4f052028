import Foundation
import Testing
import SteleAudit
import SteleCore
import SteleTestSupport
@testable import SteleNode

// What every end-to-end scenario checks at the end, shared by the suites.

/// Submits `count` transactions at once (pipelined) and returns every acknowledgement.
func submit(_ client: SteleClient, _ count: Int, prefix: String) async throws -> [SubmitResult] {
    try await withThrowingTaskGroup(of: SubmitResult.self) { group in
        for index in 0..<count {
            group.addTask { try await client.submit(Array("\(prefix)-\(index)".utf8), timeout: .seconds(60)) }
        }
        var results: [SubmitResult] = []
        for try await result in group { results.append(result) }
        return results
    }
}

/// Submits `count` transactions through the completion-handler API, `chains` at a time: each
/// completion submits the chain's next one from inside the handler, as `stele bench` does.
/// Fails if any handler is called twice or a submission fails.
func submitWithCompletions(_ client: SteleClient, _ count: Int, chains: Int, prefix: String) async throws -> [SubmitResult] {
    let box = CompletionBox(count: count)
    @Sendable func next() {
        guard let index = box.claimIndex() else { return }
        client.submit(Array("\(prefix)-\(index)".utf8), timeout: .seconds(60)) { result in
            box.record(index, result)
            next()
        }
    }
    for _ in 0..<chains { next() }
    let finished = await eventually(timeout: .seconds(120)) { box.isComplete }
    #expect(finished, "every completion handler was called")
    return try box.results()
}

/// The shared state of `submitWithCompletions`.
final class CompletionBox: @unchecked Sendable {
    private let lock = NSLock()
    private let count: Int
    private var claimed = 0
    private var outcomes: [Int: Result<SubmitResult, any Error>] = [:]
    private var calledTwice: [Int] = []

    init(count: Int) { self.count = count }

    func claimIndex() -> Int? {
        lock.withLock {
            guard claimed < count else { return nil }
            defer { claimed += 1 }
            return claimed
        }
    }

    func record(_ index: Int, _ outcome: Result<SubmitResult, any Error>) {
        lock.withLock {
            if outcomes[index] != nil { calledTwice.append(index) }
            outcomes[index] = outcome
        }
    }

    var isComplete: Bool { lock.withLock { outcomes.count == count } }

    func results() throws -> [SubmitResult] {
        try lock.withLock {
            #expect(calledTwice.isEmpty, "completion handlers called twice: \(calledTwice)")
            return try (0..<count).compactMap { try outcomes[$0]?.get() }
        }
    }
}

/// Every acknowledged transaction is in each live ledger exactly once, at the acknowledged
/// height with the acknowledged block hash, and stele-check passes over those ledgers.
func expectAcknowledgedExactlyOnce(_ acks: [SubmitResult], cluster: TestCluster, live: [ReplicaID]) async throws {
    let top = acks.map(\.height).max() ?? 0
    let caughtUp = await eventually { live.allSatisfy { cluster.height($0) >= top } }
    #expect(caughtUp, "live replicas reach height \(top): \(live.map { cluster.height($0) })")
    for id in live {
        let blocks = try cluster.ledgerBlocks(id)
        var occurrences: [UInt64: Int] = [:]
        for block in blocks {
            for request in block.batch where request.client == cluster.clientKey.publicKey {
                occurrences[request.timestamp, default: 0] += 1
            }
        }
        for ack in acks {
            #expect(occurrences[ack.timestamp] == 1, "replica \(id.value): transaction t=\(ack.timestamp) appears \(occurrences[ack.timestamp] ?? 0) times")
            if ack.height >= 1, ack.height <= UInt64(blocks.count) {
                #expect(blocks[Int(ack.height) - 1].hash.hex == ack.blockHash, "replica \(id.value): block \(ack.height) differs from the acknowledged one")
            }
        }
    }
    let report = try cluster.audit(live)
    #expect(report.verdict == .pass, "stele-check: \(report.findings.filter { $0.severity == .violation }.prefix(5))")
}
