import ArgumentParser
import Foundation
import SteleAudit

/// stele-check: the offline auditor. Argument parsing only; the behaviour is
/// `SteleAudit.CheckCommand` (tested there).
struct SteleCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stele-check",
        abstract: "Audit Stele ledger files against the cluster configuration; trusts no replica.",
        discussion: """
            Checks each ledger's framing, genesis, hash chain, commit and checkpoint certificates, \
            client signatures and exactly-once execution, then agreement across ledgers, with \
            forensics for any fork.

            Exit status: 0 all invariants hold; 1 a violation was found; 2 usage error, or the \
            configuration or a ledger could not be read.
            """)

    @Option(name: .long, help: ArgumentHelp("The cluster configuration (the trust anchor).", valueName: "CLUSTER.json"))
    var config: String

    @Flag(name: .long, help: "Print the report as JSON (schema in docs/audit.md).")
    var json = false

    @Flag(name: .long, help: "Print only the verdict line.")
    var quiet = false

    @Argument(help: ArgumentHelp("Ledger files, or directories whose *.ledger files are audited.", valueName: "LEDGER_FILE_OR_DIR"))
    var ledgers: [String] = []

    var command: CheckCommand {
        var command = CheckCommand(configPath: config, ledgerPaths: ledgers, json: json, quiet: quiet)
        command.showProgress = isatty(STDERR_FILENO) == 1
        return command
    }

    func validate() throws {
        if let problem = command.usageProblem() { throw ValidationError(problem) }
    }
}

func writeStandardError(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}

// Parsed by hand around ArgumentParser so that usage errors exit with 2, not EX_USAGE (64).
let parsed: SteleCheck
do {
    parsed = try SteleCheck.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    if SteleCheck.exitCode(for: error) == .success {
        print(SteleCheck.fullMessage(for: error))
        exit(CheckCommand.ExitStatus.pass)
    }
    writeStandardError("stele-check: \(SteleCheck.message(for: error))\nUsage: \(SteleCheck.usageString())\nSee stele-check --help.\n")
    exit(CheckCommand.ExitStatus.usageOrIOError)
}
let status = parsed.command.run(
    output: { FileHandle.standardOutput.write(Data($0.utf8)) },
    errors: writeStandardError)
exit(status)
