import Foundation
import SteleCore
import Testing
@testable import SteleAudit

/// A finding reduced to what a fixture test pins: code, file name, height, replicas.
struct FindingKey: Hashable, CustomStringConvertible {
    let code: FindingCode
    let file: String
    let height: UInt64?
    let replicas: [UInt16]

    init(_ code: FindingCode, _ file: String, _ height: UInt64?, _ replicas: [UInt16] = []) {
        self.code = code
        self.file = file
        self.height = height
        self.replicas = replicas
    }

    init(_ finding: Finding) {
        self.init(finding.code, URL(fileURLWithPath: finding.file ?? "").lastPathComponent, finding.height, finding.replicas)
    }

    var description: String { "\(code.rawValue) \(file) h\(height.map(String.init) ?? "-") \(replicas)" }
}

func auditFixture(_ directory: String) throws -> AuditReport {
    let config = try ClusterConfig.load(path: FixtureSet.path("\(directory)/cluster.json"))
    return try Auditor(config: config).audit(paths: [FixtureSet.path(directory)])
}

@Suite("stele-check on the checked-in fixtures")
struct FixtureAuditTests {
    @Test("the valid set passes; the lagging replica is reported as info, not a violation")
    func validSetPasses() throws {
        let report = try auditFixture("valid")
        #expect(report.verdict == .pass)
        #expect(report.violations.isEmpty)
        #expect(Set(report.findings.map(FindingKey.init)) == [FindingKey(.lagging, "replica-3.ledger", 17)])
        let lagging = try #require(report.files.first { $0.file.hasSuffix("replica-3.ledger") })
        #expect(lagging.height == 17)
        #expect(lagging.laggingBehind?.blockCount == 3)
        #expect(lagging.laggingBehind?.height == 20)
        for replica in 0..<3 {
            let summary = try #require(report.files.first { $0.file.hasSuffix("replica-\(replica).ledger") })
            #expect(summary.height == 20)
            #expect(summary.checkpointCount == 2)
            #expect(summary.laggingBehind == nil)
        }
        #expect(Set(report.files.compactMap(\.headHash)).count == 2)
    }

    @Test("each ledger of the valid set passes on its own")
    func eachValidLedgerPassesAlone() throws {
        for replica in 0..<4 {
            let report = try Auditor(config: TestKeys.config).audit(paths: [FixtureSet.path("valid/replica-\(replica).ledger")])
            #expect(report.verdict == .pass)
            #expect(report.findings.isEmpty)
        }
    }

    @Test("tampered fixtures report exactly their problem", arguments: [
        ("flipped-payload", [
            FindingKey(.clientSignatureInvalid, "replica-0.ledger", 5),
            FindingKey(.commitSignatureInvalid, "replica-0.ledger", 5, [1]),
            FindingKey(.commitSignatureInvalid, "replica-0.ledger", 5, [2]),
            FindingKey(.commitSignatureInvalid, "replica-0.ledger", 5, [3]),
            FindingKey(.commitQuorumShort, "replica-0.ledger", 5, []),
            FindingKey(.hashChainBroken, "replica-0.ledger", 6),
        ]),
        ("flipped-signature", [FindingKey(.commitSignatureInvalid, "replica-0.ledger", 9, [2])]),
        ("reordered-blocks", [FindingKey(.blockOutOfOrder, "replica-0.ledger", 10)]),
        ("truncated-tail", [FindingKey(.tornTail, "replica-0.ledger", 19)]),
        ("short-certificate", [FindingKey(.commitQuorumShort, "replica-0.ledger", 13, [0, 1])]),
        ("repeated-signer", [
            FindingKey(.commitSignerRepeated, "replica-0.ledger", 11, [2]),
            FindingKey(.commitQuorumShort, "replica-0.ledger", 11, [0, 2]),
        ]),
        ("non-member-signer", [
            FindingKey(.commitSignerNotMember, "replica-0.ledger", 12, [7]),
            FindingKey(.commitQuorumShort, "replica-0.ledger", 12, [0, 1]),
        ]),
        ("duplicate-transaction", [FindingKey(.duplicateTransaction, "replica-0.ledger", 14)]),
        ("fork", [FindingKey(.fork, "replica-0.ledger", 15, [1, 2])]),
    ])
    func tamperedFixture(directory: String, expected: [FindingKey]) throws {
        let report = try auditFixture(directory)
        #expect(report.verdict == .violation)
        #expect(Set(report.findings.map(FindingKey.init)) == Set(expected))
        #expect(report.findings.count == expected.count)
        for finding in report.findings {
            #expect(finding.byteOffset != nil, "\(finding.code) names no byte offset")
        }
    }

    @Test("a torn tail's offset is the start of the record it cut")
    func tornTailOffset() throws {
        let report = try auditFixture("truncated-tail")
        let valid = [UInt8](try #require(FileManager.default.contents(atPath: FixtureSet.path("valid/replica-0.ledger"))))
        let lastRecordByteCount = FixtureSet.validRecords(replica: 0).last!.framed().count
        #expect(report.findings.first?.byteOffset == UInt64(valid.count - lastRecordByteCount))
    }

    @Test("fork forensics: same view, r1 and r2 signed both digests, more than f implicated, 3f+1 broken")
    func forkForensics() throws {
        let report = try auditFixture("fork")
        let finding = try #require(report.findings(.fork).first)
        let forensics = try #require(finding.forensics)
        #expect(forensics.height == 15)
        #expect(forensics.signedBoth == [1, 2])
        #expect(forensics.sameView)
        #expect(forensics.digestsDiffer)
        #expect(forensics.equivocationProven)
        #expect(forensics.moreThanFImplicated)
        #expect(forensics.safetyAssumptionBroken)
        #expect(forensics.sides.map(\.validSigners) == [[0, 1, 2], [1, 2, 3]])
        #expect(forensics.sides.allSatisfy { $0.certified })
        #expect(forensics.sides.allSatisfy { $0.certificateView == 1 })
        #expect(finding.message.contains("equivocation"))
    }

    @Test("a duplicate is found on (client, timestamp) although payload and signature differ")
    func duplicateKeyedOnClientAndTimestamp() throws {
        let records = FixtureSet.duplicateTransaction(height: 14, earlier: 3)
        let blocks = records.compactMap(\.block)
        let replay = blocks[13].batch.last!
        let original = blocks[2].batch.first { $0.client == replay.client && $0.timestamp == replay.timestamp }!
        #expect(replay.payload != original.payload)
        #expect(replay.signature != original.signature)
        #expect(replay.verifySignature(cluster: TestKeys.cluster))
        let report = try auditFixture("duplicate-transaction")
        #expect(report.findings.map(\.code) == [.duplicateTransaction])
    }
}
