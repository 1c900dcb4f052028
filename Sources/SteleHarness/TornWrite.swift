import Foundation
import SteleCore
import SteleLedger

/// What tearing a ledger's tail did: the last block record was cut at `cutOffset`, strictly
/// inside it, and everything after the cut is gone.
public struct TornWrite: Sendable, CustomStringConvertible {
    public let replica: ReplicaID
    /// The height of the block whose record was cut.
    public let height: UInt64
    /// The hash that block had before the cut (the committed one).
    public let blockHash: Digest
    /// Where the record starts and how long it was (framed).
    public let recordOffset: UInt64
    public let recordByteCount: UInt64
    public let cutOffset: UInt64
    public let fileByteCountBefore: UInt64
    /// The ledger's head before the cut.
    public let headBefore: UInt64

    public var description: String {
        "replica \(replica.value): cut block \(height) of \(headBefore) (record at byte \(recordOffset), \(recordByteCount) bytes) at byte \(cutOffset); file \(fileByteCountBefore) -> \(cutOffset) bytes"
    }
}

public enum TornWriteError: Error, CustomStringConvertible {
    case emptyLedger(String)
    case truncateFailed(String, Int32)

    public var description: String {
        switch self {
        case .emptyLedger(let path): "\(path) holds no block to tear"
        case .truncateFailed(let path, let code): "cannot truncate \(path): errno \(code)"
        }
    }
}

extension ScratchCluster {
    /// Cuts a block record of replica `id`'s ledger at a point strictly inside it (chosen by
    /// `generator`), as a crash in the middle of writing it would, and drops everything after
    /// it. `blocksBelowHead` = 0 cuts the last block; k > 0 cuts the block k below the head,
    /// as a torn group-commit write (one write of several blocks) would. The replica must not
    /// be running.
    public func tearLedgerTail(_ id: ReplicaID, blocksBelowHead: UInt64 = 0, using generator: inout SeededGenerator) throws -> TornWrite {
        precondition(!isRunning(id), "tear the ledger of a stopped replica only")
        let path = ledgerPath(id)
        let store = try openLedger(id)
        guard store.head.height.value >= 1 else { throw TornWriteError.emptyLedger(path) }
        let height = SequenceNumber(store.head.height.value - min(blocksBelowHead, store.head.height.value - 1))
        var cursor = store.entries()
        var last: LedgerEntry?
        while let entry = try cursor.next() {
            if case .block(let block) = entry.record, block.height == height { last = entry }
        }
        guard let last, case .block(let block) = last.record else { throw TornWriteError.emptyLedger(path) }
        precondition(last.byteCount >= 2, "a framed record is longer than one byte")
        let cut = last.offset + UInt64.random(in: 1..<last.byteCount, using: &generator)
        let before = store.byteCount
        guard truncate(path, off_t(cut)) == 0 else { throw TornWriteError.truncateFailed(path, errno) }
        return TornWrite(replica: id, height: height.value, blockHash: block.hash, recordOffset: last.offset,
                         recordByteCount: last.byteCount, cutOffset: cut, fileByteCountBefore: before,
                         headBefore: store.head.height.value)
    }
}
