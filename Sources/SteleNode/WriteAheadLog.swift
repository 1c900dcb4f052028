#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import PBFT
import SteleCore
import SteleCrypto

/// Why the write-ahead log could not be used. Names the file and byte offset.
public struct WALError: Error, Equatable, CustomStringConvertible {
    public enum Code: Equatable, Sendable {
        case io(errno: Int32)
        case badHeader
        case corruptRecord(reason: String)
    }
    public let code: Code
    public let path: String
    public let offset: Int

    public var description: String {
        switch code {
        case .io(let number): "write-ahead log \(path): I/O error at byte \(offset): \(String(cString: strerror(number)))"
        case .badHeader: "write-ahead log \(path): not a Stele write-ahead log"
        case .corruptRecord(let reason): "write-ahead log \(path): corrupt record at byte \(offset): \(reason); refusing to start"
        }
    }
}

/// The consensus core's write-ahead log: PersistRecords appended with one fsync per group.
///
///     header  "STELEWAL" u16 version (10 bytes)
///     record  u32 length | body (PersistCodec) | 8-byte truncated SHA-256 of body
///
/// A torn last record (a crash mid-append) is truncated on open; corruption before the tail
/// refuses to open. After each stable checkpoint the log is compacted: rewritten (to a
/// temporary file, fsynced, renamed) with only the records above the checkpoint, plus the
/// latest view, VIEW-CHANGE and NEW-VIEW records.
public final class WriteAheadLog {
    static let magic: [UInt8] = Array("STELEWAL".utf8) + [0, 1]
    /// A record is at most one replica-link frame (a VIEW-CHANGE or NEW-VIEW carries up to a
    /// watermark window of full batches: about 72.5 MiB by default, `peerFrameBytesMax`);
    /// 16 MiB refused to reopen a log holding a large one. A larger length is corruption.
    static let recordBytesMax = 1024 * 1024 * 1024

    public let path: String
    private var fd: Int32
    private var pending: [UInt8] = []
    /// Where the next record goes: the file's size, kept here rather than asked of the kernel
    /// at every sync.
    private var end = 0
    public private(set) var records: [PersistRecord]
    /// Bytes of the torn tail dropped when the log was opened (0 if none).
    public private(set) var tornBytesDropped: Int = 0
    /// Digests of the non-empty batches of the PRE-PREPARE records in the file (or pending):
    /// a prepared certificate of one of them is written without its batch.
    private var loggedBatches: Set<Digest> = []

    public init(path: String) throws(WALError) {
        self.path = path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw WALError(code: .io(errno: errno), path: path, offset: 0) }
        self.fd = fd
        self.records = []
        do {
            try load()
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    private func fileSize() throws(WALError) -> Int {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw WALError(code: .io(errno: errno), path: path, offset: 0) }
        return Int(info.st_size)
    }

    private func readAll(size: Int) throws(WALError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, size - done, off_t(done)) }
            guard count > 0 else { throw WALError(code: .io(errno: errno), path: path, offset: done) }
            done += count
        }
        return bytes
    }

    private func load() throws(WALError) {
        let size = try fileSize()
        if size == 0 {
            try writeFully(WriteAheadLog.magic, at: 0)
            end = WriteAheadLog.magic.count
            try sync()
            return
        }
        end = size
        // The log holds only records above the last stable checkpoint (it is compacted), so it
        // stays small enough to read whole.
        let bytes = try readAll(size: size)
        guard bytes.count >= WriteAheadLog.magic.count, Array(bytes.prefix(WriteAheadLog.magic.count)) == WriteAheadLog.magic else {
            throw WALError(code: .badHeader, path: path, offset: 0)
        }
        var offset = WriteAheadLog.magic.count
        var batchesByDigest: [Digest: [Request]] = [:]
        while offset < bytes.count {
            let recordStart = offset
            guard bytes.count - offset >= 4 else { return try truncateTorn(at: recordStart, size: size) }
            let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            guard length > 0, length <= WriteAheadLog.recordBytesMax else {
                throw WALError(code: .corruptRecord(reason: "length \(length) out of range"), path: path, offset: recordStart)
            }
            guard bytes.count - offset - 4 >= length + 8 else { return try truncateTorn(at: recordStart, size: size) }
            let body = Array(bytes[(offset + 4)..<(offset + 4 + length)])
            let checksum = Array(bytes[(offset + 4 + length)..<(offset + 12 + length)])
            offset += 12 + length
            guard Array(SHA256.hash(body).prefix(8)) == checksum else {
                if offset == bytes.count { return try truncateTorn(at: recordStart, size: size) }
                throw WALError(code: .corruptRecord(reason: "checksum mismatch"), path: path, offset: recordStart)
            }
            do {
                let record = try PersistCodec.decode(body, loggedBatches: batchesByDigest)
                if case .prePrepare(let prePrepare) = record, !prePrepare.batch.isEmpty {
                    batchesByDigest[prePrepare.digest] = prePrepare.batch
                    loggedBatches.insert(prePrepare.digest)
                }
                records.append(record)
            } catch {
                throw WALError(code: .corruptRecord(reason: "\(error)"), path: path, offset: recordStart)
            }
        }
    }

    private func truncateTorn(at offset: Int, size: Int) throws(WALError) {
        tornBytesDropped = size - offset
        guard ftruncate(fd, off_t(offset)) == 0 else { throw WALError(code: .io(errno: errno), path: path, offset: offset) }
        end = offset
        try sync()
    }

    private func writeFully(_ bytes: [UInt8], at offset: Int) throws(WALError) {
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
            guard count > 0 else { throw WALError(code: .io(errno: errno), path: path, offset: offset + done) }
            done += count
        }
    }

    /// Frames `record` and, for a PRE-PREPARE, notes its batch in `loggedBatches`.
    static func frame(_ record: PersistRecord, loggedBatches: inout Set<Digest>) -> [UInt8] {
        let body = PersistCodec.encode(record, loggedBatches: loggedBatches)
        if case .prePrepare(let prePrepare) = record, !prePrepare.batch.isEmpty { loggedBatches.insert(prePrepare.digest) }
        var writer = ByteWriter(capacity: body.count + 12)
        writer.write(UInt32(body.count))
        writer.writeFixed(body)
        writer.writeFixed(Array(SHA256.hash(body).prefix(8)))
        return writer.bytes
    }

    /// Buffers records; they are durable only after `sync()`.
    public func append(_ newRecords: [PersistRecord]) {
        for record in newRecords {
            pending += WriteAheadLog.frame(record, loggedBatches: &loggedBatches)
            records.append(record)
        }
    }

    /// Writes buffered records and fsyncs: one fsync for the whole group.
    public func sync() throws(WALError) {
        if !pending.isEmpty {
            try writeFully(pending, at: end)
            end += pending.count
            pending.removeAll(keepingCapacity: true)
        }
        guard fsync(fd) == 0 else { throw WALError(code: .io(errno: errno), path: path, offset: 0) }
    }

    /// Rewrites the log keeping only what matters above `checkpoint`: the latest view record,
    /// the latest view change, the stable checkpoint itself and records about higher sequences.
    public func compact(above checkpoint: SequenceNumber) throws(WALError) {
        try sync()
        var kept: [PersistRecord] = []
        var latestView: PersistRecord?
        var latestViewChange: PersistRecord?
        var latestNewView: PersistRecord?
        var latestCheckpoint: PersistRecord?
        for record in records {
            switch record {
            case .view: latestView = record
            case .viewChange: latestViewChange = record
            case .newView: latestNewView = record
            case .stableCheckpoint: latestCheckpoint = record
            default:
                if let sequence = PersistCodec.sequence(of: record), sequence > checkpoint { kept.append(record) }
            }
        }
        kept = [latestCheckpoint, latestViewChange, latestNewView, latestView].compactMap { $0 } + kept
        let temporary = path + ".compact"
        let tfd = open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard tfd >= 0 else { throw WALError(code: .io(errno: errno), path: temporary, offset: 0) }
        var bytes = WriteAheadLog.magic
        var keptBatches: Set<Digest> = []
        for record in kept { bytes += WriteAheadLog.frame(record, loggedBatches: &keptBatches) }
        let oldFD = fd
        fd = tfd
        do throws(WALError) {
            try writeFully(bytes, at: 0)
            guard fsync(tfd) == 0 else { throw WALError(code: .io(errno: errno), path: temporary, offset: 0) }
        } catch {
            fd = oldFD
            close(tfd)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            fd = oldFD
            close(tfd)
            throw WALError(code: .io(errno: errno), path: path, offset: 0)
        }
        close(oldFD)
        end = bytes.count
        records = kept
        loggedBatches = keptBatches
        syncDirectory()
    }

    /// Makes the rename durable.
    private func syncDirectory() {
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let dfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_CLOEXEC)
        guard dfd >= 0 else { return }
        _ = fsync(dfd)
        close(dfd)
    }
}

extension WriteAheadLog {
    /// Group commit of the log and another file (the ledger): writes and fsyncs the buffered
    /// records while `other` (the ledger's sync) runs on another thread, so the two fsyncs
    /// overlap — the file system commits them together — instead of following each other.
    /// Returns only once both are durable; throws the log's error first, then the other's.
    /// Safe to overlap: nothing is sent before both return, and a ledger block durable
    /// without this group's log records protects no message that went out.
    public func sync(alongside other: @escaping () throws -> Void) throws {
        let job = OverlappedSync(other)
        let done = DispatchGroup()
        DispatchQueue.global(qos: .userInitiated).async(group: done) { job.run() }
        var logError: Error?
        do { try sync() } catch { logError = error }
        done.wait()
        if let logError { throw logError }
        if let otherError = job.error { throw otherError }
    }
}

/// The other half of an overlapped sync; touched by the waiting thread only after the group
/// completed, so the unchecked Sendable conformance is sound.
private final class OverlappedSync: @unchecked Sendable {
    let body: () throws -> Void
    var error: Error?
    init(_ body: @escaping () throws -> Void) { self.body = body }
    func run() {
        do { try body() } catch { self.error = error }
    }
}
