import ArgumentParser
import Foundation
import SteleAdversary
import SteleCore
import SteleCrypto
import SteleHarness
import SteleNode

struct ClusterInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a cluster: cluster.json, one key per replica (0600) and a client key.")

    @OptionGroup var options: DirectoryOption

    @Option(help: "Number of replicas n; must be at least 3f+1.")
    var replicas: Int = 4

    @Option(help: "Byzantine faults tolerated f (default: the most n allows, (n-1)/3).")
    var faults: Int?

    @Option(help: "Address every replica listens on.")
    var host: String = "127.0.0.1"

    @Option(help: "Port of replica 0; replica i listens on base-port + i.")
    var basePort: Int = 7400

    @Flag(help: "Replace an existing cluster in DIR (deletes its keys and ledgers).")
    var force = false

    func run() throws {
        do {
            let config = try ClusterDirectory.initialize(root: options.dir, replicas: replicas, f: faults, host: host, basePort: basePort, force: force)
            print("created cluster \(config.cluster.hex) in \(options.dir): n = \(config.n), f = \(config.f), quorum = \(config.quorum)")
            for replica in config.replicas {
                print("  replica \(replica.id.value)  \(replica.host):\(replica.port)  key \(replica.publicKey.hex.prefix(16))…")
            }
            print("start it with: stele cluster start --dir \(options.dir)")
        } catch {
            fail("\(error)")
        }
    }
}

struct ClusterStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Run every replica of the cluster as its own process, in the foreground.",
        discussion: "Logs are streamed with a [rI] prefix. Ctrl-C or SIGTERM stops all replicas cleanly; so does `stele cluster stop --dir DIR` from another terminal.")

    @OptionGroup var options: DirectoryOption

    @Option(name: .customLong("log-level"), help: "Replica log level (trace, debug, info, notice, warning, error).")
    var logLevel: String = "info"

    @Option(help: ArgumentHelp("Start replica I in Byzantine MODE (fault-injection testing only); repeatable.", valueName: "I:MODE"))
    var byzantine: [ByzantineAssignment] = []

    func run() async throws {
        let directory = options.directory
        let config: ClusterConfig
        do { config = try directory.loadConfig() } catch { fail("\(error)") }
        for assignment in byzantine where !config.isMember(assignment.replica) {
            throw ValidationError("--byzantine \(assignment.replica.value):\(assignment.mode): replica \(assignment.replica.value) is not in the cluster (n = \(config.n))")
        }
        if byzantine.count > config.f {
            print("stele: warning: \(byzantine.count) Byzantine replicas is more than f = \(config.f); the cluster promises nothing then")
        }
        try FileManager.default.createDirectory(atPath: directory.runDirectory, withIntermediateDirectories: true)
        var settings = ReplicaLauncher.Settings(executable: currentExecutablePath(), directory: directory)
        settings.logLevel = logLevel
        settings.writesPidFiles = true
        for assignment in byzantine {
            settings.perReplica[assignment.replica] = .byzantine(assignment.mode.rawValue)
            print("stele: WARNING: replica \(assignment.replica.value) runs in Byzantine mode \(assignment.mode)")
        }
        let launcher = ReplicaLauncher(settings: settings)
        try "\(getpid())\n".write(toFile: directory.supervisorPidPath, atomically: true, encoding: .utf8)
        do { try launcher.start(config.replicaIDs) } catch { fail("\(error)") }
        print("stele: started \(config.n) replicas; Ctrl-C stops them")
        await launcher.waitForStopSignal()
        launcher.stopAll()
        try? FileManager.default.removeItem(atPath: directory.supervisorPidPath)
        print("stele: cluster stopped")
    }
}

struct ClusterStop: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop a cluster started with `stele cluster start`.")

    @OptionGroup var options: DirectoryOption

    func run() throws {
        let directory = options.directory
        if let text = try? String(contentsOfFile: directory.supervisorPidPath, encoding: .utf8),
           let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), kill(pid, 0) == 0 {
            kill(pid, SIGTERM)
            for _ in 0..<200 where kill(pid, 0) == 0 { usleep(50_000) }
            print("stele: stopped the cluster supervisor (pid \(pid))")
            return
        }
        // No supervisor: stop replicas started on their own.
        guard let config = try? directory.loadConfig() else { fail("no cluster in \(options.dir)") }
        var stopped = 0
        for id in config.replicaIDs {
            guard let pid = directory.recordedPid(id), kill(pid, 0) == 0 else { continue }
            kill(pid, SIGTERM)
            stopped += 1
        }
        print("stele: sent SIGTERM to \(stopped) replica(s)")
    }
}

struct ClusterStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show view, primary, height and lag of every replica.")

    @OptionGroup var options: DirectoryOption

    @Flag(help: "Print JSON.")
    var json = false

    struct Row: Codable {
        var id: UInt16
        var address: String
        var pid: Int32?
        var up: Bool
        var status: ReplicaStatus?
        var lag: UInt64?
    }

    func run() async throws {
        let directory = options.directory
        let (config, clientKey) = options.loadClient()
        let statuses = try await SteleClient.with(config: config, keyPair: clientKey, logger: makeLogger("stele.client", level: .critical)) { client in
            await withTaskGroup(of: (ReplicaID, ReplicaStatus?).self) { group in
                for id in config.replicaIDs { group.addTask { (id, await client.status(of: id)) } }
                var result: [ReplicaID: ReplicaStatus] = [:]
                for await (id, status) in group { if let status { result[id] = status } }
                return result
            }
        }
        let highest = statuses.values.map(\.height).max() ?? 0
        let rows = config.replicas.map { replica -> Row in
            let pid = directory.recordedPid(replica.id).flatMap { kill($0, 0) == 0 ? $0 : nil }
            let status = statuses[replica.id]
            return Row(id: replica.id.value, address: "\(replica.host):\(replica.port)", pid: pid, up: status != nil, status: status,
                       lag: status.map { highest - $0.height })
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(rows), as: UTF8.self))
            return
        }
        func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }
        print(pad("replica", 9) + pad("address", 22) + pad("pid", 9) + pad("state", 7) + pad("view", 6) + pad("primary", 9) + pad("height", 8) + pad("lag", 5) + "head")
        for row in rows {
            var line = pad("\(row.id)", 9) + pad(row.address, 22) + pad(row.pid.map(String.init) ?? "-", 9)
            if let status = row.status {
                line += pad(status.inViewChange ? "vc" : "up", 7) + pad("\(status.view)", 6) + pad("\(status.primary)", 9)
                line += pad("\(status.height)", 8) + pad("\(row.lag ?? 0)", 5) + String(status.headHash.prefix(16)) + "…"
                if let mode = status.byzantineMode { line += "  BYZANTINE: \(mode)" }
            } else {
                line += "down"
            }
            print(line)
        }
    }
}

func currentExecutablePath() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

/// `I:MODE` for `stele cluster start --byzantine`.
struct ByzantineAssignment: ExpressibleByArgument {
    let replica: ReplicaID
    let mode: ByzantineMode

    init?(argument: String) {
        let parts = argument.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let index = UInt16(parts[0]), let mode = ByzantineMode(rawValue: parts[1]) else { return nil }
        replica = ReplicaID(index)
        self.mode = mode
    }

    static var defaultCompletionKind: CompletionKind { .default }
}
