#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the audit could not run at all (as opposed to findings about what it read). `stele-check`
/// maps these to exit code 2.
public struct AuditError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: Equatable, Sendable {
        /// The path does not exist.
        case notFound
        /// The path exists but is neither a regular file nor a directory.
        case notARegularFile
        /// A directory named on the command line holds no `*.ledger` file.
        case noLedgerFiles
        /// No ledger path was given.
        case noPaths
        /// open(2), pread(2), fstat(2) or readdir failed.
        case ioError(errno: Int32, operation: String)
    }

    public let code: Code
    public let path: String
    /// Where in the file the failing read started, when it was a read.
    public let byteOffset: UInt64?

    public init(_ code: Code, path: String, byteOffset: UInt64? = nil) {
        self.code = code
        self.path = path
        self.byteOffset = byteOffset
    }

    public var description: String {
        switch code {
        case .notFound:
            return "\(path): no such file or directory"
        case .notARegularFile:
            return "\(path): not a regular file or directory"
        case .noLedgerFiles:
            return "\(path): directory holds no *.ledger file"
        case .noPaths:
            return "no ledger file or directory given"
        case .ioError(let number, let operation):
            let at = byteOffset.map { " at byte \($0)" } ?? ""
            return "\(path): \(operation) failed\(at): \(String(cString: strerror(number)))"
        }
    }
}
