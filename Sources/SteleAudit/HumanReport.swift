import Foundation

/// The human-readable report `stele-check` prints by default.
public enum HumanReport {
    public static func render(_ report: AuditReport) -> String {
        var lines = [String]()
        let cluster = report.cluster
        lines.append("stele-check: cluster \(cluster.clusterID) (n = \(cluster.n), f = \(cluster.f), quorum \(cluster.quorum)), genesis \(cluster.genesisHash.prefix(16))")
        let width = report.files.map(\.file.count).max() ?? 0
        for file in report.files { lines.append("  " + fileLine(file, nameWidth: width)) }
        if !report.findings.isEmpty {
            lines.append("")
            lines.append("Findings (\(report.findings.count)):")
            for finding in report.findings { lines.append(contentsOf: findingLines(finding)) }
        }
        lines.append("")
        lines.append(statsLine(report.stats))
        lines.append(verdictLine(report))
        return lines.joined(separator: "\n") + "\n"
    }

    /// The one line `--quiet` prints.
    public static func verdictLine(_ report: AuditReport) -> String {
        let count = { (severity: Severity) in report.findings.filter { $0.severity == severity }.count }
        switch report.verdict {
        case .pass:
            let notes = [(count(.warning), "warning"), (count(.info), "info")].filter { $0.0 > 0 }.map { "\($0.0) \($0.1)" }
            return "PASS: all invariants hold" + (notes.isEmpty ? "" : " (" + notes.joined(separator: ", ") + ")")
        case .violation:
            let violations = count(.violation)
            let codes = Set(report.violations.map(\.code.rawValue)).sorted().joined(separator: ", ")
            return "FAIL: \(violations) violation\(violations == 1 ? "" : "s") (\(codes))"
        }
    }

    static func fileLine(_ file: FileSummary, nameWidth: Int) -> String {
        let name = file.file.padding(toLength: max(nameWidth, file.file.count), withPad: " ", startingAt: 0)
        var parts = ["\(name)  height \(file.height)"]
        if let head = file.headHash { parts.append("head \(head.prefix(12))") }
        parts.append("\(file.blockCount) blocks, \(file.transactionCount) transactions, \(file.checkpointCount) checkpoints")
        if let lag = file.laggingBehind { parts.append("lagging \(lag.blockCount) behind \(lag.file)") }
        parts.append(file.violationCount == 0 ? "ok" : "\(file.violationCount) violation(s)")
        return parts.joined(separator: "  ")
    }

    static func findingLines(_ finding: Finding) -> [String] {
        var location = [String]()
        if let file = finding.file { location.append(file) }
        if let height = finding.height { location.append("height \(height)") }
        if let offset = finding.byteOffset { location.append("byte \(offset)") }
        if !finding.replicas.isEmpty { location.append("replicas " + finding.replicas.map { "r\($0)" }.joined(separator: ",")) }
        let severity = finding.severity.rawValue.uppercased().padding(toLength: 9, withPad: " ", startingAt: 0)
        var lines = ["  \(severity) \(finding.code.rawValue)  \(location.joined(separator: "  "))", "            \(finding.message)"]
        if let forensics = finding.forensics {
            for side in forensics.sides {
                let signers = side.validSigners.map { "r\($0)" }.joined(separator: ",")
                lines.append("            \(side.file) @ byte \(side.byteOffset): block \(side.blockHash.prefix(12)), digest \(side.batchDigest.prefix(12)), view \(side.certificateView), valid signers [\(signers)]\(side.certified ? "" : " (not a valid certificate)")")
            }
        }
        return lines
    }

    static func statsLine(_ stats: AuditStats) -> String {
        let seconds = String(format: "%.3f", stats.elapsedSeconds)
        let rate = String(format: "%.0f", stats.blocksPerSecond)
        return "Checked \(stats.blockCount) blocks, \(stats.transactionCount) transactions and \(stats.signatureCount) signatures (\(stats.verifiedSignatureCount) Ed25519 verifications) in \(stats.fileCount) file(s), \(stats.byteCount) bytes, in \(seconds) s: \(rate) blocks/s"
    }
}

/// A one-line progress bar redrawn in place (for a terminal).
public struct ProgressBar {
    let width = 30
    var lastPermille = -1

    public init() {}

    /// The text to write for `progress`, or nil when nothing visible changed.
    public mutating func update(_ progress: AuditProgress) -> String? {
        let total = max(progress.byteCountTotal, 1)
        let permille = Int(min(progress.byteCount, total) * 1000 / total)
        guard permille != lastPermille else { return nil }
        lastPermille = permille
        let filled = permille * width / 1000
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        let megabytes = String(format: "%.1f/%.1f MB", Double(progress.byteCount) / 1e6, Double(total) / 1e6)
        return "\r[\(bar)] \(permille / 10)%  \(megabytes)  \(progress.blockCount) blocks"
    }

    /// Erases the bar.
    public func clear() -> String { "\r" + String(repeating: " ", count: width + 50) + "\r" }
}
