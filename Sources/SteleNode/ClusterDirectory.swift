import Foundation
import SteleCore
import SteleCrypto
import SteleLedger

/// Why a cluster directory cannot be set up or used.
public struct ClusterDirectoryError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The files of a local cluster:
///
///     DIR/cluster.json               the cluster config (public keys, addresses, parameters)
///     DIR/keys/replica-I.key         replica I's secret key (0600)
///     DIR/keys/client.key            the CLI's client key (0600)
///     DIR/ledgers/replica-I.ledger   replica I's ledger file
///     DIR/state/replica-I.wal        replica I's write-ahead log
///     DIR/run/replica-I.pid          pid of a running replica
///     DIR/run/cluster.pid            pid of `stele cluster start`
public struct ClusterDirectory: Sendable {
    public let root: String

    public init(_ root: String) {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
    }

    public var configPath: String { "\(root)/cluster.json" }
    public var keysDirectory: String { "\(root)/keys" }
    public var ledgersDirectory: String { "\(root)/ledgers" }
    public var stateDirectory: String { "\(root)/state" }
    public var runDirectory: String { "\(root)/run" }
    public func keyPath(_ id: ReplicaID) -> String { "\(keysDirectory)/replica-\(id.value).key" }
    public var clientKeyPath: String { "\(keysDirectory)/client.key" }
    public func ledgerPath(_ id: ReplicaID) -> String { "\(ledgersDirectory)/replica-\(id.value).ledger" }
    public func walPath(_ id: ReplicaID) -> String { "\(stateDirectory)/replica-\(id.value).wal" }
    public func pidPath(_ id: ReplicaID) -> String { "\(runDirectory)/replica-\(id.value).pid" }
    public var supervisorPidPath: String { "\(runDirectory)/cluster.pid" }

    public func loadConfig() throws -> ClusterConfig {
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw ClusterDirectoryError("\(configPath) does not exist; create a cluster with `stele cluster init --dir \(root)`")
        }
        return try ClusterConfig.load(path: configPath)
    }

    /// Writes a new cluster: config, one key per replica and a client key; replica i listens on
    /// `basePort + i`. Refuses n < 3f+1 and an existing cluster unless `force`.
    @discardableResult
    public static func initialize(root: String, replicas: Int, f: Int?, host: String, basePort: Int,
                                  parameters: ProtocolParameters = ProtocolParameters(), force: Bool) throws -> ClusterConfig {
        guard replicas >= 1, replicas <= ClusterConfig.replicasMax else {
            throw ClusterDirectoryError("--replicas must be between 1 and \(ClusterConfig.replicasMax)")
        }
        guard basePort > 0, basePort + replicas - 1 <= 65535 else {
            throw ClusterDirectoryError("--base-port \(basePort) leaves no room for \(replicas) ports")
        }
        return try initialize(root: root, f: f, host: host, ports: Array(basePort..<(basePort + replicas)),
                              parameters: parameters, force: force)
    }

    /// Writes a new cluster of `ports.count` replicas, replica i listening on `ports[i]`.
    @discardableResult
    public static func initialize(root: String, f: Int?, host: String, ports: [Int],
                                  parameters: ProtocolParameters = ProtocolParameters(), force: Bool) throws -> ClusterConfig {
        let replicas = ports.count
        let faults = f ?? max(0, (replicas - 1) / 3)
        guard replicas >= 1, replicas <= ClusterConfig.replicasMax else {
            throw ClusterDirectoryError("--replicas must be between 1 and \(ClusterConfig.replicasMax)")
        }
        guard replicas >= 3 * faults + 1 else {
            throw ConfigError(.tooFewReplicas(n: replicas, f: faults), source: "--replicas \(replicas)")
        }
        guard ports.allSatisfy({ (1...65535).contains($0) }) else {
            throw ClusterDirectoryError("ports must be 1 ... 65535: \(ports)")
        }
        let directory = ClusterDirectory(root)
        try directory.prepare(force: force)
        var endpoints: [ReplicaEndpoint] = []
        for (index, port) in ports.enumerated() {
            let id = ReplicaID(UInt16(index))
            let keyPair = KeyPair.generate()
            try KeyFile.write(keyPair, to: directory.keyPath(id), overwrite: true)
            endpoints.append(ReplicaEndpoint(id: id, host: host, port: UInt16(port), publicKey: keyPair.publicKey))
        }
        try KeyFile.write(KeyPair.generate(), to: directory.clientKeyPath, overwrite: true)
        let config = try ClusterConfig(cluster: .random(), f: faults, replicas: endpoints, parameters: parameters)
        try config.jsonData().write(to: URL(fileURLWithPath: directory.configPath), options: .atomic)
        return config
    }

    /// Creates the directories of a new cluster; with `force`, first deletes those of an
    /// existing one (its keys, ledgers and state).
    private func prepare(force: Bool) throws {
        let fileManager = FileManager.default
        if fileManager.fileExists(atPath: configPath) {
            guard force else {
                throw ClusterDirectoryError("\(configPath) already exists; pass --force to replace the cluster (its keys and ledgers are deleted)")
            }
            for path in [keysDirectory, ledgersDirectory, stateDirectory, runDirectory] {
                try? fileManager.removeItem(atPath: path)
            }
        }
        for path in [root, ledgersDirectory, stateDirectory, runDirectory] {
            try fileManager.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        try fileManager.createDirectory(atPath: keysDirectory, withIntermediateDirectories: true,
                                        attributes: [.posixPermissions: 0o700])
    }

    /// Opens replica `id`'s ledger, creating it with the cluster's genesis if it is new.
    public func openLedger(_ id: ReplicaID, config: ClusterConfig) throws -> LedgerStore {
        let path = ledgerPath(id)
        if FileManager.default.fileExists(atPath: path) {
            return try LedgerStore.open(path: path, expectedGenesis: config.genesis)
        }
        try FileManager.default.createDirectory(atPath: ledgersDirectory, withIntermediateDirectories: true)
        return try LedgerStore.create(path: path, genesis: config.genesis)
    }

    /// The pid recorded for replica `id`, if the file exists and parses.
    public func recordedPid(_ id: ReplicaID) -> Int32? {
        guard let text = try? String(contentsOfFile: pidPath(id), encoding: .utf8) else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
