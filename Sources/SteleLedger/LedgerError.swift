import SteleCore

/// Why a ledger could not be created, opened, appended to or read.
///
/// Compared by `code` only; `path`, `offset` and `height` say where, `detail` says what was
/// found. The description is written for an operator:
///
///     ledger /x/replica-2.ledger: checksum mismatch at byte 4096 (height 17); refusing to open
public struct LedgerError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable, CaseIterable {
        // The file itself.
        case notFound = "no such file"
        case alreadyExists = "file already exists"
        case locked = "locked by another writer"
        case io = "I/O error"
        case notALedger = "not a Stele ledger (bad magic or shorter than the header)"
        case unsupportedVersion = "unsupported ledger format version"
        case badHeader = "malformed file header"
        // Records.
        case invalidRecordLength = "invalid record length"
        case recordTooLarge = "record larger than the format allows"
        case limitExceeded = "a count or length above the codec's limit"
        case checksumMismatch = "checksum mismatch"
        case undecodableRecord = "undecodable record"
        // The genesis record.
        case missingGenesis = "first record is not a genesis record"
        case invalidGenesis = "invalid genesis"
        case genesisMismatch = "genesis does not match the expected cluster"
        case unexpectedGenesis = "a second genesis record"
        // The chain.
        case heightNotConsecutive = "block height is not the next height"
        case prevHashMismatch = "block does not chain to the previous block hash"
        case checkpointAboveHead = "checkpoint certificate above the head of the ledger"
        case checkpointDigestMismatch = "checkpoint certificate does not name the block hash at its sequence"
        case checkpointOutOfOrder = "checkpoint certificate below an earlier one"
        // Using an open store.
        case heightOutOfRange = "height out of range"
        case rangeTooLarge = "range larger than one read allows"
        case changedOnDisk = "record differs from what was verified when the ledger was opened"
        case readOnly = "ledger opened read-only"
        case failed = "an earlier write or sync failed"
    }

    /// What the caller was doing; it decides the consequence the description states.
    public enum Operation: String, Sendable, Equatable {
        case create, open, append, sync, read
    }

    public let code: Code
    public let path: String
    /// Byte offset in the file of the record (or header field) concerned.
    public let offset: UInt64
    /// The height of the block at `offset` — for a record that could not be read, the height the
    /// next block would have had — or a checkpoint certificate's sequence.
    public let height: SequenceNumber?
    public let operation: Operation
    /// What exactly was found, in words.
    public let detail: String

    public init(_ code: Code, path: String, offset: UInt64, height: SequenceNumber? = nil, operation: Operation, detail: String = "") {
        self.code = code
        self.path = path
        self.offset = offset
        self.height = height
        self.operation = operation
        self.detail = detail
    }

    public static func == (lhs: LedgerError, rhs: LedgerError) -> Bool { lhs.code == rhs.code }

    public var description: String {
        var text = "ledger \(path): \(code.rawValue) at byte \(offset)"
        if let height { text += " (height \(height.value))" }
        if !detail.isEmpty { text += ": \(detail)" }
        return text + consequence
    }

    private var consequence: String {
        switch operation {
        case .open: "; refusing to open"
        case .create: "; nothing was created"
        case .append: code == .io || code == .failed ? "; the ledger must be reopened" : "; nothing was appended"
        case .sync: "; the ledger must be reopened"
        case .read: ""
        }
    }
}

/// A rule of the chain that a record breaks, before it is placed at a path and offset.
struct ChainViolation: Error {
    let code: LedgerError.Code
    let height: SequenceNumber?
    let detail: String

    func at(_ path: String, offset: UInt64, operation: LedgerError.Operation) -> LedgerError {
        LedgerError(code, path: path, offset: offset, height: height, operation: operation, detail: detail)
    }
}
