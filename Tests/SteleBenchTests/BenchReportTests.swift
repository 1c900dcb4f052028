import Foundation
import SteleBench
import SteleHarness
import Testing

/// `stele bench --json` is read by tools/bench-table, bench-plot and bench-bounds; the text
/// report is what a person reads.
@Suite struct BenchReportTests {
    /// A report as `stele bench --json` writes it, with every field.
    static let json = """
        {
          "acknowledgedTransactions" : 3072, "averageBatchSize" : 465.5, "ceilingTxPerSecond" : 5516,
          "clientCPUSecondsPer1000Tx" : 0.217, "clients" : 16, "cores" : 2, "cpuSecondsPer1000Tx" : 1.318,
          "ed25519SignPerSecondPerCore" : 35683, "ed25519VerifyPerSecondPerCore" : 11955,
          "ed25519VerifyPerSecondPerCoreBeforeAndAfter" : [11900, 12010], "failedTransactions" : 0,
          "latencyMilliseconds" : { "max" : 1789.95, "p50" : 1141.76, "p90" : 1581.06, "p99" : 1729.54 },
          "ledgerBytesPerTransaction" : 208.6, "measuredSeconds" : 5, "outstandingPerClient" : 64,
          "payloadBytes" : 100, "replicaCPUSeconds" : 4.05, "replicaRSSBytes" : [40894464, 38797312],
          "replicaRSSOverTime" : [ { "bytes" : [27262976, 33554432], "seconds" : 0 } ], "replicas" : 4,
          "throughputOverCeiling" : 0.111, "throughputTxPerSecond" : 614.4, "viewChanges" : 0, "warmupSeconds" : 1
        }
        """

    func report() throws -> BenchReport {
        try JSONDecoder().decode(BenchReport.self, from: Data(Self.json.utf8))
    }

    @Test("the JSON keeps the keys the bench tools read, and a run without a flood has none")
    func jsonKeys() throws {
        let encoded = try JSONEncoder().encode(try report())
        let object = try #require(try JSONSerialization.jsonObject(with: encoded) as? [String: Any])
        for key in ["latencyMilliseconds", "replicaRSSBytes", "replicaRSSOverTime", "payloadBytes", "clients",
                    "replicas", "throughputTxPerSecond"] {
            #expect(object[key] != nil, "\(key) is missing")
        }
        #expect(object["flood"] == nil)
    }

    @Test("the text report names the run and prints each figure; the flood line only after a flood")
    func humanReadable() throws {
        var report = try report()
        let lines = report.humanReadable.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.first == "", "a blank line separates it from the progress lines")
        let title = "stele bench: 4 replicas, 16 clients × 64 outstanding, 100-byte payloads, 5 s measured"
        #expect(lines.dropFirst().first.map(String.init) == title)
        #expect(lines.contains("  throughput           614.4 tx/s  (3072 acknowledged, 0 failed)"))
        #expect(lines.contains("  latency              p50 1141.76 ms  p90 1581.06 ms  p99 1729.54 ms  max 1789.95 ms"))
        #expect(lines.contains("  replica RSS          39 MiB, 37 MiB"))
        #expect(!lines.contains { $0.hasPrefix("  flood") })

        var flood = FloodReport(kind: .badSignatures)
        flood.framesSent = 12
        report.flood = flood
        #expect(report.humanReadable.hasSuffix(
            "  flood                badSignatures: 12 frames, 0 connections opened, 0 closed by the replicas"))
    }
}
