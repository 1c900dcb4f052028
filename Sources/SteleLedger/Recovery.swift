import SteleCore
import SteleCrypto

/// An incomplete last write found when opening a ledger: the bytes from `offset` to the end of
/// the file were dropped (truncated, unless the ledger was opened read-only).
public struct TornTail: Sendable, Equatable, CustomStringConvertible {
    public enum Reason: String, Sendable, Equatable {
        case partialLengthField = "fewer bytes than a length field remain"
        case runsPastEndOfFile = "the last record's length runs past the end of the file"
        case checksumMismatch = "the last record's checksum does not match and no valid record follows it"
        case zeroFilled = "only zero bytes remain where a record should start"
    }

    public let path: String
    /// Where the first incomplete record starts: the new end of the ledger.
    public let offset: UInt64
    public let droppedByteCount: UInt64
    public let reason: Reason
    /// The height of the last block kept.
    public let lastHeight: SequenceNumber
    /// False when opened read-only: the file was left as it is and the tail is ignored.
    public let truncated: Bool

    public var description: String {
        let action = truncated ? "truncated" : "ignored (read-only)"
        return "ledger \(path): torn tail at byte \(offset) after height \(lastHeight.value): \(reason.rawValue); \(droppedByteCount) bytes \(action)"
    }
}

/// What opening a ledger found.
public struct OpenReport: Sendable, CustomStringConvertible {
    public let path: String
    public let head: ChainHead
    public let checkpointCount: Int
    /// Bytes of verified ledger (header and whole records).
    public let byteCount: UInt64
    /// Set when the last write was torn and dropped.
    public let tornTail: TornTail?

    public var description: String {
        var text = "ledger \(path): \(head), \(checkpointCount) checkpoint certificates, \(byteCount) bytes"
        if let tornTail { text += "; \(tornTail)" }
        return text
    }
}

struct CheckpointEntry: Sendable {
    let sequence: SequenceNumber
    let offset: UInt64
}

/// The verified shape of a ledger: built while opening, extended by appends.
struct LedgerIndex {
    let genesis: Genesis
    let genesisHash: Digest
    var head: ChainHead
    /// Byte offset of block h at index h - 1: 8 bytes per block.
    var blockOffsets: [UInt64] = []
    /// In non-decreasing sequence order.
    var checkpoints: [CheckpointEntry] = []
    /// End of the last whole, verified record.
    var endOffset: UInt64

    init(genesis: Genesis, endOffset: UInt64) {
        self.genesis = genesis
        self.genesisHash = genesis.hash
        self.head = ChainHead(height: .genesis, hash: genesisHash)
        self.endOffset = endOffset
    }

    func offset(ofBlockAt height: SequenceNumber) -> UInt64? {
        guard height.value >= 1, height <= head.height else { return nil }
        return blockOffsets[Int(height.value - 1)]
    }

    /// The newest checkpoint certificate whose sequence is at most `height`.
    func checkpoint(atOrBelow height: SequenceNumber) -> CheckpointEntry? {
        var low = 0
        var high = checkpoints.count
        while low < high {
            let middle = (low + high) / 2
            if checkpoints[middle].sequence <= height { low = middle + 1 } else { high = middle }
        }
        return low == 0 ? nil : checkpoints[low - 1]
    }
}

/// Opens a ledger: streams the file once, in bounded memory, checking the header, the genesis,
/// every record's framing, checksum and encoding, contiguous heights, the prevHash chain and
/// every checkpoint certificate's position and digest. Tells a torn last write (dropped) from
/// any other damage (refused).
struct LedgerScanner {
    let storage: any LedgerStorage
    let expectedGenesis: Genesis?
    var path: String { storage.path }

    func scan() throws(LedgerError) -> (LedgerIndex, TornTail.Reason?) {
        let fileByteCount = try io(offset: 0, height: nil) { () throws(StorageError) in try storage.byteCount() }
        try checkHeader(fileByteCount: fileByteCount)
        var source = WindowedSource(storage: storage, endOffset: fileByteCount)
        var index = try readGenesis(from: &source)
        while index.endOffset < fileByteCount {
            let offset = index.endOffset
            let nextHeight = index.head.height.next
            let frame = try io(offset: offset, height: nextHeight) { () throws(StorageError) in try RecordFrames.read(at: offset, from: &source) }
            switch frame {
            case .invalid(let problem):
                return (index, try tornTailReason(problem, at: offset, height: nextHeight, source: &source))
            case .valid(let typeAndBody, let byteCount):
                let record = try RecordFrames.decode(typeAndBody, path: path, offset: offset, height: nextHeight, operation: .open)
                try admit(record, at: offset, into: &index)
                index.endOffset = offset + byteCount
            }
        }
        return (index, nil)
    }

    private func checkHeader(fileByteCount: UInt64) throws(LedgerError) {
        guard fileByteCount >= UInt64(LedgerFormat.headerByteCount) else {
            throw LedgerError(.notALedger, path: path, offset: 0, operation: .open, detail: "the file has \(fileByteCount) bytes, fewer than the \(LedgerFormat.headerByteCount)-byte header")
        }
        let header = try io(offset: 0, height: nil) { () throws(StorageError) in try storage.read(count: LedgerFormat.headerByteCount, at: 0) }
        guard Array(header[0..<8]) == LedgerFormat.magic else {
            throw LedgerError(.notALedger, path: path, offset: 0, operation: .open, detail: "magic is \(Hex.encode(header[0..<8])), expected \(Hex.encode(LedgerFormat.magic)) (\"STELELDG\")")
        }
        let version = UInt16(header[8]) << 8 | UInt16(header[9])
        guard version == LedgerFormat.version else {
            throw LedgerError(.unsupportedVersion, path: path, offset: 8, operation: .open, detail: "version \(version); this build reads version \(LedgerFormat.version)")
        }
        guard header[10..<16].allSatisfy({ $0 == 0 }) else {
            throw LedgerError(.badHeader, path: path, offset: 10, operation: .open, detail: "reserved bytes are \(Hex.encode(header[10..<16])), not zero")
        }
    }

    private func readGenesis(from source: inout WindowedSource) throws(LedgerError) -> LedgerIndex {
        let offset = LedgerFormat.firstRecordOffset
        let frame = try io(offset: offset, height: .genesis) { () throws(StorageError) in try RecordFrames.read(at: offset, from: &source) }
        let typeAndBody: [UInt8]
        let byteCount: UInt64
        switch frame {
        case .invalid(let problem): throw genesisFrameError(problem)
        case .valid(let bytes, let count): (typeAndBody, byteCount) = (bytes, count)
        }
        let record = try RecordFrames.decode(typeAndBody, path: path, offset: offset, height: .genesis, operation: .open)
        guard case .genesis(let genesis) = record else {
            throw LedgerError(.missingGenesis, path: path, offset: offset, height: .genesis, operation: .open, detail: "the first record is \(RecordReader.summary(record))")
        }
        do {
            try ChainRules.checkGenesis(genesis)
        } catch {
            throw error.at(path, offset: offset, operation: .open)
        }
        if let expectedGenesis, let difference = ChainRules.difference(found: genesis, expected: expectedGenesis) {
            throw LedgerError(.genesisMismatch, path: path, offset: offset, height: .genesis, operation: .open, detail: difference)
        }
        return LedgerIndex(genesis: genesis, endOffset: offset + byteCount)
    }

    /// Create writes the header and genesis atomically, so a damaged genesis is never a torn write.
    private func genesisFrameError(_ problem: FrameProblem) -> LedgerError {
        let offset = LedgerFormat.firstRecordOffset
        switch problem {
        case .partialLength, .runsPastEnd:
            return LedgerError(.missingGenesis, path: path, offset: offset, height: .genesis, operation: .open, detail: "the file ends inside the genesis record")
        case .zeroLength, .tooLarge, .checksumMismatch:
            return problem.error(path: path, offset: offset, height: .genesis, operation: .open)
        }
    }

    private func admit(_ record: LedgerRecord, at offset: UInt64, into index: inout LedgerIndex) throws(LedgerError) {
        var position = ChainPosition(head: index.head, latestCheckpoint: index.checkpoints.last?.sequence)
        let place = RecordPlace(path: path, offset: offset, operation: .open)
        let admitted = try ChainRules.admit(record, to: &position, at: place) { (height) throws(LedgerError) in
            try blockHash(at: height, in: index)
        }
        index.head = position.head
        switch admitted {
        case .block:
            index.blockOffsets.append(offset)
        case .checkpoint(let sequence):
            index.checkpoints.append(CheckpointEntry(sequence: sequence, offset: offset))
        }
    }

    /// The hash of a block already admitted (re-read from the file unless it is the head).
    private func blockHash(at height: SequenceNumber, in index: LedgerIndex) throws(LedgerError) -> Digest {
        if height == index.head.height { return index.head.hash }
        guard let offset = index.offset(ofBlockAt: height) else { return index.genesisHash }
        let block = try RecordReader(storage: storage, endOffset: index.endOffset, operation: .open).block(at: offset, height: height)
        return block.hash
    }

    /// A torn tail, or corruption (thrown). See docs/ledger-format.md, "Recovery".
    private func tornTailReason(_ problem: FrameProblem, at offset: UInt64, height: SequenceNumber, source: inout WindowedSource) throws(LedgerError) -> TornTail.Reason {
        switch problem {
        case .partialLength:
            return .partialLengthField
        case .runsPastEnd:
            return .runsPastEndOfFile
        case .tooLarge:
            throw problem.error(path: path, offset: offset, height: height, operation: .open)
        case .zeroLength:
            guard try isZero(from: offset, source: &source) else {
                throw problem.error(path: path, offset: offset, height: height, operation: .open)
            }
            return .zeroFilled
        case .checksumMismatch(let length):
            let next = offset + UInt64(length) + UInt64(LedgerFormat.recordOverheadByteCount)
            if let valid = try validRecord(from: next, source: &source) {
                throw LedgerError(.checksumMismatch, path: path, offset: offset, height: height, operation: .open,
                                  detail: "record of \(length) bytes, and a valid record follows at byte \(valid)")
            }
            return .checksumMismatch
        }
    }

    /// True if every byte from `offset` to the end is zero (read a window at a time).
    private func isZero(from offset: UInt64, source: inout WindowedSource) throws(LedgerError) -> Bool {
        var position = offset
        while position < source.endOffset {
            let count = Int(min(UInt64(64 * 1024), source.endOffset - position))
            let start = position
            let chunk = try io(offset: start, height: nil) { () throws(StorageError) in try source.bytes(at: start, count: count) }
            guard chunk.allSatisfy({ $0 == 0 }) else { return false }
            position += UInt64(count)
        }
        return true
    }

    /// The offset of the first record with a matching checksum at or after `offset`, following
    /// the framing of records whose checksum fails; nil if the framing ends first.
    private func validRecord(from offset: UInt64, source: inout WindowedSource) throws(LedgerError) -> UInt64? {
        var position = offset
        while position < source.endOffset {
            let start = position
            let frame = try io(offset: start, height: nil) { () throws(StorageError) in try RecordFrames.read(at: start, from: &source) }
            switch frame {
            case .valid: return start
            case .invalid(.checksumMismatch(let length)): position = start + UInt64(length) + UInt64(LedgerFormat.recordOverheadByteCount)
            case .invalid: return nil
            }
        }
        return nil
    }

    private func io<T>(offset: UInt64, height: SequenceNumber?, _ body: () throws(StorageError) -> T) throws(LedgerError) -> T {
        do {
            return try body()
        } catch {
            throw LedgerError(.io, path: path, offset: offset, height: height, operation: .open, detail: error.description)
        }
    }
}

/// Reads one record at a known offset, re-checking its length against the verified end of the
/// ledger and the format's limit, and its checksum.
struct RecordReader {
    let storage: any LedgerStorage
    let endOffset: UInt64
    let operation: LedgerError.Operation
    var path: String { storage.path }

    func record(at offset: UInt64, height: SequenceNumber?) throws(LedgerError) -> (record: LedgerRecord, byteCount: UInt64) {
        guard offset >= LedgerFormat.firstRecordOffset, offset < endOffset else {
            throw LedgerError(.heightOutOfRange, path: path, offset: offset, height: height, operation: operation, detail: "no record starts there")
        }
        var source = DirectSource(storage: storage, endOffset: endOffset)
        let frame: Frame
        do {
            frame = try RecordFrames.read(at: offset, from: &source)
        } catch {
            throw LedgerError(.io, path: path, offset: offset, height: height, operation: operation, detail: error.description)
        }
        switch frame {
        case .invalid(let problem):
            throw problem.error(path: path, offset: offset, height: height, operation: operation)
        case .valid(let typeAndBody, let byteCount):
            let record = try RecordFrames.decode(typeAndBody, path: path, offset: offset, height: height, operation: operation)
            return (record, byteCount)
        }
    }

    /// The block at `offset`, which the index says is block `height`.
    func block(at offset: UInt64, height: SequenceNumber) throws(LedgerError) -> CertifiedBlock {
        let (record, _) = try record(at: offset, height: height)
        guard case .block(let block) = record, block.height == height else {
            throw LedgerError(.changedOnDisk, path: path, offset: offset, height: height, operation: operation, detail: "expected block \(height.value), found \(RecordReader.summary(record))")
        }
        return block
    }

    static func summary(_ record: LedgerRecord) -> String {
        switch record {
        case .genesis: "the genesis record"
        case .block(let block): "block \(block.height.value)"
        case .checkpoint(let certificate): "a checkpoint certificate for sequence \(certificate.sequence.value)"
        }
    }
}
