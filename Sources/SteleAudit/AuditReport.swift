import Foundation
import SteleCore

/// The outcome: `pass` when no finding is a violation.
public enum Verdict: String, Sendable, Codable {
    case pass
    case violation

    /// `stele-check`'s exit code: 0 pass, 1 violation (2, usage or I/O, never comes from a report).
    public var exitCode: Int32 { self == .pass ? 0 : 1 }
}

/// One ledger file as the audit saw it.
public struct FileSummary: Sendable, Hashable, Codable {
    public let file: String
    public let byteCount: UInt64
    /// Height of the contiguous chain from genesis (0 = genesis only or no genesis).
    public let height: UInt64
    /// Hash of the block at `height` (the genesis hash at 0); nil when the file has no usable genesis.
    public let headHash: String?
    public let blockCount: Int
    public let transactionCount: Int
    public let checkpointCount: Int
    public let lastCheckpoint: UInt64?
    public let violationCount: Int
    /// Set when this ledger is a strict prefix of a longer one.
    public let laggingBehind: Lag?

    enum CodingKeys: String, CodingKey {
        case file, byteCount, height, headHash, blockCount, transactionCount, checkpointCount, lastCheckpoint, violationCount, laggingBehind
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(file, forKey: .file)
        try container.encode(byteCount, forKey: .byteCount)
        try container.encode(height, forKey: .height)
        try container.encode(headHash, forKey: .headHash)
        try container.encode(blockCount, forKey: .blockCount)
        try container.encode(transactionCount, forKey: .transactionCount)
        try container.encode(checkpointCount, forKey: .checkpointCount)
        try container.encode(lastCheckpoint, forKey: .lastCheckpoint)
        try container.encode(violationCount, forKey: .violationCount)
        try container.encode(laggingBehind, forKey: .laggingBehind)
    }
}

/// The cluster the ledgers were checked against.
public struct ClusterSummary: Sendable, Hashable, Codable {
    public let clusterID: String
    public let n: Int
    public let f: Int
    public let quorum: Int
    public let genesisHash: String
}

public struct AuditStats: Sendable, Hashable, Codable {
    public let fileCount: Int
    public let byteCount: UInt64
    public let blockCount: Int
    public let transactionCount: Int
    /// Signatures checked, counting each occurrence in each file.
    public let signatureCount: Int
    /// Ed25519 verifications actually performed: each distinct signature of a chunk once,
    /// none for results found in `AuditOptions.signatureCache`.
    public let verifiedSignatureCount: Int
    public let elapsedSeconds: Double
    public let blocksPerSecond: Double
}

/// Everything an audit found. Encodes to the JSON documented in docs/audit.md.
public struct AuditReport: Sendable, Codable {
    public static let currentSchemaVersion = 1

    public let schemaVersion: Int
    public let verdict: Verdict
    public let cluster: ClusterSummary
    public let files: [FileSummary]
    public let findings: [Finding]
    public let stats: AuditStats

    public init(config: ClusterConfig, files: [FileSummary], findings: [Finding], stats: AuditStats) {
        self.schemaVersion = AuditReport.currentSchemaVersion
        self.verdict = findings.contains { $0.severity == .violation } ? .violation : .pass
        self.cluster = ClusterSummary(clusterID: config.cluster.hex, n: config.n, f: config.f, quorum: config.quorum, genesisHash: config.genesis.hash.hex)
        self.files = files
        self.findings = findings
        self.stats = stats
    }

    public var violations: [Finding] { findings.filter { $0.severity == .violation } }

    public func findings(_ code: FindingCode) -> [Finding] { findings.filter { $0.code == code } }

    public func summary(of file: String) -> FileSummary? { files.first { $0.file == file } }

    /// Pretty-printed JSON with sorted keys.
    public func jsonData() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Every field is a plain value; encoding cannot fail.
        return try! encoder.encode(self)
    }

    public static func fromJSON(_ data: Data) throws -> AuditReport {
        try JSONDecoder().decode(AuditReport.self, from: data)
    }
}
