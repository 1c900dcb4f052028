import PBFT
import SteleCore

/// What the runtime needs of a replica's ledger file: durable appends (group commit), reads
/// for state transfer, and a replay on start. Implemented over SteleLedger's store.
public protocol LedgerArchive: AnyObject, CommittedLedger {
    var headHash: Digest { get }
    func append(_ block: CertifiedBlock) throws
    func append(_ checkpoint: CheckpointCertificate) throws
    /// Makes every append so far durable (one fsync).
    func sync() throws
    /// Blocks from ... through, in order (at most `through - from + 1`).
    func blocks(from: SequenceNumber, through: SequenceNumber) throws -> [CertifiedBlock]
    /// Every block in height order (for rebuilding the executed state on start).
    func forEachBlock(_ body: (CertifiedBlock) throws -> Void) throws
}

extension LedgerArchive {
    /// One block, for an archive that reads ranges only.
    public func block(at height: SequenceNumber) throws -> CertifiedBlock {
        let blocks = try blocks(from: height, through: height)
        precondition(blocks.count == 1 && blocks[0].height == height, "the archive holds block \(height.value)")
        return blocks[0]
    }

    /// The executed state the ledger implies, for `RecoveryState`.
    public func replayHead(config: ClusterConfig) throws -> LedgerHead {
        var head = LedgerHead.genesis(config)
        try forEachBlock { head.apply($0) }
        return head
    }
}
