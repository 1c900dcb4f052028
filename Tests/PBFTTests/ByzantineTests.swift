import Testing
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import PBFT

extension Cluster {
    /// Replica `liar` equivocates: each PRE-PREPARE it sends goes out, to some backups, with its
    /// batch reversed or shortened (another digest for the same (v, s)), re-signed.
    mutating func runWithEquivocator(_ liar: ReplicaID, _ random: inout SeededGenerator, lossPercent: UInt64) {
        var deliveries = 0
        while !queue.isEmpty, deliveries < 20_000 {
            var envelope = queue.remove(at: Int(random.next() % UInt64(queue.count)))
            deliveries += 1
            guard !isolated.contains(envelope.from), !isolated.contains(envelope.to) else { continue }
            if random.next() % 100 < lossPercent { continue }
            if envelope.from == liar, case .prePrepare(let honest) = envelope.message, random.next() % 2 == 0 {
                let batch = random.next() % 2 == 0 ? Array(honest.batch.reversed()) : Array(honest.batch.dropLast())
                let lie = PrePrepare(view: honest.view, sequence: honest.sequence, primary: honest.primary, batch: batch)
                    .signed(by: signers[Int(liar.value)])
                envelope = Envelope(message: .prePrepare(lie), from: liar, to: envelope.to)
            }
            expectVerified(envelope.message, from: envelope.from)
            perform(replicas[Int(envelope.to.value)].handle(.message(envelope.message, from: envelope.from)), by: envelope.to)
        }
    }
}

/// An equivocating primary (INVARIANTS 5, 6): correct replicas never disagree on a block,
/// and the cluster moves past the liar.
@Suite struct ByzantineTests {
    @Test(arguments: Array(UInt64(1)...UInt64(2)))
    func anEquivocatingPrimaryCannotSplitTheLedger(seed: UInt64) async {
        await offCooperativePool {
            var random = SeededGenerator(seed: seed)
            var cluster = Cluster(parameters: Cluster.parameters(checkpointInterval: 4, watermarkWindow: 8, batchSizeMax: 3, pipelineDepthMax: 2, viewChangeTimeoutTicks: 12, retransmitTicks: 4))
            var timestamp: UInt64 = 0
            for round in 0..<200 {
                for _ in 0..<(round < 100 ? Int(random.next() % 3) : 0) {
                    timestamp += 1
                    cluster.submit(cluster.request(timestamp))
                }
                for request in (1...max(timestamp, 1)).map({ cluster.request($0) }) where cluster.executedCount(request) < cluster.config.quorum {
                    cluster.submit(request)
                }
                for id in cluster.ids { cluster.perform(cluster.replicas[Int(id.value)].handle(.tick), by: id) }
                // Replica 0 lies whenever it is primary (views 0, 4, ...).
                cluster.runWithEquivocator(0, &random, lossPercent: 5)
                cluster.expectAgreement()
            }
            let honest: [ReplicaID] = [1, 2, 3]
            let all = (1...timestamp).map { cluster.request($0) }
            #expect(all.allSatisfy { request in honest.filter { cluster.replica($0).ledgerHead.clients[request.client]?.status(of: request.timestamp) != .new }.count >= 2 },
                    "seed \(seed): requests execute despite the liar")
            for id in honest { cluster.expectExactlyOnce(id) }
        }
    }
}
