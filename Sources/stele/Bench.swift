import ArgumentParser
import Foundation
import SteleBench
import SteleCore
import SteleHarness

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark a local 4-replica cluster: throughput, latency, CPU, memory, and the Ed25519 ceiling.",
        discussion: """
        Starts its own cluster (separate processes, real TCP on 127.0.0.1, fsync'd ledgers in a
        scratch directory), drives it closed-loop with --clients keys each keeping --outstanding
        requests in flight, excludes --warmup seconds, measures --duration seconds, and stops
        every process it started (also on Ctrl-C). Build with `swift build -c release` first.
        """)

    @Option(help: "Seconds measured (after warm-up).")
    var duration: Double = 30

    @Option(help: "Seconds of warm-up, not measured.")
    var warmup: Double = 5

    @Option(help: "Client keys.")
    var clients: Int = 16

    @Option(help: "Requests each client keeps in flight.")
    var outstanding: Int = 64

    @Option(help: "Payload bytes per transaction.")
    var payload: Int = 100

    @Option(help: "Open loop: offered transactions per second over all clients, latency counted from each request's due time (0 = closed loop).")
    var rate: Double = 0

    @Option(name: .customLong("pipeline-depth"), help: "Batches the primary keeps in flight (protocol parameter pipelineDepthMax).")
    var pipelineDepth: Int?

    @Option(name: .customLong("batch-size"), help: "Most requests per batch (protocol parameter batchSizeMax).")
    var batchSize: Int?

    @Flag(help: "Print one JSON object with every figure.")
    var json = false

    @Option(help: "Keep the scratch directory here instead of a temporary one.")
    var dir: String?

    @Option(help: ArgumentHelp("Hostile load during the run: \(FloodKind.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "kind"))
    var flood: FloodKind = .none

    @Option(name: .customLong("replica-executable"),
            help: ArgumentHelp("Profiling: start the replicas with this executable (e.g. tools/profile-replica, which runs one replica under perf) instead of this one.", visibility: .hidden))
    var replicaExecutable: String?

    func validate() throws {
        guard duration > 0, warmup >= 0 else { throw ValidationError("--duration must be positive and --warmup non-negative") }
        guard clients >= 1, outstanding >= 1 else { throw ValidationError("--clients and --outstanding must be at least 1") }
        guard payload >= 0, payload <= CodecLimits.standard.payloadBytesMax else { throw ValidationError("--payload must be 0 ... \(CodecLimits.standard.payloadBytesMax)") }
    }

    func run() async throws {
        var options = BenchOptions(replicaExecutable: replicaExecutable ?? currentExecutablePath())
        options.duration = duration
        options.warmup = warmup
        options.clients = clients
        options.outstanding = outstanding
        options.payloadBytes = payload
        options.rate = rate
        options.pipelineDepth = pipelineDepth
        options.batchSize = batchSize
        options.directory = dir
        options.flood = flood
        let json = self.json
        // Progress goes to standard error with --json, so that standard output is the report only.
        try await BenchRun(options: options) { text in
            if !json { print(text) } else { FileHandle.standardError.write(Data((text + "\n").utf8)) }
        }.run { report in
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(report.humanReadable)
            }
            // The report must survive whatever happens while the cluster is torn down (stdout is
            // fully buffered when redirected to a file).
            fflush(nil)
        }
    }
}

extension FloodKind: ExpressibleByArgument {
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}
