#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Errors reading or writing a secret key file. Compared by `code`; `path` says which file.
public struct KeyFileError: Error, Equatable, CustomStringConvertible {
    public enum Code: Equatable, Sendable {
        case notFound
        case insecurePermissions(mode: UInt32)
        case malformed(reason: String)
        case ioError(errno: Int32)
        case alreadyExists
    }
    public let code: Code
    public let path: String

    public var description: String {
        switch code {
        case .notFound:
            return "key file \(path): not found"
        case .insecurePermissions(let mode):
            return "key file \(path): permissions \(String(mode, radix: 8)) let other users read it; run `chmod 600 \(path)`"
        case .malformed(let reason):
            return "key file \(path): malformed: \(reason)"
        case .ioError(let number):
            return "key file \(path): I/O error: \(String(cString: strerror(number)))"
        case .alreadyExists:
            return "key file \(path): already exists"
        }
    }
}

/// Secret key files: text, mode 0600, refused when group or others can read or write them.
///
///     stele-ed25519-secret-key v1
///     seed <64 hex chars>
///     public <64 hex chars>
public enum KeyFile {
    static let header = "stele-ed25519-secret-key v1"
    static let fileSizeMax = 4096

    public static func write(_ keyPair: KeyPair, to path: String, overwrite: Bool = false) throws(KeyFileError) {
        let text = "\(header)\nseed \(Hex.encode(keyPair.seed))\npublic \(keyPair.publicKey.hex)\n"
        var flags = O_WRONLY | O_CREAT | O_CLOEXEC
        flags |= overwrite ? O_TRUNC : O_EXCL
        let fd = open(path, flags, 0o600)
        guard fd >= 0 else {
            throw KeyFileError(code: errno == EEXIST ? .alreadyExists : .ioError(errno: errno), path: path)
        }
        defer { close(fd) }
        // O_CREAT's mode is filtered by umask and ignored for an existing file: set it explicitly.
        guard fchmod(fd, 0o600) == 0 else { throw KeyFileError(code: .ioError(errno: errno), path: path) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw KeyFileError(code: .ioError(errno: errno), path: path) }
        guard fsync(fd) == 0 else { throw KeyFileError(code: .ioError(errno: errno), path: path) }
    }

    public static func read(from path: String) throws(KeyFileError) -> KeyPair {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw KeyFileError(code: errno == ENOENT ? .notFound : .ioError(errno: errno), path: path)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw KeyFileError(code: .ioError(errno: errno), path: path) }
        let mode = UInt32(info.st_mode) & 0o777
        guard mode & 0o077 == 0 else { throw KeyFileError(code: .insecurePermissions(mode: mode), path: path) }
        guard Int(info.st_size) <= fileSizeMax else {
            throw KeyFileError(code: .malformed(reason: "larger than \(fileSizeMax) bytes"), path: path)
        }
        var buffer = [UInt8](repeating: 0, count: fileSizeMax)
        let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard count >= 0 else { throw KeyFileError(code: .ioError(errno: errno), path: path) }
        let text = String(decoding: buffer.prefix(count), as: UTF8.self)
        return try parse(text, path: path)
    }

    static func parse(_ text: String, path: String) throws(KeyFileError) -> KeyPair {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        guard lines.first == header else {
            throw KeyFileError(code: .malformed(reason: "first line is not '\(header)'"), path: path)
        }
        var seedHex: String?
        var publicHex: String?
        for line in lines.dropFirst() {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                throw KeyFileError(code: .malformed(reason: "line '\(line.prefix(20))' is not 'name value'"), path: path)
            }
            switch parts[0] {
            case "seed": seedHex = parts[1]
            case "public": publicHex = parts[1]
            default: throw KeyFileError(code: .malformed(reason: "unknown field '\(parts[0].prefix(20))'"), path: path)
            }
        }
        guard let seedHex, let seed = Hex.decode(seedHex), seed.count == KeyPair.seedByteCount,
              let keyPair = KeyPair(seed: seed) else {
            throw KeyFileError(code: .malformed(reason: "missing or invalid 32-byte hex seed"), path: path)
        }
        if let publicHex {
            guard keyPair.publicKey.hex == publicHex.lowercased() else {
                throw KeyFileError(code: .malformed(reason: "public key does not match the seed"), path: path)
            }
        }
        return keyPair
    }
}
