import SteleCore

/// Where a packet comes from: a replica (authenticated transport peer) or a simulated client.
public enum SimAddress: Hashable, Sendable, CustomStringConvertible {
    case replica(ReplicaID)
    case client(Int)

    public var description: String {
        switch self {
        case .replica(let id): id.description
        case .client(let index): "c\(index)"
        }
    }
}

/// Where a packet goes: one node (a replica instance — a twin has two) or one client.
public enum SimDestination: Hashable, Sendable {
    case node(Int)
    case client(Int)
}

/// What travels: a message (encoded and decoded again on delivery) or raw bytes an adversary
/// mangled (decoded on delivery; a decoding error drops it).
public enum SimPayload: Sendable {
    case message(Message)
    case bytes([UInt8])
}

public struct SimPacket: Sendable {
    public let from: SimAddress
    public let to: SimDestination
    public let payload: SimPayload
    public let sentTick: UInt64
}

/// The network's misbehaviour while faults are on. Chosen per seed.
public struct NetworkFaults: Sendable, Equatable {
    public var lossPercent: Int
    public var duplicatePercent: Int
    public var delayTicks: ClosedRange<UInt64>
    /// Chance that a packet is held back much longer than usual (reordering).
    public var spikePercent: Int
    public var spikeDelayTicksMax: UInt64

    public init(lossPercent: Int, duplicatePercent: Int, delayTicks: ClosedRange<UInt64>, spikePercent: Int, spikeDelayTicksMax: UInt64) {
        precondition(delayTicks.lowerBound >= 1, "a packet takes at least one tick")
        self.lossPercent = lossPercent
        self.duplicatePercent = duplicatePercent
        self.delayTicks = delayTicks
        self.spikePercent = spikePercent
        self.spikeDelayTicksMax = spikeDelayTicksMax
    }

    /// The healed network of the liveness phase: no loss, no duplication, short delays.
    public static let healed = NetworkFaults(lossPercent: 0, duplicatePercent: 0, delayTicks: 1...2, spikePercent: 0, spikeDelayTicksMax: 0)

    public static func random(_ random: inout SimRandom) -> NetworkFaults {
        let delayMax = UInt64(random.int(in: 1...6))
        return NetworkFaults(
            lossPercent: random.int(in: 0...12),
            duplicatePercent: random.int(in: 0...8),
            delayTicks: 1...delayMax,
            spikePercent: random.int(in: 0...5),
            spikeDelayTicksMax: UInt64(random.int(in: 5...40)))
    }
}

/// A directed replica-to-replica link.
public struct SimLink: Hashable, Sendable {
    public let from: ReplicaID
    public let to: ReplicaID
}

/// The simulated network: per-packet delay, loss, duplication and reordering, and directed
/// partitions between replicas. Packets wait in per-tick buckets; those due at a tick are
/// delivered in an order the seed shuffles.
public struct SimNetwork: Sendable {
    public var faults: NetworkFaults
    public private(set) var blocked: Set<SimLink> = []
    public let inFlightPacketsMax: Int
    private var buckets: [UInt64: [SimPacket]] = [:]
    public private(set) var inFlightCount = 0
    public private(set) var sentCount = 0
    public private(set) var droppedCount = 0
    public private(set) var duplicatedCount = 0
    private var random: SimRandom

    public init(faults: NetworkFaults, random: SimRandom, inFlightPacketsMax: Int = 100_000) {
        precondition(inFlightPacketsMax > 0, "the network must carry something")
        self.faults = faults
        self.random = random
        self.inFlightPacketsMax = inFlightPacketsMax
    }

    // MARK: Partitions

    public func isBlocked(from: ReplicaID, to: ReplicaID) -> Bool {
        blocked.contains(SimLink(from: from, to: to))
    }

    public mutating func block(_ links: [SimLink]) { blocked.formUnion(links) }
    public mutating func healPartitions() { blocked.removeAll() }

    /// Blocks every link between the two groups, in both directions.
    public static func split(_ groupA: [ReplicaID], _ groupB: [ReplicaID]) -> [SimLink] {
        groupA.flatMap { a in groupB.flatMap { b in [SimLink(from: a, to: b), SimLink(from: b, to: a)] } }
    }

    /// Blocks only what `sources` send to `targets`: they still hear everyone.
    public static func oneWay(from sources: [ReplicaID], to targets: [ReplicaID]) -> [SimLink] {
        sources.flatMap { a in targets.compactMap { b in a == b ? nil : SimLink(from: a, to: b) } }
    }

    // MARK: Sending and delivering

    /// Sends one packet, subject to partitions (between replicas), loss, duplication and delay.
    /// `replicaLink` is the (from, to) replica pair when both ends are replicas.
    public mutating func send(_ payload: SimPayload, from: SimAddress, to: SimDestination, replicaLink: SimLink?, now: UInt64) {
        sentCount += 1
        if let replicaLink, blocked.contains(replicaLink) {
            droppedCount += 1
            return
        }
        if random.chance(percent: faults.lossPercent) {
            droppedCount += 1
            return
        }
        let copies = random.chance(percent: faults.duplicatePercent) ? 2 : 1
        duplicatedCount += copies - 1
        for _ in 0..<copies {
            enqueue(SimPacket(from: from, to: to, payload: payload, sentTick: now), at: now + delay())
        }
    }

    private mutating func delay() -> UInt64 {
        var ticks = random.uint64(in: faults.delayTicks)
        if faults.spikeDelayTicksMax > 0, random.chance(percent: faults.spikePercent) {
            ticks += random.uint64(in: 1...faults.spikeDelayTicksMax)
        }
        return ticks
    }

    private mutating func enqueue(_ packet: SimPacket, at tick: UInt64) {
        guard inFlightCount < inFlightPacketsMax else {
            droppedCount += 1
            return
        }
        buckets[tick, default: []].append(packet)
        inFlightCount += 1
    }

    /// Removes and returns the packets due at `tick`, in a seed-shuffled order.
    public mutating func deliverable(at tick: UInt64) -> [SimPacket] {
        guard var due = buckets.removeValue(forKey: tick) else { return [] }
        inFlightCount -= due.count
        random.shuffle(&due)
        return due
    }
}
