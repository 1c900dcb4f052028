import Foundation
import SteleCrypto

/// Why a cluster configuration is unusable.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: Equatable, Sendable {
        case tooFewReplicas(n: Int, f: Int)
        case duplicateReplicaID(ReplicaID)
        case duplicatePublicKey(ReplicaID, ReplicaID)
        case replicaIDsNotContiguous
        case invalidParameter(name: String, reason: String)
        case malformed(reason: String)
        case unreadable(reason: String)
    }
    public let code: Code
    public let source: String

    public init(_ code: Code, source: String = "cluster config") {
        self.code = code
        self.source = source
    }

    public var description: String {
        switch code {
        case .tooFewReplicas(let n, let f):
            return "\(source): n = \(n) replicas cannot tolerate f = \(f) Byzantine faults; PBFT needs n >= 3f+1 = \(3 * f + 1)"
        case .duplicateReplicaID(let id):
            return "\(source): replica id \(id.value) appears twice"
        case .duplicatePublicKey(let a, let b):
            return "\(source): replicas \(a.value) and \(b.value) share one public key"
        case .replicaIDsNotContiguous:
            return "\(source): replica ids must be exactly 0 ..< n"
        case .invalidParameter(let name, let reason):
            return "\(source): \(name): \(reason)"
        case .malformed(let reason):
            return "\(source): malformed: \(reason)"
        case .unreadable(let reason):
            return "\(source): cannot read: \(reason)"
        }
    }
}

/// Protocol parameters every replica must share.
public struct ProtocolParameters: Hashable, Sendable, Codable {
    /// K: a checkpoint every K sequence numbers.
    public var checkpointInterval: UInt64 = 16
    /// L: sequences accepted are h < s <= h + L. Must be a multiple of K, at least 2K.
    public var watermarkWindow: UInt64 = 64
    /// Most requests in one batch. Per-batch costs (three signed protocol messages per
    /// replica, their verification, the fsyncs, one reply signature per client) are amortised
    /// over it, so it is large enough that batches under peak load are not cut by count
    /// (docs/performance-log.md, round 6, measured the difference).
    /// What a batch may weigh is bounded separately, by `batchBytesMax`.
    public var batchSizeMax: Int = 1024
    /// Most encoded request bytes in one batch (a single larger request goes alone). A
    /// PRE-PREPARE must fit one frame (NodeSettings.frameBytesMax, 4 MiB): 256 requests of up
    /// to 64 KiB would not, and such a batch was refused by every backup, view after view.
    public var batchBytesMax: Int = 1024 * 1024
    /// Most batches the primary keeps in flight (proposed, not yet executed).
    public var pipelineDepthMax: Int = 32
    /// Ticks a backup waits for a pending request to execute before starting a view change;
    /// doubled per unsuccessful view change.
    public var viewChangeTimeoutTicks: UInt64 = 40
    /// Upper bound on the doubled view-change timeout.
    public var viewChangeTimeoutTicksMax: UInt64 = 40 * 64
    /// Ticks between retransmissions of unanswered protocol messages.
    public var retransmitTicks: UInt64 = 10
    /// Most blocks in one STATE-RESPONSE: a replica that is behind asks for at most this many
    /// at once, and a replica serves at most this many (fewer when they would not fit half a
    /// frame). At most `CodecLimits.stateTransferBlocksMax`, the decoder's hard cap, so that
    /// every response decodes.
    public var stateTransferBlocksMax: Int = 64

    public init() {}

    private enum CodingKeys: String, CodingKey {
        case checkpointInterval, watermarkWindow, batchSizeMax, batchBytesMax, pipelineDepthMax
        case viewChangeTimeoutTicks, viewChangeTimeoutTicksMax, retransmitTicks, stateTransferBlocksMax
    }

    /// A parameter missing from cluster.json takes its default, so files written before a
    /// parameter existed (batchBytesMax) still load.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = ProtocolParameters()
        checkpointInterval = try container.decodeIfPresent(UInt64.self, forKey: .checkpointInterval) ?? defaults.checkpointInterval
        watermarkWindow = try container.decodeIfPresent(UInt64.self, forKey: .watermarkWindow) ?? defaults.watermarkWindow
        batchSizeMax = try container.decodeIfPresent(Int.self, forKey: .batchSizeMax) ?? defaults.batchSizeMax
        batchBytesMax = try container.decodeIfPresent(Int.self, forKey: .batchBytesMax) ?? defaults.batchBytesMax
        pipelineDepthMax = try container.decodeIfPresent(Int.self, forKey: .pipelineDepthMax) ?? defaults.pipelineDepthMax
        viewChangeTimeoutTicks = try container.decodeIfPresent(UInt64.self, forKey: .viewChangeTimeoutTicks) ?? defaults.viewChangeTimeoutTicks
        viewChangeTimeoutTicksMax = try container.decodeIfPresent(UInt64.self, forKey: .viewChangeTimeoutTicksMax) ?? defaults.viewChangeTimeoutTicksMax
        retransmitTicks = try container.decodeIfPresent(UInt64.self, forKey: .retransmitTicks) ?? defaults.retransmitTicks
        stateTransferBlocksMax = try container.decodeIfPresent(Int.self, forKey: .stateTransferBlocksMax)
            ?? defaults.stateTransferBlocksMax
    }
}

public struct ReplicaEndpoint: Hashable, Sendable {
    public let id: ReplicaID
    public let host: String
    public let port: UInt16
    public let publicKey: PublicKey

    public init(id: ReplicaID, host: String, port: UInt16, publicKey: PublicKey) {
        self.id = id
        self.host = host
        self.port = port
        self.publicKey = publicKey
    }
}

/// The cluster: its id, f, and every replica. n = replicas.count >= 3f+1 is enforced.
public struct ClusterConfig: Hashable, Sendable {
    public let cluster: ClusterID
    public let f: Int
    public let replicas: [ReplicaEndpoint]
    public let parameters: ProtocolParameters
    /// A quorum the config file states in place of the rule: nil when it states none (or the
    /// rule's own value). Only an auditor loads a config whose stated quorum breaks the rule
    /// (`allowingUnsafeQuorum`), so it can assess ledgers made under it and warn.
    public let declaredQuorum: Int?

    public init(cluster: ClusterID, f: Int, replicas: [ReplicaEndpoint], parameters: ProtocolParameters = ProtocolParameters()) throws(ConfigError) {
        try self.init(cluster: cluster, f: f, replicas: replicas, parameters: parameters, declaredQuorum: nil, allowingUnsafeQuorum: false)
    }

    /// A config with a stated quorum: refused unless it equals ⌈(n + f + 1) / 2⌉, or
    /// `allowingUnsafeQuorum` (auditors only: the core must never count with it).
    public init(
        cluster: ClusterID, f: Int, replicas: [ReplicaEndpoint], parameters: ProtocolParameters = ProtocolParameters(),
        declaredQuorum: Int?, allowingUnsafeQuorum: Bool
    ) throws(ConfigError) {
        let sorted = replicas.sorted { $0.id < $1.id }
        self.cluster = cluster
        self.f = f
        self.replicas = sorted
        self.parameters = parameters
        let rule = ClusterConfig.safeQuorum(n: sorted.count, f: f)
        self.declaredQuorum = declaredQuorum == rule ? nil : declaredQuorum
        try validate()
        if let declaredQuorum, declaredQuorum != rule {
            guard allowingUnsafeQuorum, declaredQuorum >= 1, declaredQuorum <= sorted.count else {
                throw ConfigError(.invalidParameter(
                    name: "quorum", reason: "\(declaredQuorum) is not the quorum ceil((n+f+1)/2) = \(rule) for n = \(sorted.count), f = \(f); remove the field or set it to \(rule)"))
            }
        }
    }

    public var n: Int { replicas.count }

    // MARK: The quorum rule (docs/protocol.md, "Quorums"): every threshold derives from here.

    /// q = ⌈(n + f + 1) / 2⌉, the one quorum of the protocol: a commit certificate, a prepared
    /// certificate (the PRE-PREPARE and q - 1 PREPAREs), a stable checkpoint's proof and a
    /// NEW-VIEW's set of VIEW-CHANGEs each need q distinct members. Two sets of q replicas out
    /// of n share at least 2q - n >= f + 1, so at least one correct replica, and q <= n - f, so
    /// the correct replicas alone make a quorum. It is 2f + 1 when n = 3f + 1; with more
    /// replicas a plain 2f + 1 would let two quorums meet in a single (possibly faulty) one.
    /// A config file may state it (`"quorum"`); a stated value other than this rule is refused
    /// by every replica and reported by the auditor (`declaredQuorum`).
    public var quorum: Int { declaredQuorum ?? ClusterConfig.safeQuorum(n: n, f: f) }
    /// PREPAREs from distinct backups that, with the primary's PRE-PREPARE, make a prepared
    /// certificate: q replicas in all. (The paper's 2f is this at n = 3f + 1.) Two prepared
    /// certificates for one (v, s) then share a correct replica, which prepares one digest only.
    public var preparesForCertificate: Int { quorum - 1 }
    /// f + 1: enough matching replies or view changes to include one correct replica.
    public var weakQuorum: Int { f + 1 }
    /// The fewest replicas two quorums share: 2q - n. Safety needs at least f + 1.
    public var quorumIntersection: Int { 2 * quorum - n }

    /// ⌈(n + f + 1) / 2⌉.
    public static func safeQuorum(n: Int, f: Int) -> Int { (n + f + 2) / 2 }

    public func primary(of view: View) -> ReplicaID { ReplicaID(UInt16(view.value % UInt64(n))) }
    public func isMember(_ id: ReplicaID) -> Bool { Int(id.value) < n }
    public func publicKey(of id: ReplicaID) -> PublicKey? { isMember(id) ? replicas[Int(id.value)].publicKey : nil }
    public var replicaIDs: [ReplicaID] { replicas.map(\.id) }

    public var genesis: Genesis {
        Genesis(cluster: cluster, f: UInt16(f), members: replicas.map { Genesis.Member(id: $0.id, publicKey: $0.publicKey) })
    }

    func validate() throws(ConfigError) {
        guard f >= 0, n >= 3 * f + 1 else { throw ConfigError(.tooFewReplicas(n: n, f: f)) }
        var seenIDs = Set<ReplicaID>()
        var seenKeys = [PublicKey: ReplicaID]()
        for replica in replicas {
            guard seenIDs.insert(replica.id).inserted else { throw ConfigError(.duplicateReplicaID(replica.id)) }
            if let other = seenKeys[replica.publicKey] { throw ConfigError(.duplicatePublicKey(other, replica.id)) }
            seenKeys[replica.publicKey] = replica.id
        }
        guard replicas.enumerated().allSatisfy({ Int($1.id.value) == $0 }) else { throw ConfigError(.replicaIDsNotContiguous) }
        let k = parameters.checkpointInterval
        let window = parameters.watermarkWindow
        guard k >= 1 else { throw ConfigError(.invalidParameter(name: "checkpointInterval", reason: "must be at least 1")) }
        guard window >= 2 * k, window % k == 0 else {
            throw ConfigError(.invalidParameter(name: "watermarkWindow", reason: "must be a multiple of checkpointInterval and at least twice it"))
        }
        guard parameters.batchSizeMax >= 1 else { throw ConfigError(.invalidParameter(name: "batchSizeMax", reason: "must be at least 1")) }
        guard parameters.batchBytesMax >= 1 else { throw ConfigError(.invalidParameter(name: "batchBytesMax", reason: "must be at least 1")) }
        guard parameters.pipelineDepthMax >= 1 else { throw ConfigError(.invalidParameter(name: "pipelineDepthMax", reason: "must be at least 1")) }
        guard parameters.viewChangeTimeoutTicks >= 1, parameters.viewChangeTimeoutTicksMax >= parameters.viewChangeTimeoutTicks else {
            throw ConfigError(.invalidParameter(name: "viewChangeTimeoutTicks", reason: "must be at least 1 and at most viewChangeTimeoutTicksMax"))
        }
        let blocksCap = CodecLimits.standard.stateTransferBlocksMax
        guard (1...blocksCap).contains(parameters.stateTransferBlocksMax) else {
            let reason = "must be 1 ... \(blocksCap), the most blocks a STATE-RESPONSE may decode with"
            throw ConfigError(.invalidParameter(name: "stateTransferBlocksMax", reason: reason))
        }
    }

    /// The largest cluster the codec accepts.
    public static let replicasMax = 256
}

// MARK: - JSON (cluster.json)

extension ClusterConfig {
    struct FileReplica: Codable {
        var id: UInt16
        var host: String
        var port: UInt16
        var publicKey: String
    }

    struct File: Codable {
        var formatVersion: Int
        var clusterID: String
        var f: Int
        var replicas: [FileReplica]
        var parameters: ProtocolParameters?
        /// Optional: the quorum the operators expect; it must be the rule's value.
        var quorum: Int?
    }

    public static let fileFormatVersion = 1

    public func jsonData() -> Data {
        let file = File(
            formatVersion: ClusterConfig.fileFormatVersion, clusterID: cluster.hex, f: f,
            replicas: replicas.map { FileReplica(id: $0.id.value, host: $0.host, port: $0.port, publicKey: $0.publicKey.hex) },
            parameters: parameters, quorum: declaredQuorum)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try! encoder.encode(file)
    }

    /// Parses cluster.json. `allowingUnsafeQuorum` (the auditor only) accepts a stated quorum
    /// that breaks the rule, so the ledgers made under it can be assessed and the config flagged.
    public static func fromJSON(_ data: Data, source: String = "cluster config", allowingUnsafeQuorum: Bool = false) throws(ConfigError) -> ClusterConfig {
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch {
            throw ConfigError(.malformed(reason: "\(error)"), source: source)
        }
        guard file.formatVersion == fileFormatVersion else {
            throw ConfigError(.malformed(reason: "formatVersion \(file.formatVersion) is not \(fileFormatVersion)"), source: source)
        }
        guard let cluster = ClusterID(hex: file.clusterID) else {
            throw ConfigError(.malformed(reason: "clusterID must be 32 hex characters"), source: source)
        }
        guard file.replicas.count <= replicasMax else {
            throw ConfigError(.malformed(reason: "more than \(replicasMax) replicas"), source: source)
        }
        var endpoints = [ReplicaEndpoint]()
        for replica in file.replicas {
            guard let key = PublicKey(hex: replica.publicKey) else {
                throw ConfigError(.malformed(reason: "replica \(replica.id): publicKey must be 64 hex characters"), source: source)
            }
            endpoints.append(ReplicaEndpoint(id: ReplicaID(replica.id), host: replica.host, port: replica.port, publicKey: key))
        }
        do {
            return try ClusterConfig(
                cluster: cluster, f: file.f, replicas: endpoints, parameters: file.parameters ?? ProtocolParameters(),
                declaredQuorum: file.quorum, allowingUnsafeQuorum: allowingUnsafeQuorum)
        } catch {
            throw ConfigError(error.code, source: source)
        }
    }

    public static func load(path: String, allowingUnsafeQuorum: Bool = false) throws(ConfigError) -> ClusterConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(.unreadable(reason: "no such file or not readable"), source: path)
        }
        return try fromJSON(data, source: path, allowingUnsafeQuorum: allowingUnsafeQuorum)
    }
}
