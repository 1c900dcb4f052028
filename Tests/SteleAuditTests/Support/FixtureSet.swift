import Foundation
import SteleCore
import SteleCrypto
import SteleLedger
@testable import SteleAudit

/// Generates every file under Fixtures/ (README.md excepted) deterministically. The checked-in
/// bytes must equal what this produces (FixtureDriftTests); set STELE_REGENERATE_FIXTURES=1 to
/// rewrite them after an intended change.
enum FixtureSet {
    static let heightMax: UInt64 = 20
    static let laggingHeight: UInt64 = 17
    static let checkpointInterval: UInt64 = 8
    /// Blocks up to this height were committed in view 0, the rest in view 1.
    static let lastHeightOfView0: UInt64 = 12
    static let builder = LedgerBuilder()

    struct Plan {
        let height: UInt64
        let view: UInt64
        let batch: [Request]
    }

    // MARK: - The valid history

    /// Block h holds h mod 4 requests (so every fourth block is a null request), alternating
    /// between two clients whose timestamps increase.
    static let validPlans: [Plan] = {
        var nextTimestamp = [1000 as UInt64, 2000]
        var plans = [Plan]()
        for height in 1...heightMax {
            var batch = [Request]()
            for position in 0..<Int(height % 4) {
                let client = Int(height + UInt64(position)) % 2
                let keys = client == 0 ? TestKeys.alice : TestKeys.bob
                let amount = (height * 37 + UInt64(position) * 11) % 500
                batch.append(builder.request(keys, timestamp: nextTimestamp[client], payload: "transfer \(amount) from \(client == 0 ? "alice" : "bob") (block \(height), request \(position))"))
                nextTimestamp[client] += 1
            }
            plans.append(Plan(height: height, view: height <= lastHeightOfView0 ? 0 : 1, batch: batch))
        }
        return plans
    }()

    /// Each replica holds its own commit certificate per block: every member but one (which one
    /// depends on the height and the replica), or all four.
    static func commitSigners(height: UInt64, replica: Int) -> [Int] {
        let excluded = Int((height + UInt64(replica)) % 5)
        return (0..<4).filter { $0 != excluded }
    }

    static func checkpointSigners(sequence: UInt64, replica: Int) -> [Int] {
        let excluded = Int((sequence / checkpointInterval + UInt64(replica) + 2) % 5)
        return (0..<4).filter { $0 != excluded }
    }

    /// Certified blocks chained from genesis; `signers` overrides the certificate at a height.
    static func chain(_ plans: [Plan], replica: Int, signers: [UInt64: [Int]] = [:]) -> [CertifiedBlock] {
        var prevHash = TestKeys.config.genesis.hash
        return plans.map { plan in
            let block = builder.block(
                height: plan.height, view: plan.view, prevHash: prevHash, batch: plan.batch,
                signers: signers[plan.height] ?? commitSigners(height: plan.height, replica: replica))
            prevHash = block.hash
            return block
        }
    }

    /// Genesis, the blocks, and a checkpoint certificate after every K-th block.
    static func records(_ blocks: [CertifiedBlock], replica: Int) -> [LedgerRecord] {
        var records = [LedgerRecord.genesis(TestKeys.config.genesis)]
        for block in blocks {
            records.append(.block(block))
            let sequence = block.height.value
            if sequence % checkpointInterval == 0 {
                records.append(.checkpoint(builder.checkpoint(
                    sequence: sequence, stateDigest: block.hash, signers: checkpointSigners(sequence: sequence, replica: replica))))
            }
        }
        return records
    }

    static func validRecords(replica: Int) -> [LedgerRecord] {
        let height = replica == 3 ? laggingHeight : heightMax
        return records(chain(Array(validPlans.prefix(Int(height))), replica: replica), replica: replica)
    }

    // MARK: - Tampering (on replica 0's ledger)

    static func replacingBlock(_ height: UInt64, in records: [LedgerRecord], _ change: (CertifiedBlock) -> CertifiedBlock) -> [LedgerRecord] {
        records.map { record in
            guard let block = record.block, block.height.value == height else { return record }
            return .block(change(block))
        }
    }

    static func flippedPayload(height: UInt64) -> [LedgerRecord] {
        replacingBlock(height, in: validRecords(replica: 0)) { block in
            let original = block.batch[0]
            var payload = original.payload
            payload[0] ^= 0x01
            let tampered = Request(client: original.client, timestamp: original.timestamp, payload: payload, signature: original.signature)
            return CertifiedBlock(
                height: block.height, prevHash: block.prevHash, batch: [tampered] + block.batch.dropFirst(),
                certificateView: block.certificateView, commitSignatures: block.commitSignatures)
        }
    }

    static func flippedSignature(height: UInt64, replica: UInt16) -> [LedgerRecord] {
        replacingBlock(height, in: validRecords(replica: 0)) { block in
            block.withSignatures(block.commitSignatures.map { entry in
                guard entry.replica.value == replica else { return entry }
                var bytes = entry.signature.bytes
                bytes[10] ^= 0x40
                return ReplicaSignature(replica: entry.replica, signature: Signature(bytes: bytes)!)
            })
        }
    }

    static func reordered(swapping height: UInt64) -> [LedgerRecord] {
        var records = validRecords(replica: 0)
        let first = records.firstIndex { $0.block?.height.value == height }!
        let second = records.firstIndex { $0.block?.height.value == height + 1 }!
        records.swapAt(first, second)
        return records
    }

    static func shortCertificate(height: UInt64, keeping signers: [UInt16]) -> [LedgerRecord] {
        replacingBlock(height, in: validRecords(replica: 0)) { block in
            block.withSignatures(block.commitSignatures.filter { signers.contains($0.replica.value) })
        }
    }

    /// Replica `repeated`'s signature twice and only one other member: a naive count says 3.
    static func repeatedSigner(height: UInt64, other: Int, repeated: Int) -> [LedgerRecord] {
        replacingBlock(height, in: validRecords(replica: 0)) { block in
            let signature = builder.commitSignature(height: height, view: block.certificateView.value, digest: block.batchDigest, by: repeated)
            let otherSignature = builder.commitSignature(height: height, view: block.certificateView.value, digest: block.batchDigest, by: other)
            return block.withSignatures([otherSignature, signature, signature])
        }
    }

    /// Two members and an outsider who signs as replica `outsiderID`: a naive count says 3.
    static func nonMemberSigner(height: UInt64, members: [Int], outsiderID: UInt16) -> [LedgerRecord] {
        replacingBlock(height, in: validRecords(replica: 0)) { block in
            let view = block.certificateView.value
            let signatures = members.map { builder.commitSignature(height: height, view: view, digest: block.batchDigest, by: $0) }
            let foreign = builder.foreignCommitSignature(height: height, view: view, digest: block.batchDigest, claimedID: outsiderID, key: TestKeys.outsider)
            return block.withSignatures(signatures + [foreign])
        }
    }

    /// Block `height` also carries a request reusing alice's timestamp from block `earlier`,
    /// with a different payload and a valid signature; everything else is validly re-signed.
    static func duplicateTransaction(height: UInt64, earlier: UInt64) -> [LedgerRecord] {
        let original = validPlans[Int(earlier) - 1].batch.first { $0.client == TestKeys.alice.publicKey }!
        let replay = builder.request(TestKeys.alice, timestamp: original.timestamp, payload: "double spend of timestamp \(original.timestamp)")
        let plans = validPlans.map { plan in
            plan.height == height ? Plan(height: plan.height, view: plan.view, batch: plan.batch + [replay]) : plan
        }
        return records(chain(plans, replica: 0), replica: 0)
    }

    static let forkHeight: UInt64 = 15
    static let forkSignersA = [0, 1, 2]
    static let forkSignersB = [1, 2, 3]

    /// Replicas 1 and 2 collude: at height 15 (view 1) they sign a second batch with replica 3.
    /// Replica 0's ledger holds one block, replica 3's the other.
    static func fork() -> (replica0: [LedgerRecord], replica3: [LedgerRecord]) {
        let common = Array(validPlans.prefix(Int(forkHeight) - 1))
        let planA = validPlans[Int(forkHeight) - 1]
        let conflicting = builder.request(TestKeys.bob, timestamp: 5000, payload: "transfer 499 from bob to the colluders")
        let planB = Plan(height: forkHeight, view: planA.view, batch: [conflicting])
        let chainA = chain(common + [planA], replica: 0, signers: [forkHeight: forkSignersA])
        let chainB = chain(common + [planB], replica: 3, signers: [forkHeight: forkSignersB])
        return (records(chainA, replica: 0), records(chainB, replica: 3))
    }

    // MARK: - The files

    /// Tampered fixture directories and what each holds.
    static let tamperedDirectories = [
        "flipped-payload", "flipped-signature", "reordered-blocks", "truncated-tail", "short-certificate",
        "repeated-signer", "non-member-signer", "duplicate-transaction", "fork",
    ]

    /// Every generated file, keyed by its path under Fixtures/.
    static func files() -> [String: [UInt8]] {
        let config = [UInt8](TestKeys.config.jsonData()) + [0x0a]
        var files = [String: [UInt8]]()
        files["valid/cluster.json"] = config
        for replica in 0..<4 {
            files["valid/replica-\(replica).ledger"] = LedgerBuilder.fileBytes(validRecords(replica: replica))
        }
        let single: [String: [LedgerRecord]] = [
            "flipped-payload": flippedPayload(height: 5),
            "flipped-signature": flippedSignature(height: 9, replica: 2),
            "reordered-blocks": reordered(swapping: 10),
            "short-certificate": shortCertificate(height: 13, keeping: [0, 1]),
            "repeated-signer": repeatedSigner(height: 11, other: 0, repeated: 2),
            "non-member-signer": nonMemberSigner(height: 12, members: [0, 1], outsiderID: 7),
            "duplicate-transaction": duplicateTransaction(height: 14, earlier: 3),
        ]
        for (directory, records) in single {
            files["\(directory)/replica-0.ledger"] = LedgerBuilder.fileBytes(records)
        }
        files["truncated-tail/replica-0.ledger"] = Array(LedgerBuilder.fileBytes(validRecords(replica: 0)).dropLast(40))
        let (forkA, forkB) = fork()
        files["fork/replica-0.ledger"] = LedgerBuilder.fileBytes(forkA)
        files["fork/replica-3.ledger"] = LedgerBuilder.fileBytes(forkB)
        for directory in tamperedDirectories { files["\(directory)/cluster.json"] = config }
        return files
    }

    /// Fixtures/ in this checkout.
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }
}
