import Foundation
import SteleHarness

/// Every figure of one benchmark run (`stele bench --json` prints this object).
public struct BenchReport: Codable, Sendable {
    public var replicas: Int
    public var clients: Int
    public var outstandingPerClient: Int
    public var payloadBytes: Int
    public var warmupSeconds: Double
    public var measuredSeconds: Double
    public var acknowledgedTransactions: Int
    public var failedTransactions: Int
    public var throughputTxPerSecond: Double
    public var latencyMilliseconds: [String: Double]
    public var cpuSecondsPer1000Tx: Double
    public var replicaCPUSeconds: Double
    /// The bench process's own CPU (its clients, plus the flood with `--flood`) over the
    /// measured window: with the replicas', every cycle the cluster and its load used.
    public var clientCPUSecondsPer1000Tx: Double
    public var averageBatchSize: Double
    public var viewChanges: UInt64
    public var replicaRSSBytes: [UInt64]
    /// Replica RSS sampled over the whole run (warm-up included), to show memory stays flat.
    public var replicaRSSOverTime: [RSSSample]
    public var ledgerBytesPerTransaction: Double
    public var ed25519VerifyPerSecondPerCore: Double
    public var ed25519SignPerSecondPerCore: Double
    /// The verify rate measured before the cluster started and again once the load stopped
    /// (the two figures above are their means): this shared machine's per-core speed drifts
    /// by up to a quarter between runs, so the ceiling is taken on both sides of the run.
    public var ed25519VerifyPerSecondPerCoreBeforeAndAfter: [Double]
    public var cores: Int
    public var ceilingTxPerSecond: Double
    public var throughputOverCeiling: Double
    /// With `--flood KIND`: what the hostile load did while the honest clients were measured.
    public var flood: FloodReport? = nil
}

/// Every replica's resident memory at one moment of a run.
public struct RSSSample: Codable, Sendable {
    public var seconds: Double
    public var bytes: [UInt64]
}

extension BenchReport {
    /// The report as `stele bench` prints it without `--json`.
    public var humanReadable: String {
        func f(_ value: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", value) }
        func latency(_ key: String) -> String { f(latencyMilliseconds[key] ?? 0, 2) }
        let mebibytes = replicaRSSBytes.map { "\($0 / 1_048_576) MiB" }.joined(separator: ", ")
        let largestOverRun = replicaRSSOverTime.map { "\(($0.bytes.max() ?? 0) / 1_048_576)" }.joined(separator: " ")
        var lines = [
            "",
            "stele bench: \(replicas) replicas, \(clients) clients × \(outstandingPerClient) outstanding, "
                + "\(payloadBytes)-byte payloads, \(f(measuredSeconds, 0)) s measured",
            "  throughput           \(f(throughputTxPerSecond)) tx/s  "
                + "(\(acknowledgedTransactions) acknowledged, \(failedTransactions) failed)",
            "  latency              p50 \(latency("p50")) ms  p90 \(latency("p90")) ms  p99 \(latency("p99")) ms  "
                + "max \(latency("max")) ms",
            "  replica CPU          \(f(cpuSecondsPer1000Tx, 3)) s per 1,000 tx  "
                + "(bench clients: \(f(clientCPUSecondsPer1000Tx, 3)))",
            "  average batch        \(f(averageBatchSize)) tx",
            "  view changes         \(viewChanges)",
            "  replica RSS          \(mebibytes)",
            "  largest RSS over run \(largestOverRun) MiB",
            "  ledger bytes per tx  \(f(ledgerBytesPerTransaction))",
            "  Ed25519 per core     verify \(f(ed25519VerifyPerSecondPerCore, 0))/s, "
                + "sign \(f(ed25519SignPerSecondPerCore, 0))/s, \(cores) cores",
            "  ceiling              \(f(ceilingTxPerSecond, 0)) tx/s  →  "
                + "throughput is \(f(throughputOverCeiling * 100)) % of it",
        ]
        if let flood {
            lines.append("  flood                \(flood.kind): \(flood.framesSent) frames, \(flood.connectionsOpened) "
                + "connections opened, \(flood.connectionsClosedByReplica) closed by the replicas")
        }
        return lines.joined(separator: "\n")
    }
}
