import Foundation
import SteleCore
import SteleCrypto
import SteleLedger
import Testing
@testable import SteleAudit

private let builder = FixtureSet.builder
private let plans = FixtureSet.validPlans

/// Replica 0's valid ledger up to `height`, as records.
private func ledger(through height: Int = 20, replica: Int = 0) -> [LedgerRecord] {
    FixtureSet.records(FixtureSet.chain(Array(plans.prefix(height)), replica: replica), replica: replica)
}

@Suite("Invariant 7: the chain — genesis first, contiguous heights, prevHash links")
struct ChainTests {
    @Test("a ledger holding only its genesis passes at height 0")
    func genesisOnly() throws {
        let report = try audit("g.ledger", [.genesis(TestKeys.config.genesis)])
        #expect(report.verdict == .pass)
        #expect(report.files[0].height == 0)
        #expect(report.files[0].headHash == TestKeys.config.genesis.hash.hex)
    }

    @Test("the configuration is the trust anchor: a file with another genesis is not read further")
    func genesisMismatch() throws {
        // Same cluster id, but replica 3's key swapped for the outsider's.
        let members = Array(TestKeys.config.genesis.members.prefix(3)) + [Genesis.Member(id: 3, publicKey: TestKeys.outsider.publicKey)]
        let other = Genesis(cluster: TestKeys.cluster, f: 1, members: members)
        let records = [LedgerRecord.genesis(other)] + ledger().dropFirst()
        let report = try audit("other.ledger", records)
        #expect(keys(report) == [FindingKey(.genesisMismatch, "other.ledger", 0)])
        #expect(report.findings[0].message.contains("members"))
        #expect(report.files[0].headHash == nil)
    }

    @Test("a ledger must start with its genesis record")
    func genesisMissing() throws {
        let report = try audit("headless.ledger", Array(ledger().dropFirst()))
        #expect(keys(report) == [FindingKey(.genesisMissing, "headless.ledger", nil)])
        let empty = try audit([("empty.ledger", LedgerFormat.header())])
        #expect(keys(empty) == [FindingKey(.genesisMissing, "empty.ledger", nil)])
    }

    @Test("a file that is empty or not a ledger gets one finding about its header, nothing more", arguments: [
        ([UInt8](), FindingCode.headerTruncated), (Array("hello, world\n".utf8), .headerTruncated),
        (Array("#!/bin/sh\necho not a ledger\n".utf8), .headerBadMagic),
    ])
    func notALedger(bytes: [UInt8], code: FindingCode) throws {
        let report = try audit([("x.ledger", bytes)])
        #expect(keys(report) == [FindingKey(code, "x.ledger", nil)])
        #expect(report.findings[0].byteOffset == 0)
    }

    @Test("a second genesis record is reported")
    func genesisRepeated() throws {
        var records = ledger(through: 3)
        records.insert(.genesis(TestKeys.config.genesis), at: 2)
        #expect(keys(try audit("twice.ledger", records)) == [FindingKey(.genesisRepeated, "twice.ledger", 1)])
    }

    @Test("a missing block is a gap; the chain resumes nowhere")
    func missingBlock() throws {
        let records = ledger(through: 10).filter { $0.block?.height.value != 6 }
        let report = try audit("gap.ledger", records)
        #expect(keys(report) == [FindingKey(.heightGap, "gap.ledger", 5)])
        #expect(report.files[0].height == 5)
    }

    @Test("the same height twice, same block or a conflicting one, is reported")
    func duplicateHeight() throws {
        var records = ledger(through: 6)
        records.append(records[3])
        let conflicting = builder.block(height: 2, view: 0, prevHash: records[2].block!.hash, batch: [], signers: [0, 1, 2])
        records.append(.block(conflicting))
        let report = try audit("dup.ledger", records)
        // Block 3 again also executes its requests again.
        #expect(keys(report) == [
            FindingKey(.heightDuplicate, "dup.ledger", 3), FindingKey(.duplicateTransaction, "dup.ledger", 3), FindingKey(.heightDuplicate, "dup.ledger", 2),
        ])
        #expect(report.findings.contains { $0.message.contains("the same block again") })
        #expect(report.findings.contains { $0.message.contains("a different block") })
    }

    @Test("a certificate does not cover prevHash: a rewritten link with an intact certificate is still caught by the chain")
    func rewrittenPrevHash() throws {
        let records = FixtureSet.replacingBlock(7, in: ledger(through: 10)) { block in
            CertifiedBlock(height: block.height, prevHash: Digest.of([1, 2, 3]), batch: block.batch,
                           certificateView: block.certificateView, commitSignatures: block.commitSignatures)
        }
        let report = try audit("relinked.ledger", records)
        #expect(keys(report) == [FindingKey(.hashChainBroken, "relinked.ledger", 7), FindingKey(.hashChainBroken, "relinked.ledger", 8)])
    }
}

@Suite("Invariant 2: commit certificates — q distinct member signers over (commit, view, height, digest)")
struct CommitCertificateTests {
    @Test("signatures made for another view do not verify for the certificate's view")
    func wrongView() throws {
        let records = FixtureSet.replacingBlock(4, in: ledger(through: 6)) { block in
            let signatures = [0, 1, 2].map { builder.commitSignature(height: 4, view: 5, digest: block.batchDigest, by: $0) }
            return block.withSignatures(signatures)
        }
        let report = try audit("view.ledger", records)
        #expect(keys(report) == [
            FindingKey(.commitSignatureInvalid, "view.ledger", 4, [0]), FindingKey(.commitSignatureInvalid, "view.ledger", 4, [1]),
            FindingKey(.commitSignatureInvalid, "view.ledger", 4, [2]), FindingKey(.commitQuorumShort, "view.ledger", 4, []),
        ])
    }

    @Test("a signature by a member's id made with an outsider's key is a bad signature")
    func impersonatedMember() throws {
        let records = FixtureSet.replacingBlock(3, in: ledger(through: 4)) { block in
            let forged = builder.foreignCommitSignature(height: 3, view: 0, digest: block.batchDigest, claimedID: 3, key: TestKeys.outsider)
            return block.withSignatures(block.commitSignatures.filter { $0.replica.value != 3 } + [forged])
        }
        // Replica 0's certificate at height 3 is r0, r1, r2, r3 minus r3: r0, r1, r2 and the forgery.
        #expect(keys(try audit("forged.ledger", records)) == [FindingKey(.commitSignatureInvalid, "forged.ledger", 3, [3])])
    }

    @Test("colluding replicas can certify a batch holding a forged client request; the client signature still fails")
    func forgedClientRequest() throws {
        let forged = Request(client: TestKeys.alice.publicKey, timestamp: 77, payload: Array("pay mallory".utf8), signature: Signature(bytes: [UInt8](repeating: 7, count: 64))!)
        var batches = plans
        batches[1] = FixtureSet.Plan(height: 2, view: 0, batch: batches[1].batch + [forged])
        let records = FixtureSet.records(FixtureSet.chain(Array(batches.prefix(4)), replica: 0), replica: 0)
        #expect(keys(try audit("client.ledger", records)) == [FindingKey(.clientSignatureInvalid, "client.ledger", 2)])
    }

    @Test("a request repeated inside one block is a duplicate too")
    func duplicateInsideOneBlock() throws {
        var batches = plans
        batches[2] = FixtureSet.Plan(height: 3, view: 0, batch: batches[2].batch + [batches[2].batch[0]])
        let records = FixtureSet.records(FixtureSet.chain(Array(batches.prefix(4)), replica: 0), replica: 0)
        let report = try audit("twice.ledger", records)
        #expect(keys(report) == [FindingKey(.duplicateTransaction, "twice.ledger", 3)])
        #expect(report.findings[0].message.contains("earlier in this block"))
    }
}

@Suite("Invariant 8: checkpoint certificates — q distinct signers over the chain-head hash")
struct CheckpointTests {
    func withCheckpoint(_ certificate: CheckpointCertificate, through height: Int = 10) -> [LedgerRecord] {
        ledger(through: height).filter { if case .checkpoint = $0 { false } else { true } } + [.checkpoint(certificate)]
    }

    @Test("a validly signed checkpoint whose digest is not this file's chain head at its sequence")
    func stateMismatch() throws {
        let certificate = builder.checkpoint(sequence: 8, stateDigest: Digest.of([8]), signers: [0, 1, 2])
        let report = try audit("cp.ledger", withCheckpoint(certificate))
        #expect(keys(report) == [FindingKey(.checkpointStateMismatch, "cp.ledger", 8, [0, 1, 2])])
    }

    @Test("a checkpoint above the file's chain cannot be checked and is reported")
    func beyondChain() throws {
        let certificate = builder.checkpoint(sequence: 16, stateDigest: Digest.of([16]), signers: [0, 1, 2])
        #expect(keys(try audit("cp.ledger", withCheckpoint(certificate))) == [FindingKey(.checkpointBeyondChain, "cp.ledger", 16)])
    }

    @Test("checkpoint certificates: too few, repeated, foreign and bad signers")
    func badSigners() throws {
        let head = FixtureSet.chain(Array(plans.prefix(8)), replica: 0).last!.hash
        let good = builder.checkpoint(sequence: 8, stateDigest: head, signers: [0, 1, 2, 3]).signatures
        var bad = good[2].signature.bytes
        bad[0] ^= 1
        let signatures = [good[0], good[0], ReplicaSignature(replica: 9, signature: good[1].signature), ReplicaSignature(replica: 2, signature: Signature(bytes: bad)!)]
        let certificate = CheckpointCertificate(sequence: 8, stateDigest: head, signatures: signatures)
        #expect(keys(try audit("cp.ledger", withCheckpoint(certificate))) == [
            FindingKey(.checkpointSignerRepeated, "cp.ledger", 8, [0]), FindingKey(.checkpointSignerNotMember, "cp.ledger", 8, [9]),
            FindingKey(.checkpointSignatureInvalid, "cp.ledger", 8, [2]), FindingKey(.checkpointQuorumShort, "cp.ledger", 8, [0]),
        ])
    }
}

@Suite("Invariant 6: agreement across files, and forensics when it fails")
struct AgreementTests {
    @Test("a ledger that is a prefix of another is lagging (info) behind the longest ledger it agrees with")
    func laggingIsInfo() throws {
        let report = try audit([
            ("a.ledger", LedgerBuilder.fileBytes(ledger(through: 20, replica: 0))),
            ("b.ledger", LedgerBuilder.fileBytes(ledger(through: 12, replica: 1))),
            ("c.ledger", LedgerBuilder.fileBytes([.genesis(TestKeys.config.genesis)])),
        ])
        #expect(report.verdict == .pass)
        #expect(keys(report) == [FindingKey(.lagging, "b.ledger", 12), FindingKey(.lagging, "c.ledger", 0)])
        #expect(report.summary(of: "b.ledger")?.laggingBehind == Lag(file: "a.ledger", height: 20, blockCount: 8))
        #expect(report.summary(of: "a.ledger")?.laggingBehind == nil)
    }

    /// Block 9 committed in view 0 by r0, r1, r2 at one replica, and a different batch in view 1
    /// by r1, r2, r3 at another: no same-view proof, but safety is broken all the same. r1 and
    /// r2 may be correct (each voted for one digest per view; the NEW-VIEW for view 1 may have
    /// been built without their VIEW-CHANGEs), so the finding names no replica.
    @Test("conflicting certificates in different views: not proof of equivocation, names no replica, still a broken 3f+1 assumption")
    func forkAcrossViews() throws {
        let common = Array(plans.prefix(8))
        let other = FixtureSet.Plan(height: 9, view: 1, batch: [builder.request(TestKeys.bob, timestamp: 9000, payload: "re-proposed after a view change")])
        let a = FixtureSet.chain(common + [plans[8]], replica: 0, signers: [9: [0, 1, 2]])
        let b = FixtureSet.chain(common + [other], replica: 3, signers: [9: [1, 2, 3]])
        let report = try audit([("a.ledger", LedgerBuilder.fileBytes(FixtureSet.records(a, replica: 0))), ("b.ledger", LedgerBuilder.fileBytes(FixtureSet.records(b, replica: 3)))])
        #expect(keys(report) == [FindingKey(.fork, "a.ledger", 9, [])])
        let forensics = try #require(report.findings[0].forensics)
        #expect(!forensics.sameView)
        #expect(!forensics.equivocationProven)
        #expect(forensics.signedBoth == [1, 2], "the evidence is still reported")
        #expect(forensics.equivocators.isEmpty)
        #expect(!forensics.moreThanFImplicated)
        #expect(forensics.explanation.contains("not proof of a fault"))
        #expect(forensics.safetyAssumptionBroken)
        #expect(forensics.sides.map(\.certificateView) == [0, 1])
        #expect(forensics.explanation.contains("different views"))
    }

    @Test("a divergent block without a valid certificate is not a cluster fork: the file holding it is bad")
    func divergentUncertifiedBlock() throws {
        let forged = FixtureSet.replacingBlock(5, in: ledger(through: 5, replica: 1)) { block in
            builder.block(height: 5, view: 0, prevHash: block.prevHash, batch: [], signers: [1, 2])
        }
        let report = try audit([("good.ledger", LedgerBuilder.fileBytes(ledger(through: 5))), ("bad.ledger", LedgerBuilder.fileBytes(forged))])
        #expect(keys(report) == [FindingKey(.commitQuorumShort, "bad.ledger", 5, [1, 2]), FindingKey(.divergentBlock, "good.ledger", 5, [1, 2])])
        let forensics = try #require(report.findings(.divergentBlock).first?.forensics)
        #expect(!forensics.safetyAssumptionBroken)
        #expect(forensics.sides.map(\.certified) == [true, false])
        #expect(forensics.explanation.contains("bad.ledger"))
    }

    @Test("one fork seen by several pairs of files is one finding")
    func forkReportedOnce() throws {
        let (a, b) = FixtureSet.fork()
        let report = try audit([("a1.ledger", LedgerBuilder.fileBytes(a)), ("a2.ledger", LedgerBuilder.fileBytes(a)),
                                ("b1.ledger", LedgerBuilder.fileBytes(b)), ("b2.ledger", LedgerBuilder.fileBytes(b))])
        #expect(report.findings(.fork).count == 1)
        #expect(report.findings(.fork)[0].message.contains("Also between"))
        #expect(report.findings.count == 1)
    }
}

@Suite("Configuration, options and the report")
struct AuditorBehaviourTests {
    @Test("n = 5 with f = 1: the quorum is ceil((n+f+1)/2) = 4, so quorums intersect in f+1 and no warning is due")
    func quorumIntersection() throws {
        let keys5 = TestKeys.replicas + [TestKeys.keyPair("replica-4")]
        let config = TestKeys.makeConfig(cluster: TestKeys.cluster, replicas: keys5, f: 1)
        #expect(config.quorum == 4)
        let report = try audit([("g.ledger", LedgerBuilder.fileBytes([.genesis(config.genesis)]))], config: config)
        #expect(report.verdict == .pass)
        #expect(report.findings.isEmpty)
        #expect(ConfigChecks.findings(config).isEmpty)
        #expect(ConfigChecks.findings(TestKeys.config).isEmpty)
    }

    @Test("findings past the per-file limit are counted, not listed")
    func findingsLimit() throws {
        var options = AuditOptions()
        options.findingsPerFileMax = 3
        let report = try audit([("s.ledger", try #require(FileManager.default.contents(atPath: FixtureSet.path("flipped-payload/replica-0.ledger"))).map { $0 })], options: options)
        #expect(report.findings.count == 4)
        #expect(report.findings.last?.code == .findingsSuppressed)
        #expect(report.findings.last?.message.hasPrefix("3 further") == true)
        #expect(report.verdict == .violation)
    }

    @Test("a torn tail can be audited as a warning (a crashed replica whose store has not reopened)")
    func tornTailSeverity() throws {
        var options = AuditOptions()
        options.tornTailSeverity = .warning
        let bytes = try #require(FileManager.default.contents(atPath: FixtureSet.path("truncated-tail/replica-0.ledger"))).map { $0 }
        let report = try audit([("t.ledger", bytes)], options: options)
        #expect(report.verdict == .pass)
        #expect(report.findings.map(\.severity) == [.warning])
    }

    @Test("each distinct signature is verified once per chunk across the replicas' ledgers")
    func verifyOnce() throws {
        let bytes = LedgerBuilder.fileBytes(ledger())
        let report = try audit((0..<4).map { ("r\($0).ledger", bytes) })
        #expect(report.stats.signatureCount == 4 * report.stats.verifiedSignatureCount)
        let cache = SignatureCache()
        var options = AuditOptions()
        options.signatureCache = cache
        _ = try audit([("r.ledger", bytes)], options: options)
        let again = try audit([("r.ledger", bytes)], options: options)
        #expect(again.stats.verifiedSignatureCount == 0)
        #expect(again.verdict == .pass)
        #expect(cache.count == report.stats.verifiedSignatureCount)
    }

    @Test("worker count and chunk size change nothing but speed", arguments: FixtureSet.tamperedDirectories + ["valid"])
    func parallelismIsInvisible(directory: String) throws {
        let config = try ClusterConfig.load(path: FixtureSet.path("\(directory)/cluster.json"))
        let baseline = try Auditor(config: config).audit(paths: [FixtureSet.path(directory)])
        for (workers, chunk) in [(1, 1), (2, 3), (8, 7)] {
            var options = AuditOptions()
            options.workerCount = workers
            options.chunkRecordCountMax = chunk
            let report = try Auditor(config: config, options: options).audit(paths: [FixtureSet.path(directory)])
            #expect(report.findings == baseline.findings)
            #expect(report.files == baseline.files)
        }
    }

    @Test("progress reaches every byte of every file")
    func progressReachesTheEnd() throws {
        var last: AuditProgress?
        let report = try Auditor(config: TestKeys.config).audit(paths: [FixtureSet.path("valid")]) { last = $0 }
        let progress = try #require(last)
        #expect(progress.byteCount == progress.byteCountTotal)
        #expect(progress.byteCountTotal == report.stats.byteCount)
        #expect(progress.blockCount == report.stats.blockCount)
    }

    @Test("the JSON report has every key, absent values as null, and decodes back")
    func jsonShape() throws {
        let report = try auditFixture("truncated-tail")
        let data = report.jsonData()
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(object.keys) == ["schemaVersion", "verdict", "cluster", "files", "findings", "stats"])
        #expect(object["verdict"] as? String == "violation")
        let finding = try #require((object["findings"] as? [[String: Any]])?.first)
        #expect(Set(finding.keys) == ["severity", "code", "file", "height", "byteOffset", "replicas", "message", "forensics"])
        #expect(finding["forensics"] is NSNull)
        #expect(finding["code"] as? String == "torn-tail")
        let decoded = try AuditReport.fromJSON(data)
        #expect(decoded.findings == report.findings)
        #expect(decoded.files == report.files)
    }

    @Test("finding codes are distinct, kebab-case strings")
    func findingCodes() {
        let raw = FindingCode.allCases.map(\.rawValue)
        #expect(Set(raw).count == raw.count)
        #expect(raw.allSatisfy { $0.allSatisfy { $0.isLowercase || $0 == "-" || $0.isNumber } })
    }
}
