#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A ledger to audit: a file on disk (read in bounded chunks, never whole) or bytes in memory
/// (for tests and for the simulator, which keeps its ledgers in memory).
public enum LedgerSource: Sendable, Hashable {
    case file(path: String)
    case memory(name: String, bytes: [UInt8])

    /// How findings name this ledger.
    public var name: String {
        switch self {
        case .file(let path): path
        case .memory(let name, _): name
        }
    }

    func open() throws(AuditError) -> RandomAccessReader {
        switch self {
        case .file(let path): try FileReader(path: path)
        case .memory(_, let bytes): MemoryReader(bytes: bytes)
        }
    }
}

/// Positional reads of a fixed-size byte sequence.
protocol RandomAccessReader: AnyObject {
    var byteCount: UInt64 { get }
    /// Exactly `count` bytes at `offset`; the caller guarantees `offset + count <= byteCount`.
    func read(at offset: UInt64, count: Int) throws(AuditError) -> [UInt8]
}

final class MemoryReader: RandomAccessReader {
    let bytes: [UInt8]
    init(bytes: [UInt8]) { self.bytes = bytes }
    var byteCount: UInt64 { UInt64(bytes.count) }

    func read(at offset: UInt64, count: Int) throws(AuditError) -> [UInt8] {
        precondition(offset + UInt64(count) <= byteCount, "read past the end")
        let start = Int(offset)
        return Array(bytes[start..<start + count])
    }
}

/// pread(2) on a descriptor opened read-only; the size is taken once at open (a ledger being
/// appended to while it is audited is audited as it was at open).
final class FileReader: RandomAccessReader {
    let path: String
    let descriptor: Int32
    let byteCount: UInt64

    init(path: String) throws(AuditError) {
        self.path = path
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            let number = errno
            throw AuditError(number == ENOENT ? .notFound : .ioError(errno: number, operation: "open"), path: path)
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let number = errno
            close(descriptor)
            throw AuditError(.ioError(errno: number, operation: "fstat"), path: path)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(descriptor)
            throw AuditError(.notARegularFile, path: path)
        }
        self.descriptor = descriptor
        self.byteCount = UInt64(info.st_size)
    }

    deinit { close(descriptor) }

    func read(at offset: UInt64, count: Int) throws(AuditError) -> [UInt8] {
        precondition(offset + UInt64(count) <= byteCount, "read past the end")
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let result = buffer.withUnsafeMutableBytes { raw in
                pread(descriptor, raw.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw AuditError(.ioError(errno: errno, operation: "pread"), path: path, byteOffset: offset + UInt64(done))
            }
            // The file shrank under us: report it as an I/O error rather than read garbage.
            guard result > 0 else {
                throw AuditError(.ioError(errno: EIO, operation: "pread (file shrank while being read)"), path: path, byteOffset: offset + UInt64(done))
            }
            done += result
        }
        return buffer
    }
}

/// Turns command-line paths into ledger sources: a file stands for itself, a directory for every
/// `*.ledger` file directly inside it (sorted by name). Duplicates are dropped.
public enum LedgerPaths {
    public static let fileExtension = ".ledger"

    public static func expand(_ paths: [String]) throws(AuditError) -> [String] {
        guard !paths.isEmpty else { throw AuditError(.noPaths, path: "") }
        var out = [String]()
        var seen = Set<String>()
        for path in paths {
            for file in try expandOne(path) where seen.insert(file).inserted {
                out.append(file)
            }
        }
        return out
    }

    static func expandOne(_ path: String) throws(AuditError) -> [String] {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let number = errno
            throw AuditError(number == ENOENT ? .notFound : .ioError(errno: number, operation: "stat"), path: path)
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return [path]
        case S_IFDIR: return try ledgerFiles(in: path)
        default: throw AuditError(.notARegularFile, path: path)
        }
    }

    static func ledgerFiles(in directory: String) throws(AuditError) -> [String] {
        guard let handle = opendir(directory) else {
            throw AuditError(.ioError(errno: errno, operation: "opendir"), path: directory)
        }
        defer { closedir(handle) }
        var names = [String]()
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard name.hasSuffix(fileExtension), name.count > fileExtension.count else { continue }
            names.append(name)
        }
        guard !names.isEmpty else { throw AuditError(.noLedgerFiles, path: directory) }
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        return names.sorted().map { prefix + $0 }
    }
}
