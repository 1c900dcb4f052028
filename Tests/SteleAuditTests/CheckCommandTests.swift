import Foundation
import SteleCore
import SteleTestSupport
import Testing
@testable import SteleAudit

/// Runs `CheckCommand` in-process, capturing stdout and stderr.
struct CommandRun {
    var status: Int32 = -1
    var output = ""
    var errors = ""

    init(_ command: CheckCommand) {
        var output = ""
        var errors = ""
        status = command.run(output: { output += $0 }, errors: { errors += $0 })
        self.output = output
        self.errors = errors
    }
}

@Suite("stele-check exit codes: 0 pass, 1 violation, 2 usage or I/O")
struct CheckCommandTests {
    let validConfig = FixtureSet.path("valid/cluster.json")

    @Test("0 when every invariant holds, with the verdict and blocks/s in the human report")
    func passExitsZero() {
        let run = CommandRun(CheckCommand(configPath: validConfig, ledgerPaths: [FixtureSet.path("valid")]))
        #expect(run.status == 0)
        #expect(run.output.contains("PASS: all invariants hold (1 info)"))
        #expect(run.output.contains("blocks/s"))
        #expect(run.output.contains("lagging 3 behind"))
        #expect(run.errors.isEmpty)
    }

    @Test("1 when a violation is found", arguments: FixtureSet.tamperedDirectories)
    func violationExitsOne(directory: String) {
        let run = CommandRun(CheckCommand(configPath: FixtureSet.path("\(directory)/cluster.json"), ledgerPaths: [FixtureSet.path(directory)]))
        #expect(run.status == 1)
        #expect(run.output.contains("FAIL:"))
    }

    @Test("1 when the ledgers belong to another cluster than the configuration says")
    func foreignGenesisExitsOne() throws {
        let directory = TemporaryDirectory(prefix: "stele-audit-foreign")
        let other = TestKeys.makeConfig(cluster: ClusterID(bytes: Array("another-cluster!".utf8))!, replicas: TestKeys.replicas, f: 1)
        let configPath = directory.file("cluster.json")
        try other.jsonData().write(to: URL(fileURLWithPath: configPath))
        let run = CommandRun(CheckCommand(configPath: configPath, ledgerPaths: [FixtureSet.path("valid")]))
        #expect(run.status == 1)
        #expect(run.output.contains("genesis-mismatch"))
    }

    @Test("2 when the configuration is missing")
    func missingConfigExitsTwo() {
        let run = CommandRun(CheckCommand(configPath: "/nonexistent/cluster.json", ledgerPaths: [FixtureSet.path("valid")]))
        #expect(run.status == 2)
        #expect(run.errors.contains("/nonexistent/cluster.json"))
        #expect(run.output.isEmpty)
    }

    @Test("2 when the configuration is malformed or breaks n >= 3f+1", arguments: [
        "{ not json",
        #"{"formatVersion": 1, "clusterID": "00", "f": 1, "replicas": []}"#,
    ])
    func invalidConfigExitsTwo(text: String) throws {
        let directory = TemporaryDirectory(prefix: "stele-audit-config")
        let path = directory.file("cluster.json")
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        let run = CommandRun(CheckCommand(configPath: path, ledgerPaths: [FixtureSet.path("valid")]))
        #expect(run.status == 2)
        #expect(run.errors.contains("stele-check:"))
    }

    @Test("2 when a configuration has too few replicas for f")
    func tooFewReplicasExitsTwo() throws {
        let directory = TemporaryDirectory(prefix: "stele-audit-few")
        let path = directory.file("cluster.json")
        let json = String(decoding: TestKeys.config.jsonData(), as: UTF8.self).replacingOccurrences(of: "\"f\" : 1", with: "\"f\" : 2")
        try Data(json.utf8).write(to: URL(fileURLWithPath: path))
        let run = CommandRun(CheckCommand(configPath: path, ledgerPaths: [FixtureSet.path("valid")]))
        #expect(run.status == 2)
        #expect(run.errors.contains("3f+1"))
    }

    @Test("2 when a ledger path is missing or a directory holds no ledger")
    func missingLedgerExitsTwo() throws {
        let empty = TemporaryDirectory(prefix: "stele-audit-empty")
        let missing = CommandRun(CheckCommand(configPath: validConfig, ledgerPaths: [FixtureSet.path("valid/replica-9.ledger")]))
        #expect(missing.status == 2)
        #expect(missing.errors.contains("replica-9.ledger"))
        let noLedgers = CommandRun(CheckCommand(configPath: validConfig, ledgerPaths: [empty.path]))
        #expect(noLedgers.status == 2)
        #expect(noLedgers.errors.contains("no *.ledger file"))
    }

    @Test("2 on usage errors: no ledger given, --json with --quiet")
    func usageErrorsExitTwo() {
        #expect(CommandRun(CheckCommand(configPath: validConfig, ledgerPaths: [])).status == 2)
        #expect(CommandRun(CheckCommand(configPath: validConfig, ledgerPaths: [FixtureSet.path("valid")], json: true, quiet: true)).status == 2)
    }

    @Test("--quiet prints only the verdict line")
    func quietPrintsVerdictOnly() {
        let pass = CommandRun(CheckCommand(configPath: validConfig, ledgerPaths: [FixtureSet.path("valid")], quiet: true))
        #expect(pass.output == "PASS: all invariants hold (1 info)\n")
        let fail = CommandRun(CheckCommand(configPath: validConfig, ledgerPaths: [FixtureSet.path("fork")], quiet: true))
        #expect(fail.output == "FAIL: 1 violation (fork)\n")
        #expect(fail.status == 1)
    }

    @Test("--json prints a report that decodes, with the verdict and every finding")
    func jsonReportDecodes() throws {
        let run = CommandRun(CheckCommand(configPath: validConfig, ledgerPaths: [FixtureSet.path("fork")], json: true))
        #expect(run.status == 1)
        let report = try AuditReport.fromJSON(Data(run.output.utf8))
        #expect(report.verdict == .violation)
        #expect(report.findings.map(\.code) == [.fork])
        #expect(report.findings[0].forensics?.signedBoth == [1, 2])
    }

    @Test("the progress bar goes to the error stream only when asked for and the ledgers are long enough")
    func progressBar() {
        var command = CheckCommand(configPath: validConfig, ledgerPaths: [FixtureSet.path("valid")])
        command.showProgress = true
        command.progressByteCountMin = 0
        let shown = CommandRun(command)
        #expect(shown.errors.contains("100%"))
        #expect(shown.status == 0)
        command.progressByteCountMin = 1 << 30
        #expect(CommandRun(command).errors.isEmpty)
    }
}

@Suite("the stele-check executable")
struct SteleCheckBinaryTests {
    /// The executable, next to the test bundle in the build products directory.
    static func binary() throws -> URL {
        let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [products, products.deletingLastPathComponent()].map { $0.appendingPathComponent("stele-check") }
        return try #require(candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) },
                            "stele-check not found next to \(products.path); build it with `swift build`")
    }

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
        let process = Process()
        process.executableURL = try binary()
        process.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
    }

    @Test("exit codes of the real process: 0, 1, and 2 for usage errors the argument parser catches")
    func exitCodes() throws {
        let config = FixtureSet.path("valid/cluster.json")
        #expect(try Self.run(["--config", config, FixtureSet.path("valid")]).status == 0)
        #expect(try Self.run(["--config", config, "--quiet", FixtureSet.path("flipped-signature")]).status == 1)
        let unknownFlag = try Self.run(["--config", config, "--frobnicate", FixtureSet.path("valid")])
        #expect(unknownFlag.status == 2)
        #expect(unknownFlag.errors.contains("Usage: stele-check --config"))
        #expect(try Self.run([FixtureSet.path("valid")]).status == 2)
        #expect(try Self.run(["--config", config]).status == 2)
        #expect(try Self.run(["--config", config, "--json", "--quiet", FixtureSet.path("valid")]).status == 2)
        #expect(try Self.run(["--config", "/nonexistent.json", FixtureSet.path("valid")]).status == 2)
        let help = try Self.run(["--help"])
        #expect(help.status == 0)
        #expect(help.output.contains("Exit status"))
    }
}
