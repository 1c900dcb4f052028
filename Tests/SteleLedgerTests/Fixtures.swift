import Foundation
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import SteleLedger

/// A deterministic cluster: n = 3f+1 replicas whose Ed25519 seeds are 32 copies of the byte
/// `id + 1 + seedOffset`, one client whose seed is 32 bytes of `clientSeedByte`, and a fixed
/// cluster id; the worked example's bytes depend on these keys.
struct TestCluster {
    static let exampleClusterID = ClusterID(hex: "000102030405060708090a0b0c0d0e0f")!

    let replicas: TestReplicas
    let clientSeed: [UInt8]
    let client: ClientSigner

    init(f: Int = 1, cluster: ClusterID = TestCluster.exampleClusterID, seedOffset: UInt8 = 0, clientSeedByte: UInt8 = 0xc0) {
        let n = 3 * f + 1
        replicas = TestReplicas(n: n, f: f, cluster: cluster, keys: FixedKeys.replicas(n, offset: seedOffset))
        clientSeed = [UInt8](repeating: clientSeedByte, count: KeyPair.seedByteCount)
        client = ClientSigner(cluster: cluster, keyPair: FixedKeys.repeating(clientSeedByte))
    }

    var cluster: ClusterID { replicas.cluster }
    var f: Int { replicas.config.f }
    var replicaKeys: [KeyPair] { replicas.keys }
    var n: Int { replicas.n }
    var quorum: Int { 2 * f + 1 }
    var genesis: Genesis { replicas.config.genesis }

    func signer(_ id: Int) -> ReplicaSigner { replicas.signer(id) }

    func request(timestamp: UInt64, payload: String) -> Request {
        client.request(timestamp: timestamp, payload: Array(payload.utf8))
    }

    /// Block `height` after `prevHash`, certified by COMMITs of `signers` in `view`.
    func block(height: UInt64, prevHash: Digest, batch: [Request], view: UInt64 = 0, signers: [Int]? = nil) -> CertifiedBlock {
        let digest = Batch.digest(batch)
        let signatures = (signers ?? Array(0..<quorum)).map { id in
            let vote = Vote(kind: .commit, view: View(view), sequence: SequenceNumber(height), digest: digest, replica: ReplicaID(UInt16(id)))
            return ReplicaSignature(replica: vote.replica, signature: vote.signed(by: signer(id)).signature)
        }
        return CertifiedBlock(height: SequenceNumber(height), prevHash: prevHash, batch: batch, certificateView: View(view), commitSignatures: signatures)
    }

    /// Blocks 1 ... count, each with `requestsPerBlock` requests (client timestamps 1, 2, ...).
    func chain(count: Int, requestsPerBlock: Int = 1, payloadByteCount: Int = 16, after head: ChainHead? = nil, firstTimestamp: UInt64 = 1) -> [CertifiedBlock] {
        var prevHash = head?.hash ?? genesis.hash
        var height = (head?.height.value ?? 0) + 1
        var timestamp = firstTimestamp
        var blocks = [CertifiedBlock]()
        for _ in 0..<count {
            let batch = (0..<requestsPerBlock).map { _ -> Request in
                defer { timestamp += 1 }
                let payload = String(repeating: "x", count: max(0, payloadByteCount - 6)) + String(format: "%06d", timestamp % 1_000_000)
                return request(timestamp: timestamp, payload: payload)
            }
            let block = block(height: height, prevHash: prevHash, batch: batch, view: height / 7)
            blocks.append(block)
            prevHash = block.hash
            height += 1
        }
        return blocks
    }

    /// A stable checkpoint certificate for `block`, signed by the first 2f+1 replicas.
    func checkpoint(for block: CertifiedBlock) -> CheckpointCertificate {
        checkpoint(sequence: block.height, digest: block.hash)
    }

    func checkpoint(sequence: SequenceNumber, digest: Digest) -> CheckpointCertificate {
        CheckpointCertificate(checkpoints: (0..<quorum).map {
            Checkpoint(sequence: sequence, stateDigest: digest, replica: ReplicaID(UInt16($0))).signed(by: signer($0))
        })
    }
}

func readFile(_ path: String) -> [UInt8] {
    [UInt8](FileManager.default.contents(atPath: path)!)
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    precondition(FileManager.default.createFile(atPath: path, contents: Data(bytes)), "cannot write \(path)")
}

/// Forwards to another storage and remembers the largest single read: open must stream.
final class ReadCountingStorage: LedgerStorage {
    let inner: any LedgerStorage
    private(set) var largestReadByteCount = 0
    private(set) var readCount = 0

    init(_ inner: any LedgerStorage) { self.inner = inner }

    var path: String { inner.path }
    func byteCount() throws(StorageError) -> UInt64 { try inner.byteCount() }
    func read(count: Int, at offset: UInt64) throws(StorageError) -> [UInt8] {
        largestReadByteCount = max(largestReadByteCount, count)
        readCount += 1
        return try inner.read(count: count, at: offset)
    }
    func write(_ bytes: [UInt8], at offset: UInt64) throws(StorageError) { try inner.write(bytes, at: offset) }
    func sync() throws(StorageError) { try inner.sync() }
    func truncate(toByteCount byteCount: UInt64) throws(StorageError) { try inner.truncate(toByteCount: byteCount) }
}

/// Runs `body` and returns the LedgerError it threw, or nil.
func ledgerError<T>(_ body: () throws(LedgerError) -> T) -> LedgerError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}

extension UInt64 {
    var asInt: Int { Int(self) }
}
