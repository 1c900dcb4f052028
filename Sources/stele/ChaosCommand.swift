import ArgumentParser
import Foundation
import SteleHarness

struct Chaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "Crash-restart run against four real replica processes on 127.0.0.1 (Jepsen-style).",
        discussion: """
        Each round, one after the other (seeded order and victims): SIGKILL a replica and restart
        it (every --torn-every rounds: SIGKILL it, cut its ledger file inside a block record and
        restart it), and SIGSTOP and SIGCONT a replica — never more than one (f = 1) down or
        stopped at a time, the next only after the last one caught up — while a client keeps --concurrent submissions in flight. At the end all four ledgers
        are brought to one height, and the run checks that every acknowledged transaction is in
        every ledger exactly once at its acknowledged height and block, that the ledgers agree
        and that stele-check passes. Exit 0 = no violation; 1 = a violation (the scratch
        directory is kept for forensics); 2 = the run could not be set up.
        """)

    @Option(help: "Rounds of faults.")
    var rounds = 200

    @Option(help: "Seed of the fault schedule (random if not given; printed either way).")
    var seed: UInt64?

    @Option(help: "Scratch directory for the cluster (default: a new one under the temporary directory).")
    var dir: String?

    @Flag(help: "Keep the scratch directory even if the run passes.")
    var keep = false

    @Option(help: "Submissions kept in flight by the client.")
    var concurrent = 8

    @Option(name: .customLong("acks-per-fault"), help: "Acknowledgements to wait for while each fault holds.")
    var acksPerFault = 10

    @Option(name: .customLong("torn-every"), help: "Every N-th round is a torn ledger write (0: none).")
    var tornEvery = 4

    @Option(name: .customLong("tick-ms"), help: "Milliseconds per protocol tick of the replicas.")
    var tickMilliseconds = 20

    func validate() throws {
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        guard concurrent >= 1 else { throw ValidationError("--concurrent must be at least 1") }
        guard tornEvery >= 0 else { throw ValidationError("--torn-every must not be negative") }
    }

    func run() async throws {
        let seed = self.seed ?? UInt64.random(in: 1...UInt64(UInt32.max))
        let root = dir ?? FileManager.default.temporaryDirectory.appendingPathComponent("stele-chaos-\(seed)-\(getpid())").path
        var options = ChaosOptions(executable: currentExecutablePath(), root: root)
        options.rounds = rounds
        options.seed = seed
        options.keepDirectory = keep ? true : nil
        options.concurrentSubmits = concurrent
        options.acksPerFault = acksPerFault
        options.tornWriteEvery = tornEvery
        options.tickMilliseconds = tickMilliseconds
        // Unbuffered: per-round progress shows as it happens, also through a pipe.
        let runner = ChaosRunner(options: options) { line in FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
        let summary: ChaosSummary
        do {
            summary = try await runner.run()
        } catch {
            fail("chaos run could not be set up: \(error)", code: 2)
        }
        print(summary)
        if !summary.passed {
            print("replay the schedule with: stele chaos --rounds \(rounds) --seed \(seed)")
            throw ExitCode(1)
        }
    }
}
