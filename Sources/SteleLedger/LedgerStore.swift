import SteleCore

/// One replica's append-only, hash-chained ledger file.
///
/// - `create` writes the header and genesis record atomically and durably.
/// - `open` verifies the whole file while streaming it (bounded memory), drops a torn last
///   write (reported in `openReport`) and refuses anything else it cannot verify.
/// - `append` checks each record against the chain (a violation is the caller's bug and throws
///   before anything is written) and writes them with one write; `sync` makes every append so
///   far durable with one fsync (group commit). Nothing appended is durable before `sync`
///   returns; `durableHead` says how far it is.
/// - After a failed write or sync the store refuses further appends (`.failed`): the state of
///   the file is unknown until it is reopened, which runs recovery again.
///
/// Not thread-safe: one owner (an actor, the simulator) uses it at a time.
public final class LedgerStore {
    /// Most blocks one `blocks(from:to:)` call returns.
    public static let blocksPerReadMax = 1024

    public let access: LedgerAccess
    /// What opening found (for a newly created ledger: an empty report).
    public let openReport: OpenReport
    /// How many fsyncs this store issued since it was opened.
    public private(set) var syncCount = 0
    /// The head as of the last successful sync (or open).
    public private(set) var durableHead: ChainHead

    private let storage: any LedgerStorage
    private var index: LedgerIndex
    private var hasUnsyncedWrites = false
    private var failure: LedgerError?

    private init(storage: any LedgerStorage, access: LedgerAccess, index: LedgerIndex, report: OpenReport) {
        self.storage = storage
        self.access = access
        self.index = index
        self.openReport = report
        self.durableHead = index.head
    }

    public var path: String { storage.path }
    public var genesis: Genesis { index.genesis }
    public var genesisHash: Digest { index.genesisHash }
    /// The newest block appended (durable or not).
    public var head: ChainHead { index.head }
    /// Bytes of ledger: header and whole records.
    public var byteCount: UInt64 { index.endOffset }
    /// The sequence of the newest checkpoint certificate, if any.
    public var latestCheckpointSequence: SequenceNumber? { index.checkpoints.last?.sequence }
    /// The byte offset of block `height`, if the ledger holds it.
    public func offset(ofBlockAt height: SequenceNumber) -> UInt64? { index.offset(ofBlockAt: height) }

    // MARK: Create and open

    /// Creates a new ledger file for `genesis`; fails with `.alreadyExists` if `path` exists.
    public static func create(path: String, genesis: Genesis) throws(LedgerError) -> LedgerStore {
        let bytes = try initialBytes(genesis: genesis, path: path)
        try FileSystem.createAtomically(path: path, bytes: bytes)
        return try open(path: path, expectedGenesis: genesis)
    }

    /// Creates a new ledger in empty `storage` (tests and the simulator).
    public static func create(storage: any LedgerStorage, genesis: Genesis) throws(LedgerError) -> LedgerStore {
        let bytes = try initialBytes(genesis: genesis, path: storage.path)
        let existingByteCount = try ioDuringCreate(storage) { () throws(StorageError) in try storage.byteCount() }
        guard existingByteCount == 0 else {
            throw LedgerError(.alreadyExists, path: storage.path, offset: 0, operation: .create, detail: "the storage holds \(existingByteCount) bytes")
        }
        try ioDuringCreate(storage) { () throws(StorageError) in
            try storage.write(bytes, at: 0)
            try storage.sync()
        }
        return try open(storage: storage, expectedGenesis: genesis)
    }

    private static func initialBytes(genesis: Genesis, path: String) throws(LedgerError) -> [UInt8] {
        do {
            try ChainRules.checkGenesis(genesis)
        } catch {
            throw error.at(path, offset: LedgerFormat.firstRecordOffset, operation: .create)
        }
        return LedgerFormat.header() + LedgerRecord.genesis(genesis).framed()
    }

    /// Opens and verifies an existing ledger file. Pass the genesis of the cluster it must
    /// belong to (from the cluster config); a ledger of another cluster is refused.
    public static func open(path: String, expectedGenesis: Genesis? = nil, access: LedgerAccess = .readWrite) throws(LedgerError) -> LedgerStore {
        try open(storage: try FileStorage(path: path, access: access), expectedGenesis: expectedGenesis, access: access)
    }

    public static func open(storage: any LedgerStorage, expectedGenesis: Genesis? = nil, access: LedgerAccess = .readWrite) throws(LedgerError) -> LedgerStore {
        let (index, tornReason) = try LedgerScanner(storage: storage, expectedGenesis: expectedGenesis).scan()
        var tornTail: TornTail?
        if let tornReason {
            let fileByteCount = try ioDuringOpen(storage, offset: index.endOffset) { () throws(StorageError) in try storage.byteCount() }
            tornTail = TornTail(path: storage.path, offset: index.endOffset, droppedByteCount: fileByteCount - index.endOffset,
                                reason: tornReason, lastHeight: index.head.height, truncated: access == .readWrite)
            if access == .readWrite {
                try ioDuringOpen(storage, offset: index.endOffset) { () throws(StorageError) in
                    try storage.truncate(toByteCount: index.endOffset)
                    try storage.sync()
                }
            }
        }
        let report = OpenReport(path: storage.path, head: index.head, checkpointCount: index.checkpoints.count,
                                byteCount: index.endOffset, tornTail: tornTail)
        return LedgerStore(storage: storage, access: access, index: index, report: report)
    }

    private static func ioDuringCreate<T>(_ storage: any LedgerStorage, _ body: () throws(StorageError) -> T) throws(LedgerError) -> T {
        do {
            return try body()
        } catch {
            throw LedgerError(.io, path: storage.path, offset: 0, operation: .create, detail: error.description)
        }
    }

    private static func ioDuringOpen<T>(_ storage: any LedgerStorage, offset: UInt64, _ body: () throws(StorageError) -> T) throws(LedgerError) -> T {
        do {
            return try body()
        } catch {
            throw LedgerError(.io, path: storage.path, offset: offset, operation: .open, detail: error.description)
        }
    }

    // MARK: Append

    /// Appends a committed block (not durable until `sync()`).
    public func append(_ block: CertifiedBlock) throws(LedgerError) {
        try append([.block(block)])
    }

    /// Appends a stable checkpoint certificate (not durable until `sync()`).
    public func append(_ certificate: CheckpointCertificate) throws(LedgerError) {
        try append([.checkpoint(certificate)])
    }

    /// Appends records in order with one write, after checking all of them: blocks at heights
    /// head+1, head+2, ... chained by prevHash; checkpoint certificates at a sequence at most the
    /// head (including blocks earlier in `records`), not below the latest one, naming the hash
    /// of the block at their sequence. On a violation nothing is written. Not durable until
    /// `sync()`.
    public func append(_ records: [LedgerRecord]) throws(LedgerError) {
        try requireWritable(.append)
        let batch = try prepare(records)
        guard !batch.bytes.isEmpty else { return }
        do {
            try storage.write(batch.bytes, at: index.endOffset)
        } catch {
            throw fail(LedgerError(.io, path: path, offset: index.endOffset, height: index.head.height.next, operation: .append, detail: error.description))
        }
        hasUnsyncedWrites = true
        index.blockOffsets.append(contentsOf: batch.blockOffsets)
        index.checkpoints.append(contentsOf: batch.checkpoints)
        index.head = batch.head
        index.endOffset += UInt64(batch.bytes.count)
    }

    /// Makes every append so far durable with one fsync; does nothing if there is nothing new.
    public func sync() throws(LedgerError) {
        try requireWritable(.sync)
        guard hasUnsyncedWrites else { return }
        syncCount += 1
        do {
            try storage.sync()
        } catch {
            throw fail(LedgerError(.io, path: path, offset: index.endOffset, height: index.head.height, operation: .sync, detail: error.description))
        }
        hasUnsyncedWrites = false
        durableHead = index.head
    }

    /// `append` then `sync`.
    public func appendDurably(_ records: [LedgerRecord]) throws(LedgerError) {
        try append(records)
        try sync()
    }

    private struct PreparedAppend {
        var bytes: [UInt8] = []
        var head: ChainHead
        var blockOffsets: [UInt64] = []
        var blockHashes: [Digest] = []
        var checkpoints: [CheckpointEntry] = []
    }

    private func prepare(_ records: [LedgerRecord]) throws(LedgerError) -> PreparedAppend {
        var batch = PreparedAppend(head: index.head)
        for record in records {
            let offset = index.endOffset + UInt64(batch.bytes.count)
            try admit(record, at: offset, into: &batch)
            let height = batch.head.height
            do {
                try ChainRules.checkCodecLimits(record, height: height)
            } catch {
                throw error.at(path, offset: offset, operation: .append)
            }
            let typeAndBody = record.typeAndBody()
            guard typeAndBody.count <= LedgerFormat.recordBytesMax else {
                throw LedgerError(.recordTooLarge, path: path, offset: offset, height: height, operation: .append,
                                  detail: "\(typeAndBody.count) bytes, the limit is \(LedgerFormat.recordBytesMax)")
            }
            assert((try? LedgerRecord.decode(typeAndBody: typeAndBody)) == record, "a record reads back as it was written")
            batch.bytes += LedgerRecord.frame(typeAndBody: typeAndBody)
        }
        return batch
    }

    private func admit(_ record: LedgerRecord, at offset: UInt64, into batch: inout PreparedAppend) throws(LedgerError) {
        let latest = batch.checkpoints.last?.sequence ?? index.checkpoints.last?.sequence
        var position = ChainPosition(head: batch.head, latestCheckpoint: latest)
        let place = RecordPlace(path: path, offset: offset, operation: .append)
        let admitted = try ChainRules.admit(record, to: &position, at: place) { (height) throws(LedgerError) in
            try blockHash(at: height, pending: batch)
        }
        batch.head = position.head
        switch admitted {
        case .block(let hash):
            batch.blockOffsets.append(offset)
            batch.blockHashes.append(hash)
        case .checkpoint(let sequence):
            batch.checkpoints.append(CheckpointEntry(sequence: sequence, offset: offset))
        }
    }

    private func blockHash(at height: SequenceNumber, pending batch: PreparedAppend) throws(LedgerError) -> Digest {
        if height > index.head.height { return batch.blockHashes[Int(height.value - index.head.height.value - 1)] }
        if height == index.head.height { return index.head.hash }
        return try block(at: height).hash
    }

    private func requireWritable(_ operation: LedgerError.Operation) throws(LedgerError) {
        guard access == .readWrite else {
            throw LedgerError(.readOnly, path: path, offset: index.endOffset, operation: operation, detail: "open it read-write to append")
        }
        if let failure {
            throw LedgerError(.failed, path: path, offset: failure.offset, height: failure.height, operation: operation, detail: failure.detail)
        }
    }

    private func fail(_ error: LedgerError) -> LedgerError {
        failure = error
        return error
    }

    // MARK: Read

    /// Block `height` (1 ... head), read from the file and re-checked.
    public func block(at height: SequenceNumber) throws(LedgerError) -> CertifiedBlock {
        guard let offset = index.offset(ofBlockAt: height) else {
            throw LedgerError(.heightOutOfRange, path: path, offset: index.endOffset, height: height, operation: .read,
                              detail: "the ledger holds blocks 1 ... \(index.head.height.value)")
        }
        return try reader.block(at: offset, height: height)
    }

    /// Blocks `first` ... `last` (inclusive), at most `blocksPerReadMax` of them.
    public func blocks(from first: SequenceNumber, to last: SequenceNumber) throws(LedgerError) -> [CertifiedBlock] {
        guard first.value >= 1, first <= last, last <= index.head.height else {
            throw LedgerError(.heightOutOfRange, path: path, offset: index.endOffset, height: last, operation: .read,
                              detail: "asked for \(first.value) ... \(last.value), the ledger holds blocks 1 ... \(index.head.height.value)")
        }
        guard last.value - first.value < UInt64(LedgerStore.blocksPerReadMax) else {
            throw LedgerError(.rangeTooLarge, path: path, offset: index.endOffset, height: first, operation: .read,
                              detail: "\(last.value - first.value + 1) blocks, at most \(LedgerStore.blocksPerReadMax) per read")
        }
        var blocks = [CertifiedBlock]()
        blocks.reserveCapacity(Int(last.value - first.value + 1))
        for height in first...last {
            blocks.append(try block(at: height))
        }
        return blocks
    }

    /// The newest checkpoint certificate at a sequence at most `height`, if there is one.
    public func checkpoint(atOrBelow height: SequenceNumber) throws(LedgerError) -> CheckpointCertificate? {
        guard let entry = index.checkpoint(atOrBelow: height) else { return nil }
        let (record, _) = try reader.record(at: entry.offset, height: entry.sequence)
        guard case .checkpoint(let certificate) = record, certificate.sequence == entry.sequence else {
            throw LedgerError(.changedOnDisk, path: path, offset: entry.offset, height: entry.sequence, operation: .read,
                              detail: "expected a checkpoint certificate for sequence \(entry.sequence.value), found \(RecordReader.summary(record))")
        }
        return certificate
    }

    /// Every record from the genesis on, read lazily and re-checked.
    public func entries() -> LedgerCursor {
        LedgerCursor(storage: storage, endOffset: index.endOffset)
    }

    private var reader: RecordReader { RecordReader(storage: storage, endOffset: index.endOffset, operation: .read) }
}

/// One record of a ledger and where it is.
public struct LedgerEntry: Sendable, Equatable {
    public let offset: UInt64
    /// Framed size: length prefix, type, body and checksum.
    public let byteCount: UInt64
    public let record: LedgerRecord
}

/// Reads a ledger's records in file order, one window of the file at a time. Each record's
/// framing and checksum are checked again as it is read.
///
///     var cursor = store.entries()
///     while let entry = try cursor.next() { ... }
public struct LedgerCursor {
    private var source: WindowedSource
    private var offset = LedgerFormat.firstRecordOffset
    private var lastHeight = SequenceNumber.genesis

    init(storage: any LedgerStorage, endOffset: UInt64) {
        source = WindowedSource(storage: storage, endOffset: endOffset)
    }

    /// The next record, or nil after the last one.
    public mutating func next() throws(LedgerError) -> LedgerEntry? {
        guard offset < source.endOffset else { return nil }
        let start = offset
        let path = source.storage.path
        let frame: Frame
        do {
            frame = try RecordFrames.read(at: start, from: &source)
        } catch {
            throw LedgerError(.io, path: path, offset: start, height: lastHeight.next, operation: .read, detail: error.description)
        }
        switch frame {
        case .invalid(let problem):
            throw problem.error(path: path, offset: start, height: lastHeight.next, operation: .read)
        case .valid(let typeAndBody, let byteCount):
            let record = try RecordFrames.decode(typeAndBody, path: path, offset: start, height: lastHeight.next, operation: .read)
            if case .block(let block) = record { lastHeight = block.height }
            offset = start + byteCount
            return LedgerEntry(offset: start, byteCount: byteCount, record: record)
        }
    }
}
