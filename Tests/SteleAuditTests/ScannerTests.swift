import Foundation
import SteleCore
import SteleTestSupport
import SteleLedger
import Testing
@testable import SteleAudit

/// Audits in-memory ledgers against the fixture cluster.
func audit(_ files: [(String, [UInt8])], config: ClusterConfig = TestKeys.config, options: AuditOptions = AuditOptions()) throws -> AuditReport {
    try Auditor(config: config, options: options).audit(sources: files.map { LedgerSource.memory(name: $0.0, bytes: $0.1) })
}

func audit(_ name: String, _ records: [LedgerRecord], config: ClusterConfig = TestKeys.config) throws -> AuditReport {
    try audit([(name, LedgerBuilder.fileBytes(records))], config: config)
}

func keys(_ report: AuditReport) -> Set<FindingKey> { Set(report.findings.map(FindingKey.init)) }

func scanAll(_ bytes: [UInt8], windowByteCount: Int = LedgerScanner.windowByteCount) throws -> [ScanItem] {
    var scanner = try LedgerScanner(source: .memory(name: "scan", bytes: bytes), windowByteCount: windowByteCount)
    var items = [ScanItem]()
    while let item = try scanner.next() { items.append(item) }
    return items
}

extension ScanItem {
    var problem: ScanProblem? {
        if case .problem(let problem) = self { return problem }
        return nil
    }
    var record: ScannedRecord? {
        if case .record(let record) = self { return record }
        return nil
    }
}

@Suite("The scanner: framing, limits and torn tails, with bounded reads")
struct ScannerTests {
    static let valid = LedgerBuilder.fileBytes(FixtureSet.validRecords(replica: 0))
    static let validRecords = FixtureSet.validRecords(replica: 0)

    @Test("a valid file yields every record in order, with offsets that add up")
    func validFileYieldsEveryRecord() throws {
        let items = try scanAll(Self.valid)
        #expect(items.compactMap(\.record).map(\.record) == Self.validRecords)
        var offset = UInt64(LedgerFormat.headerByteCount)
        for item in items {
            let scanned = try #require(item.record)
            #expect(scanned.byteOffset == offset)
            offset += UInt64(scanned.byteCount)
        }
        #expect(offset == UInt64(Self.valid.count))
    }

    @Test("the read window size does not change what is read, down to a window smaller than a record", arguments: [16, 100, 700, 4096])
    func windowSizeIsInvisible(windowByteCount: Int) throws {
        let items = try scanAll(Self.valid, windowByteCount: windowByteCount)
        #expect(items.compactMap(\.record).map(\.record) == Self.validRecords)
        #expect(items.allSatisfy { $0.problem == nil })
    }

    @Test("a file on disk reads like the same bytes in memory")
    func fileSourceMatchesMemory() throws {
        let directory = TemporaryDirectory(prefix: "stele-audit-scan")
        let path = directory.file("replica-0.ledger")
        try Data(Self.valid).write(to: URL(fileURLWithPath: path))
        var scanner = try LedgerScanner(source: .file(path: path), windowByteCount: 512)
        var records = [LedgerRecord]()
        while let item = try scanner.next() { records.append(try #require(item.record).record) }
        #expect(records == Self.validRecords)
    }

    @Test("header problems", arguments: [
        ([UInt8](), FindingCode.headerTruncated),
        (Array(LedgerFormat.header().prefix(10)), .headerTruncated),
        (Array("NOTALEDGER000000".utf8), .headerBadMagic),
        (Array(LedgerFormat.magic) + [0, 2, 0, 0, 0, 0, 0, 0], .headerUnsupportedVersion),
    ])
    func headerProblems(bytes: [UInt8], code: FindingCode) throws {
        let items = try scanAll(bytes + [1, 2, 3])
        #expect(items.count == 1)
        #expect(items.first?.problem?.code == code)
        #expect(items.first?.problem?.isTerminal == true)
    }

    @Test("nonzero reserved header bytes are reported and reading goes on")
    func reservedBytes() throws {
        var bytes = Self.valid
        bytes[12] = 7
        let items = try scanAll(bytes)
        #expect(items.first?.problem?.code == .headerReservedNonzero)
        #expect(items.first?.problem?.byteOffset == 10)
        #expect(items.dropFirst().compactMap(\.record).count == Self.validRecords.count)
    }

    @Test("an impossible length stops the scan without allocating it", arguments: [UInt32.max, UInt32(LedgerFormat.recordBytesMax + 1)])
    func impossibleLength(length: UInt32) throws {
        let bytes = LedgerFormat.header() + withUnsafeBytes(of: length.bigEndian, Array.init) + [UInt8](repeating: 0xAB, count: 64)
        let items = try scanAll(bytes)
        #expect(items.map(\.problem?.code) == [.recordLengthInvalid])
        #expect(items.first?.problem?.byteOffset == 16)
    }

    @Test("a length that runs past the end of the file is a torn tail")
    func lengthPastEnd() throws {
        let genesis = LedgerRecord.genesis(TestKeys.config.genesis).framed()
        let bytes = LedgerFormat.header() + genesis + [0, 0, 1, 0] + [UInt8](repeating: 2, count: 100)
        let items = try scanAll(bytes)
        #expect(items.compactMap(\.problem).map(\.code) == [.tornTail])
        #expect(items.last?.problem?.byteOffset == UInt64(16 + genesis.count))
    }

    @Test("fewer than four bytes after the last record, or a zero-filled tail, is a torn tail", arguments: [
        [UInt8]([0, 0, 1]), [UInt8](repeating: 0, count: 300),
    ])
    func shortOrZeroTail(tail: [UInt8]) throws {
        let items = try scanAll(Self.valid + tail)
        #expect(items.compactMap(\.problem).map(\.code) == [.tornTail])
        #expect(items.compactMap(\.record).count == Self.validRecords.count)
    }

    @Test("a checksum mismatch in the middle is reported and the records after it are still read")
    func checksumMismatchMidFile() throws {
        var bytes = Self.valid
        let offset = try #require(try scanAll(bytes)[5].record).byteOffset
        bytes[Int(offset) + 20] ^= 0xff
        let items = try scanAll(bytes)
        #expect(items.compactMap(\.problem) == [ScanProblem(code: .recordChecksumMismatch, byteOffset: offset, detail: "the record's checksum does not match its bytes", isTerminal: false)])
        #expect(items.compactMap(\.record).count == Self.validRecords.count - 1)
    }

    @Test("a checksum mismatch in the last record is a torn tail")
    func checksumMismatchAtEnd() throws {
        var bytes = Self.valid
        bytes[bytes.count - 1] ^= 0x01
        #expect(try scanAll(bytes).compactMap(\.problem).map(\.code) == [.tornTail])
    }

    @Test("a record whose checksum matches but whose body does not decode is reported, and reading goes on")
    func undecodableRecord() throws {
        let junk: [UInt8] = [9, 1, 2, 3]
        var framed = ByteWriter()
        framed.write(UInt32(junk.count))
        framed.writeFixed(junk)
        framed.writeFixed(LedgerFormat.checksum(junk))
        let genesis = LedgerRecord.genesis(TestKeys.config.genesis).framed()
        let items = try scanAll(LedgerFormat.header() + genesis + framed.bytes + Self.validRecords[1].framed())
        #expect(items.compactMap(\.problem).map(\.code) == [.recordUndecodable])
        #expect(items.compactMap(\.record).count == 2)
    }

    @Test("record(at:) re-reads one record by its offset")
    func recordAtOffset() throws {
        let scanned = try #require(try scanAll(Self.valid)[3].record)
        let record = try LedgerScanner.record(at: scanned.byteOffset, in: .memory(name: "x", bytes: Self.valid))
        #expect(record == scanned.record)
        #expect(try LedgerScanner.record(at: scanned.byteOffset + 1, in: .memory(name: "x", bytes: Self.valid)) == nil)
        #expect(try LedgerScanner.record(at: UInt64(Self.valid.count + 10), in: .memory(name: "x", bytes: Self.valid)) == nil)
    }

    @Test("a directory stands for its *.ledger files, sorted; a missing path is an error")
    func pathExpansion() throws {
        let directory = TemporaryDirectory(prefix: "stele-audit-paths")
        for name in ["b.ledger", "a.ledger", "notes.txt", ".ledger"] {
            try Data().write(to: directory.fileURL(name))
        }
        let expanded = try LedgerPaths.expand([directory.path, directory.file("a.ledger")])
        #expect(expanded.map { URL(fileURLWithPath: $0).lastPathComponent } == ["a.ledger", "b.ledger"])
        #expect(throws: AuditError(.notFound, path: "/nonexistent/x.ledger")) {
            try LedgerPaths.expand(["/nonexistent/x.ledger"])
        }
        #expect(throws: AuditError(.noPaths, path: "")) { try LedgerPaths.expand([]) }
    }
}
