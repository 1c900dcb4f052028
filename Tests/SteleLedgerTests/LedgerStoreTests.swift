import Foundation
import SteleCore
import SteleCrypto
import SteleTestSupport
import Testing
@testable import SteleLedger

@Suite("Ledger store: create, append, reopen, read")
struct LedgerStoreTests {
    let cluster = TestCluster()

    @Test("A created ledger is the header followed by the genesis record, and its head is the genesis hash")
    func createWritesHeaderAndGenesis() throws {
        let directory = TemporaryDirectory(prefix: "stele-ledger")
        let path = directory.file("replica-0.ledger")
        let store = try LedgerStore.create(path: path, genesis: cluster.genesis)
        #expect(store.head == ChainHead(height: .genesis, hash: cluster.genesis.hash))
        #expect(store.durableHead == store.head)
        #expect(readFile(path) == LedgerFormat.header() + LedgerRecord.genesis(cluster.genesis).framed())
        #expect(store.openReport.tornTail == nil)
        #expect(!FileManager.default.fileExists(atPath: "\(path).creating.\(getpid())"))
    }

    @Test("Create refuses an existing path and an invalid genesis")
    func createRefusals() throws {
        let directory = TemporaryDirectory(prefix: "stele-ledger")
        let path = directory.file("replica-0.ledger")
        _ = try LedgerStore.create(path: path, genesis: cluster.genesis)
        let exists = ledgerError { () throws(LedgerError) in try LedgerStore.create(path: path, genesis: cluster.genesis) }
        #expect(exists?.code == .alreadyExists)

        let tooFew = Genesis(cluster: cluster.cluster, f: 1, members: Array(cluster.genesis.members.prefix(3)))
        let invalid = ledgerError { () throws(LedgerError) in try LedgerStore.create(path: directory.file("other.ledger"), genesis: tooFew) }
        #expect(invalid?.code == .invalidGenesis)
        #expect(!FileManager.default.fileExists(atPath: directory.file("other.ledger")))

        let memory = MemoryStorage(bytes: [1])
        #expect(ledgerError { () throws(LedgerError) in try LedgerStore.create(storage: memory, genesis: cluster.genesis) }?.code == .alreadyExists)
    }

    @Test("Round trip: appended blocks and checkpoint certificates read back equal")
    func roundTrip() throws {
        let directory = TemporaryDirectory(prefix: "stele-ledger")
        let store = try LedgerStore.create(path: directory.file("l"), genesis: cluster.genesis)
        let blocks = cluster.chain(count: 5, requestsPerBlock: 3)
        let certificate = cluster.checkpoint(for: blocks[3])
        try store.appendDurably(blocks.prefix(4).map { .block($0) } + [.checkpoint(certificate), .block(blocks[4])])
        #expect(store.head == ChainHead(height: 5, hash: blocks[4].hash))
        #expect(store.durableHead == store.head)
        for block in blocks {
            #expect(try store.block(at: block.height) == block)
        }
        #expect(try store.checkpoint(atOrBelow: 5) == certificate)
        #expect(store.latestCheckpointSequence == 4)
    }

    @Test("Group commit: many appends, one fsync; nothing is durable before it")
    func groupCommit() throws {
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        let syncsAfterCreate = memory.syncCount
        let blocks = cluster.chain(count: 10)
        for block in blocks {
            try store.append(block)
        }
        #expect(memory.syncCount == syncsAfterCreate)
        #expect(store.head.height == 10)
        #expect(store.durableHead.height == 0)
        #expect(memory.unsyncedByteCount > 0)

        try store.sync()
        #expect(memory.syncCount == syncsAfterCreate + 1)
        #expect(store.syncCount == 1)
        #expect(store.durableHead == store.head)
        #expect(memory.unsyncedByteCount == 0)

        try store.sync()
        #expect(memory.syncCount == syncsAfterCreate + 1, "a sync with nothing new issues no fsync")
    }

    @Test("A crash loses exactly the appends that were not synced")
    func crashLosesUnsyncedAppends() throws {
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        let blocks = cluster.chain(count: 6)
        try store.appendDurably(blocks.prefix(3).map { .block($0) })
        try store.append(blocks.suffix(3).map { .block($0) })
        memory.crash()
        let reopened = try LedgerStore.open(storage: memory, expectedGenesis: cluster.genesis)
        #expect(reopened.head == ChainHead(height: 3, hash: blocks[2].hash))
        #expect(reopened.openReport.tornTail == nil)
    }

    @Test("A crash that keeps any prefix of an unsynced group commit reopens at a whole-record boundary")
    func crashAtEveryPointOfAGroupCommit() throws {
        let blocks = cluster.chain(count: 4)
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        try store.appendDurably([.block(blocks[0])])
        let durableBytes = memory.bytes
        let boundaries = Set(blocks.dropFirst().reduce(into: [durableBytes.count]) { ends, block in
            ends.append(ends.last! + LedgerRecord.block(block).framed().count)
        })
        let groupBytes = blocks.dropFirst().flatMap { LedgerRecord.block($0).framed() }
        for kept in stride(from: 0, through: groupBytes.count, by: 7) {
            let disk = MemoryStorage(bytes: durableBytes + groupBytes.prefix(kept))
            let reopened = try LedgerStore.open(storage: disk, expectedGenesis: cluster.genesis)
            let end = durableBytes.count + kept
            #expect(boundaries.contains(Int(reopened.byteCount)))
            #expect((reopened.openReport.tornTail == nil) == boundaries.contains(end))
            #expect(disk.bytes.count == Int(reopened.byteCount))
            #expect(try reopened.block(at: reopened.head.height).hash == reopened.head.hash)
        }
    }

    @Test("Reopen: the chain, index and checkpoints are rebuilt from the file")
    func reopen() throws {
        let directory = TemporaryDirectory(prefix: "stele-ledger")
        let path = directory.file("l")
        let blocks = cluster.chain(count: 20, requestsPerBlock: 2)
        do {
            let store = try LedgerStore.create(path: path, genesis: cluster.genesis)
            for block in blocks {
                try store.append(block)
                if block.height.value % 8 == 0 { try store.append(cluster.checkpoint(for: block)) }
            }
            try store.sync()
        }
        let store = try LedgerStore.open(path: path, expectedGenesis: cluster.genesis)
        #expect(store.head == ChainHead(height: 20, hash: blocks[19].hash))
        #expect(store.openReport.head == store.head)
        #expect(store.openReport.checkpointCount == 2)
        #expect(store.openReport.byteCount == UInt64(readFile(path).count))
        #expect(store.genesis == cluster.genesis)
        #expect(try store.block(at: 13) == blocks[12])
        #expect(try store.checkpoint(atOrBelow: 15)?.sequence == 8)
        #expect(try store.checkpoint(atOrBelow: 7) == nil)
        #expect(store.latestCheckpointSequence == 16)
    }

    @Test("Random access by height, bounded ranges, out-of-range heights")
    func randomAccess() throws {
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        let blocks = cluster.chain(count: 40)
        try store.appendDurably(blocks.map { .block($0) })
        for height in [40, 1, 17, 33, 2, 39] as [UInt64] {
            #expect(try store.block(at: SequenceNumber(height)) == blocks[Int(height) - 1])
        }
        #expect(try store.blocks(from: 5, to: 9) == Array(blocks[4...8]))
        #expect(try store.blocks(from: 40, to: 40) == [blocks[39]])
        #expect(ledgerError { () throws(LedgerError) in try store.block(at: 0) }?.code == .heightOutOfRange)
        #expect(ledgerError { () throws(LedgerError) in try store.block(at: 41) }?.code == .heightOutOfRange)
        #expect(ledgerError { () throws(LedgerError) in try store.blocks(from: 9, to: 5) }?.code == .heightOutOfRange)
        #expect(ledgerError { () throws(LedgerError) in try store.blocks(from: 1, to: 41) }?.code == .heightOutOfRange)
        #expect(store.offset(ofBlockAt: 0) == nil)
        #expect(store.offset(ofBlockAt: 1) == UInt64(LedgerFormat.headerByteCount + LedgerRecord.genesis(cluster.genesis).framed().count))
    }

    @Test("A read of more than blocksPerReadMax blocks is refused")
    func rangeIsBounded() throws {
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        let count = LedgerStore.blocksPerReadMax + 1
        var blocks = [CertifiedBlock]()
        var prevHash = cluster.genesis.hash
        for height in 1...UInt64(count) {
            let block = CertifiedBlock(height: SequenceNumber(height), prevHash: prevHash, batch: [], certificateView: 0, commitSignatures: [])
            blocks.append(block)
            prevHash = block.hash
        }
        try store.appendDurably(blocks.map { .block($0) })
        #expect(try store.blocks(from: 1, to: SequenceNumber(UInt64(count - 1))).count == count - 1)
        let error = ledgerError { () throws(LedgerError) in try store.blocks(from: 1, to: SequenceNumber(UInt64(count))) }
        #expect(error?.code == .rangeTooLarge)
    }

    @Test("Iteration yields every record in file order with its offset, lazily")
    func iteration() throws {
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        let blocks = cluster.chain(count: 6)
        let certificate = cluster.checkpoint(for: blocks[2])
        let records: [LedgerRecord] = blocks.prefix(3).map { .block($0) } + [.checkpoint(certificate)] + blocks.suffix(3).map { .block($0) }
        try store.appendDurably(records)

        var cursor = store.entries()
        var entries = [LedgerEntry]()
        while let entry = try cursor.next() { entries.append(entry) }
        #expect(entries.map(\.record) == [.genesis(cluster.genesis)] + records)
        #expect(entries.first?.offset == LedgerFormat.firstRecordOffset)
        for (entry, following) in zip(entries, entries.dropFirst()) {
            #expect(entry.offset + entry.byteCount == following.offset)
        }
        #expect(entries.last.map { $0.offset + $0.byteCount } == store.byteCount)
        for entry in entries {
            if case .block(let block) = entry.record { #expect(store.offset(ofBlockAt: block.height) == entry.offset) }
        }
        #expect(try cursor.next() == nil)
    }

    @Test("A cursor re-checks what it reads: a byte changed after open is a checksum mismatch")
    func cursorRechecks() throws {
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        try store.appendDurably(cluster.chain(count: 3).map { .block($0) })
        let offset = store.offset(ofBlockAt: 2)!
        memory.bytes[Int(offset) + 20] ^= 0x40
        var cursor = store.entries()
        var thrown: LedgerError?
        do {
            while try cursor.next() != nil {}
        } catch {
            thrown = error
        }
        #expect(thrown?.code == .checksumMismatch)
        #expect(thrown?.offset == offset)
        #expect(ledgerError { () throws(LedgerError) in try store.block(at: 2) }?.code == .checksumMismatch)
        #expect(try store.block(at: 3).height == 3)
    }

    @Test("A read-only open neither appends nor takes the writer's lock; a second writer is refused")
    func accessAndLocking() throws {
        let directory = TemporaryDirectory(prefix: "stele-ledger")
        let path = directory.file("l")
        let writer = try LedgerStore.create(path: path, genesis: cluster.genesis)
        let second = ledgerError { () throws(LedgerError) in try LedgerStore.open(path: path) }
        #expect(second?.code == .locked)
        let reader = try LedgerStore.open(path: path, access: .readOnly)
        let block = cluster.chain(count: 1)[0]
        #expect(ledgerError { () throws(LedgerError) in try reader.append(block) }?.code == .readOnly)
        try writer.appendDurably([.block(block)])
        #expect(writer.head.height == 1)
        #expect(ledgerError { () throws(LedgerError) in try LedgerStore.open(path: directory.file("missing")) }?.code == .notFound)
    }
}

@Suite("Ledger store: appends that would break the chain are refused")
struct AppendRuleTests {
    let cluster = TestCluster()

    func storeWithThreeBlocks() throws -> (LedgerStore, MemoryStorage, [CertifiedBlock]) {
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        let blocks = cluster.chain(count: 3)
        try store.appendDurably(blocks.map { .block($0) })
        return (store, memory, blocks)
    }

    /// The append throws `code` at the end of the ledger and writes nothing.
    func expectRefused(_ records: [LedgerRecord], _ code: LedgerError.Code, height: SequenceNumber?, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (store, memory, _) = try storeWithThreeBlocks()
        let before = memory.bytes
        let error = ledgerError { () throws(LedgerError) in try store.append(records) }
        #expect(error?.code == code, sourceLocation: sourceLocation)
        #expect(error?.height == height, sourceLocation: sourceLocation)
        #expect(error?.operation == .append, sourceLocation: sourceLocation)
        #expect(memory.bytes == before, "nothing was written", sourceLocation: sourceLocation)
        #expect(store.head.height == 3, sourceLocation: sourceLocation)
        let next = cluster.chain(count: 1, after: store.head, firstTimestamp: 100)[0]
        try store.appendDurably([.block(next)])
        #expect(store.head.height == 4, "the store stays usable", sourceLocation: sourceLocation)
    }

    @Test("Heights are strictly consecutive")
    func heightMustBeNext() throws {
        let (_, _, blocks) = try storeWithThreeBlocks()
        let head = ChainHead(height: 3, hash: blocks[2].hash)
        let skipping = cluster.block(height: 5, prevHash: head.hash, batch: [])
        try expectRefused([.block(skipping)], .heightNotConsecutive, height: 4)
        try expectRefused([.block(blocks[2])], .heightNotConsecutive, height: 4)
    }

    @Test("prevHash equals the head hash")
    func prevHashMustChain() throws {
        let (_, _, blocks) = try storeWithThreeBlocks()
        try expectRefused([.block(cluster.block(height: 4, prevHash: blocks[1].hash, batch: []))], .prevHashMismatch, height: 4)
    }

    @Test("A violation anywhere in a batch writes none of it")
    func batchIsAllOrNothing() throws {
        let (_, _, blocks) = try storeWithThreeBlocks()
        let good = cluster.chain(count: 2, after: ChainHead(height: 3, hash: blocks[2].hash), firstTimestamp: 50)
        let bad = cluster.block(height: 6, prevHash: Digest.zero, batch: [])
        try expectRefused([.block(good[0]), .block(good[1]), .block(bad)], .prevHashMismatch, height: 6)
    }

    @Test("A checkpoint certificate names a block at or below the head, by its hash, in order")
    func checkpointRules() throws {
        let (_, _, blocks) = try storeWithThreeBlocks()
        try expectRefused([.checkpoint(cluster.checkpoint(sequence: 4, digest: blocks[2].hash))], .checkpointAboveHead, height: 4)
        try expectRefused([.checkpoint(cluster.checkpoint(sequence: 2, digest: blocks[2].hash))], .checkpointDigestMismatch, height: 2)
        try expectRefused([.checkpoint(cluster.checkpoint(for: blocks[2])), .checkpoint(cluster.checkpoint(for: blocks[1]))], .checkpointOutOfOrder, height: 2)

        let (store, _, _) = try storeWithThreeBlocks()
        let next = cluster.chain(count: 1, after: store.head, firstTimestamp: 100)[0]
        try store.appendDurably([.checkpoint(cluster.checkpoint(for: blocks[0])), .block(next), .checkpoint(cluster.checkpoint(for: next))])
        #expect(try store.checkpoint(atOrBelow: 3)?.sequence == 1)
        #expect(try store.checkpoint(atOrBelow: 4)?.sequence == 4)
    }

    @Test("Only create writes a genesis record")
    func noSecondGenesis() throws {
        try expectRefused([.genesis(cluster.genesis)], .unexpectedGenesis, height: 4)
    }

    @Test("A record larger than the format allows is refused before anything is written")
    func oversizeRecord() throws {
        let (_, _, blocks) = try storeWithThreeBlocks()
        let payload = [UInt8](repeating: 7, count: 60 * 1024)
        let requests = (0..<300).map { cluster.client.request(timestamp: UInt64(1000 + $0), payload: payload) }
        let huge = cluster.block(height: 4, prevHash: blocks[2].hash, batch: requests)
        try expectRefused([.block(huge)], .recordTooLarge, height: 4)
    }

    @Test("A record the codec could not read back (a count or length above its limit) is refused")
    func codecLimits() throws {
        let (_, _, blocks) = try storeWithThreeBlocks()
        let limits = CodecLimits.standard
        let bigPayload = cluster.client.request(timestamp: 1000, payload: [UInt8](repeating: 1, count: limits.payloadBytesMax + 1))
        try expectRefused([.block(cluster.block(height: 4, prevHash: blocks[2].hash, batch: [bigPayload]))], .limitExceeded, height: 4)

        let tooManySignatures = (0...limits.signaturesMax).map { ReplicaSignature(replica: ReplicaID(UInt16($0)), signature: .zero) }
        let block = CertifiedBlock(height: 4, prevHash: blocks[2].hash, batch: [], certificateView: 0, commitSignatures: tooManySignatures)
        try expectRefused([.block(block)], .limitExceeded, height: 4)
    }
}

@Suite("Ledger store: a failed write or fsync stops the store until it is reopened")
struct StorageFailureTests {
    let cluster = TestCluster()

    @Test("After a failed write, appends and syncs are refused; reopening recovers the durable chain")
    func failedWrite() throws {
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        let blocks = cluster.chain(count: 3)
        try store.appendDurably([.block(blocks[0])])
        memory.failNextWrite = StorageError(operation: "pwrite", errorNumber: 28)
        #expect(ledgerError { () throws(LedgerError) in try store.append(blocks[1]) }?.code == .io)
        #expect(ledgerError { () throws(LedgerError) in try store.append(blocks[1]) }?.code == .failed)
        #expect(ledgerError { () throws(LedgerError) in try store.sync() }?.code == .failed)
        let reopened = try LedgerStore.open(storage: memory, expectedGenesis: cluster.genesis)
        #expect(reopened.head.height == 1)
        try reopened.appendDurably([.block(blocks[1]), .block(blocks[2])])
        #expect(reopened.head.height == 3)
    }

    @Test("After a failed fsync the store never retries it: durableHead stays, appends are refused")
    func failedSync() throws {
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        let blocks = cluster.chain(count: 2)
        try store.append(blocks[0])
        memory.failNextSync = StorageError(operation: "fsync", errorNumber: 5)
        let error = ledgerError { () throws(LedgerError) in try store.sync() }
        #expect(error?.code == .io)
        #expect(error?.description.hasSuffix("the ledger must be reopened") == true)
        #expect(store.durableHead.height == 0)
        #expect(ledgerError { () throws(LedgerError) in try store.sync() }?.code == .failed)
        #expect(ledgerError { () throws(LedgerError) in try store.append(blocks[1]) }?.code == .failed)
    }
}
