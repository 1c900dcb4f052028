import SteleCore
import SteleCrypto
import SteleLedger

/// A scanned item with the indices of its signature checks in the chunk's `SignatureBatch`.
struct PreparedItem {
    let item: ScanItem
    /// Per request of a block's batch.
    var clientChecks = [Int]()
    /// Per certificate signature (commit or checkpoint); nil for a non-member signer.
    var certificateChecks = [Int?]()
}

/// Keeps at most `limit` findings; counts the rest.
struct FindingSink {
    let limit: Int
    private(set) var findings = [Finding]()
    private(set) var suppressedCount = 0

    mutating func add(_ finding: Finding) {
        guard findings.count < limit else {
            suppressedCount += 1
            return
        }
        findings.append(finding)
    }
}

/// The sequential checks of one ledger file, fed record by record in file order once the
/// record's signatures were verified: genesis, header problems, heights and the hash chain,
/// commit certificates, client signatures, duplicate transactions, checkpoint certificates.
struct FileChecker {
    enum State {
        case expectingGenesis
        case readingChain
        /// The file cannot be related to this cluster (no or another genesis): stop reading.
        case stopped
    }

    /// A block read before its predecessor.
    struct AheadBlock {
        let hash: HashWords
        let prevHash: HashWords
        let offset: UInt64
        let certified: Bool
    }

    struct TransactionKey: Hashable {
        let client: UInt32
        let timestamp: UInt64
    }

    let name: String
    let config: ClusterConfig
    let options: AuditOptions
    private(set) var state = State.expectingGenesis
    private(set) var index: ChainIndex?
    private(set) var sink: FindingSink

    var ahead = [UInt64: AheadBlock]()
    var aheadOverflowed = false
    var highestHeightSeen: UInt64 = 0
    var clientNumbers = [PublicKey: UInt32]()
    var firstExecution = [TransactionKey: UInt64]()

    private(set) var blockCount = 0
    private(set) var transactionCount = 0
    private(set) var checkpointCount = 0
    private(set) var lastCheckpoint: UInt64?
    /// True when some block failed to link to its predecessor (agreement then compares heights
    /// one by one instead of trusting equal heads).
    private(set) var chainBroken = false

    init(name: String, config: ClusterConfig, options: AuditOptions) {
        self.name = name
        self.config = config
        self.options = options
        self.sink = FindingSink(limit: options.findingsPerFileMax)
    }

    var isStopped: Bool { if case .stopped = state { true } else { false } }
    var height: UInt64 { index?.height ?? 0 }

    // MARK: - Dispatch

    mutating func consume(_ prepared: PreparedItem, batch: SignatureBatch) {
        guard !isStopped else { return }
        switch prepared.item {
        case .problem(let problem): consume(problem)
        case .record(let scanned):
            switch scanned.record {
            case .genesis(let genesis): consume(genesis, at: scanned.byteOffset)
            case .block(let block): consume(block, at: scanned.byteOffset, prepared: prepared, batch: batch)
            case .checkpoint(let certificate): consume(certificate, at: scanned.byteOffset, prepared: prepared, batch: batch)
            }
        }
    }

    /// Reports what is still unresolved at the end of the file.
    mutating func finish() {
        if !ahead.isEmpty, let lowest = ahead.keys.min(), let block = ahead[lowest] {
            add(.heightGap, height: height, offset: block.offset,
                "heights \(height + 1) ..< \(lowest) are missing; \(ahead.count) later block(s) cannot be chained")
        }
        if state == .expectingGenesis, !stoppedByScanner {
            add(.genesisMissing, height: nil, offset: UInt64(LedgerFormat.headerByteCount), "the file holds no genesis record")
            state = .stopped
        }
        if sink.suppressedCount > 0 {
            suppressedNotice = finding(.findingsSuppressed, height: nil, offset: nil,
                "\(sink.suppressedCount) further finding(s) in this file were not listed (limit \(options.findingsPerFileMax))")
        }
    }

    /// The scanner met a problem it cannot read past (it is reported; nothing more is expected).
    private(set) var stoppedByScanner = false

    /// The notice that findings were dropped, reported outside the limit.
    private(set) var suppressedNotice: Finding?

    var findings: [Finding] { sink.findings + (suppressedNotice.map { [$0] } ?? []) }

    // MARK: - Problems and genesis

    mutating func consume(_ problem: ScanProblem) {
        let severity = problem.code == .tornTail ? options.tornTailSeverity : problem.code.defaultSeverity
        stoppedByScanner = stoppedByScanner || problem.isTerminal
        sink.add(Finding(severity: severity, code: problem.code, file: name, height: index?.height, byteOffset: problem.byteOffset, message: problem.detail))
    }

    mutating func consume(_ genesis: Genesis, at offset: UInt64) {
        guard state == .expectingGenesis else {
            add(.genesisRepeated, height: height, offset: offset, "a second genesis record after height \(height)")
            return
        }
        guard genesis == config.genesis else {
            add(.genesisMismatch, height: 0, offset: offset, genesisMismatchMessage(genesis))
            state = .stopped
            return
        }
        index = ChainIndex(genesisHash: genesis.hash, genesisOffset: offset)
        state = .readingChain
    }

    func genesisMismatchMessage(_ genesis: Genesis) -> String {
        let expected = config.genesis
        var differences = [String]()
        if genesis.formatVersion != expected.formatVersion { differences.append("format version \(genesis.formatVersion)") }
        if genesis.cluster != expected.cluster { differences.append("cluster \(genesis.cluster.hex)") }
        if genesis.f != expected.f { differences.append("f = \(genesis.f)") }
        if genesis.members != expected.members { differences.append("members (\(genesis.members.count) listed)") }
        return "the file's genesis (hash \(genesis.hash.hex)) differs from the configuration's (hash \(expected.hash.hex)): "
            + differences.joined(separator: ", ") + "; the file is not a ledger of this cluster and is not read further"
    }

    // MARK: - Blocks

    mutating func consume(_ block: CertifiedBlock, at offset: UInt64, prepared: PreparedItem, batch: SignatureBatch) {
        guard state == .readingChain else {
            add(.genesisMissing, height: nil, offset: offset, "the first record is a block, not the genesis record")
            state = .stopped
            return
        }
        blockCount += 1
        transactionCount += block.batch.count
        let certified = checkCommitCertificate(block, at: offset, prepared: prepared, batch: batch)
        checkClientSignatures(block, at: offset, prepared: prepared, batch: batch)
        checkDuplicateTransactions(block, at: offset)
        place(block, at: offset, certified: certified)
    }

    /// Reports every bad signer and a short quorum; true if the certificate holds.
    mutating func checkCommitCertificate(_ block: CertifiedBlock, at offset: UInt64, prepared: PreparedItem, batch: SignatureBatch) -> Bool {
        let assessment = CertificateAssessment.assess(block.commitSignatures, config: config) { index in
            prepared.certificateChecks[index].map(batch.result) ?? false
        }
        let h = block.height.value
        let what = "block \(h) (view \(block.certificateView.value), batch digest \(block.batchDigest))"
        for signer in assessment.nonMembers {
            add(.commitSignerNotMember, height: h, offset: offset, replicas: [signer],
                "\(what): commit signature by replica \(signer.value), which is not a member of this \(config.n)-replica cluster")
        }
        for signer in Set(assessment.repeated).sorted() {
            add(.commitSignerRepeated, height: h, offset: offset, replicas: [signer],
                "\(what): replica \(signer.value) signs the commit certificate more than once; it counts once")
        }
        for signer in assessment.invalid {
            add(.commitSignatureInvalid, height: h, offset: offset, replicas: [signer],
                "\(what): replica \(signer.value)'s commit signature does not verify over (commit, view \(block.certificateView.value), height \(h), digest)")
        }
        guard assessment.meetsQuorum(config) else {
            add(.commitQuorumShort, height: h, offset: offset, replicas: assessment.valid,
                "\(what): \(assessment.valid.count) valid commit signature(s) from distinct members\(signerList(assessment.valid)); a commit certificate needs \(config.quorum)")
            return false
        }
        return true
    }

    mutating func checkClientSignatures(_ block: CertifiedBlock, at offset: UInt64, prepared: PreparedItem, batch: SignatureBatch) {
        for (position, request) in block.batch.enumerated() where !batch.result(prepared.clientChecks[position]) {
            add(.clientSignatureInvalid, height: block.height.value, offset: offset,
                "block \(block.height.value), request \(position): client \(request.client.hex)'s signature over timestamp \(request.timestamp) does not verify")
        }
    }

    /// Each (client key, timestamp) executes at most once per ledger — keyed on the request's
    /// identity, never on payload or signature bytes.
    mutating func checkDuplicateTransactions(_ block: CertifiedBlock, at offset: UInt64) {
        let h = block.height.value
        for (position, request) in block.batch.enumerated() {
            let key = TransactionKey(client: clientNumber(request.client), timestamp: request.timestamp)
            guard let first = firstExecution[key] else {
                firstExecution[key] = h
                continue
            }
            let whereFirst = first == h ? "earlier in this block" : "in block \(first)"
            add(.duplicateTransaction, height: h, offset: offset,
                "block \(h), request \(position): client \(request.client.hex) timestamp \(request.timestamp) was already executed \(whereFirst)")
        }
    }

    mutating func clientNumber(_ key: PublicKey) -> UInt32 {
        if let number = clientNumbers[key] { return number }
        let number = UInt32(clientNumbers.count)
        clientNumbers[key] = number
        return number
    }

    // MARK: - Heights and the hash chain

    /// Appends the block to the contiguous chain, or parks it until its predecessor arrives.
    mutating func place(_ block: CertifiedBlock, at offset: UInt64, certified: Bool) {
        guard var chain = index else { return }
        let h = block.height.value
        defer {
            highestHeightSeen = max(highestHeightSeen, h)
        }
        let entry = AheadBlock(hash: HashWords(block.hash), prevHash: HashWords(block.prevHash), offset: offset, certified: certified)
        if h == chain.height + 1 {
            if highestHeightSeen > h {
                add(.blockOutOfOrder, height: h, offset: offset, "block \(h) comes after block \(highestHeightSeen) in the file")
            }
            link(entry, height: h, into: &chain)
            drainAhead(into: &chain)
            index = chain
            return
        }
        if h <= chain.height || ahead[h] != nil {
            reportDuplicateHeight(h, entry: entry, chain: chain)
            return
        }
        park(entry, height: h, chain: chain)
    }

    mutating func link(_ entry: AheadBlock, height h: UInt64, into chain: inout ChainIndex) {
        let previous = chain.hash(at: h - 1)!
        if entry.prevHash != previous {
            chainBroken = true
            add(.hashChainBroken, height: h, offset: entry.offset,
                "block \(h)'s prevHash \(entry.prevHash.digest.hex) is not the hash of block \(h - 1) (\(previous.digest.hex))")
        }
        chain.append(hash: entry.hash, offset: entry.offset, certified: entry.certified)
    }

    mutating func drainAhead(into chain: inout ChainIndex) {
        while let next = ahead.removeValue(forKey: chain.height + 1) {
            link(next, height: chain.height + 1, into: &chain)
        }
    }

    mutating func reportDuplicateHeight(_ h: UInt64, entry: AheadBlock, chain: ChainIndex) {
        let earlier = chain.hash(at: h) ?? ahead[h]?.hash
        let firstOffset = chain.offset(at: h) ?? ahead[h]?.offset
        let same = earlier == entry.hash ? "the same block again" : "a different block (hash \(entry.hash.digest.hex))"
        let what = h == 0 ? "a block claims height 0, the genesis height" : "a second block at height \(h) (first at byte \(firstOffset.map(String.init) ?? "?")): \(same)"
        add(.heightDuplicate, height: h, offset: entry.offset, what)
    }

    mutating func park(_ entry: AheadBlock, height h: UInt64, chain: ChainIndex) {
        guard !aheadOverflowed else { return }
        guard ahead.count < options.outOfOrderBlocksMax else {
            aheadOverflowed = true
            add(.heightGap, height: chain.height, offset: entry.offset,
                "more than \(options.outOfOrderBlocksMax) blocks above height \(chain.height + 1) arrived without it; the chain is not followed past height \(chain.height)")
            ahead.removeAll()
            return
        }
        ahead[h] = entry
    }

    // MARK: - Checkpoints

    mutating func consume(_ certificate: CheckpointCertificate, at offset: UInt64, prepared: PreparedItem, batch: SignatureBatch) {
        guard state == .readingChain, let chain = index else {
            add(.genesisMissing, height: nil, offset: offset, "the first record is a checkpoint, not the genesis record")
            state = .stopped
            return
        }
        checkpointCount += 1
        let s = certificate.sequence.value
        lastCheckpoint = max(lastCheckpoint ?? 0, s)
        checkCheckpointCertificate(certificate, at: offset, prepared: prepared, batch: batch)
        guard let head = chain.hash(at: s) ?? ahead[s]?.hash else {
            add(.checkpointBeyondChain, height: s, offset: offset,
                "checkpoint at sequence \(s) is beyond this file's chain (height \(chain.height)); its state digest cannot be checked")
            return
        }
        if head != HashWords(certificate.stateDigest) {
            add(.checkpointStateMismatch, height: s, offset: offset, replicas: certificate.signatures.map(\.replica),
                "checkpoint at sequence \(s) certifies state digest \(certificate.stateDigest.hex) but this file's block \(s) hash is \(head.digest.hex)")
        }
    }

    mutating func checkCheckpointCertificate(_ certificate: CheckpointCertificate, at offset: UInt64, prepared: PreparedItem, batch: SignatureBatch) {
        let assessment = CertificateAssessment.assess(certificate.signatures, config: config) { index in
            prepared.certificateChecks[index].map(batch.result) ?? false
        }
        let s = certificate.sequence.value
        for signer in assessment.nonMembers {
            add(.checkpointSignerNotMember, height: s, offset: offset, replicas: [signer],
                "checkpoint \(s): signature by replica \(signer.value), which is not a member")
        }
        for signer in Set(assessment.repeated).sorted() {
            add(.checkpointSignerRepeated, height: s, offset: offset, replicas: [signer],
                "checkpoint \(s): replica \(signer.value) signs more than once; it counts once")
        }
        for signer in assessment.invalid {
            add(.checkpointSignatureInvalid, height: s, offset: offset, replicas: [signer],
                "checkpoint \(s): replica \(signer.value)'s signature does not verify")
        }
        if !assessment.meetsQuorum(config) {
            add(.checkpointQuorumShort, height: s, offset: offset, replicas: assessment.valid,
                "checkpoint \(s): \(assessment.valid.count) valid signature(s) from distinct members\(signerList(assessment.valid)); a checkpoint certificate needs \(config.quorum)")
        }
    }

    // MARK: - Helpers

    func signerList(_ signers: [ReplicaID]) -> String {
        signers.isEmpty ? "" : " (" + signers.map { "r\($0.value)" }.joined(separator: ", ") + ")"
    }

    func finding(_ code: FindingCode, height: UInt64?, offset: UInt64?, replicas: [ReplicaID] = [], _ message: String) -> Finding {
        Finding(severity: code.defaultSeverity, code: code, file: name, height: height, byteOffset: offset, replicas: replicas, message: message)
    }

    mutating func add(_ code: FindingCode, height: UInt64?, offset: UInt64?, replicas: [ReplicaID] = [], _ message: String) {
        sink.add(finding(code, height: height, offset: offset, replicas: replicas, message))
    }
}
