import Foundation
import SteleCore
import SteleNode
import Synchronization

/// Runs replicas as child processes, prefixes their log lines, and stops them on a signal.
final class Supervisor: Sendable {
    let directory: ClusterDirectory
    let executable: String
    let logLevel: String
    let processes = Mutex<[ReplicaID: Process]>([:])
    let printLock = Mutex(())
    /// Where prefixed replica log lines go (standard output by default).
    let output: FileHandle
    let extraArguments: [String]
    /// Arguments for one replica only (its Byzantine mode).
    let perReplicaArguments: [ReplicaID: [String]]

    init(directory: ClusterDirectory, executable: String, logLevel: String, output: FileHandle = .standardOutput, extraArguments: [String] = [],
         perReplicaArguments: [ReplicaID: [String]] = [:]) {
        self.perReplicaArguments = perReplicaArguments
        self.directory = directory
        self.executable = executable
        self.logLevel = logLevel
        self.output = output
        self.extraArguments = extraArguments
    }

    var pids: [ReplicaID: Int32] { processes.withLock { $0.mapValues(\.processIdentifier) } }

    func start(_ id: ReplicaID) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["replica", "--dir", directory.root, "--id", "\(id.value)", "--log-level", logLevel] + extraArguments + (perReplicaArguments[id] ?? [])
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let prefix = "[r\(id.value)] "
        // A plain thread with blocking reads, not a FileHandle readability handler: clearing
        // such a handler at end of file raced libdispatch's event loop and crashed `stele bench`
        // now and then as its replicas exited.
        let reader = pipe.fileHandleForReading
        let thread = Thread { [self] in
            var pending: [UInt8] = []
            while true {
                let data = reader.availableData
                if data.isEmpty { break }
                pending += data
                var lines: [String] = []
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    lines.append(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
                self.printLock.withLock { _ in
                    for line in lines { self.output.write(Data((prefix + line + "\n").utf8)) }
                }
            }
            try? reader.close()
        }
        thread.name = "stele-log-r\(id.value)"
        try process.run()
        // The child holds the write end now; closing ours lets the reader see end of file.
        try? pipe.fileHandleForWriting.close()
        thread.start()
        try "\(process.processIdentifier)\n".write(toFile: directory.pidPath(id), atomically: true, encoding: .utf8)
        processes.withLock { $0[id] = process }
    }

    /// Returns when SIGINT or SIGTERM arrives, or when every replica has exited.
    func waitForStopSignal() async {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let stream = AsyncStream<Void> { continuation in
            let sources = [SIGINT, SIGTERM].map { number -> DispatchSourceSignal in
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { continuation.yield() }
                source.resume()
                return source
            }
            let watcher = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(200))
                    let anyRunning = self.processes.withLock { $0.values.contains { $0.isRunning } }
                    if !anyRunning {
                        continuation.yield()
                        return
                    }
                }
            }
            nonisolated(unsafe) let signalSources = sources
            continuation.onTermination = { _ in
                signalSources.forEach { $0.cancel() }
                watcher.cancel()
            }
        }
        for await _ in stream { return }
    }

    /// SIGTERM to every replica, then SIGKILL to any still running after 10 s.
    func stopAll() {
        let running = processes.withLock { $0 }
        for (_, process) in running where process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, running.values.contains(where: \.isRunning) { usleep(50_000) }
        for (_, process) in running where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for (id, _) in running { try? FileManager.default.removeItem(atPath: directory.pidPath(id)) }
    }
}
