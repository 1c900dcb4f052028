import SteleCore

/// Which strategies the Byzantine replicas play.
public enum StrategySelection: Sendable, Equatable, CustomStringConvertible {
    /// A mix: each Byzantine replica's strategy is chosen by the seed.
    case all
    case only(ByzantineStrategy)

    public init?(name: String) {
        if name == "all" {
            self = .all
        } else if let strategy = ByzantineStrategy(rawValue: name) {
            self = .only(strategy)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .all: "all"
        case .only(let strategy): strategy.rawValue
        }
    }
}

/// The shape of one simulated run; everything not given here is drawn from the seed.
public struct SimulationOptions: Sendable, Equatable {
    public var seed: UInt64
    public var replicaCount = 4
    /// K: how many replicas are Byzantine. K may exceed f on purpose (then only safety is
    /// checked, and forks must be detected).
    public var byzantineCount = 0
    public var strategy: StrategySelection = .all
    public var clientCount = 3
    /// Requests each client submits during the safety phase (plus one more after healing).
    public var requestsPerClient = 6
    public var pendingPerClientMax = 2
    /// Ticks with faults on.
    public var safetyPhaseTicks: UInt64 = 1200
    /// After healing, every submitted request must be accepted within this many ticks.
    public var livenessPhaseTicksMax: UInt64 = 4000
    /// During the liveness phase clients keep submitting for B ticks (B = latencyBoundTimeouts ×
    /// viewChangeTimeoutTicksMax), one request every quarter of the base view-change timeout
    /// from the clients in turn (`Simulation.loadPeriodTicks`); every request must be accepted
    /// within B ticks of its submission.
    public var sustainedLoad = true
    /// B in view-change timeouts: after healing a request reaches every correct replica and
    /// arms its request timer within one timeout; each of at most f faulty primaries in a row
    /// costs one more (a timer capped at viewChangeTimeoutTicksMax); one more covers the last
    /// NEW-VIEW and the commit. So f + 2 timeouts of the largest size.
    public var latencyBoundTimeouts: UInt64 { UInt64(f + 2) }
    public var crashes = true
    /// Each tick, a crash is scheduled with probability 1 / crashChanceOneIn (while fewer than
    /// max(1, f) replicas are down).
    public var crashChanceOneIn = 120
    /// Each tick without a partition, one starts with probability 1 / partitionChanceOneIn.
    public var partitionChanceOneIn = 150
    public var networkFaults = true
    public var partitions = true
    /// More packets than this in flight at once means the replicas amplify messages: the run
    /// stops with an `overload` violation (normal traffic for small clusters is far below).
    public var inFlightPacketsMax = 20_000
    /// Share of deliveries whose message is encoded and decoded again (and compared).
    public var codecSamplePercent = 100

    public init(seed: UInt64) { self.seed = seed }

    public var f: Int { max(0, (replicaCount - 1) / 3) }
    /// Liveness is only expected while the Byzantine replicas are at most f.
    public var checksLiveness: Bool { byzantineCount <= f }

    /// The command that replays exactly this run.
    public var replayCommand: String {
        var command = "stele-sim --seed \(seed) --replicas \(replicaCount) --byzantine \(byzantineCount) --strategy \(strategy)"
        if clientCount != 3 { command += " --clients \(clientCount)" }
        if requestsPerClient != 6 { command += " --requests \(requestsPerClient)" }
        if safetyPhaseTicks != 1200 { command += " --safety-ticks \(safetyPhaseTicks)" }
        if livenessPhaseTicksMax != 4000 { command += " --liveness-ticks \(livenessPhaseTicksMax)" }
        if codecSamplePercent != 100 { command += " --codec-sample-percent \(codecSamplePercent)" }
        if crashes, crashChanceOneIn != 120 { command += " --crash-one-in \(crashChanceOneIn)" }
        if !crashes { command += " --no-crashes" }
        if !partitions { command += " --no-partitions" }
        if !networkFaults { command += " --no-network-faults" }
        if !sustainedLoad { command += " --no-sustained-load" }
        return command
    }
}
