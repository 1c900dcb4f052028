import SteleCore
@testable import SteleSim
import Testing

@Suite struct NetworkTests {
    static let message = Message.stateRequest(StateRequest(fromHeight: 1, toHeight: 2, replica: 0))

    func deliveredTicks(_ network: inout SimNetwork, from: ReplicaID, to: ReplicaID, count: Int) -> [UInt64] {
        for _ in 0..<count {
            network.send(.message(NetworkTests.message), from: .replica(from), to: .node(Int(to.value)), replicaLink: SimLink(from: from, to: to), now: 0)
        }
        var ticks = [UInt64]()
        for tick in UInt64(1)...200 { ticks += network.deliverable(at: tick).map { _ in tick } }
        return ticks
    }

    @Test func delaysStayInRangeAndNothingIsLostOnAHealedNetwork() {
        var network = SimNetwork(faults: .healed, random: SimRandom(seed: 3))
        let ticks = deliveredTicks(&network, from: 0, to: 1, count: 100)
        #expect(ticks.count == 100)
        #expect(ticks.allSatisfy { (1...2).contains($0) })
        #expect(network.inFlightCount == 0)
    }

    @Test func lossAndDuplicationHappen() {
        let faults = NetworkFaults(lossPercent: 30, duplicatePercent: 30, delayTicks: 1...5, spikePercent: 0, spikeDelayTicksMax: 0)
        var network = SimNetwork(faults: faults, random: SimRandom(seed: 4))
        _ = deliveredTicks(&network, from: 0, to: 1, count: 400)
        #expect(network.droppedCount > 60)
        #expect(network.duplicatedCount > 40)
    }

    @Test func oneWayPartitionBlocksOnlyOneDirection() {
        var network = SimNetwork(faults: .healed, random: SimRandom(seed: 5))
        network.block(SimNetwork.oneWay(from: [0], to: [0, 1, 2, 3]))
        let blocked = deliveredTicks(&network, from: 0, to: 1, count: 10)
        let reverse = deliveredTicks(&network, from: 1, to: 0, count: 10)
        network.healPartitions()
        let healed = deliveredTicks(&network, from: 0, to: 1, count: 10)
        #expect(blocked.isEmpty)
        #expect(reverse.count == 10)
        #expect(healed.count == 10)
    }

    @Test func splitBlocksBothDirectionsAcrossButNotWithin() {
        var network = SimNetwork(faults: .healed, random: SimRandom(seed: 6))
        network.block(SimNetwork.split([0, 1], [2, 3]))
        let across = deliveredTicks(&network, from: 0, to: 2, count: 5)
        let acrossBack = deliveredTicks(&network, from: 3, to: 1, count: 5)
        let within = deliveredTicks(&network, from: 0, to: 1, count: 5)
        #expect(across.isEmpty)
        #expect(acrossBack.isEmpty)
        #expect(within.count == 5)
    }

    @Test func inFlightLimitDropsInsteadOfGrowing() {
        var network = SimNetwork(faults: .healed, random: SimRandom(seed: 8), inFlightPacketsMax: 10)
        for _ in 0..<25 {
            network.send(.message(NetworkTests.message), from: .replica(0), to: .node(1), replicaLink: nil, now: 0)
        }
        #expect(network.inFlightCount == 10)
        #expect(network.droppedCount == 15)
    }
}
