import PBFT
import SteleCore

/// What the runtime needs of a replica's ledger file: durable appends (group commit), reads
/// for state transfer, and a replay on start. Implemented over SteleLedger's store.
public protocol LedgerArchive: AnyObject {
    var headHeight: SequenceNumber { get }
    var headHash: Digest { get }
    func append(_ block: CertifiedBlock) throws
    func append(_ checkpoint: CheckpointCertificate) throws
    /// Makes every append so far durable (one fsync).
    func sync() throws
    /// Blocks from ... through, in order (at most `through - from + 1`).
    func blocks(from: SequenceNumber, through: SequenceNumber) throws -> [CertifiedBlock]
    /// The newest checkpoint certificate at or below `height`.
    func latestCheckpoint(atOrBelow height: SequenceNumber) throws -> CheckpointCertificate?
    /// Every block in height order (for rebuilding the executed state on start).
    func forEachBlock(_ body: (CertifiedBlock) throws -> Void) throws
}

extension LedgerArchive {
    /// The executed state the ledger implies, for `RecoveryState`.
    public func replayHead(config: ClusterConfig) throws -> LedgerHead {
        var head = LedgerHead.genesis(config)
        try forEachBlock { head.apply($0) }
        return head
    }
}
