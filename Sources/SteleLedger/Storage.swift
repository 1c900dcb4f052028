#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed storage operation (the store turns it into a `LedgerError` with code `.io`).
public struct StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The system call or step that failed: "pread", "pwrite", "fsync", ...
    public let operation: String
    /// errno, when the failure came from the system.
    public let errorNumber: Int32?
    public let detail: String

    public init(operation: String, errorNumber: Int32?, detail: String = "") {
        self.operation = operation
        self.errorNumber = errorNumber
        self.detail = detail
    }

    public var description: String {
        var text = operation
        if let errorNumber { text += ": \(String(cString: strerror(errorNumber))) (errno \(errorNumber))" }
        if !detail.isEmpty { text += ": \(detail)" }
        return text
    }
}

/// The bytes of one ledger file. The store writes only at its end, truncates only while
/// recovering, and treats every failure as fatal for the open store (it never retries an
/// fsync: after a failed fsync the kernel may have dropped the dirty pages).
///
/// `FileStorage` is the real file; `MemoryStorage` lets tests and the simulator crash the
/// "disk" between a write and its sync.
public protocol LedgerStorage: AnyObject {
    /// Names the file in errors and reports.
    var path: String { get }
    /// The current size in bytes.
    func byteCount() throws(StorageError) -> UInt64
    /// Exactly `count` bytes from `offset`; fewer available is an error.
    func read(count: Int, at offset: UInt64) throws(StorageError) -> [UInt8]
    /// Writes all of `bytes` at `offset` (not yet durable).
    func write(_ bytes: [UInt8], at offset: UInt64) throws(StorageError)
    /// Makes every earlier write and truncation durable.
    func sync() throws(StorageError)
    /// Cuts the file to `byteCount` bytes (not yet durable).
    func truncate(toByteCount byteCount: UInt64) throws(StorageError)
}

/// How a ledger is opened: a replica opens its own ledger read-write (and recovery may truncate
/// a torn tail); an auditor opens read-only and never changes the file.
public enum LedgerAccess: Sendable {
    case readOnly, readWrite
}

// MARK: - A file

/// A ledger file on disk, accessed with pread/pwrite/fsync/ftruncate. A read-write open takes
/// an exclusive advisory lock (flock), so two writers can never interleave appends.
public final class FileStorage: LedgerStorage {
    public let path: String
    public let access: LedgerAccess
    private let descriptor: Int32

    /// Opens an existing file.
    public init(path: String, access: LedgerAccess) throws(LedgerError) {
        let flags = (access == .readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC
        let descriptor = open(path, flags)
        guard descriptor >= 0 else {
            let number = errno
            let code: LedgerError.Code = number == ENOENT ? .notFound : .io
            throw LedgerError(code, path: path, offset: 0, operation: .open, detail: StorageError(operation: "open", errorNumber: number).description)
        }
        if access == .readWrite, flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let number = errno
            close(descriptor)
            let code: LedgerError.Code = number == EWOULDBLOCK ? .locked : .io
            throw LedgerError(code, path: path, offset: 0, operation: .open, detail: StorageError(operation: "flock", errorNumber: number).description)
        }
        self.path = path
        self.access = access
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    public func byteCount() throws(StorageError) -> UInt64 {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw StorageError(operation: "fstat", errorNumber: errno) }
        return UInt64(info.st_size)
    }

    public func read(count: Int, at offset: UInt64) throws(StorageError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let result = bytes.withUnsafeMutableBytes { buffer in
                pread(descriptor, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            }
            if result < 0, errno == EINTR { continue }
            guard result >= 0 else { throw StorageError(operation: "pread", errorNumber: errno) }
            guard result > 0 else {
                throw StorageError(operation: "pread", errorNumber: nil, detail: "end of file after \(done) of \(count) bytes at byte \(offset)")
            }
            done += result
        }
        return bytes
    }

    public func write(_ bytes: [UInt8], at offset: UInt64) throws(StorageError) {
        var done = 0
        while done < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                pwrite(descriptor, buffer.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else { throw StorageError(operation: "pwrite", errorNumber: result < 0 ? errno : nil, detail: "wrote \(done) of \(bytes.count) bytes") }
            done += result
        }
    }

    public func sync() throws(StorageError) {
        guard fsync(descriptor) == 0 else { throw StorageError(operation: "fsync", errorNumber: errno) }
    }

    public func truncate(toByteCount byteCount: UInt64) throws(StorageError) {
        guard ftruncate(descriptor, off_t(byteCount)) == 0 else { throw StorageError(operation: "ftruncate", errorNumber: errno) }
    }
}

/// File-system steps of `LedgerStore.create(path:genesis:)`.
enum FileSystem {
    /// Creates `path` holding exactly `bytes`, durably and atomically: the bytes go to a
    /// temporary file that is fsynced and then hard-linked to `path` (which fails if `path`
    /// exists), and the directory is fsynced. A crash leaves either no ledger or a whole one.
    static func createAtomically(path: String, bytes: [UInt8]) throws(LedgerError) {
        let temporaryPath = "\(path).creating.\(getpid())"
        func failure(_ code: LedgerError.Code, _ error: StorageError) -> LedgerError {
            LedgerError(code, path: path, offset: 0, operation: .create, detail: error.description)
        }
        let descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw failure(.io, StorageError(operation: "open \(temporaryPath)", errorNumber: errno)) }
        defer { unlink(temporaryPath) }
        do throws(StorageError) {
            try writeAll(bytes, to: descriptor)
            guard fsync(descriptor) == 0 else { throw StorageError(operation: "fsync", errorNumber: errno) }
        } catch {
            close(descriptor)
            throw failure(.io, error)
        }
        close(descriptor)
        guard link(temporaryPath, path) == 0 else {
            let number = errno
            throw failure(number == EEXIST ? .alreadyExists : .io, StorageError(operation: "link", errorNumber: number))
        }
        do {
            try syncDirectory(containing: path)
        } catch {
            throw failure(.io, error)
        }
    }

    private static func writeAll(_ bytes: [UInt8], to descriptor: Int32) throws(StorageError) {
        var done = 0
        while done < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                write(descriptor, buffer.baseAddress! + done, bytes.count - done)
            }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else { throw StorageError(operation: "write", errorNumber: result < 0 ? errno : nil) }
            done += result
        }
    }

    static func syncDirectory(containing path: String) throws(StorageError) {
        let directory: String
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            directory = "."
        }
        let descriptor = open(directory, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw StorageError(operation: "open \(directory)", errorNumber: errno) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw StorageError(operation: "fsync \(directory)", errorNumber: errno) }
    }
}

// MARK: - Memory, with crashes

/// A ledger "file" in memory that remembers what was synced. `crash(keepingUnsyncedByteCount:)`
/// throws away what a power cut would: everything written since the last sync, except the
/// first bytes of it (a torn write). Tests and the deterministic simulator use it; `bytes` may
/// be edited directly to inject corruption.
public final class MemoryStorage: LedgerStorage {
    private enum PendingChange {
        case write([UInt8], at: Int)
        case truncate(Int)
    }

    public let path: String
    /// What reads see now.
    public var bytes: [UInt8]
    /// What survives a crash.
    public private(set) var durableBytes: [UInt8]
    /// How many times `sync()` was called.
    public private(set) var syncCount = 0
    /// When set, the next write fails with this error (and writes nothing).
    public var failNextWrite: StorageError?
    /// When set, the next sync fails with this error (and makes nothing durable).
    public var failNextSync: StorageError?
    private var pending: [PendingChange] = []

    public init(path: String = "memory.ledger", bytes: [UInt8] = []) {
        self.path = path
        self.bytes = bytes
        self.durableBytes = bytes
    }

    public func byteCount() throws(StorageError) -> UInt64 { UInt64(bytes.count) }

    public func read(count: Int, at offset: UInt64) throws(StorageError) -> [UInt8] {
        guard offset <= UInt64(bytes.count), count <= bytes.count - Int(offset) else {
            throw StorageError(operation: "read", errorNumber: nil, detail: "\(count) bytes at byte \(offset) run past the end (\(bytes.count) bytes)")
        }
        return Array(bytes[Int(offset)..<Int(offset) + count])
    }

    public func write(_ newBytes: [UInt8], at offset: UInt64) throws(StorageError) {
        if let failure = failNextWrite {
            failNextWrite = nil
            throw failure
        }
        MemoryStorage.apply(.write(newBytes, at: Int(offset)), to: &bytes)
        pending.append(.write(newBytes, at: Int(offset)))
    }

    public func sync() throws(StorageError) {
        syncCount += 1
        if let failure = failNextSync {
            failNextSync = nil
            throw failure
        }
        durableBytes = bytes
        pending = []
    }

    public func truncate(toByteCount byteCount: UInt64) throws(StorageError) {
        MemoryStorage.apply(.truncate(Int(byteCount)), to: &bytes)
        pending.append(.truncate(Int(byteCount)))
    }

    /// Loses the unsynced changes, except that the first `keptByteCount` bytes written since the
    /// last sync (in write order) reach the disk — the last of them possibly only partly.
    public func crash(keepingUnsyncedByteCount keptByteCount: Int = 0) {
        var disk = durableBytes
        var budget = keptByteCount
        for change in pending {
            switch change {
            case .truncate:
                MemoryStorage.apply(change, to: &disk)
            case .write(let written, let offset):
                guard budget > 0 else { break }
                let kept = Array(written.prefix(budget))
                budget -= kept.count
                MemoryStorage.apply(.write(kept, at: offset), to: &disk)
            }
        }
        bytes = disk
        durableBytes = disk
        pending = []
    }

    /// Bytes written since the last sync.
    public var unsyncedByteCount: Int {
        pending.reduce(0) { total, change in
            if case .write(let written, _) = change { return total + written.count }
            return total
        }
    }

    private static func apply(_ change: PendingChange, to target: inout [UInt8]) {
        switch change {
        case .truncate(let count):
            if count < target.count {
                target.removeSubrange(count...)
            } else {
                target.append(contentsOf: [UInt8](repeating: 0, count: count - target.count))
            }
        case .write(let written, let offset):
            if offset > target.count { target.append(contentsOf: [UInt8](repeating: 0, count: offset - target.count)) }
            let overlap = min(written.count, target.count - offset)
            target.replaceSubrange(offset..<offset + overlap, with: written.prefix(overlap))
            target.append(contentsOf: written.dropFirst(overlap))
        }
    }
}
