import ArgumentParser
import Foundation
import PBFT
import SteleCore
import SteleSim

/// `stele-sim`: runs the deterministic simulator over many seeds (or replays one) and exits 1
/// if any run broke safety or liveness, printing the seed and the command that replays it.
@main
struct SteleSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stele-sim",
        abstract: "Deterministic simulation of a Stele cluster: faulty network, crashes, Byzantine replicas.",
        discussion: "Each seed drives one run: a safety phase with faults, then healing and a liveness phase in which "
            + "clients keep submitting for B = (f+2) x viewChangeTimeoutTicksMax ticks and every request must be accepted "
            + "within B ticks of its submission. Exit status 0 if every run kept safety and liveness, 1 otherwise; "
            + "each failure prints its seed, invariant, replicas and replay command. With --byzantine K > f only safety is "
            + "checked; the summary then gives each strategy's fork rate (seeds whose honest ledgers forked). Strategies: all, \(ByzantineStrategy.allCases.map(\.rawValue).joined(separator: ", ")).")

    @Option(name: .customLong("seeds"), help: ArgumentHelp("How many seeds to run.", valueName: "COUNT"))
    var seedCount: Int = 100

    @Option(help: ArgumentHelp("The first seed.", valueName: "SEED"))
    var start: UInt64 = 1

    @Option(help: ArgumentHelp("Replay exactly this seed (overrides --seeds and --start).", valueName: "N"))
    var seed: UInt64?

    @Option(help: ArgumentHelp("Replicas in the cluster (n).", valueName: "N"))
    var replicas: Int = 4

    @Option(help: ArgumentHelp("Byzantine replicas (K); may exceed f = (n-1)/3 on purpose.", valueName: "K"))
    var byzantine: Int = 0

    @Option(help: ArgumentHelp("Byzantine strategy, or 'all' for a mix chosen per seed.", valueName: "NAME"))
    var strategy: String = "all"

    @Option(help: ArgumentHelp("Write cluster.json and each replica's ledger of the last seed run to this directory.", valueName: "DIR"))
    var out: String?

    @Option(help: "Simulated clients.")
    var clients: Int = 3

    @Option(help: "Requests each client submits during the safety phase.")
    var requests: Int = 6

    @Option(name: .customLong("safety-ticks"), help: "Ticks of the safety phase (faults on).")
    var safetyTicks: UInt64 = 1200

    @Option(name: .customLong("crash-one-in"), help: "Each tick a replica crashes with probability 1/N.")
    var crashOneIn: Int = 120

    @Flag(name: .customLong("no-crashes"), help: "Never crash replicas.")
    var noCrashes = false

    @Flag(name: .customLong("no-partitions"), help: "Never partition the network.")
    var noPartitions = false

    @Flag(name: .customLong("no-network-faults"), help: "No loss, duplication or long delays.")
    var noNetworkFaults = false

    @Option(name: .customLong("codec-sample-percent"), help: "Share of deliveries encoded and decoded again (0 ... 100).")
    var codecSamplePercent: Int = 100

    @Option(name: .customLong("liveness-ticks"), help: "Ticks after healing within which every request must be accepted.")
    var livenessTicks: UInt64 = 4000

    @Flag(name: .customLong("no-sustained-load"), help: "After healing, each client submits one request only (no sustained load).")
    var noSustainedLoad = false

    @Flag(help: "Print every notable event of each run.")
    var verbose = false

    func validate() throws {
        guard StrategySelection(name: strategy) != nil else {
            throw ValidationError("unknown strategy '\(strategy)'; use all or one of \(ByzantineStrategy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard (1...64).contains(replicas) else { throw ValidationError("--replicas must be 1 ... 64") }
        guard (0...replicas).contains(byzantine) else { throw ValidationError("--byzantine must be 0 ... \(replicas)") }
        guard seedCount >= 1 else { throw ValidationError("--seeds must be at least 1") }
        guard (0...64).contains(clients), (0...10_000).contains(requests) else { throw ValidationError("--clients 0...64, --requests 0...10000") }
        guard (1...10_000_000).contains(safetyTicks) else { throw ValidationError("--safety-ticks must be 1 ... 10000000") }
        guard (1...10_000_000).contains(livenessTicks) else { throw ValidationError("--liveness-ticks must be 1 ... 10000000") }
        guard crashOneIn >= 1 else { throw ValidationError("--crash-one-in must be at least 1") }
        guard (0...100).contains(codecSamplePercent) else { throw ValidationError("--codec-sample-percent must be 0 ... 100") }
    }

    func options(seed: UInt64) -> SimulationOptions {
        var options = SimulationOptions(seed: seed)
        options.replicaCount = replicas
        options.byzantineCount = byzantine
        options.strategy = StrategySelection(name: strategy) ?? .all
        options.clientCount = clients
        options.requestsPerClient = requests
        options.safetyPhaseTicks = safetyTicks
        options.crashes = !noCrashes
        options.crashChanceOneIn = crashOneIn
        options.partitions = !noPartitions
        options.networkFaults = !noNetworkFaults
        options.codecSamplePercent = codecSamplePercent
        options.livenessPhaseTicksMax = livenessTicks
        options.sustainedLoad = !noSustainedLoad
        return options
    }

    func run() throws {
        let seeds: [UInt64] = seed.map { [$0] } ?? (0..<UInt64(seedCount)).map { start &+ $0 }
        let first = options(seed: seeds[0])
        if !first.checksLiveness {
            print("note: K = \(byzantine) > f = \(first.f): liveness is not expected and not checked; reporting safety only")
        }
        let started = Date()
        var tally = Tally()
        var last: SimulationReport?
        for seed in seeds {
            let simulation = Simulation<Replica>(options: options(seed: seed))
            if verbose { simulation.traceSink = { print("  " + $0) } }
            let report = simulation.run()
            tally.add(report)
            for violation in report.violations { print(failureLine(report, violation)) }
            if verbose || seeds.count == 1 { print(seedLine(report)) }
            last = report
        }
        if let out, let last {
            let paths = try LedgerExport.write(last, to: out)
            print("wrote \(paths.count) files for seed \(last.options.seed) to \(out)")
        }
        let wallSeconds = Date().timeIntervalSince(started)
        print(tally.summary(seedCount: seeds.count, wallSeconds: wallSeconds))
        for line in tally.forkRateLines(replicaCount: replicas, byzantineCount: byzantine, f: first.f) { print(line) }
        if tally.failedSeeds > 0 { throw ExitCode(1) }
    }

    func failureLine(_ report: SimulationReport, _ violation: InvariantViolation) -> String {
        var line = "FAIL seed=\(report.options.seed) invariant=\(violation.code.rawValue)"
        if let height = violation.height { line += " height=\(height.value)" }
        line += " replicas=\(violation.replicas.isEmpty ? "-" : violation.replicas.map(\.description).joined(separator: ","))"
        if !violation.colluders.isEmpty { line += " colluders=\(violation.colluders.map(\.description).joined(separator: ","))" }
        line += " byzantine=\(describe(report.byzantine))"
        line += " replay: \(report.options.replayCommand)"
        line += " | \(violation.detail)"
        return line
    }

    func seedLine(_ report: SimulationReport) -> String {
        "seed \(report.options.seed): \(report.passed ? "ok" : "FAILED") byzantine=\(describe(report.byzantine)) ticks=\(report.ticks) height=\(report.committedHeightMax) requests accepted \(report.acceptedCount)/\(report.submittedCount) crashes=\(report.stats.crashCount) partitions=\(report.stats.partitionCount) trace=\(report.traceHash.hex.prefix(16))\(moves(report))"
    }

    func moves(_ report: SimulationReport) -> String {
        report.adversaryMoves.isEmpty ? "" : " adversary " + report.adversaryMoves.keys.sorted().map { "\($0)=\(report.adversaryMoves[$0] ?? 0)" }.joined(separator: " ")
    }

    func describe(_ byzantine: [ReplicaID: ByzantineStrategy]) -> String {
        byzantine.isEmpty ? "none" : byzantine.keys.sorted().map { "\($0):\(byzantine[$0]?.rawValue ?? "?")" }.joined(separator: ",")
    }
}

/// Totals over all seeds run.
struct Tally {
    var failedSeeds = 0
    var safetyFailures = 0
    var livenessFailures = 0
    var ticks: UInt64 = 0
    var blocks: UInt64 = 0
    var requests = 0
    var submitted = 0
    var accepted = 0
    /// Per strategy: seeds in which some Byzantine replica played it, and of those, seeds whose
    /// honest ledgers forked.
    var seedsByStrategy: [ByzantineStrategy: Int] = [:]
    var forkedSeedsByStrategy: [ByzantineStrategy: Int] = [:]

    mutating func add(_ report: SimulationReport) {
        for strategy in Set(report.byzantine.values) {
            seedsByStrategy[strategy, default: 0] += 1
            if !report.forks.isEmpty { forkedSeedsByStrategy[strategy, default: 0] += 1 }
        }
        if !report.passed { failedSeeds += 1 }
        safetyFailures += report.violations.filter(\.isSafety).count
        livenessFailures += report.violations.filter { !$0.isSafety }.count
        ticks += report.ticks
        blocks += report.committedHeightMax
        requests += report.committedRequestCount
        submitted += report.submittedCount
        accepted += report.acceptedCount
    }

    /// "fork rate n=7 K=3 (f=2): split-vote 41/60 seeds (68%)", one line per strategy played.
    func forkRateLines(replicaCount: Int, byzantineCount: Int, f: Int) -> [String] {
        ByzantineStrategy.allCases.compactMap { strategy in
            guard let seeds = seedsByStrategy[strategy], seeds > 0 else { return nil }
            let forked = forkedSeedsByStrategy[strategy] ?? 0
            let percent = Int((Double(forked) * 100 / Double(seeds)).rounded())
            return "fork rate n=\(replicaCount) K=\(byzantineCount) (f=\(f)): \(strategy.rawValue) \(forked)/\(seeds) seeds (\(percent)%)"
        }
    }

    func summary(seedCount: Int, wallSeconds: Double) -> String {
        "summary: \(seedCount) seeds, \(failedSeeds) failed (\(safetyFailures) safety, \(livenessFailures) liveness violations), \(ticks) ticks, \(blocks) blocks / \(requests) requests committed (max honest ledger per seed, summed), requests accepted \(accepted)/\(submitted), wall time \(String(format: "%.1f", wallSeconds)) s"
    }
}
