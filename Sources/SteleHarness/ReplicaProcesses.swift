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

/// A cluster of real `stele replica` processes on 127.0.0.1 with ephemeral ports, in one
/// scratch directory. It starts, SIGKILLs, SIGSTOPs and SIGCONTs replicas by PID, and
/// `shutdown()` stops every process it started (call it in a `defer`, also on failure).
public final class ReplicaProcesses: Sendable {
    public struct Settings: Sendable {
        /// The `stele` executable that runs `stele replica`.
        public var executable: String
        /// The scratch directory (created; must not hold a cluster yet).
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

        public init(executable: String, root: String) {
            self.executable = executable
            self.root = root
        }
    }

    public let settings: Settings
    public let directory: ClusterDirectory
    public let config: ClusterConfig
    public let clientKey: KeyPair
    private let processes = Mutex<[ReplicaID: Process]>([:])
    /// Replicas sent SIGSTOP and not yet SIGCONT.
    private let paused = Mutex<Set<ReplicaID>>([])

    public init(settings: Settings) throws {
        self.settings = settings
        // `shutdown` removes the directory: never take over one that holds anything.
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: settings.root)) ?? []
        guard existing.isEmpty else { throw ClusterDirectoryError("\(settings.root) is not empty; give a new or empty scratch directory") }
        let ports = try LocalPorts.free(settings.replicas)
        // `cluster init` numbers ports from a base port; rewrite the config with ephemeral ones.
        try ClusterDirectory.initialize(root: settings.root, replicas: settings.replicas, f: nil, host: "127.0.0.1",
                                        basePort: 20000, parameters: settings.parameters, force: false)
        directory = ClusterDirectory(settings.root)
        let initial = try directory.loadConfig()
        let endpoints = initial.replicas.enumerated().map { index, replica in
            ReplicaEndpoint(id: replica.id, host: "127.0.0.1", port: UInt16(ports[index]), publicKey: replica.publicKey)
        }
        config = try ClusterConfig(cluster: initial.cluster, f: initial.f, replicas: endpoints, parameters: settings.parameters)
        try config.jsonData().write(to: URL(fileURLWithPath: directory.configPath), options: .atomic)
        clientKey = try KeyFile.read(from: directory.clientKeyPath)
    }

    public var replicaIDs: [ReplicaID] { config.replicaIDs }

    public func logPath(_ id: ReplicaID) -> String { "\(directory.root)/replica-\(id.value).log" }

    public func pid(_ id: ReplicaID) -> Int32? { processes.withLock { $0[id]?.processIdentifier } }

    public func isRunning(_ id: ReplicaID) -> Bool { processes.withLock { $0[id]?.isRunning ?? false } }

    public func startAll() throws {
        for id in replicaIDs { try start(id) }
    }

    /// Starts replica `id`; its output is appended to `logPath(id)` (kept across restarts).
    public func start(_ id: ReplicaID) throws {
        precondition(!isRunning(id), "replica \(id.value) is already running")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: settings.executable)
        process.arguments = ["replica", "--dir", directory.root, "--id", "\(id.value)",
                             "--tick-ms", "\(settings.tickMilliseconds)", "--log-level", settings.logLevel]
        let log = logPath(id)
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? handle.close()
        processes.withLock { $0[id] = process }
    }

    /// SIGKILL, then reap it. Continues it first if it was stopped (a stopped process dies on
    /// SIGKILL too; the SIGCONT only keeps the bookkeeping straight).
    public func kill9(_ id: ReplicaID) {
        guard let process = processes.withLock({ $0.removeValue(forKey: id) }) else { return }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            waitForExit(process)
        }
        paused.withLock { _ = $0.remove(id) }
    }

    public func pause(_ id: ReplicaID) {
        guard let pid = pid(id), isRunning(id) else { return }
        kill(pid, SIGSTOP)
        paused.withLock { _ = $0.insert(id) }
    }

    public func resume(_ id: ReplicaID) {
        guard let pid = pid(id) else { return }
        kill(pid, SIGCONT)
        paused.withLock { _ = $0.remove(id) }
    }

    /// Stops every process this cluster started, by PID: SIGCONT (in case it is stopped) and
    /// SIGTERM, then SIGKILL to any still running after `grace`, and reaps them all.
    public func stopAll(grace: Duration = .seconds(10)) {
        let running = processes.withLock { processes -> [ReplicaID: Process] in
            defer { processes = [:] }
            return processes
        }
        for process in running.values where process.isRunning {
            kill(process.processIdentifier, SIGCONT)
            kill(process.processIdentifier, SIGTERM)
        }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, running.values.contains(where: \.isRunning) { usleep(20_000) }
        for process in running.values where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            waitForExit(process)
        }
        paused.withLock { $0 = [] }
    }

    /// `stopAll()`, then removes the scratch directory unless `keepDirectory`.
    public func shutdown(keepDirectory: Bool) {
        stopAll()
        if !keepDirectory { try? FileManager.default.removeItem(atPath: directory.root) }
    }

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
