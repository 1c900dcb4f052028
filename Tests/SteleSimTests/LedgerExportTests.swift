import Foundation
import SteleCore
import SteleLedger
import SteleSim
import Testing

/// `--out`: each replica's committed log as a ledger file (header, genesis, blocks, and stable
/// checkpoints right after their block), read back record by record.
@Suite struct LedgerExportTests {
    let fixture = Fixture()

    /// Splits a ledger file into its records, checking the header, lengths and checksums.
    func records(_ bytes: [UInt8]) throws -> [LedgerRecord] {
        #expect(Array(bytes.prefix(LedgerFormat.headerByteCount)) == LedgerFormat.header())
        var reader = ByteReader(Array(bytes.dropFirst(LedgerFormat.headerByteCount)))
        var out = [LedgerRecord]()
        while reader.remaining > 0 {
            let length = Int(try reader.readUInt32("length"))
            let typeAndBody = try reader.readFixed(length, "record")
            let checksum = try reader.readFixed(LedgerFormat.checksumByteCount, "checksum")
            #expect(checksum == LedgerFormat.checksum(typeAndBody))
            out.append(try LedgerRecord.decode(typeAndBody: typeAndBody))
        }
        return out
    }

    @Test func ledgerBytesHoldGenesisBlocksAndCheckpointsInOrder() throws {
        let chain = fixture.chain(3)
        let checkpoint = fixture.checkpoint(2, digest: chain[1].hash)
        let bytes = LedgerExport.ledgerBytes(config: fixture.config, blocks: chain, checkpoints: [checkpoint])
        let expected: [LedgerRecord] = [.genesis(fixture.config.genesis), .block(chain[0]), .block(chain[1]), .checkpoint(checkpoint), .block(chain[2])]
        #expect(try records(bytes) == expected)
    }

    @Test func aForkedRunWritesEveryReplicasLedgerAndTheClusterConfig() throws {
        var options = Slice.options(seed: 4, byzantine: 2, strategy: .only(.equivocate))
        options.safetyPhaseTicks = 300
        let report = Simulation<NormalCaseCore>(options: options).run()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("stele-sim-export-\(ProcessInfo.processInfo.processIdentifier)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let paths = try LedgerExport.write(report, to: directory)
        #expect(paths.count == 1 + 4, "K > f: every replica's ledger, so a fork is visible")
        let config = try ClusterConfig.load(path: directory + "/cluster.json")
        #expect(config == report.config)
        for replica in report.config.replicaIDs {
            let bytes = try #require(FileManager.default.contents(atPath: directory + "/replica-\(replica.value).ledger"))
            let blocks = try records(Array(bytes)).compactMap { record -> CertifiedBlock? in
                if case .block(let block) = record { return block }
                return nil
            }
            #expect(blocks == report.ledgers[replica])
        }
    }
}
