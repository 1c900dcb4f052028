import Foundation
import SteleCore
import SteleCrypto
import Testing
@testable import SteleLedger

/// docs/ledger-format.md, read from the source tree.
private let docPath = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("docs/ledger-format.md").path

private func docText() throws -> String {
    try String(contentsOfFile: docPath, encoding: .utf8)
}

/// The text between the example markers of the doc.
private func docExample(_ doc: String) throws -> String {
    let begin = try #require(doc.range(of: WorkedExample.beginMarker))
    let end = try #require(doc.range(of: WorkedExample.endMarker))
    return String(doc[begin.upperBound..<end.lowerBound]).trimmingCharacters(in: .newlines) + "\n"
}

/// The bytes of "The whole file" hex dump in the doc's example.
private func docFileBytes(_ example: String) throws -> [UInt8] {
    let lines = example.split(separator: "\n", omittingEmptySubsequences: false)
    let start = try #require(lines.firstIndex { $0.hasPrefix("The whole file") })
    var hex = ""
    for line in lines[(start + 1)...] {
        let parts = line.split(separator: " ")
        guard parts.count == 2, Int(parts[0]) != nil else { break }
        hex += parts[1]
    }
    return try #require(Hex.decode(hex))
}

/// Re-frames the record at `offset` after its body was edited, so only the doc's deeper rules
/// can catch the edit.
private func rechecksum(_ file: inout [UInt8], recordAt offset: Int) {
    let length = Int(file[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
    let typeAndBody = Array(file[offset + 4..<offset + 4 + length])
    file.replaceSubrange(offset + 4 + length..<offset + 12 + length, with: LedgerFormat.checksum(typeAndBody))
}

@Suite("docs/ledger-format.md is exact")
struct WorkedExampleTests {
    let verifier = IndependentVerifier(expectedGenesisHash: WorkedExample.genesis.hash.bytes)

    @Test("The worked example in the doc is what the code produces today (STELE_UPDATE_LEDGER_DOC=1 rewrites it)")
    func docExampleIsCurrent() throws {
        let generated = try WorkedExample.text()
        let doc = try docText()
        if ProcessInfo.processInfo.environment["STELE_UPDATE_LEDGER_DOC"] == "1" {
            let begin = try #require(doc.range(of: WorkedExample.beginMarker))
            let end = try #require(doc.range(of: WorkedExample.endMarker))
            let updated = doc.replacingCharacters(in: begin.upperBound..<end.lowerBound, with: "\n" + generated)
            try updated.write(toFile: docPath, atomically: true, encoding: .utf8)
        }
        #expect(try docExample(try docText()) == generated, "regenerate with STELE_UPDATE_LEDGER_DOC=1 swift test --filter WorkedExampleTests")
    }

    @Test("The example's bytes in the doc are the bytes the store writes")
    func docBytesAreTheStoresBytes() throws {
        let bytes = try docFileBytes(try docExample(try docText()))
        #expect(bytes == (try WorkedExample.fileBytes()))
        let store = try LedgerStore.open(storage: MemoryStorage(bytes: bytes), expectedGenesis: WorkedExample.genesis)
        #expect(store.head == ChainHead(height: 1, hash: WorkedExample.block.hash))
    }

    @Test("The independent verifier accepts the doc's example file")
    func independentVerifierAcceptsExample() throws {
        let bytes = try docFileBytes(try docExample(try docText()))
        let summary = try verifier.verify(bytes)
        #expect(summary.height == 1)
        #expect(summary.headHash == WorkedExample.block.hash.bytes)
        #expect(summary.requestCount == 1)
    }

    @Test("The independent verifier rejects the example with any one byte flipped")
    func independentVerifierRejectsEveryFlippedByte() throws {
        let bytes = try WorkedExample.fileBytes()
        for position in bytes.indices {
            var flipped = bytes
            flipped[position] ^= 0x01
            #expect(throws: IndependentVerifier.Rejection.self, "byte \(position)") { try verifier.verify(flipped) }
        }
    }

    @Test("The independent verifier agrees with the store on a longer ledger: views, batches, empty blocks, checkpoints")
    func independentVerifierAcceptsStoreLedger() throws {
        let cluster = TestCluster()
        let memory = MemoryStorage()
        let store = try LedgerStore.create(storage: memory, genesis: cluster.genesis)
        let blocks = cluster.chain(count: 12, requestsPerBlock: 3)
        for block in blocks {
            try store.append(block)
            if block.height.value % 5 == 0 { try store.append(cluster.checkpoint(for: block)) }
        }
        let empty = cluster.block(height: 13, prevHash: blocks[11].hash, batch: [], view: 4, signers: [3, 1, 0, 2])
        try store.appendDurably([.block(empty)])
        let summary = try IndependentVerifier(expectedGenesisHash: cluster.genesis.hash.bytes).verify(memory.bytes)
        #expect(summary.height == 13)
        #expect(summary.headHash == store.head.hash.bytes)
        #expect(summary.requestCount == 36)
        #expect(summary.checkpointCount == 2)
    }

    /// The example ledger plus block 2 built by `edit`, verified by the independent verifier.
    private func rejection(rule: Int, cluster: TestCluster = WorkedExample.cluster, block2: (TestCluster, CertifiedBlock) -> CertifiedBlock) throws -> IndependentVerifier.Rejection? {
        let memory = MemoryStorage(bytes: try WorkedExample.fileBytes())
        let store = try LedgerStore.open(storage: memory)
        let honest = cluster.chain(count: 1, after: store.head, firstTimestamp: 2)[0]
        try store.appendDurably([.block(block2(cluster, honest))])
        do {
            _ = try verifier.verify(memory.bytes)
            return nil
        } catch {
            #expect(error.rule == rule, "\(error)")
            return error
        }
    }

    @Test("Rule 8: a (client, timestamp) pair occurs at most once in a ledger")
    func exactlyOnce() throws {
        let rejected = try rejection(rule: 8) { cluster, honest in
            cluster.block(height: 2, prevHash: honest.prevHash, batch: [WorkedExample.request], view: 1)
        }
        #expect(rejected != nil)
    }

    @Test("Rule 9: a commit certificate needs 2f+1 distinct member signers, each over this view, height and digest")
    func commitCertificate() throws {
        #expect(try rejection(rule: 9) { cluster, honest in
            cluster.block(height: 2, prevHash: honest.prevHash, batch: honest.batch, signers: [0, 1])
        } != nil)
        #expect(try rejection(rule: 9) { cluster, honest in
            let signatures = honest.commitSignatures
            return CertifiedBlock(height: 2, prevHash: honest.prevHash, batch: honest.batch, certificateView: honest.certificateView,
                                  commitSignatures: [signatures[0], signatures[1], signatures[1]])
        } != nil)
        #expect(try rejection(rule: 9) { cluster, honest in
            CertifiedBlock(height: 2, prevHash: honest.prevHash, batch: honest.batch, certificateView: View(honest.certificateView.value + 1),
                           commitSignatures: honest.commitSignatures)
        } != nil)
    }

    @Test("Rule 7: a payload changed after signing fails the client signature, even with a fixed-up checksum")
    func payloadTamper() throws {
        var bytes = try WorkedExample.fileBytes()
        let blockOffset = LedgerFormat.headerByteCount + LedgerRecord.genesis(WorkedExample.genesis).framed().count
        let payloadOffset = blockOffset + 4 + 1 + 8 + 32 + 4 + 32 + 8 + 4
        #expect(Array(bytes[payloadOffset..<payloadOffset + 5]) == Array("hello".utf8))
        bytes[payloadOffset] = UInt8(ascii: "j")
        rechecksum(&bytes, recordAt: blockOffset)
        do {
            _ = try verifier.verify(bytes)
            Issue.record("a tampered payload was accepted")
        } catch {
            #expect(error.rule == 7)
        }
    }

    @Test("Rule 4: the genesis must be the one the verifier was given out of band")
    func genesisFromOutside() throws {
        let other = TestCluster(seedOffset: 20)
        let bytes = try WorkedExample.fileBytes()
        do {
            _ = try IndependentVerifier(expectedGenesisHash: other.genesis.hash.bytes).verify(bytes)
            Issue.record("a ledger of another cluster was accepted")
        } catch {
            #expect(error.rule == 4)
        }
    }

    @Test("Rule 10: a checkpoint certificate's signatures cover its sequence and the block hash")
    func checkpointCertificate() throws {
        let cluster = WorkedExample.cluster
        var bytes = try WorkedExample.fileBytes()
        let certificate = cluster.checkpoint(for: WorkedExample.block)
        let offset = bytes.count
        bytes += LedgerRecord.checkpoint(certificate).framed()
        #expect(try verifier.verify(bytes).checkpointCount == 1)
        bytes[offset + 4 + 1 + 8 + 32 + 4 + 2 + 10] ^= 0x01
        rechecksum(&bytes, recordAt: offset)
        do {
            _ = try verifier.verify(bytes)
            Issue.record("a checkpoint certificate with a bad signature was accepted")
        } catch {
            #expect(error.rule == 10)
        }
    }
}
