import Foundation
import Logging
import SteleCore
import SteleCrypto
import SteleLedger
import SteleNode
import Synchronization

/// The built `stele` executable for tests: in the build products directory next to the
/// running test bundle, else `.build/debug/stele` of the package that holds `testFile`
/// (a file directly inside `Tests/<target>/`).
public func builtSteleExecutable(testFile: String = #filePath) -> String {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = directory.appendingPathComponent("stele").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        directory = directory.deletingLastPathComponent()
    }
    return URL(fileURLWithPath: testFile).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/stele").path
}

/// Polls `condition` every `interval` until it holds or `timeout` passes; returns whether it
/// held. Every wait in the harness is one of these: no fixed sleep stands in for a condition.
/// (Tests wait with SteleTestSupport's `eventually`; this one serves `stele chaos`.)
func pollUntil(
    timeout: Duration, interval: Duration = .milliseconds(100), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline, !Task.isCancelled {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}

extension ClusterDirectory {
    /// The one set-up of a local cluster for the harness, the bench and the tests: `cluster init`
    /// in `root` with `replicas` replicas on 127.0.0.1, each on a port free now (bound to port 0
    /// and released, so another program could still race for it).
    @discardableResult
    public static func initializeOnFreePorts(root: String, replicas: Int, parameters: ProtocolParameters,
                                             force: Bool) throws -> ClusterConfig {
        try initialize(root: root, f: nil, host: "127.0.0.1", ports: try LocalPorts.free(replicas),
                       parameters: parameters, force: force)
    }
}

/// A cluster of real `stele replica` processes on 127.0.0.1 with free ports, in a new scratch
/// directory, started through a `ReplicaLauncher` with each replica's output appended to
/// `logPath(id)`; with the reads `stele chaos` and the end-to-end tests make of its logs and
/// ledgers. `shutdown(keepDirectory:)` stops every process it started (call it in a `defer`,
/// also on failure).
public final class ScratchCluster: Sendable {
    public struct Settings: Sendable {
        /// The `stele` executable that runs `stele replica`.
        public var executable: String
        /// The scratch directory (created; must not hold anything yet).
        public var root: String
        public var replicas = 4
        public var tickMilliseconds = 20
        public var logLevel = "info"
        public var parameters: ProtocolParameters = {
            var parameters = ProtocolParameters()
            parameters.checkpointInterval = 8
            parameters.watermarkWindow = 32
            return parameters
        }()
        /// For every replica, then for some (`--byzantine MODE`, say).
        public var common = ReplicaOptions()
        public var perReplica: [ReplicaID: ReplicaOptions] = [:]

        public init(executable: String, root: String) {
            self.executable = executable
            self.root = root
        }
    }

    public let settings: Settings
    public let directory: ClusterDirectory
    public let config: ClusterConfig
    public let clientKey: KeyPair
    public let processes: ReplicaLauncher

    public init(settings: Settings) throws {
        self.settings = settings
        // `shutdown` removes the directory: never take over one that holds anything.
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: settings.root)) ?? []
        guard existing.isEmpty else {
            throw ClusterDirectoryError("\(settings.root) is not empty; give a new or empty scratch directory")
        }
        config = try ClusterDirectory.initializeOnFreePorts(root: settings.root, replicas: settings.replicas,
                                                            parameters: settings.parameters, force: false)
        let directory = ClusterDirectory(settings.root)
        self.directory = directory
        clientKey = try KeyFile.read(from: directory.clientKeyPath)
        var launch = ReplicaLauncher.Settings(executable: settings.executable, directory: directory)
        launch.logLevel = settings.logLevel
        launch.tickMilliseconds = settings.tickMilliseconds
        launch.common = settings.common
        launch.perReplica = settings.perReplica
        launch.output = .file { id in Self.logPath(id, in: directory) }
        processes = ReplicaLauncher(settings: launch)
    }

    public var replicaIDs: [ReplicaID] { config.replicaIDs }

    // MARK: Processes (the launcher's, by PID)

    public func startAll() throws { try processes.start(replicaIDs) }
    public func start(_ id: ReplicaID) throws { try processes.start(id) }
    public func pid(_ id: ReplicaID) -> Int32? { processes.pid(id) }
    public func isRunning(_ id: ReplicaID) -> Bool { processes.isRunning(id) }
    public func kill9(_ id: ReplicaID) { processes.kill9(id) }
    public func signal(_ id: ReplicaID, _ number: Int32) { processes.signal(id, number) }
    public func pause(_ id: ReplicaID) { processes.signal(id, SIGSTOP) }
    public func resume(_ id: ReplicaID) { processes.signal(id, SIGCONT) }
    public func stopAll(grace: Duration = .seconds(10)) { processes.stopAll(grace: grace) }

    /// `stopAll(grace:)`, then removes the scratch directory unless `keepDirectory`.
    public func shutdown(keepDirectory: Bool, grace: Duration = .seconds(10)) {
        stopAll(grace: grace)
        if !keepDirectory { try? FileManager.default.removeItem(atPath: directory.root) }
    }

    // MARK: Logs

    static func logPath(_ id: ReplicaID, in directory: ClusterDirectory) -> String {
        "\(directory.root)/replica-\(id.value).log"
    }

    public func logPath(_ id: ReplicaID) -> String { Self.logPath(id, in: directory) }

    /// The last `lines` lines of replica `id`'s log.
    public func logTail(_ id: ReplicaID, lines: Int = 20) -> String {
        guard let text = try? String(contentsOfFile: logPath(id), encoding: .utf8) else { return "" }
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// The size of replica `id`'s log now (to read only what a later start wrote).
    public func logByteCount(_ id: ReplicaID) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: logPath(id)))?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    /// What replica `id` logged after byte `offset`.
    public func log(_ id: ReplicaID, after offset: UInt64) -> String {
        guard let handle = FileHandle(forReadingAtPath: logPath(id)) else { return "" }
        defer { try? handle.close() }
        handle.seek(toFileOffset: offset)
        return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    }

    // MARK: Ledger files

    public func ledgerPath(_ id: ReplicaID) -> String { directory.ledgerPath(id) }

    /// Replica `id`'s ledger height, read from the file (0 if it cannot be read yet).
    public func height(_ id: ReplicaID) -> UInt64 {
        (try? openLedger(id).head.height.value) ?? 0
    }

    /// Opens replica `id`'s ledger read-only (verifying it as `open` does).
    public func openLedger(_ id: ReplicaID) throws -> LedgerStore {
        try LedgerStore.open(path: ledgerPath(id), expectedGenesis: config.genesis, access: .readOnly)
    }

    /// Every block of replica `id`'s ledger, in height order.
    public func ledgerBlocks(_ id: ReplicaID) throws -> [CertifiedBlock] {
        let store = try openLedger(id)
        var blocks: [CertifiedBlock] = []
        var next: UInt64 = 1
        while next <= store.head.height.value {
            let last = min(store.head.height.value, next + UInt64(LedgerStore.blocksPerReadMax) - 1)
            blocks += try store.blocks(from: SequenceNumber(next), to: SequenceNumber(last))
            next = last + 1
        }
        return blocks
    }

    // MARK: Clients

    public func withClient<T: Sendable>(_ body: (SteleClient) async throws -> T) async throws -> T {
        var clientSettings = SteleClient.Settings()
        clientSettings.retransmitAfter = .milliseconds(300)
        clientSettings.retransmitAfterMax = .seconds(1)
        var logger = Logger(label: "stele.chaos.client")
        logger.logLevel = .critical
        return try await SteleClient.with(config: config, keyPair: clientKey, settings: clientSettings, logger: logger, body)
    }
}
