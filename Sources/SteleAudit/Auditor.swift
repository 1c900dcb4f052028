#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SteleCore
import SteleLedger

/// Knobs of an audit; the defaults suit `stele-check`.
public struct AuditOptions: Sendable {
    /// Threads verifying signatures (default: the online cores).
    public var workerCount: Int = max(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 1)
    /// Most records read from one file before the chunk is decoded and its signatures verified.
    public var chunkRecordCountMax = 512
    /// Most record bytes read from one file per chunk (bounds memory with large blocks).
    public var chunkByteCountMax = 4 << 20
    /// Findings listed per file; the rest are counted in one `findings-suppressed` warning.
    public var findingsPerFileMax = 1000
    /// Blocks held while waiting for a missing predecessor before the chain is given up.
    public var outOfOrderBlocksMax = 1024
    /// A torn tail is what a crash mid-append leaves; a replica's store truncates it when it
    /// reopens the file. It is a violation by default (the file as it stands is not a valid
    /// ledger); the simulator may audit crashed replicas' files with `.warning`.
    public var tornTailSeverity = Severity.violation
    public var limits = CodecLimits.standard
    /// Verification results shared across audits, or nil to verify everything afresh.
    public var signatureCache: SignatureCache?

    public init() {}
}

/// How far an audit got, for a progress bar.
public struct AuditProgress: Sendable {
    public let byteCount: UInt64
    public let byteCountTotal: UInt64
    public let blockCount: Int
}

/// The offline auditor. It trusts the configuration it is given (the genesis it implies is the
/// trust anchor) and nothing in the files: every ledger is re-framed, re-hashed and every
/// signature re-verified.
///
///     let report = try Auditor(config: config).audit(paths: ["ledgers/"])
///     if report.verdict == .pass { ... }
public struct Auditor: Sendable {
    public let config: ClusterConfig
    public let options: AuditOptions

    public init(config: ClusterConfig, options: AuditOptions = AuditOptions()) {
        self.config = config
        self.options = options
    }

    /// Audits ledger files; a directory stands for every `*.ledger` file directly inside it.
    /// Throws only when a path cannot be read at all; everything about the content is a finding.
    public func audit(paths: [String], progress: (AuditProgress) -> Void = { _ in }) throws(AuditError) -> AuditReport {
        let files = try LedgerPaths.expand(paths)
        return try audit(sources: files.map { LedgerSource.file(path: $0) }, progress: progress)
    }

    public func audit(sources: [LedgerSource], progress: (AuditProgress) -> Void = { _ in }) throws(AuditError) -> AuditReport {
        let clock = ContinuousClock()
        let start = clock.now
        var run = try AuditRun(config: config, options: options, sources: sources)
        try run.scanAll(progress: progress)
        let agreement = try Agreement(config: config, chains: run.chains()).compare()
        let elapsed = clock.now - start
        return run.report(agreement: agreement, elapsedSeconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
    }
}

/// A decoded record with the signature checks it needs (computing their signed bytes hashes
/// requests, so it is done in parallel with decoding).
struct DecodedItem: Sendable {
    let item: ScanItem
    var clientChecks = [SignatureCheck]()
    var certificateChecks = [SignatureCheck?]()

    init(frame: Frame, config: ClusterConfig, limits: CodecLimits) {
        item = frame.decoded(limits: limits)
        guard case .record(let scanned) = item else { return }
        let cluster = config.cluster
        switch scanned.record {
        case .genesis:
            break
        case .block(let block):
            clientChecks = block.batch.map { SignedMessages.client($0, cluster: cluster) }
            certificateChecks = SignedMessages.checks(block.commitSignatures, config: config) {
                SignedMessages.commit(block, signer: $0, cluster: cluster)
            }
        case .checkpoint(let certificate):
            certificateChecks = SignedMessages.checks(certificate.signatures, config: config) {
                SignedMessages.checkpoint(certificate, signer: $0, cluster: cluster)
            }
        }
    }

    /// Registers the checks (deduplicated) and keeps their indices.
    func prepared(registeringIn batch: inout SignatureBatch) -> PreparedItem {
        PreparedItem(
            item: item,
            clientChecks: clientChecks.map { batch.add($0) },
            certificateChecks: certificateChecks.map { $0.map { batch.add($0) } })
    }
}

/// One file's scanner and checker.
struct FileAudit {
    let source: LedgerSource
    var scanner: LedgerScanner
    var checker: FileChecker
    var isDone = false
}

/// The state of one audit: every file is read chunk by chunk in lockstep, so a chunk's
/// signatures can be deduplicated across replicas (their ledgers hold the same COMMIT and client
/// signatures) and verified in parallel, with memory bounded by the chunk size.
struct AuditRun {
    let config: ClusterConfig
    let options: AuditOptions
    var files: [FileAudit]
    var signatureCount = 0
    var verifiedSignatureCount = 0

    init(config: ClusterConfig, options: AuditOptions, sources: [LedgerSource]) throws(AuditError) {
        self.config = config
        self.options = options
        var files = [FileAudit]()
        for source in sources {
            let scanner = try LedgerScanner(source: source, limits: options.limits)
            files.append(FileAudit(source: source, scanner: scanner, checker: FileChecker(name: source.name, config: config, options: options)))
        }
        self.files = files
    }

    mutating func scanAll(progress: (AuditProgress) -> Void) throws(AuditError) {
        let byteCountTotal = files.reduce(UInt64(0)) { $0 + $1.scanner.fileByteCount }
        while files.contains(where: { !$0.isDone }) {
            try scanChunk()
            progress(AuditProgress(
                byteCount: files.reduce(UInt64(0)) { $0 + ($1.isDone ? $1.scanner.fileByteCount : $1.scanner.byteOffset) },
                byteCountTotal: byteCountTotal,
                blockCount: files.reduce(0) { $0 + $1.checker.blockCount }))
        }
        for index in files.indices { files[index].checker.finish() }
    }

    /// Reads the next chunk of every unfinished file; decodes it and verifies its signatures in
    /// parallel; then checks it record by record in file order.
    mutating func scanChunk() throws(AuditError) {
        var frameCounts = [Int]()
        var frames = [Frame]()
        for index in files.indices {
            let chunk = try AuditRun.pullChunk(&files[index], options: options)
            frameCounts.append(chunk.count)
            frames += chunk
        }
        let config = self.config
        let limits = options.limits
        let decoded = Parallel.map(frames, workerCount: options.workerCount) { DecodedItem(frame: $0, config: config, limits: limits) }
        var batch = SignatureBatch()
        let prepared = decoded.map { $0.prepared(registeringIn: &batch) }
        batch.verifyAll(workerCount: options.workerCount, cache: options.signatureCache)
        signatureCount += batch.requestedCount
        verifiedSignatureCount += batch.verifiedCount
        var position = 0
        for (index, count) in frameCounts.enumerated() {
            for item in prepared[position..<position + count] { files[index].checker.consume(item, batch: batch) }
            position += count
            if files[index].checker.isStopped { files[index].isDone = true }
        }
    }

    static func pullChunk(_ file: inout FileAudit, options: AuditOptions) throws(AuditError) -> [Frame] {
        guard !file.isDone else { return [] }
        var frames = [Frame]()
        var byteCount = 0
        while frames.count < options.chunkRecordCountMax, byteCount < options.chunkByteCountMax {
            guard let frame = try file.scanner.nextFrame() else {
                file.isDone = true
                break
            }
            if case .record(_, let recordByteCount, _, _, _) = frame { byteCount += recordByteCount }
            frames.append(frame)
        }
        return frames
    }

    func chains() -> [Agreement.Chain] {
        files.compactMap { file in
            guard let index = file.checker.index else { return nil }
            return Agreement.Chain(source: file.source, index: index, chainBroken: file.checker.chainBroken)
        }
    }

    func report(agreement: Agreement.Outcome, elapsedSeconds: Double) -> AuditReport {
        var findings = ConfigChecks.findings(config)
        var summaries = [FileSummary]()
        for file in files {
            let checker = file.checker
            findings += checker.findings
            summaries.append(FileSummary(
                file: file.source.name, byteCount: file.scanner.fileByteCount, height: checker.height,
                headHash: checker.index?.hash(at: checker.height)?.digest.hex,
                blockCount: checker.blockCount, transactionCount: checker.transactionCount,
                checkpointCount: checker.checkpointCount, lastCheckpoint: checker.lastCheckpoint,
                violationCount: checker.findings.filter { $0.severity == .violation }.count,
                laggingBehind: agreement.lags[file.source.name]))
        }
        findings += agreement.findings
        let blockCount = summaries.reduce(0) { $0 + $1.blockCount }
        let stats = AuditStats(
            fileCount: files.count, byteCount: summaries.reduce(UInt64(0)) { $0 + $1.byteCount },
            blockCount: blockCount, transactionCount: summaries.reduce(0) { $0 + $1.transactionCount },
            signatureCount: signatureCount, verifiedSignatureCount: verifiedSignatureCount,
            elapsedSeconds: elapsedSeconds, blocksPerSecond: elapsedSeconds > 0 ? Double(blockCount) / elapsedSeconds : 0)
        return AuditReport(config: config, files: summaries, findings: findings, stats: stats)
    }
}

/// Checks on the trust anchor itself beyond what `ClusterConfig` enforces when it loads.
public enum ConfigChecks {
    public static func findings(_ config: ClusterConfig) -> [Finding] {
        // Two quorums of q out of n share at least 2q - n replicas; safety needs that to be at
        // least f + 1 (one correct replica in every intersection), and liveness needs q <= n - f.
        // Only a config that states its own quorum can break this (ClusterConfig.quorum).
        let rule = ClusterConfig.safeQuorum(n: config.n, f: config.f)
        var findings = [Finding]()
        if config.quorumIntersection <= config.f {
            findings.append(configFinding(
                "n = \(config.n), f = \(config.f) with the stated quorum \(config.quorum): two quorums may share only \(config.quorumIntersection) replica(s), not the f + 1 = \(config.f + 1) that safety needs, so two conflicting certificates can exist with only f faulty replicas; the quorum must be ceil((n+f+1)/2) = \(rule); certificates below are assessed against the stated quorum"))
        }
        if config.quorum > config.n - config.f {
            findings.append(configFinding(
                "n = \(config.n), f = \(config.f) with the stated quorum \(config.quorum): more than the n - f = \(config.n - config.f) correct replicas, so f silent replicas stop the cluster; the quorum must be ceil((n+f+1)/2) = \(rule)"))
        }
        return findings
    }

    private static func configFinding(_ message: String) -> Finding {
        Finding(
            severity: FindingCode.configQuorumIntersection.defaultSeverity, code: .configQuorumIntersection,
            file: nil, height: nil, byteOffset: nil, message: message)
    }
}
