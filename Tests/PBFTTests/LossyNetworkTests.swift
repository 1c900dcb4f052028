import Testing
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import PBFT

extension Cluster {
    /// Delivers queued messages in random order, losing and duplicating some.
    mutating func runLossy(_ random: inout SeededGenerator, lossPercent: UInt64, duplicatePercent: UInt64, deliveriesMax: Int = 20_000) {
        var deliveries = 0
        while !queue.isEmpty, deliveries < deliveriesMax {
            let envelope = queue.remove(at: Int(random.next() % UInt64(queue.count)))
            deliveries += 1
            guard !isolated.contains(envelope.from), !isolated.contains(envelope.to), !drops(envelope) else { continue }
            if random.next() % 100 < lossPercent { continue }
            if random.next() % 100 < duplicatePercent { queue.append(envelope) }
            expectVerified(envelope.message, from: envelope.from)
            perform(replicas[Int(envelope.to.value)].handle(.message(envelope.message, from: envelope.from)), by: envelope.to)
        }
    }

    /// On how many replicas `request` has executed.
    func executedCount(_ request: Request) -> Int {
        ids.filter { id in
            guard case .new = replica(id).ledgerHead.clients[request.client]?.status(of: request.timestamp) ?? .new else { return true }
            return false
        }.count
    }

    /// Agreement: any two ledgers agree on every height both hold.
    func expectAgreement() {
        for a in ids {
            for b in ids where a < b {
                let common = min(ledger(a).count, ledger(b).count)
                #expect(ledger(a).prefix(common).map(\.hash) == ledger(b).prefix(common).map(\.hash), "\(a) and \(b) diverge")
            }
        }
    }
}

/// Safety under loss, duplication, reordering, a crash and a silent primary; liveness once the
/// network heals. Deterministic per seed.
@Suite struct LossyNetworkTests {
    @Test(arguments: Array(UInt64(1)...UInt64(3)))
    func agreementAndProgressUnderFaults(seed: UInt64) async {
        await offCooperativePool {
            var random = SeededGenerator(seed: seed)
            var cluster = Cluster(parameters: Cluster.parameters(checkpointInterval: 4, watermarkWindow: 8, batchSizeMax: 3, pipelineDepthMax: 2, viewChangeTimeoutTicks: 12, retransmitTicks: 4))
            var timestamp: UInt64 = 0
            func submitSome(_ cluster: inout Cluster, _ random: inout SeededGenerator) {
                for _ in 0..<Int(random.next() % 3) {
                    timestamp += 1
                    cluster.submit(cluster.request(timestamp))
                }
            }
            // Faults: loss and duplication throughout, replica (seed % 4) isolated for a while,
            // then crashed and restarted.
            let victim = ReplicaID(UInt16(seed % 4))
            for round in 0..<120 {
                if round == 30 { cluster.isolated = [victim] }
                if round == 70 {
                    cluster.restart(victim)
                    cluster.isolated = []
                }
                submitSome(&cluster, &random)
                for id in cluster.ids { cluster.perform(cluster.replicas[Int(id.value)].handle(.tick), by: id) }
                cluster.runLossy(&random, lossPercent: 20, duplicatePercent: 5)
                cluster.expectAgreement()
            }
            // Heal: no loss; clients retransmit what is not done and keep sending new requests.
            var healed = false
            for round in 0..<400 {
                if round < 60 { submitSome(&cluster, &random) }
                let all = (1...max(timestamp, 1)).map { cluster.request($0) }
                for request in all where cluster.executedCount(request) < cluster.config.quorum { cluster.submit(request) }
                cluster.tick()
                if round >= 60, all.allSatisfy({ cluster.executedCount($0) == cluster.n }) {
                    healed = true
                    break
                }
            }
            #expect(healed, "seed \(seed): after healing every request executes everywhere")
            cluster.expectAgreement()
            for id in cluster.ids { cluster.expectExactlyOnce(id) }
        }
    }

    /// Re-sending waits a whole period: a PRE-PREPARE lost on its way is re-broadcast at the
    /// first retransmission round that finds it already waiting at the round before, never at
    /// a round moments after it was sent (each re-send costs every backup a verification per
    /// request in the batch).
    @Test func lostPrePrepareIsResentOnlyAfterAWholePeriod() {
        let period = 5
        var cluster = Cluster(parameters: Cluster.parameters(retransmitTicks: UInt64(period)))
        cluster.isolated = [1, 2, 3]
        cluster.submit(cluster.request(1), to: [0])
        #expect(cluster.queue.contains { if case .prePrepare = $0.message { true } else { false } }, "the primary proposed at once")
        func prePrepareBroadcasts(_ actions: [Action]) -> Int {
            actions.filter { if case .broadcast(.prePrepare) = $0 { true } else { false } }.count
        }
        var firstPeriod = 0
        for _ in 0..<period { firstPeriod += prePrepareBroadcasts(cluster.replicas[0].handle(.tick)) }
        var secondPeriod = 0
        for _ in 0..<period { secondPeriod += prePrepareBroadcasts(cluster.replicas[0].handle(.tick)) }
        #expect(firstPeriod == 0, "re-sent at the first round, moments after it was sent")
        #expect(secondPeriod == 1, "re-sent once it went a whole period unanswered")
    }
}
