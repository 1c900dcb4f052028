import SteleCore
import SteleCrypto

/// Keys for tests, derived from fixed bytes: never secret, never random. Ed25519 is
/// deterministic, so everything signed with them is byte-stable (fixtures depend on that).
public enum FixedKeys {
    /// The key whose Ed25519 seed is 32 copies of `byte`.
    public static func repeating(_ byte: UInt8) -> KeyPair {
        guard let key = KeyPair(seed: [UInt8](repeating: byte, count: KeyPair.seedByteCount)) else {
            preconditionFailure("a 32-byte seed always makes a key")
        }
        return key
    }

    /// Replica `index`'s key: the seed byte is `index + 1 + offset` (replica 0 is 32 × 0x01).
    public static func replica(_ index: Int, offset: UInt8 = 0) -> KeyPair {
        precondition(index >= 0 && index + 1 + Int(offset) <= Int(UInt8.max), "seed byte out of range")
        return repeating(UInt8(index) + 1 + offset)
    }

    /// The keys of replicas 0 ..< `count`.
    public static func replicas(_ count: Int, offset: UInt8 = 0) -> [KeyPair] {
        (0..<count).map { replica($0, offset: offset) }
    }

    /// The key whose seed is SHA-256("stele test-only key: " + label).
    public static func labelled(_ label: String) -> KeyPair {
        guard let key = KeyPair(seed: SHA256.hash(Array("stele test-only key: \(label)".utf8))) else {
            preconditionFailure("a SHA-256 digest is a 32-byte seed")
        }
        return key
    }
}

/// The one builder of a test cluster: n replicas with fixed keys, their endpoints and the
/// cluster configuration that names them. By default replica i's key is `FixedKeys.replica(i)`
/// and it listens on 127.0.0.1, port 7000 + i (nothing listens there unless a test starts it).
public struct TestReplicas: Sendable {
    /// Where the replicas listen.
    public enum Ports: Sendable {
        /// `first`, `first + 1`, ...
        case from(UInt16)
        /// One port per replica, in replica order (free ports of a test that really listens).
        case listed([UInt16])
    }

    public static let defaultCluster = ClusterID(bytes: [UInt8](repeating: 7, count: ClusterID.byteCount))!

    public let keys: [KeyPair]
    public let config: ClusterConfig

    /// `f` defaults to the most faults n replicas tolerate, (n - 1) / 3; `keys`, when given,
    /// must hold n keys.
    public init(
        n: Int = 4, f: Int? = nil, cluster: ClusterID = TestReplicas.defaultCluster, keys: [KeyPair]? = nil,
        host: String = "127.0.0.1", ports: Ports = .from(7000), parameters: ProtocolParameters = ProtocolParameters()
    ) {
        let keys = keys ?? FixedKeys.replicas(n)
        precondition(keys.count == n, "TestReplicas: \(keys.count) keys for n = \(n)")
        let endpoints = TestReplicas.endpoints(keys: keys, host: host, ports: ports)
        do {
            let faults = f ?? (n - 1) / 3
            config = try ClusterConfig(cluster: cluster, f: faults, replicas: endpoints, parameters: parameters)
        } catch {
            preconditionFailure("TestReplicas: \(error)")
        }
        self.keys = keys
    }

    /// The endpoints of replicas 0 ..< keys.count, for tests that build (or fail to build) a
    /// ClusterConfig themselves.
    public static func endpoints(
        keys: [KeyPair], host: String = "127.0.0.1", ports: Ports = .from(7000)
    ) -> [ReplicaEndpoint] {
        keys.enumerated().map { index, key in
            let id = ReplicaID(UInt16(index))
            return ReplicaEndpoint(id: id, host: host, port: port(index, of: ports), publicKey: key.publicKey)
        }
    }

    private static func port(_ index: Int, of ports: Ports) -> UInt16 {
        switch ports {
        case .from(let first):
            precondition(Int(first) + index <= Int(UInt16.max), "TestReplicas: port \(Int(first) + index) out of range")
            return first + UInt16(index)
        case .listed(let listed):
            precondition(index < listed.count, "TestReplicas: \(listed.count) ports for replica \(index)")
            return listed[index]
        }
    }

    public var n: Int { config.n }
    public var cluster: ClusterID { config.cluster }

    /// Replica `index`'s signer.
    public func signer(_ index: Int) -> ReplicaSigner {
        ReplicaSigner(replica: ReplicaID(UInt16(index)), cluster: cluster, keyPair: keys[index])
    }

    public var signers: [ReplicaSigner] { keys.indices.map(signer) }
}
