import Foundation
import SteleCore
import SteleCrypto
import SteleTestSupport
import Testing
@testable import SteleLedger

/// A ledger file with `count` blocks (and a checkpoint certificate after block 2), and where each
/// block record starts.
struct SampleLedger {
    let cluster: TestCluster
    let blocks: [CertifiedBlock]
    let bytes: [UInt8]
    let blockOffsets: [Int]

    init(cluster: TestCluster = TestCluster(), count: Int = 4) throws {
        self.cluster = cluster
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        blocks = cluster.chain(count: count, requestsPerBlock: 2)
        for block in blocks {
            try store.append(block)
            if block.height == 2 { try store.append(cluster.checkpoint(for: block)) }
        }
        try store.sync()
        bytes = memory.bytes
        blockOffsets = blocks.map { Int(store.offset(ofBlockAt: $0.height)!) }
    }

    func offset(of height: Int) -> Int { blockOffsets[height - 1] }
    var lastRecordOffset: Int { blockOffsets.last! }
}

@Suite("Recovery: a torn last write is dropped and reported")
struct TornTailTests {
    @Test("Cut at every byte inside the last record: opens at the previous record, reports and truncates the tail")
    func cutAtEveryByteOfTheLastRecord() throws {
        let sample = try SampleLedger()
        let directory = TemporaryDirectory(prefix: "stele-ledger")
        let path = directory.file("replica-1.ledger")
        let last = sample.lastRecordOffset
        for cut in (last + 1)..<sample.bytes.count {
            writeFile(path, Array(sample.bytes.prefix(cut)))
            let store = try LedgerStore.open(path: path, expectedGenesis: sample.cluster.genesis)
            let torn = try #require(store.openReport.tornTail, "cut at byte \(cut)")
            #expect(torn.offset == UInt64(last))
            #expect(torn.droppedByteCount == UInt64(cut - last))
            #expect(torn.lastHeight == 3)
            #expect(torn.truncated)
            #expect(torn.reason == (cut - last < 4 ? .partialLengthField : .runsPastEndOfFile))
            #expect(store.head == ChainHead(height: 3, hash: sample.blocks[2].hash))
            #expect(readFile(path) == Array(sample.bytes.prefix(last)), "the file is truncated to the last whole record")
            #expect(try store.block(at: 1) == sample.blocks[0])
            #expect(try store.block(at: 3) == sample.blocks[2])
            #expect(try store.checkpoint(atOrBelow: 3)?.sequence == 2)
        }
    }

    @Test("Cut exactly at a record boundary: nothing is torn")
    func cutAtBoundary() throws {
        let sample = try SampleLedger()
        let memory = MemoryStorage(bytes: Array(sample.bytes.prefix(sample.lastRecordOffset)))
        let store = try LedgerStore.open(storage: memory, expectedGenesis: sample.cluster.genesis)
        #expect(store.openReport.tornTail == nil)
        #expect(store.head.height == 3)
    }

    @Test("The last record's checksum fails and nothing follows: torn, for a flip in any byte of its body or checksum")
    func lastRecordChecksumFails() throws {
        let sample = try SampleLedger()
        let last = sample.lastRecordOffset
        for position in stride(from: last + 4, to: sample.bytes.count, by: 5) {
            var bytes = sample.bytes
            bytes[position] ^= 0x01
            let memory = MemoryStorage(bytes: bytes)
            let store = try LedgerStore.open(storage: memory, expectedGenesis: sample.cluster.genesis)
            #expect(store.openReport.tornTail?.reason == .checksumMismatch)
            #expect(store.openReport.tornTail?.offset == UInt64(last))
            #expect(store.head.height == 3)
            #expect(memory.bytes.count == last)
        }
    }

    @Test("Zero bytes after the last record (a file extended by a crash) are a torn tail")
    func zeroFilledTail() throws {
        let sample = try SampleLedger()
        let memory = MemoryStorage(bytes: sample.bytes + [UInt8](repeating: 0, count: 4096))
        let store = try LedgerStore.open(storage: memory, expectedGenesis: sample.cluster.genesis)
        #expect(store.openReport.tornTail?.reason == .zeroFilled)
        #expect(store.openReport.tornTail?.droppedByteCount == 4096)
        #expect(store.head.height == 4)
        #expect(memory.bytes == sample.bytes)
    }

    @Test("A read-only open reports the torn tail but leaves the file alone")
    func readOnlyDoesNotTruncate() throws {
        let sample = try SampleLedger()
        let directory = TemporaryDirectory(prefix: "stele-ledger")
        let path = directory.file("l")
        let torn = Array(sample.bytes.dropLast(3))
        writeFile(path, torn)
        let store = try LedgerStore.open(path: path, expectedGenesis: sample.cluster.genesis, access: .readOnly)
        #expect(store.openReport.tornTail?.truncated == false)
        #expect(store.head.height == 3)
        #expect(readFile(path) == torn)
        var cursor = store.entries()
        var count = 0
        while try cursor.next() != nil { count += 1 }
        #expect(count == 1 + 3 + 1, "genesis, three blocks and the checkpoint; the torn record is not served")
    }

    @Test("Appending after recovery continues the chain from the last whole block")
    func appendAfterRecovery() throws {
        let sample = try SampleLedger()
        let directory = TemporaryDirectory(prefix: "stele-ledger")
        let path = directory.file("l")
        writeFile(path, Array(sample.bytes.dropLast(10)))
        do {
            let store = try LedgerStore.open(path: path, expectedGenesis: sample.cluster.genesis)
            #expect(store.head.height == 3)
            let replacement = sample.cluster.chain(count: 2, after: store.head, firstTimestamp: 500)
            try store.appendDurably(replacement.map { .block($0) })
            #expect(store.head == ChainHead(height: 5, hash: replacement[1].hash))
        }
        let reopened = try LedgerStore.open(path: path, expectedGenesis: sample.cluster.genesis)
        #expect(reopened.openReport.tornTail == nil)
        #expect(reopened.head.height == 5)
        #expect(try reopened.block(at: 4).prevHash == sample.blocks[2].hash)
    }

    @Test("The report tells an operator what happened")
    func reportDescription() throws {
        let sample = try SampleLedger()
        let memory = MemoryStorage(path: "/var/lib/stele/replica-1.ledger", bytes: Array(sample.bytes.dropLast(1)))
        let store = try LedgerStore.open(storage: memory)
        let text = store.openReport.tornTail?.description
        #expect(text == "ledger /var/lib/stele/replica-1.ledger: torn tail at byte \(sample.lastRecordOffset) after height 3: the last record's length runs past the end of the file; \(sample.bytes.count - 1 - sample.lastRecordOffset) bytes truncated")
    }
}

@Suite("Recovery: any other damage refuses to open, naming file, offset and height")
struct CorruptionTests {
    func openError(_ bytes: [UInt8], expected: Genesis? = nil) -> LedgerError? {
        let memory = MemoryStorage(path: "/x/replica-2.ledger", bytes: bytes)
        return ledgerError { () throws(LedgerError) in try LedgerStore.open(storage: memory, expectedGenesis: expected) }
    }

    @Test("A checksum mismatch in the middle (a valid record follows) is corruption, not a torn tail")
    func middleChecksumMismatch() throws {
        let sample = try SampleLedger()
        for height in 1...3 {
            var bytes = sample.bytes
            bytes[sample.offset(of: height) + 30] ^= 0x80
            let thrown = openError(bytes)
            let error = try #require(thrown, "the ledger opened")
            #expect(error.code == .checksumMismatch)
            #expect(error.offset == UInt64(sample.offset(of: height)))
            #expect(error.height == SequenceNumber(UInt64(height)))
            #expect(error.operation == .open)
        }
    }

    @Test("The error names file, offset and height in words an operator understands")
    func errorDescription() throws {
        let sample = try SampleLedger()
        var bytes = sample.bytes
        let offset = sample.offset(of: 2)
        bytes[offset + 5] ^= 0x01
        let thrown = openError(bytes)
        let error = try #require(thrown, "the ledger opened")
        #expect(error.description.hasPrefix("ledger /x/replica-2.ledger: checksum mismatch at byte \(offset) (height 2): "))
        #expect(error.description.hasSuffix("; refusing to open"))
    }

    @Test("A damaged checksum field in the middle is corruption too")
    func middleChecksumFieldDamaged() throws {
        let sample = try SampleLedger()
        var bytes = sample.bytes
        bytes[sample.offset(of: 2) - 1] ^= 0xff
        let thrown = openError(bytes)
        let error = try #require(thrown, "the ledger opened")
        #expect(error.code == .checksumMismatch)
        #expect(error.offset == UInt64(sample.offset(of: 1)))
        #expect(error.height == 1)
    }

    @Test("An oversize length field is refused without allocating for it")
    func oversizeLength() throws {
        let sample = try SampleLedger()
        for length: UInt32 in [UInt32(LedgerFormat.recordBytesMax) + 1, 0xffff_fff0] {
            var bytes = sample.bytes
            let offset = sample.offset(of: 2)
            bytes.replaceSubrange(offset..<offset + 4, with: withUnsafeBytes(of: length.bigEndian, Array.init))
            let counting = ReadCountingStorage(MemoryStorage(bytes: bytes))
            let error = ledgerError { () throws(LedgerError) in try LedgerStore.open(storage: counting) }
            #expect(error?.code == .recordTooLarge)
            #expect(error?.offset == UInt64(offset))
            #expect(error?.height == 2)
            #expect(counting.largestReadByteCount <= bytes.count)
        }
    }

    @Test("A zero length field followed by data is corruption")
    func zeroLengthInTheMiddle() throws {
        let sample = try SampleLedger()
        var bytes = sample.bytes
        let offset = sample.offset(of: 3)
        bytes.replaceSubrange(offset..<offset + 4, with: [0, 0, 0, 0])
        let thrown = openError(bytes)
        let error = try #require(thrown, "the ledger opened")
        #expect(error.code == .invalidRecordLength)
        #expect(error.offset == UInt64(offset))
    }

    /// Replaces block `height`'s record with `record` (framed with a valid checksum).
    func replacingBlock(_ sample: SampleLedger, _ height: Int, with record: [UInt8]) -> [UInt8] {
        var bytes = sample.bytes
        let start = sample.offset(of: height)
        let end = start + LedgerRecord.block(sample.blocks[height - 1]).framed().count
        bytes.replaceSubrange(start..<end, with: record)
        return bytes
    }

    @Test("A whole record that does not decode is corruption")
    func undecodableRecord() throws {
        let sample = try SampleLedger()
        var typeAndBody = LedgerRecord.block(sample.blocks[2]).typeAndBody()
        typeAndBody.append(0)
        let thrown = openError(replacingBlock(sample, 3, with: LedgerRecord.frame(typeAndBody: typeAndBody)))
        let error = try #require(thrown, "the ledger opened")
        #expect(error.code == .undecodableRecord)
        #expect(error.offset == UInt64(sample.offset(of: 3)))
        #expect(error.height == 3)

        let unknownType = LedgerRecord.frame(typeAndBody: [9] + typeAndBody.dropFirst())
        #expect(openError(replacingBlock(sample, 3, with: unknownType))?.code == .undecodableRecord)
    }

    @Test("A broken prevHash chain is corruption")
    func brokenChain() throws {
        let sample = try SampleLedger()
        let forged = sample.cluster.block(height: 3, prevHash: sample.blocks[0].hash, batch: [])
        let thrown = openError(replacingBlock(sample, 3, with: LedgerRecord.block(forged).framed()))
        let error = try #require(thrown, "the ledger opened")
        #expect(error.code == .prevHashMismatch)
        #expect(error.offset == UInt64(sample.offset(of: 3)))
        #expect(error.height == 3)
    }

    @Test("A height gap is corruption")
    func heightGap() throws {
        let sample = try SampleLedger()
        let skipping = sample.cluster.block(height: 4, prevHash: sample.blocks[1].hash, batch: [])
        let thrown = openError(replacingBlock(sample, 3, with: LedgerRecord.block(skipping).framed()))
        let error = try #require(thrown, "the ledger opened")
        #expect(error.code == .heightNotConsecutive)
        #expect(error.height == 3)
        #expect(error.offset == UInt64(sample.offset(of: 3)))
    }

    @Test("A second genesis record is corruption")
    func secondGenesis() throws {
        let sample = try SampleLedger()
        let thrown = openError(replacingBlock(sample, 4, with: LedgerRecord.genesis(sample.cluster.genesis).framed()))
        let error = try #require(thrown, "the ledger opened")
        #expect(error.code == .unexpectedGenesis)
        #expect(error.offset == UInt64(sample.offset(of: 4)))
    }

    @Test("A checkpoint certificate whose digest is not the block hash at its sequence is corruption")
    func checkpointDigest() throws {
        let sample = try SampleLedger()
        let wrong = sample.cluster.checkpoint(sequence: 2, digest: sample.blocks[0].hash)
        var bytes = sample.bytes
        let start = sample.offset(of: 2) + LedgerRecord.block(sample.blocks[1]).framed().count
        bytes.replaceSubrange(start..<sample.offset(of: 3), with: LedgerRecord.checkpoint(wrong).framed())
        let thrown = openError(bytes)
        let error = try #require(thrown, "the ledger opened")
        #expect(error.code == .checkpointDigestMismatch)
        #expect(error.offset == UInt64(start))
        #expect(error.height == 2)
    }

    @Test("A ledger of another cluster is refused when the expected genesis is given")
    func wrongGenesis() throws {
        let sample = try SampleLedger()
        let otherKeys = TestCluster(seedOffset: 10)
        let otherCluster = TestCluster(cluster: ClusterID(bytes: [UInt8](repeating: 9, count: 16))!)
        for other in [otherKeys.genesis, otherCluster.genesis] {
            let thrown = openError(sample.bytes, expected: other)
            let error = try #require(thrown, "the ledger opened")
            #expect(error.code == .genesisMismatch)
            #expect(error.offset == LedgerFormat.firstRecordOffset)
            #expect(error.height == 0)
        }
        #expect(openError(sample.bytes, expected: sample.cluster.genesis) == nil)
    }

    @Test("An invalid genesis (n < 3f+1) is refused even without an expected one")
    func invalidGenesisInFile() throws {
        let cluster = TestCluster()
        let bad = Genesis(cluster: cluster.cluster, f: 2, members: cluster.genesis.members)
        let thrown = openError(LedgerFormat.header() + LedgerRecord.genesis(bad).framed())
        let error = try #require(thrown, "the ledger opened")
        #expect(error.code == .invalidGenesis)
    }

    @Test("The first record must be a whole genesis record")
    func missingGenesis() throws {
        let sample = try SampleLedger()
        let headerOnly = LedgerFormat.header()
        #expect(openError(headerOnly)?.code == .missingGenesis)
        #expect(openError(Array(sample.bytes.prefix(40)))?.code == .missingGenesis)
        let blockFirst = headerOnly + LedgerRecord.block(sample.blocks[0]).framed()
        #expect(openError(blockFirst)?.code == .missingGenesis)
    }

    @Test("The header: magic, version, reserved bytes, length")
    func header() throws {
        let sample = try SampleLedger()
        var badMagic = sample.bytes
        badMagic[0] = UInt8(ascii: "X")
        #expect(openError(badMagic)?.code == .notALedger)
        #expect(openError(Array(sample.bytes.prefix(10)))?.code == .notALedger)
        #expect(openError([])?.code == .notALedger)
        var badVersion = sample.bytes
        badVersion[9] = 2
        #expect(openError(badVersion)?.code == .unsupportedVersion)
        var badReserved = sample.bytes
        badReserved[12] = 1
        let error = openError(badReserved)
        #expect(error?.code == .badHeader)
        #expect(error?.offset == 10)
    }

    @Test("Opening streams the file: no read is larger than one window, whatever the file size")
    func openStreams() throws {
        let cluster = TestCluster()
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        try store.appendDurably(cluster.chain(count: 40, requestsPerBlock: 4, payloadByteCount: 20_000).map { .block($0) })
        #expect(memory.bytes.count > 3 * WindowedSource.windowByteCount)
        let counting = ReadCountingStorage(memory)
        let reopened = try LedgerStore.open(storage: counting, expectedGenesis: cluster.genesis)
        #expect(reopened.head.height == 40)
        #expect(counting.largestReadByteCount <= WindowedSource.windowByteCount)
    }
}
