import Foundation
import SteleAdversary
import SteleAudit
import SteleCore
import SteleCrypto
import SteleHarness
import SteleTestSupport
@testable import SteleNode

/// A 4-replica config on free ports of 127.0.0.1 and the replicas' keys, for replicas run
/// inside the test process. The cluster id is fresh each time, so a connection left over from
/// another test to a reused port fails its handshake.
func localCluster() throws -> (config: ClusterConfig, keys: [KeyPair]) {
    let ports = try LocalPorts.free(4).map { UInt16($0) }
    let replicas = TestReplicas(n: 4, cluster: ClusterID(bytes: SecureRandom.bytes(16))!, ports: .listed(ports))
    return (replicas.config, replicas.keys)
}

/// The end-to-end tests' cluster: real `stele replica` processes on 127.0.0.1, started by the
/// harness's launcher in a scratch directory under the temporary directory.
typealias TestCluster = ScratchCluster

extension ScratchCluster {
    /// `byzantine`: replicas started with `--byzantine MODE --allow-byzantine`;
    /// `frameBytesMax`: every replica's `--frame-bytes-max`, when set.
    convenience init(replicas: Int = 4, tickMilliseconds: Int = 20, byzantine: [ReplicaID: ByzantineMode] = [:],
                     frameBytesMax: Int? = nil, batchBytesMax: Int = ProtocolParameters().batchBytesMax) throws {
        let name = "stele-e2e-\(UUID().uuidString.prefix(8))"
        var settings = Settings(executable: builtSteleExecutable(),
                                root: FileManager.default.temporaryDirectory.appendingPathComponent(name).path)
        settings.replicas = replicas
        settings.tickMilliseconds = tickMilliseconds
        settings.parameters.batchBytesMax = batchBytesMax
        settings.perReplica = byzantine.mapValues { ReplicaOptions.byzantine($0.rawValue) }
        if let frameBytesMax { settings.common.arguments += ["--frame-bytes-max", "\(frameBytesMax)"] }
        try self.init(settings: settings)
    }

    /// Stops every process it started (SIGTERM, then SIGKILL after 5 s) and removes the
    /// directory unless STELE_KEEP_E2E is set.
    func shutdown() {
        shutdown(keepDirectory: ProcessInfo.processInfo.environment["STELE_KEEP_E2E"] != nil, grace: .seconds(5))
    }

    /// Waits until every running replica answers a status query (it is listening and serving).
    func waitUntilServing(timeout: Duration = .seconds(60)) async throws -> Bool {
        let running = processes.started
        return try await withClient { client in
            await eventually(timeout: timeout) {
                for id in running where await client.status(of: id, timeout: .milliseconds(500)) == nil { return false }
                return true
            }
        }
    }

    /// The stele-check verdict over the given replicas' ledger files.
    func audit(_ replicas: [ReplicaID]) throws -> AuditReport {
        try Auditor(config: config).audit(paths: replicas.map { directory.ledgerPath($0) })
    }
}
