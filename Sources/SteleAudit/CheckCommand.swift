import Foundation
import SteleCore

/// `stele-check`'s behaviour once its arguments are parsed: load the configuration, audit, print,
/// and map the outcome to the exit code. The executable only parses arguments and calls `run`,
/// so tests drive this directly.
public struct CheckCommand: Sendable {
    /// The exit codes, a stable interface.
    public enum ExitStatus {
        /// Every invariant holds.
        public static let pass: Int32 = 0
        /// At least one violation was found.
        public static let violation: Int32 = 1
        /// Usage error, or the configuration or a ledger could not be read.
        public static let usageOrIOError: Int32 = 2
    }

    public var configPath: String
    public var ledgerPaths: [String]
    public var json = false
    public var quiet = false
    /// Draw a progress bar on `errors` (the caller decides: stderr is a terminal).
    public var showProgress = false
    /// Show the bar only when the ledgers hold at least this many bytes.
    public var progressByteCountMin: UInt64 = 4 << 20
    public var options = AuditOptions()

    public init(configPath: String, ledgerPaths: [String], json: Bool = false, quiet: Bool = false) {
        self.configPath = configPath
        self.ledgerPaths = ledgerPaths
        self.json = json
        self.quiet = quiet
    }

    /// A usage problem the argument parser cannot see, or nil.
    public func usageProblem() -> String? {
        if ledgerPaths.isEmpty { return "give at least one ledger file or directory" }
        if json && quiet { return "--json and --quiet cannot be combined" }
        return nil
    }

    /// Runs the check; `output` receives the report (stdout), `errors` diagnostics and the
    /// progress bar (stderr). Returns the exit code.
    public func run(output: (String) -> Void, errors: (String) -> Void) -> Int32 {
        if let problem = usageProblem() {
            errors("stele-check: \(problem)\n")
            return ExitStatus.usageOrIOError
        }
        let config: ClusterConfig
        do {
            config = try ClusterConfig.load(path: configPath, allowingUnsafeQuorum: true)
        } catch {
            errors("stele-check: \(error)\n")
            return ExitStatus.usageOrIOError
        }
        let report: AuditReport
        do {
            report = try audit(config: config, errors: errors)
        } catch {
            errors("stele-check: \(error)\n")
            return ExitStatus.usageOrIOError
        }
        output(render(report))
        return report.verdict.exitCode
    }

    func audit(config: ClusterConfig, errors: (String) -> Void) throws(AuditError) -> AuditReport {
        let auditor = Auditor(config: config, options: options)
        let files = try LedgerPaths.expand(ledgerPaths)
        guard showProgress, totalByteCount(files) >= progressByteCountMin else {
            return try auditor.audit(sources: files.map { .file(path: $0) })
        }
        var bar = ProgressBar()
        let report = try auditor.audit(sources: files.map { .file(path: $0) }) { progress in
            if let text = bar.update(progress) { errors(text) }
        }
        errors(bar.clear())
        return report
    }

    func totalByteCount(_ files: [String]) -> UInt64 {
        files.reduce(UInt64(0)) { total, path in
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value ?? 0
            return total + size
        }
    }

    func render(_ report: AuditReport) -> String {
        if json { return String(decoding: report.jsonData(), as: UTF8.self) + "\n" }
        if quiet { return HumanReport.verdictLine(report) + "\n" }
        return HumanReport.render(report)
    }
}
