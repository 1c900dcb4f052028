import Foundation
import Testing
import SteleCrypto
import SteleTestSupport
@testable import SteleCore

@Suite("What a signature covers")
struct SigningTests {
    let verifier = SignatureVerifier(config: Samples.config)

    @Test("the signed content is 79 bytes: domain, cluster, tag, view, sequence, signer, digest")
    func layout() {
        let digest = Digest.of([1])
        let content = SignedContent(tag: .commit, view: 5, sequence: 9, signer: 2, digest: digest)
        let bytes = content.bytes(cluster: Samples.cluster)
        #expect(bytes.count == 79)
        #expect(Array(bytes[0..<12]) == Array("stele.sig.v1".utf8))
        #expect(Array(bytes[12..<28]) == Samples.cluster.bytes)
        #expect(bytes[28] == MessageTag.commit.rawValue)
        #expect(Array(bytes[29..<37]) == [0, 0, 0, 0, 0, 0, 0, 5])
        #expect(Array(bytes[37..<45]) == [0, 0, 0, 0, 0, 0, 0, 9])
        #expect(Array(bytes[45..<47]) == [0, 2])
        #expect(Array(bytes[47..<79]) == digest.bytes)
    }

    @Test("every sample message verifies, nested signatures included")
    func samplesVerify() throws {
        for message in Samples.allMessages {
            try verifier.verify(message)
        }
    }

    @Test("a PREPARE's signature can never be replayed as a COMMIT")
    func typeSeparation() {
        let prepare = Samples.vote(.prepare, replica: 1, digest: Digest.of([7]))
        let forgedCommit = Vote(kind: .commit, view: prepare.view, sequence: prepare.sequence, digest: prepare.digest, replica: prepare.replica, signature: prepare.signature)
        #expect(throws: VerificationError(code: .badSignature, path: "commit")) { try verifier.verify(.commit(forgedCommit)) }
    }

    @Test("a signature from another cluster does not verify here")
    func clusterSeparation() throws {
        let otherCluster = ClusterID(bytes: [UInt8](repeating: 0xee, count: 16))!
        let foreign = ReplicaSigner(replica: 1, cluster: otherCluster, keyPair: Samples.replicaKeys[1])
        let vote = Vote(kind: .prepare, view: 0, sequence: 1, digest: Digest.of([1]), replica: 1).signed(by: foreign)
        #expect(throws: VerificationError(code: .badSignature, path: "prepare")) { try verifier.verify(.prepare(vote)) }
    }

    @Test("changing the view, sequence, digest or claimed sender breaks the signature")
    func fieldBinding() {
        let vote = Samples.vote(.prepare, replica: 1, digest: Digest.of([7]))
        let variants = [
            Vote(kind: .prepare, view: vote.view.next, sequence: vote.sequence, digest: vote.digest, replica: 1, signature: vote.signature),
            Vote(kind: .prepare, view: vote.view, sequence: vote.sequence.next, digest: vote.digest, replica: 1, signature: vote.signature),
            Vote(kind: .prepare, view: vote.view, sequence: vote.sequence, digest: Digest.of([8]), replica: 1, signature: vote.signature),
            Vote(kind: .prepare, view: vote.view, sequence: vote.sequence, digest: vote.digest, replica: 2, signature: vote.signature),
        ]
        for variant in variants {
            #expect(throws: VerificationError.self) { try verifier.verify(.prepare(variant)) }
        }
    }

    @Test("a non-member signer is refused as unknown")
    func unknownSigner() {
        let outsider = ReplicaSigner(replica: 9, cluster: Samples.cluster, keyPair: Samples.clientKey)
        let vote = Vote(kind: .prepare, view: 0, sequence: 1, digest: Digest.of([1]), replica: 9).signed(by: outsider)
        #expect(throws: VerificationError(code: .unknownSigner(9), path: "prepare")) { try verifier.verify(.prepare(vote)) }
    }

    @Test("a bad client signature inside a PRE-PREPARE batch is found and located")
    func nestedClientSignature() {
        let good = Samples.request(1)
        let bad = Request(client: good.client, timestamp: good.timestamp, payload: Array("other".utf8), signature: good.signature)
        let prePrepare = PrePrepare(view: 0, sequence: 1, primary: 0, batch: [good, bad]).signed(by: Samples.signer(0))
        #expect(throws: VerificationError(code: .badSignature, path: "prePrepare.batch[1]")) { try verifier.verify(.prePrepare(prePrepare)) }
    }

    @Test("a forged prepare inside a VIEW-CHANGE certificate is found and located")
    func nestedPrepare() {
        let certificate = Samples.preparedCertificate
        var prepares = certificate.prepares
        prepares[1] = prepares[1].withSignature(prepares[0].signature)
        let viewChange = ViewChange(newView: 4, stableSequence: 16, checkpointProof: Samples.checkpoints,
                                    prepared: [PreparedCertificate(prePrepare: certificate.prePrepare, prepares: prepares)], replica: 2).signed(by: Samples.signer(2))
        #expect(throws: VerificationError(code: .badSignature, path: "viewChange.prepared[0].prepares[1]")) { try verifier.verify(.viewChange(viewChange)) }
    }

    @Test("commit certificates of transferred blocks are verified")
    func blockCertificates() {
        let block = Samples.block
        var signatures = block.commitSignatures
        signatures[2] = ReplicaSignature(replica: 2, signature: signatures[0].signature)
        let forged = CertifiedBlock(height: block.height, prevHash: block.prevHash, batch: block.batch, certificateView: block.certificateView, commitSignatures: signatures)
        let response = StateResponse(blocks: [forged], checkpoint: nil, replica: 1).signed(by: Samples.signer(1))
        #expect(throws: VerificationError(code: .badSignature, path: "stateResponse.blocks[0].commitSignatures[2]")) { try verifier.verify(.stateResponse(response)) }
    }

    @Test("request identity ignores signature bytes; batch digests do not")
    func requestIdentity() {
        let request = Samples.request(5)
        let resigned = request.withSignature(Samples.replicaKeys[0].sign([1]))
        #expect(request.contentDigest == resigned.contentDigest)
        #expect(Batch.digest([request]) != Batch.digest([resigned]))
        #expect(Batch.digest([]) == Batch.nullDigest)
    }

    @Test("the block hash binds height, previous hash and batch, not the certificate view")
    func blockHash() {
        let block = Samples.block
        let otherView = CertifiedBlock(height: block.height, prevHash: block.prevHash, batch: block.batch, certificateView: 9, commitSignatures: [])
        #expect(block.hash == otherView.hash)
        let otherBatch = CertifiedBlock(height: block.height, prevHash: block.prevHash, batch: [Samples.request(3)], certificateView: 3, commitSignatures: [])
        #expect(block.hash != otherBatch.hash)
        let otherHeight = CertifiedBlock(height: 2, prevHash: block.prevHash, batch: block.batch, certificateView: 3, commitSignatures: [])
        #expect(block.hash != otherHeight.hash)
    }

    @Test("quorum shape: 2f+1 distinct members; repeats and outsiders invalidate")
    func quorumShape() {
        let block = Samples.block
        #expect(QuorumShape.isValidCommitCertificate(block, config: Samples.config))
        let short = CertifiedBlock(height: 1, prevHash: block.prevHash, batch: block.batch, certificateView: 3, commitSignatures: Array(block.commitSignatures.prefix(2)))
        #expect(!QuorumShape.isValidCommitCertificate(short, config: Samples.config))
        let repeated = CertifiedBlock(height: 1, prevHash: block.prevHash, batch: block.batch, certificateView: 3,
                                      commitSignatures: Array(block.commitSignatures.prefix(2)) + [block.commitSignatures[0]])
        #expect(!QuorumShape.isValidCommitCertificate(repeated, config: Samples.config))
        let outsider = CertifiedBlock(height: 1, prevHash: block.prevHash, batch: block.batch, certificateView: 3,
                                      commitSignatures: Array(block.commitSignatures.prefix(2)) + [ReplicaSignature(replica: 7, signature: .zero)])
        #expect(!QuorumShape.isValidCommitCertificate(outsider, config: Samples.config))
    }
}

@Suite("Cluster configuration")
struct ClusterConfigTests {
    func endpoints(_ count: Int) -> [ReplicaEndpoint] { TestReplicas.endpoints(keys: FixedKeys.replicas(count)) }

    @Test("n >= 3f+1 is enforced with a clear error")
    func tooFewReplicas() {
        #expect(throws: ConfigError(.tooFewReplicas(n: 3, f: 1))) { _ = try ClusterConfig(cluster: Samples.cluster, f: 1, replicas: endpoints(3)) }
        #expect(ConfigError(.tooFewReplicas(n: 3, f: 1)).description.contains("n >= 3f+1 = 4"))
        #expect(throws: Never.self) { _ = try ClusterConfig(cluster: Samples.cluster, f: 1, replicas: endpoints(4)) }
        #expect(throws: Never.self) { _ = try ClusterConfig(cluster: Samples.cluster, f: 2, replicas: endpoints(7)) }
    }

    @Test("duplicate ids, duplicate keys and gaps are refused")
    func membership() {
        var replicas = endpoints(4)
        replicas[3] = ReplicaEndpoint(id: 3, host: "h", port: 1, publicKey: replicas[0].publicKey)
        #expect(throws: ConfigError(.duplicatePublicKey(0, 3))) { _ = try ClusterConfig(cluster: Samples.cluster, f: 1, replicas: replicas) }
        var gapped = endpoints(4)
        gapped[3] = ReplicaEndpoint(id: 5, host: "h", port: 1, publicKey: gapped[3].publicKey)
        #expect(throws: ConfigError(.replicaIDsNotContiguous)) { _ = try ClusterConfig(cluster: Samples.cluster, f: 1, replicas: gapped) }
        var duplicated = endpoints(4)
        duplicated[3] = ReplicaEndpoint(id: 2, host: "h", port: 1, publicKey: duplicated[3].publicKey)
        #expect(throws: ConfigError(.duplicateReplicaID(2))) { _ = try ClusterConfig(cluster: Samples.cluster, f: 1, replicas: duplicated) }
    }

    @Test("quorum, weak quorum and primary rotation")
    func quorums() throws {
        let config = try ClusterConfig(cluster: Samples.cluster, f: 2, replicas: endpoints(7))
        #expect(config.quorum == 5)
        // n > 3f + 1: two quorums must still share f + 1 replicas.
        let five = try ClusterConfig(cluster: Samples.cluster, f: 1, replicas: endpoints(5))
        #expect(five.quorum == 4)
        #expect(2 * five.quorum - five.n >= five.f + 1)
        #expect(try ClusterConfig(cluster: Samples.cluster, f: 1, replicas: endpoints(4)).quorum == 3)
        #expect(config.weakQuorum == 3)
        #expect(config.primary(of: 0) == 0)
        #expect(config.primary(of: 9) == 2)
    }

    @Test("the watermark window must be a multiple of the checkpoint interval")
    func parameters() {
        var parameters = ProtocolParameters()
        parameters.checkpointInterval = 10
        parameters.watermarkWindow = 25
        #expect { _ = try ClusterConfig(cluster: Samples.cluster, f: 1, replicas: endpoints(4), parameters: parameters) } throws: { error in
            guard let error = error as? ConfigError, case .invalidParameter("watermarkWindow", _) = error.code else { return false }
            return true
        }
    }

    @Test("JSON round trip, and malformed JSON named by its source")
    func json() throws {
        let data = Samples.config.jsonData()
        let decoded = try ClusterConfig.fromJSON(data, source: "cluster.json")
        #expect(decoded == Samples.config)
        #expect { _ = try ClusterConfig.fromJSON(Data("{}".utf8), source: "x.json") } throws: { error in
            guard let error = error as? ConfigError, case .malformed = error.code else { return false }
            return error.source == "x.json"
        }
        let text = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\"f\" : 1", with: "\"f\" : 2")
        #expect(throws: ConfigError(.tooFewReplicas(n: 4, f: 2), source: "cluster.json")) { _ = try ClusterConfig.fromJSON(Data(text.utf8), source: "cluster.json") }
        #expect { _ = try ClusterConfig.load(path: "/nonexistent/cluster.json") } throws: { error in
            guard let error = error as? ConfigError, case .unreadable = error.code else { return false }
            return true
        }
    }

    @Test("a cluster.json written before batchBytesMax existed loads with its default")
    func parametersFromAnOlderFile() throws {
        var parameters = ProtocolParameters()
        parameters.batchSizeMax = 77
        parameters.batchBytesMax = 12_345
        let config = try ClusterConfig(cluster: Samples.cluster, f: 1, replicas: endpoints(4), parameters: parameters)
        let text = String(decoding: config.jsonData(), as: UTF8.self)
        #expect(try ClusterConfig.fromJSON(Data(text.utf8)).parameters == parameters)
        let older = text.replacingOccurrences(of: "\"batchBytesMax\" : 12345,", with: "")
        #expect(older != text)
        let loaded = try ClusterConfig.fromJSON(Data(older.utf8))
        #expect(loaded.parameters.batchSizeMax == 77)
        #expect(loaded.parameters.batchBytesMax == ProtocolParameters().batchBytesMax)
        #expect { _ = try ClusterConfig.fromJSON(Data(text.replacingOccurrences(of: "\"batchBytesMax\" : 12345", with: "\"batchBytesMax\" : 0").utf8)) } throws: { error in
            guard let error = error as? ConfigError, case .invalidParameter("batchBytesMax", _) = error.code else { return false }
            return true
        }
    }
}
