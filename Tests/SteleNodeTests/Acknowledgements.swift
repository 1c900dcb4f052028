import Foundation
import Testing
import SteleAudit
import SteleCore
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
