import SteleCore
import SteleCrypto
import SteleLedger

/// A record the scanner framed, checksummed and decoded.
public struct ScannedRecord: Sendable {
    public let record: LedgerRecord
    /// Offset of the record's length prefix in the file.
    public let byteOffset: UInt64
    /// Length prefix + type + body + checksum.
    public let byteCount: Int
}

/// Something wrong with the bytes themselves (framing, checksum, decoding).
public struct ScanProblem: Sendable, Equatable {
    public let code: FindingCode
    public let byteOffset: UInt64
    public let detail: String
    /// True when the scanner cannot go on past this point in the file.
    public let isTerminal: Bool
}

public enum ScanItem: Sendable {
    case record(ScannedRecord)
    case problem(ScanProblem)
}

/// A record as framed from the file, not yet checksummed or decoded. Framing is sequential;
/// `decoded` is pure, so the auditor decodes many frames in parallel.
enum Frame: Sendable {
    case record(byteOffset: UInt64, byteCount: Int, typeAndBody: [UInt8], checksum: [UInt8], endsFile: Bool)
    case problem(ScanProblem)

    func decoded(limits: CodecLimits) -> ScanItem {
        switch self {
        case .problem(let problem):
            return .problem(problem)
        case .record(let start, let byteCount, let typeAndBody, let checksum, let endsFile):
            guard LedgerFormat.checksum(typeAndBody) == checksum else {
                return .problem(Frame.checksumMismatch(at: start, endsFile: endsFile))
            }
            do {
                let record = try LedgerRecord.decode(typeAndBody: typeAndBody, limits: limits)
                return .record(ScannedRecord(record: record, byteOffset: start, byteCount: byteCount))
            } catch {
                return .problem(ScanProblem(
                    code: .recordUndecodable, byteOffset: start,
                    detail: "checksum matches but the record does not decode: \(error.field) at byte \(start + 4 + UInt64(error.offset)): \(error.code)",
                    isTerminal: false))
            }
        }
    }

    /// The last record's checksum failing is what a torn append leaves; elsewhere it is damage.
    static func checksumMismatch(at start: UInt64, endsFile: Bool) -> ScanProblem {
        endsFile
            ? ScanProblem(code: .tornTail, byteOffset: start, detail: "the last record's checksum does not match (a torn append)", isTerminal: true)
            : ScanProblem(code: .recordChecksumMismatch, byteOffset: start, detail: "the record's checksum does not match its bytes", isTerminal: false)
    }
}

/// Reads a ledger file front to back with bounded memory and trusts nothing in it: every length
/// is checked against the format's limit and against the bytes left before anything is
/// allocated; every problem becomes a `ScanProblem` with its byte offset, never a crash.
///
/// A record whose checksum fails or whose body cannot be decoded is reported and skipped (its
/// length prefix was plausible, so the next record is likely intact); a length prefix that is
/// impossible stops the scan, because nothing after it can be framed.
public struct LedgerScanner {
    enum State {
        case expectingHeader
        case readingRecords
        case finished
    }

    public static let windowByteCount = 1 << 20

    let reader: RandomAccessReader
    let limits: CodecLimits
    var state = State.expectingHeader
    var pending = [Frame]()
    /// A window of the file kept in memory so small records do not cost one read each.
    var window = [UInt8]()
    var windowStart: UInt64 = 0
    let windowByteCount: Int

    /// Offset of the next unread byte.
    public private(set) var byteOffset: UInt64 = 0
    public var fileByteCount: UInt64 { reader.byteCount }

    public init(source: LedgerSource, limits: CodecLimits = .standard, windowByteCount: Int = LedgerScanner.windowByteCount) throws(AuditError) {
        self.reader = try source.open()
        self.limits = limits
        self.windowByteCount = max(windowByteCount, LedgerFormat.headerByteCount)
    }

    /// The next record or problem; nil once the file is exhausted or a terminal problem was
    /// reported. Throws only when the operating system fails a read.
    public mutating func next() throws(AuditError) -> ScanItem? {
        try nextFrame()?.decoded(limits: limits)
    }

    /// The next framed record or framing problem (checksum and decoding are left to the caller).
    mutating func nextFrame() throws(AuditError) -> Frame? {
        while pending.isEmpty {
            switch state {
            case .expectingHeader: try scanHeader()
            case .readingRecords: try scanRecord()
            case .finished: return nil
            }
        }
        return pending.removeFirst()
    }

    /// Reads one record at `offset` without scanning what precedes it (forensics re-reads the
    /// blocks it compares). Nil if the bytes there are not an intact record.
    public static func record(at offset: UInt64, in source: LedgerSource, limits: CodecLimits = .standard) throws(AuditError) -> LedgerRecord? {
        var scanner = try LedgerScanner(source: source, limits: limits)
        scanner.state = .readingRecords
        scanner.byteOffset = offset
        guard offset <= scanner.fileByteCount, case .record(let scanned)? = try scanner.next() else { return nil }
        return scanned.record
    }

    // MARK: - Header

    mutating func scanHeader() throws(AuditError) {
        state = .readingRecords
        let headerByteCount = LedgerFormat.headerByteCount
        guard reader.byteCount >= UInt64(headerByteCount) else {
            finish(.headerTruncated, at: 0, "the file has \(reader.byteCount) bytes, fewer than the \(headerByteCount)-byte header")
            return
        }
        let header = try bytes(at: 0, count: headerByteCount)
        byteOffset = UInt64(headerByteCount)
        guard Array(header[0..<8]) == LedgerFormat.magic else {
            finish(.headerBadMagic, at: 0, "the file does not start with \"STELELDG\" (found \(Hex.encode(header[0..<8])))")
            return
        }
        let version = UInt16(header[8]) << 8 | UInt16(header[9])
        guard version == LedgerFormat.version else {
            finish(.headerUnsupportedVersion, at: 8, "ledger format version \(version); this auditor reads version \(LedgerFormat.version)")
            return
        }
        if header[10..<16].contains(where: { $0 != 0 }) {
            report(.headerReservedNonzero, at: 10, "reserved header bytes are \(Hex.encode(header[10..<16])), must be zero", terminal: false)
        }
    }

    // MARK: - Records

    mutating func scanRecord() throws(AuditError) {
        let start = byteOffset
        let left = reader.byteCount - start
        guard left > 0 else {
            state = .finished
            return
        }
        guard left >= 4 else {
            finish(.tornTail, at: start, "\(left) bytes after the last record, too few for a length prefix")
            return
        }
        let prefix = try bytes(at: start, count: 4)
        let length = Int(prefix[0]) << 24 | Int(prefix[1]) << 16 | Int(prefix[2]) << 8 | Int(prefix[3])
        guard length >= 1, length <= LedgerFormat.recordBytesMax else {
            try reportImpossibleLength(length, at: start, left: left)
            return
        }
        let recordByteCount = 4 + length + LedgerFormat.checksumByteCount
        guard UInt64(recordByteCount) <= left else {
            finish(.tornTail, at: start, "the record declares \(length) bytes of type and body but only \(left - 4) bytes remain (a torn or partial append)")
            return
        }
        // Allocation is bounded: length <= recordBytesMax and the bytes exist in the file.
        let framed = try bytes(at: start + 4, count: length + LedgerFormat.checksumByteCount)
        byteOffset = start + UInt64(recordByteCount)
        pending.append(.record(
            byteOffset: start, byteCount: recordByteCount, typeAndBody: Array(framed[0..<length]),
            checksum: Array(framed[length...]), endsFile: byteOffset == reader.byteCount))
    }

    mutating func reportImpossibleLength(_ length: Int, at start: UInt64, left: UInt64) throws(AuditError) {
        // A zero-filled tail is what a crash leaves when the file grew before its data landed.
        if length == 0, left <= UInt64(LedgerFormat.recordBytesMax), try bytes(at: start, count: Int(left)).allSatisfy({ $0 == 0 }) {
            finish(.tornTail, at: start, "the last \(left) bytes are zeros (a torn append)")
            return
        }
        let reason = length == 0 ? "zero" : "\(length), above the format's limit of \(LedgerFormat.recordBytesMax)"
        finish(.recordLengthInvalid, at: start, "record length \(reason); nothing after this offset can be framed")
    }

    mutating func report(_ code: FindingCode, at offset: UInt64, _ detail: String, terminal: Bool) {
        pending.append(.problem(ScanProblem(code: code, byteOffset: offset, detail: detail, isTerminal: terminal)))
        if terminal { state = .finished }
    }

    mutating func finish(_ code: FindingCode, at offset: UInt64, _ detail: String) {
        report(code, at: offset, detail, terminal: true)
    }

    // MARK: - Windowed reads

    /// `count` bytes at `offset` (the caller has checked they exist), served from the window
    /// when they fit in it; a record larger than the window is read on its own.
    mutating func bytes(at offset: UInt64, count: Int) throws(AuditError) -> [UInt8] {
        let windowEnd = windowStart + UInt64(window.count)
        if offset >= windowStart, offset + UInt64(count) <= windowEnd {
            let from = Int(offset - windowStart)
            return Array(window[from..<from + count])
        }
        guard count <= windowByteCount else { return try reader.read(at: offset, count: count) }
        let refill = Int(min(UInt64(windowByteCount), reader.byteCount - offset))
        window = try reader.read(at: offset, count: refill)
        windowStart = offset
        return Array(window[0..<count])
    }
}
