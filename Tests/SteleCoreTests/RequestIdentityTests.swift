import SteleCrypto
import Testing
@testable import SteleCore

@Suite("A request's identity, computed once")
struct RequestIdentityTests {
    /// The digest recomputed from scratch, independently of `Request`.
    func digestFromScratch(_ request: Request) -> Digest {
        var bytes = Array("stele.request.v1".utf8) + request.client.bytes
        bytes += withUnsafeBytes(of: request.timestamp.bigEndian) { Array($0) }
        bytes += withUnsafeBytes(of: UInt32(request.payload.count).bigEndian) { Array($0) }
        bytes += request.payload
        return Digest.of(bytes)
    }

    @Test("the stored content digest is the digest of client, timestamp and payload, for made, re-signed and decoded requests")
    func storedDigestMatches() throws {
        let request = Samples.request(7)
        #expect(request.contentDigest == digestFromScratch(request))
        let resigned = request.withSignature(Signature.zero)
        #expect(resigned.contentDigest == request.contentDigest)
        let decoded = try Message.decode(Message.request(request).encode())
        guard case .request(let roundTripped) = decoded else { Issue.record("not a request"); return }
        #expect(roundTripped.contentDigest == request.contentDigest)
        #expect(Samples.request(8).contentDigest != request.contentDigest)
    }

    @Test("requests differing only in signature are different requests")
    func signatureIsPartOfEquality() {
        let request = Samples.request(7)
        let resigned = request.withSignature(Signature.zero)
        #expect(request != resigned)
        #expect(Set([request, resigned, request]).count == 2)
        #expect(request == Samples.request(7))
    }

    @Test("a block made from its PRE-PREPARE is the block made from the batch")
    func blockFromPrePrepare() {
        let prePrepare = Samples.prePrepare
        let signatures = Samples.block.commitSignatures
        let fromPrePrepare = CertifiedBlock(height: 1, prevHash: Samples.config.genesis.hash, prePrepare: prePrepare, commitSignatures: signatures)
        let fromBatch = CertifiedBlock(height: 1, prevHash: Samples.config.genesis.hash, batch: prePrepare.batch,
                                       certificateView: prePrepare.view, commitSignatures: signatures)
        #expect(fromPrePrepare == fromBatch)
        #expect(fromPrePrepare.batchDigest == Batch.digest(prePrepare.batch))
        #expect(fromPrePrepare.hash == fromBatch.hash)
    }
}
