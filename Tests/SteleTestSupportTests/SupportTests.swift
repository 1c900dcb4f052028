import Foundation
import SteleCore
import SteleCrypto
import SteleTestSupport
import Testing

@Suite("TemporaryDirectory: a scratch directory that goes with its owner")
struct TemporaryDirectoryTests {
    @Test("it exists while held, holds its files, and is removed with them when released")
    func removedWhenReleased() throws {
        var directory: TemporaryDirectory? = TemporaryDirectory(prefix: "stele-support")
        let path = try #require(directory?.path)
        let file = try #require(directory?.file("a/b.txt"))
        #expect(file == path + "/a/b.txt")
        #expect(URL(fileURLWithPath: path).lastPathComponent.hasPrefix("stele-support-"))
        try FileManager.default.createDirectory(atPath: path + "/a", withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        #expect(FileManager.default.fileExists(atPath: file))
        directory = nil
        #expect(!FileManager.default.fileExists(atPath: path), "the directory and its contents are removed")
    }

    @Test("two directories never share a path")
    func distinct() {
        let first = TemporaryDirectory(prefix: "stele-support")
        let second = TemporaryDirectory(prefix: "stele-support")
        #expect(first.path != second.path)
        #expect(first.fileURL("x").path == first.file("x"))
    }
}

@Suite("eventually: polling with a bound")
struct EventuallyTests {
    final class Counter: @unchecked Sendable {
        var calls = 0
    }

    @Test("returns true as soon as the condition holds")
    func holds() async {
        let counter = Counter()
        // A generous bound: in a full parallel run a sleeping task can wait tens of seconds
        // for a cooperative thread, and this test is about stopping early, not about speed.
        let held = await eventually(timeout: .seconds(600), interval: .milliseconds(1)) {
            counter.calls += 1
            return counter.calls == 3
        }
        #expect(held)
        #expect(counter.calls == 3)
    }

    @Test("returns false once the bound has passed, having checked at the deadline")
    func givesUp() async {
        let counter = Counter()
        let start = ContinuousClock.now
        let held = await eventually(timeout: .milliseconds(200), interval: .milliseconds(20)) {
            counter.calls += 1
            return false
        }
        #expect(!held)
        #expect(ContinuousClock.now - start >= .milliseconds(200))
        #expect(counter.calls >= 2, "polled more than once, and a last time at the deadline")
    }

    @Test("a condition's error reaches the caller")
    func errorsComeBack() async {
        struct Probe: Error {}
        await #expect(throws: Probe.self) { _ = try await eventually(timeout: .seconds(1)) { throw Probe() } }
    }
}

@Suite("TestReplicas: the one n-replica test configuration")
struct TestReplicasTests {
    @Test("replica i has the key of seed byte i + 1 and listens on 127.0.0.1:7000 + i; f is (n - 1) / 3")
    func defaults() {
        let replicas = TestReplicas(n: 7)
        #expect(replicas.n == 7)
        #expect(replicas.config.f == 2)
        #expect(replicas.cluster == TestReplicas.defaultCluster)
        for (index, endpoint) in replicas.config.replicas.enumerated() {
            #expect(endpoint.id == ReplicaID(UInt16(index)))
            #expect(endpoint.host == "127.0.0.1")
            #expect(endpoint.port == UInt16(7000 + index))
            let key = KeyPair(seed: [UInt8](repeating: UInt8(index + 1), count: 32))!
            #expect(endpoint.publicKey == key.publicKey)
        }
    }

    @Test("the fixed keys are the ones fixtures were made with")
    func pinnedKeys() {
        // Replica 0: the Ed25519 key of the seed 32 × 0x01; labelled keys hash their label.
        let replica0 = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
        #expect(FixedKeys.replica(0).publicKey.hex == replica0)
        #expect(FixedKeys.replica(2, offset: 10).publicKey == FixedKeys.repeating(13).publicKey)
        let labelled = KeyPair(seed: SHA256.hash(Array("stele test-only key: replica-0".utf8)))!
        #expect(FixedKeys.labelled("replica-0").publicKey == labelled.publicKey)
    }

    @Test("keys, ports, f and parameters can be given; signers sign as their replica")
    func overrides() {
        var parameters = ProtocolParameters()
        parameters.checkpointInterval = 8
        parameters.watermarkWindow = 16
        let cluster = ClusterID(bytes: [UInt8](repeating: 3, count: 16))!
        let keys = (0..<5).map { FixedKeys.labelled("member-\($0)") }
        let replicas = TestReplicas(n: 5, f: 1, cluster: cluster, keys: keys, host: "10.0.0.1",
                                    ports: .listed([9, 8, 7, 6, 5]), parameters: parameters)
        #expect(replicas.config.f == 1)
        #expect(replicas.config.quorum == 4)
        #expect(replicas.config.parameters == parameters)
        #expect(replicas.config.replicas.map(\.port) == [9, 8, 7, 6, 5])
        #expect(replicas.config.replicas.allSatisfy { $0.host == "10.0.0.1" })
        #expect(replicas.config.replicas.map(\.publicKey) == keys.map(\.publicKey))
        #expect(TestReplicas(n: 4, ports: .from(7100)).config.replicas.map(\.port) == [7100, 7101, 7102, 7103])
        let verifier = SignatureVerifier(config: replicas.config)
        let checkpoint = Checkpoint(sequence: 8, stateDigest: Digest.of([1]), replica: 4).signed(by: replicas.signer(4))
        #expect((try? verifier.verify(.checkpoint(checkpoint))) != nil)
        let otherKeys = SignatureVerifier(config: TestReplicas(n: 5, f: 1, cluster: cluster).config)
        #expect((try? otherKeys.verify(.checkpoint(checkpoint))) == nil, "the signer signs with the given key")
    }
}
