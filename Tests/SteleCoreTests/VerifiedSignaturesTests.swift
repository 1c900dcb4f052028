import Testing
import SteleCrypto
@testable import SteleCore

@Suite("Signatures verified once")
struct VerifiedSignaturesTests {
    @Test("a re-sent PRE-PREPARE is found in the memo; a forged copy of it is still refused")
    func memoSkipsOnlyIdenticalBytes() throws {
        let memo = VerifiedSignatures(capacity: 1_000)
        let verifier = SignatureVerifier(config: Samples.config, memo: memo)
        let batch = (1...20).map { Samples.request(UInt64($0)) }
        let prePrepare = PrePrepare(view: 3, sequence: 17, primary: 3, batch: batch).signed(by: Samples.signer(3))
        try verifier.verify(.prePrepare(prePrepare))
        #expect(memo.count == 21)
        try verifier.verify(.prePrepare(prePrepare))
        #expect(memo.count == 21)

        // The same request bytes under a flipped signature bit: not in the memo, and refused.
        var forged = batch
        var signature = forged[4].signature.bytes
        signature[0] ^= 1
        forged[4] = Request(client: forged[4].client, timestamp: forged[4].timestamp, payload: forged[4].payload,
                            signature: Signature(bytes: signature)!)
        let forgedPrePrepare = PrePrepare(view: 3, sequence: 18, primary: 3, batch: forged).signed(by: Samples.signer(3))
        #expect(throws: VerificationError(code: .badSignature, path: "prePrepare.batch[4]")) {
            try verifier.verify(.prePrepare(forgedPrePrepare))
        }
    }

    @Test("a request verified inside a PRE-PREPARE is not verified again on its own")
    func requestsShareTheMemo() throws {
        let memo = VerifiedSignatures(capacity: 1_000)
        let verifier = SignatureVerifier(config: Samples.config, memo: memo)
        let request = Samples.request(7)
        try verifier.verify(.prePrepare(PrePrepare(view: 3, sequence: 17, primary: 3, batch: [request]).signed(by: Samples.signer(3))))
        let before = memo.count
        #expect(verifier.verify(request))
        #expect(memo.count == before)
    }

    @Test("the memo forgets its oldest entries beyond its capacity")
    func bounded() {
        let memo = VerifiedSignatures(capacity: 8)
        let verifier = SignatureVerifier(config: Samples.config, memo: memo)
        for timestamp in 1...30 { #expect(verifier.verify(Samples.request(UInt64(timestamp)))) }
        #expect(memo.count == 8)
        func key(_ request: Request) -> Digest {
            let check = verifier.checks(for: .request(request))[0]
            return VerifiedSignatures.key(signingBytes: check.content.bytes(cluster: Samples.cluster), check: check)
        }
        let newest = key(Samples.request(30))
        let oldest = key(Samples.request(1))
        #expect(memo.contains([newest, oldest]) == [true, false])
    }
}
