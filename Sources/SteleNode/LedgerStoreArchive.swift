import SteleCore
import SteleLedger

/// The replica's ledger file as the runtime's archive.
extension LedgerStore: LedgerArchive {
    public var headHeight: SequenceNumber { head.height }
    public var headHash: Digest { head.hash }

    public func blocks(from: SequenceNumber, through: SequenceNumber) throws -> [CertifiedBlock] {
        try blocks(from: from, to: through)
    }

    public func latestCheckpoint(atOrBelow height: SequenceNumber) throws -> CheckpointCertificate? {
        try checkpoint(atOrBelow: height)
    }

    public func forEachBlock(_ body: (CertifiedBlock) throws -> Void) throws {
        var cursor = entries()
        while let entry = try cursor.next() {
            if case .block(let block) = entry.record { try body(block) }
        }
    }
}
