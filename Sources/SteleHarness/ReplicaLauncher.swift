import Foundation
import SteleCore
import SteleNode
import Synchronization

/// What one replica process gets beyond `stele replica --dir DIR --id I --log-level L`.
public struct ReplicaOptions: Sendable, Equatable {
    /// Appended to the command line.
    public var arguments: [String]
    /// Set in the process's environment, over what it inherits from this one.
    public var environment: [String: String]

    public init(arguments: [String] = [], environment: [String: String] = [:]) {
        self.arguments = arguments
        self.environment = environment
    }

    /// `--byzantine MODE --allow-byzantine`: the replica attacks its own cluster.
    public static func byzantine(_ mode: String) -> ReplicaOptions {
        ReplicaOptions(arguments: ["--byzantine", mode, "--allow-byzantine"])
    }

    /// These options, then `more`'s: arguments appended, `more`'s environment winning.
    public func merged(with more: ReplicaOptions) -> ReplicaOptions {
        ReplicaOptions(arguments: arguments + more.arguments,
                       environment: environment.merging(more.environment) { _, theirs in theirs })
    }
}

/// A replica process that could not be started.
public struct ReplicaLaunchError: Error, CustomStringConvertible {
    public let replica: ReplicaID
    public let underlying: any Error

    public var description: String { "cannot start replica \(replica.value): \(underlying)" }
}

/// Where a replica process's standard output and standard error go.
public enum ReplicaOutput: Sendable {
    /// Appended to a file per replica, at the path given for its id (kept across restarts).
    case file(@Sendable (ReplicaID) -> String)
    /// Line by line to `handle`, each line prefixed `[rI] ` (`stele cluster start`'s output).
    case prefixed(FileHandle)
    /// Line by line to a closure, without the newline; called from one reader thread per
    /// process, so lines of one replica arrive in order.
    case lines(@Sendable (ReplicaID, String) -> Void)
    /// To /dev/null.
    case discarded
}

/// The one launcher of `stele replica` processes, behind `stele cluster start`, `stele bench`,
/// `stele chaos` (through `ScratchCluster`) and the end-to-end tests. It starts replicas of a
/// cluster directory, each with its options and its output sent where `output` says, and
/// sends signals to, reaps and stops only the processes it started, by PID.
public final class ReplicaLauncher: Sendable {
    public struct Settings: Sendable {
        /// The `stele` executable (or one that takes `stele replica`'s arguments).
        public var executable: String
        public var directory: ClusterDirectory
        public var logLevel = "info"
        /// `--tick-ms`; nil leaves the replica's default.
        public var tickMilliseconds: Int?
        /// For every replica, before its own `perReplica` options.
        public var common = ReplicaOptions()
        public var perReplica: [ReplicaID: ReplicaOptions] = [:]
        public var output: ReplicaOutput = .prefixed(.standardOutput)
        /// Writes `DIR/run/replica-I.pid` at each start, for `stele cluster status` and `stop`,
        /// and removes it when the launcher stops the replica.
        public var writesPidFiles = false

        public init(executable: String, directory: ClusterDirectory) {
            self.executable = executable
            self.directory = directory
        }

        /// Replica `id`'s command line after the executable.
        public func arguments(_ id: ReplicaID) -> [String] {
            var arguments = ["replica", "--dir", directory.root, "--id", "\(id.value)", "--log-level", logLevel]
            if let tickMilliseconds { arguments += ["--tick-ms", "\(tickMilliseconds)"] }
            return arguments + options(id).arguments
        }

        public func options(_ id: ReplicaID) -> ReplicaOptions {
            common.merged(with: perReplica[id] ?? ReplicaOptions())
        }
    }

    /// How long `stopAll` and `kill9` wait for a stopped replica's output to be read to its end
    /// (a grandchild holding the pipe open would keep it from ending).
    static let outputDrainMilliseconds = 2000

    public let settings: Settings
    private let processes = Mutex<[ReplicaID: Process]>([:])
    /// Output readers not yet at end of file, by replica (`.prefixed` and `.lines` only).
    private let readers = Mutex<[ReplicaID: [DispatchSemaphore]]>([:])
    private let writeLock = Mutex(())

    public init(settings: Settings) {
        self.settings = settings
    }

    public var directory: ClusterDirectory { settings.directory }

    public func pid(_ id: ReplicaID) -> Int32? { processes.withLock { $0[id]?.processIdentifier } }

    /// The PIDs of every replica started and not stopped or killed since.
    public var pids: [ReplicaID: Int32] { processes.withLock { $0.mapValues(\.processIdentifier) } }

    /// The replicas started and not stopped or killed since (running or not), in id order.
    public var started: [ReplicaID] { processes.withLock { $0.keys.sorted() } }

    public func isRunning(_ id: ReplicaID) -> Bool { processes.withLock { $0[id]?.isRunning ?? false } }

    /// Whether any replica this launcher started is still running.
    public var anyRunning: Bool { processes.withLock { $0.values.contains(where: \.isRunning) } }

    /// Starts the replicas in `ids`, in order; if one cannot start, stops every replica this
    /// launcher runs and throws a `ReplicaLaunchError` naming it.
    public func start(_ ids: [ReplicaID]) throws {
        for id in ids {
            do {
                try start(id)
            } catch {
                stopAll()
                throw ReplicaLaunchError(replica: id, underlying: error)
            }
        }
    }

    /// Starts replica `id` (which must not be running).
    public func start(_ id: ReplicaID) throws {
        precondition(!isRunning(id), "replica \(id.value) is already running")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: settings.executable)
        process.arguments = settings.arguments(id)
        let environment = settings.options(id).environment
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, ours in ours }
        }
        process.standardInput = FileHandle.nullDevice
        let attached = try attachOutput(of: process, id: id)
        try process.run()
        attached.started()
        processes.withLock { $0[id] = process }
        if settings.writesPidFiles {
            try "\(process.processIdentifier)\n".write(toFile: directory.pidPath(id), atomically: true, encoding: .utf8)
        }
    }

    /// Sends `number` to replica `id` if it is running.
    public func signal(_ id: ReplicaID, _ number: Int32) {
        guard let pid = pid(id), isRunning(id) else { return }
        kill(pid, number)
    }

    /// SIGKILL, then reap it; the launcher forgets it (a stopped process dies on SIGKILL too).
    public func kill9(_ id: ReplicaID) {
        guard let process = processes.withLock({ $0.removeValue(forKey: id) }) else { return }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            waitForExit(process)
        }
        forgetPidFile(id)
        drainOutput(of: [id])
    }

    /// Stops every process this launcher started, by PID: SIGCONT (in case it is stopped) and
    /// SIGTERM, then SIGKILL to any still running after `grace`; reaps them all and waits,
    /// bounded, until their output has been read to its end.
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
        for id in running.keys { forgetPidFile(id) }
        drainOutput(of: readers.withLock { Array($0.keys) })
    }

    /// Returns the stop signal (SIGINT or SIGTERM) that arrived, or nil when every replica this
    /// launcher started has exited first. The replicas keep running either way.
    @discardableResult
    public func waitForStopSignal() async -> Int32? {
        await StopSignals.next { [self] in !anyRunning }
    }

    /// Until the returned signals are cancelled: a SIGINT or SIGTERM stops every replica (as
    /// `stopAll()`) and then ends this process with `exitCode`. Keep a reference to the result.
    public func stopAllAndExitOnSignal(exitCode: Int32 = 130) -> StopSignals {
        StopSignals { [self] _ in
            stopAll()
            exit(exitCode)
        }
    }

    private func forgetPidFile(_ id: ReplicaID) {
        if settings.writesPidFiles { try? FileManager.default.removeItem(atPath: directory.pidPath(id)) }
    }
}

// MARK: Output

extension ReplicaLauncher {
    /// What `start` does once the process runs: close the parent's copies of the output.
    struct AttachedOutput {
        var started: () -> Void = {}
    }

    private func attachOutput(of process: Process, id: ReplicaID) throws -> AttachedOutput {
        switch settings.output {
        case .discarded:
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            return AttachedOutput()
        case .file(let path):
            let handle = try Self.appending(to: path(id))
            process.standardOutput = handle
            process.standardError = handle
            return AttachedOutput { try? handle.close() }
        case .prefixed(let handle):
            let prefix = "[r\(id.value)] "
            return pipeLines(of: process, id: id) { [self] lines in
                writeLock.withLock { _ in
                    for line in lines { handle.write(Data((prefix + line + "\n").utf8)) }
                }
            }
        case .lines(let sink):
            return pipeLines(of: process, id: id) { lines in lines.forEach { sink(id, $0) } }
        }
    }

    private static func appending(to path: String) throws -> FileHandle {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        handle.seekToEndOfFile()
        return handle
    }

    /// Both output streams into one pipe, read by a plain thread with blocking reads, not a
    /// FileHandle readability handler: clearing such a handler at end of file raced
    /// libdispatch's event loop and crashed `stele bench` now and then as its replicas exited.
    private func pipeLines(of process: Process, id: ReplicaID,
                           deliver: @escaping @Sendable ([String]) -> Void) -> AttachedOutput {
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let reader = pipe.fileHandleForReading
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            var pending: [UInt8] = []
            while true {
                let data = reader.availableData
                if data.isEmpty { break }
                pending += data
                deliver(Self.completeLines(taking: &pending))
            }
            if !pending.isEmpty { deliver([String(decoding: pending, as: UTF8.self)]) }
            try? reader.close()
            finished.signal()
        }
        thread.name = "stele-output-r\(id.value)"
        return AttachedOutput { [self] in
            // The child holds the write end now; closing ours lets the reader see end of file.
            try? pipe.fileHandleForWriting.close()
            readers.withLock { $0[id, default: []].append(finished) }
            thread.start()
        }
    }

    /// The complete lines at the front of `bytes`, removed from it; a partial last line stays.
    static func completeLines(taking bytes: inout [UInt8]) -> [String] {
        var lines: [String] = []
        while let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) {
            lines.append(String(decoding: bytes[..<newline], as: UTF8.self))
            bytes.removeSubrange(...newline)
        }
        return lines
    }

    private func drainOutput(of ids: [ReplicaID]) {
        let pending = readers.withLock { readers in ids.flatMap { readers.removeValue(forKey: $0) ?? [] } }
        let deadline = DispatchTime.now() + .milliseconds(Self.outputDrainMilliseconds)
        for finished in pending { _ = finished.wait(timeout: deadline) }
    }
}
