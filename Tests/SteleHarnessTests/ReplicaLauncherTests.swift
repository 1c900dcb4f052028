import Foundation
import SteleCore
import SteleHarness
import SteleNode
import SteleTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Lines a sink was given, shared with the sink's reader threads.
final class SeenLines: Sendable {
    private let lines = Mutex<[String]>([])
    func withLock<T>(_ body: (inout [String]) -> T) -> T { lines.withLock { body(&$0) } }
}

/// The launcher against a stand-in for `stele replica`: a shell script that prints its
/// arguments, prints an environment variable to standard error, leaves a last line without a
/// newline and sleeps until it is stopped (or, with STELE_LAUNCH_EXIT set, exits at once).
@Suite("The replica-process launcher")
struct ReplicaLauncherTests {
    let scratch = TemporaryDirectory(prefix: "stele-launcher")

    var script: String { scratch.file("fake-replica") }
    var directory: ClusterDirectory { ClusterDirectory(scratch.file("cluster")) }

    init() throws {
        let text = """
            #!/bin/sh
            echo "args: $*"
            echo "mark: ${STELE_LAUNCH_MARK:-none}" >&2
            if [ -n "$STELE_LAUNCH_EXIT" ]; then exit 0; fi
            printf 'partial line'
            exec sleep 60

            """
        try text.write(toFile: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script)
        try FileManager.default.createDirectory(atPath: directory.runDirectory, withIntermediateDirectories: true)
    }

    func settings(_ output: ReplicaOutput) -> ReplicaLauncher.Settings {
        var settings = ReplicaLauncher.Settings(executable: script, directory: directory)
        settings.tickMilliseconds = 7
        settings.output = output
        return settings
    }

    func contents(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    @Test("each replica gets the common arguments, then its own, and its environment; its lines arrive under its id")
    func linesSink() async throws {
        let lines = SeenLines()
        var settings = settings(.lines { id, line in lines.withLock { $0.append("r\(id.value): \(line)") } })
        settings.common = ReplicaOptions(arguments: ["--frame-bytes-max", "65536"])
        settings.perReplica[1] = ReplicaOptions.byzantine("silent")
            .merged(with: ReplicaOptions(environment: ["STELE_LAUNCH_MARK": "one"]))
        let launcher = ReplicaLauncher(settings: settings)
        defer { launcher.stopAll(grace: .seconds(5)) }
        try launcher.start([0, 1])
        let printed = await eventually(timeout: .seconds(30)) {
            lines.withLock { seen in seen.contains("r0: mark: none") && seen.contains("r1: mark: one") }
        }
        #expect(printed, "\(lines.withLock { $0 })")
        let pids = launcher.pids
        #expect(pids.count == 2)
        launcher.stopAll(grace: .seconds(5))

        let seen = lines.withLock { $0 }
        let common = "replica --dir \(directory.root) --id 0 --log-level info --tick-ms 7 --frame-bytes-max 65536"
        #expect(seen.contains("r0: args: \(common)"), "\(seen)")
        #expect(seen.contains("r1: args: \(common.replacingOccurrences(of: "--id 0", with: "--id 1")) "
            + "--byzantine silent --allow-byzantine"), "\(seen)")
        #expect(seen.contains("r0: partial line") && seen.contains("r1: partial line"),
                "a last line without a newline arrives at end of file, before stopAll returns: \(seen)")
        #expect(launcher.started.isEmpty)
        for pid in pids.values { #expect(kill(pid, 0) != 0, "pid \(pid) was stopped and reaped") }
    }

    @Test("a prefixed sink writes every line of every replica as [rI] line, lines of two replicas never mixed")
    func prefixedSink() async throws {
        let path = scratch.file("cluster.log")
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        let launcher = ReplicaLauncher(settings: settings(.prefixed(handle)))
        defer { launcher.stopAll(grace: .seconds(5)) }
        try launcher.start([0, 1, 2])
        let printed = await eventually(timeout: .seconds(30)) {
            let text = contents(path)
            return (0..<3).allSatisfy { text.contains("[r\($0)] mark: none\n") }
        }
        #expect(printed, "\(contents(path))")
        launcher.stopAll(grace: .seconds(5))
        let lines = contents(path).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count == 9, "three lines per replica: \(lines)")
        let prefixes = ["[r0] ", "[r1] ", "[r2] "]
        #expect(lines.allSatisfy { line in prefixes.contains { line.hasPrefix($0) } }, "\(lines)")
        #expect(lines.contains("[r2] args: replica --dir \(directory.root) --id 2 --log-level info --tick-ms 7"))
    }

    @Test("a file sink appends across restarts; kill9 ends and reaps the process and forgets it")
    func fileSinkAcrossRestarts() async throws {
        let log = scratch.file("replica-0.log")
        let launcher = ReplicaLauncher(settings: settings(.file { [scratch] id in scratch.file("replica-\(id.value).log") }))
        defer { launcher.stopAll(grace: .seconds(5)) }
        try launcher.start(0)
        #expect(await eventually(timeout: .seconds(30)) { contents(log).contains("mark: none") })
        let first = try #require(launcher.pid(0))
        launcher.kill9(0)
        #expect(kill(first, 0) != 0, "killed and reaped")
        #expect(!launcher.isRunning(0) && launcher.pid(0) == nil)
        try launcher.start(0)
        #expect(launcher.pid(0) != first)
        let twice = await eventually(timeout: .seconds(30)) {
            contents(log).components(separatedBy: "mark: none").count == 3
        }
        #expect(twice, "both runs' output is in the one file: \(contents(log))")
    }

    @Test("pid files are written at start for `stele cluster status` and removed when the launcher stops the replica")
    func pidFiles() throws {
        var settings = settings(.discarded)
        settings.writesPidFiles = true
        let launcher = ReplicaLauncher(settings: settings)
        defer { launcher.stopAll(grace: .seconds(5)) }
        try launcher.start([0, 1])
        #expect(directory.recordedPid(0) == launcher.pid(0))
        #expect(directory.recordedPid(1) == launcher.pid(1))
        launcher.kill9(0)
        #expect(directory.recordedPid(0) == nil)
        launcher.stopAll(grace: .seconds(5))
        #expect(directory.recordedPid(1) == nil)
    }

    @Test("a replica that cannot start is named, and the ones started before it are stopped")
    func startFailure() throws {
        // Replica 1's log would be in a directory that does not exist.
        let launcher = ReplicaLauncher(settings: settings(.file { [scratch] id in
            id == 1 ? scratch.file("missing/replica-1.log") : scratch.file("replica-\(id.value).log")
        }))
        defer { launcher.stopAll(grace: .seconds(5)) }
        #expect { try launcher.start([0, 1, 2]) } throws: { error in
            (error as? ReplicaLaunchError)?.replica == 1
        }
        #expect(launcher.started.isEmpty, "replica 0 was stopped again")
        #expect(!launcher.anyRunning)
    }
}
