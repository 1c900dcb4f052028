import SteleCore

/// Where record bytes come from: the store's verified region of one file.
protocol RecordByteSource {
    var storage: any LedgerStorage { get }
    /// Bytes at or beyond this offset are not read.
    var endOffset: UInt64 { get }
    /// Exactly `count` bytes at `offset`; the caller has checked `offset + count <= endOffset`.
    mutating func bytes(at offset: UInt64, count: Int) throws(StorageError) -> [UInt8]
}

/// Reads straight from storage: one record at a time (random access).
struct DirectSource: RecordByteSource {
    let storage: any LedgerStorage
    let endOffset: UInt64

    mutating func bytes(at offset: UInt64, count: Int) throws(StorageError) -> [UInt8] {
        try storage.read(count: count, at: offset)
    }
}

/// Reads through a window of at most `windowByteCount` bytes (sequential scans), so streaming a
/// ledger of any size needs memory for one window plus one record.
struct WindowedSource: RecordByteSource {
    static let windowByteCount = 1 << 20

    let storage: any LedgerStorage
    let endOffset: UInt64
    private var window: [UInt8] = []
    private var windowStart: UInt64 = 0

    init(storage: any LedgerStorage, endOffset: UInt64) {
        self.storage = storage
        self.endOffset = endOffset
    }

    mutating func bytes(at offset: UInt64, count: Int) throws(StorageError) -> [UInt8] {
        precondition(offset + UInt64(count) <= endOffset, "read past the end of the scanned region")
        if offset >= windowStart, offset + UInt64(count) <= windowStart + UInt64(window.count) {
            let start = Int(offset - windowStart)
            return Array(window[start..<start + count])
        }
        if count >= WindowedSource.windowByteCount / 2 {
            return try storage.read(count: count, at: offset)
        }
        let windowCount = Int(min(UInt64(WindowedSource.windowByteCount), endOffset - offset))
        window = try storage.read(count: windowCount, at: offset)
        windowStart = offset
        return Array(window[0..<count])
    }
}

/// What was found where a record should start.
enum Frame {
    /// A record whose checksum matches; `byteCount` includes the length prefix and checksum.
    case valid(typeAndBody: [UInt8], byteCount: UInt64)
    case invalid(FrameProblem)
}

enum FrameProblem: Equatable {
    /// Fewer than 4 bytes remain.
    case partialLength(availableByteCount: UInt64)
    case zeroLength
    case tooLarge(length: UInt32)
    /// The record would end after `endOffset`.
    case runsPastEnd(length: UInt32, availableByteCount: UInt64)
    case checksumMismatch(length: UInt32)

    /// For a problem found outside recovery, where it always means corruption.
    func error(path: String, offset: UInt64, height: SequenceNumber?, operation: LedgerError.Operation) -> LedgerError {
        let (code, detail): (LedgerError.Code, String)
        switch self {
        case .partialLength(let available):
            (code, detail) = (.invalidRecordLength, "only \(available) bytes remain, fewer than a length field")
        case .zeroLength:
            (code, detail) = (.invalidRecordLength, "length field is 0")
        case .tooLarge(let length):
            (code, detail) = (.recordTooLarge, "length field says \(length) bytes, the limit is \(LedgerFormat.recordBytesMax)")
        case .runsPastEnd(let length, let available):
            (code, detail) = (.invalidRecordLength, "length field says \(length) bytes but only \(available) bytes remain for the record")
        case .checksumMismatch(let length):
            (code, detail) = (.checksumMismatch, "record of \(length) bytes")
        }
        return LedgerError(code, path: path, offset: offset, height: height, operation: operation, detail: detail)
    }
}

enum RecordFrames {
    /// Reads and checks the framing of the record at `offset`: the length against the limit and
    /// the bytes left *before* anything is allocated for the body, then the checksum.
    static func read<Source: RecordByteSource>(at offset: UInt64, from source: inout Source) throws(StorageError) -> Frame {
        let available = source.endOffset - offset
        guard available >= UInt64(LedgerFormat.lengthByteCount) else {
            return .invalid(.partialLength(availableByteCount: available))
        }
        let lengthBytes = try source.bytes(at: offset, count: LedgerFormat.lengthByteCount)
        let length = lengthBytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard length > 0 else { return .invalid(.zeroLength) }
        guard length <= UInt32(LedgerFormat.recordBytesMax) else { return .invalid(.tooLarge(length: length)) }
        let byteCount = UInt64(length) + UInt64(LedgerFormat.recordOverheadByteCount)
        guard byteCount <= available else {
            return .invalid(.runsPastEnd(length: length, availableByteCount: available))
        }
        let typeAndBody = try source.bytes(at: offset + 4, count: Int(length))
        let checksum = try source.bytes(at: offset + 4 + UInt64(length), count: LedgerFormat.checksumByteCount)
        guard checksum == LedgerFormat.checksum(typeAndBody) else {
            return .invalid(.checksumMismatch(length: length))
        }
        return .valid(typeAndBody: typeAndBody, byteCount: byteCount)
    }

    /// Decodes a record whose checksum matched; a failure is corruption (the bytes were written
    /// whole, so they are not a torn write).
    static func decode(_ typeAndBody: [UInt8], path: String, offset: UInt64, height: SequenceNumber?, operation: LedgerError.Operation) throws(LedgerError) -> LedgerRecord {
        do {
            return try LedgerRecord.decode(typeAndBody: typeAndBody)
        } catch {
            let fieldOffset = offset + UInt64(LedgerFormat.lengthByteCount) + UInt64(error.offset)
            throw LedgerError(.undecodableRecord, path: path, offset: offset, height: height, operation: operation,
                              detail: "field \(error.field) at byte \(fieldOffset): \(error.code)")
        }
    }
}
