import SteleCore
import SteleCrypto
import SteleSim
import Testing

/// The safety checker on hand-built ledgers: Castro & Liskov §4 safety (agreement on every
/// sequence number), the hash chain, commit certificates of 2f+1, and exactly-once execution.
@Suite struct SafetyCheckerTests {
    let fixture = Fixture()
    var checker: SafetyChecker { SafetyChecker(config: fixture.config) }

    @Test func identicalCertifiedChainsPass() {
        let chain = fixture.chain(5)
        let logs: [ReplicaID: [CertifiedBlock]] = [0: chain, 1: chain, 2: Array(chain.prefix(3)), 3: []]
        #expect(checker.check(logs: logs) == [])
    }

    @Test func sameBatchCommittedInDifferentViewsIsOneBlock() {
        let batch = [fixture.request(1)]
        let inView0 = fixture.block(1, after: nil, batch: batch, signedBy: [0, 1, 2], view: 0)
        let inView1 = fixture.block(1, after: nil, batch: batch, signedBy: [1, 2, 3], view: 1)
        #expect(checker.check(logs: [0: [inView0], 1: [inView1]]) == [])
    }

    @Test func forkIsDetectedAndTheColludersAreNamed() throws {
        let common = fixture.chain(1)
        let a = fixture.block(2, after: common[0], batch: [fixture.request(2, "A")], signedBy: [0, 1, 2])
        let b = fixture.block(2, after: common[0], batch: [fixture.request(2, "B")], signedBy: [0, 1, 3])
        let violations = checker.check(logs: [2: common + [a], 3: common + [b]])
        let fork = try #require(violations.first { $0.code == .fork })
        #expect(fork.height == 2)
        #expect(fork.colluders == [0, 1])
        #expect(fork.replicas == [0, 1, 2, 3])
        #expect(violations.count == 1)
    }

    @Test func forkWithForgedSignatureDoesNotBlameTheForgedSigner() throws {
        let a = fixture.block(1, after: nil, batch: [fixture.request(1, "A")], signedBy: [0, 1, 2])
        let honest = fixture.block(1, after: nil, batch: [fixture.request(1, "B")], signedBy: [0, 1, 3])
        // r2's signature on B is really r3's bytes: it does not verify, so r2 is no colluder.
        let forged = CertifiedBlock(
            height: 1, prevHash: honest.prevHash, batch: honest.batch, certificateView: 0,
            commitSignatures: honest.commitSignatures + [ReplicaSignature(replica: 2, signature: honest.commitSignatures[2].signature)])
        let violations = checker.check(logs: [2: [a], 3: [forged]])
        let fork = try #require(violations.first { $0.code == .fork })
        #expect(fork.colluders == [0, 1])
        #expect(violations.contains { $0.code == .badCommitSignature && $0.replicas == [3] })
    }

    @Test func duplicateRequestInOneLedgerIsAViolation() {
        let first = fixture.block(1, after: nil, batch: [fixture.request(1)])
        let again = fixture.block(2, after: first, batch: [fixture.request(1)])
        let violations = checker.check(logs: [0: [first, again]])
        #expect(violations.map(\.code) == [.duplicateRequest])
        #expect(violations.first?.height == 2)
    }

    @Test func sameTimestampWithAnotherPayloadIsStillADuplicate() {
        let first = fixture.block(1, after: nil, batch: [fixture.request(1, "x"), fixture.request(1, "y")])
        #expect(checker.check(logs: [0: [first]]).map(\.code) == [.duplicateRequest])
    }

    @Test(arguments: [
        ("two signers", [UInt16(0), 1]),
        ("repeated signer", [UInt16(0), 0, 1]),
        ("non-member signer", [UInt16(0), 1, 9]),
    ])
    func certificateWithoutTwoFPlusOneDistinctMembersIsUncertified(_ name: String, _ signers: [UInt16]) {
        let block = fixture.block(1, after: nil, batch: [fixture.request(1)], signedBy: signers)
        #expect(checker.check(logs: [0: [block]]).map(\.code) == [.uncertifiedBlock], "\(name)")
    }

    @Test func commitSignatureOverAnotherDigestDoesNotVerify() {
        let real = fixture.block(1, after: nil, batch: [fixture.request(1, "real")])
        let other = fixture.block(1, after: nil, batch: [fixture.request(1, "other")])
        let spliced = CertifiedBlock(
            height: 1, prevHash: real.prevHash, batch: real.batch, certificateView: 0,
            commitSignatures: [real.commitSignatures[0], real.commitSignatures[1], other.commitSignatures[2]])
        #expect(checker.check(logs: [0: [spliced]]).map(\.code) == [.badCommitSignature])
    }

    @Test func requestWithBrokenClientSignatureIsReported() {
        let request = fixture.request(1)
        var signature = request.signature.bytes
        signature[0] ^= 1
        let broken = request.withSignature(Signature(bytes: signature)!)
        let block = fixture.block(1, after: nil, batch: [broken])
        #expect(checker.check(logs: [0: [block]]).map(\.code) == [.badClientSignature])
    }

    @Test func prevHashMustChainFromGenesis() {
        let wrongGenesis = CertifiedBlock(height: 1, prevHash: .zero, batch: [], certificateView: 0, commitSignatures: fixture.block(1, after: nil, batch: []).commitSignatures)
        #expect(checker.check(logs: [0: [wrongGenesis]]).map(\.code) == [.brokenChain])
        let chain = fixture.chain(3)
        let unlinked = fixture.block(3, after: chain[0], batch: [fixture.request(3)])
        #expect(checker.check(logs: [0: [chain[0], chain[1], unlinked]]).map(\.code) == [.brokenChain])
    }

    @Test func heightsMustBeContiguousFromOne() {
        let chain = fixture.chain(3)
        #expect(checker.check(logs: [0: [chain[0], chain[2]]]).contains { $0.code == .brokenChain && $0.height == 3 })
        #expect(checker.check(logs: [0: Array(chain.dropFirst())]).contains { $0.code == .brokenChain && $0.height == 2 })
    }

    @Test func stableCheckpointMustNameTheLedgerStateAndBeCertified() {
        let chain = fixture.chain(4)
        let good = fixture.checkpoint(4, digest: chain[3].hash)
        #expect(checker.check(logs: [0: chain], checkpoints: [0: [good]]) == [])
        let wrongState = fixture.checkpoint(4, digest: chain[2].hash)
        #expect(checker.check(logs: [0: chain], checkpoints: [0: [wrongState]]).map(\.code) == [.badCheckpoint])
        let tooFew = fixture.checkpoint(4, digest: chain[3].hash, signedBy: [0, 1])
        #expect(checker.check(logs: [0: chain], checkpoints: [0: [tooFew]]).map(\.code) == [.badCheckpoint])
    }
}
