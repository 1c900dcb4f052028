import Foundation
import SteleCore
import SteleHarness
import SteleNode
import SteleTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `stele cluster start`, the launcher's thinnest layer, run as the built executable on a
/// cluster of free ports of 127.0.0.1. Every process is ended by PID at the end: the
/// supervisor this test started, and the replicas it started (by their pid files).
@Suite("stele cluster start", .serialized)
struct ClusterStartTests {
    let scratch = TemporaryDirectory(prefix: "stele-cluster-start")
    var directory: ClusterDirectory { ClusterDirectory(scratch.file("cluster")) }
    var outputPath: String { scratch.file("supervisor.out") }

    func initializeCluster() throws {
        try ClusterDirectory.initializeOnFreePorts(root: directory.root, replicas: 4, parameters: ProtocolParameters(),
                                                   force: false)
    }

    func output() -> String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// Starts `stele cluster start --dir DIR`, its output in `outputPath`.
    func startSupervisor() throws -> Process {
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: builtSteleExecutable())
        process.arguments = ["cluster", "start", "--dir", directory.root]
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try handle.close()
        return process
    }

    /// SIGKILL to the supervisor and to `replicas`, if any of them still runs (a failed test).
    func end(_ supervisor: Process, replicas: [Int32]) {
        for pid in replicas where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        if supervisor.isRunning {
            kill(supervisor.processIdentifier, SIGKILL)
            waitForExit(supervisor)
        }
    }

    @Test("runs every replica with its output prefixed [rI]; SIGTERM stops them all and removes the pid files")
    func stopsOnSigterm() async throws {
        try initializeCluster()
        let supervisor = try startSupervisor()
        var replicas: [Int32] = []
        defer { end(supervisor, replicas: replicas) }
        let up = await eventually(timeout: .seconds(60)) {
            let text = output()
            let pids = (0..<4).compactMap { directory.recordedPid(ReplicaID($0)) }
            let prefixed = (0..<4).allSatisfy { text.contains("[r\($0)] ") }
            // (The supervisor's own lines come at its exit: its standard output is a file, so buffered.)
            return pids.count == 4 && prefixed
        }
        replicas = (0..<4).compactMap { directory.recordedPid(ReplicaID($0)) }
        try #require(up, "\(output())")
        #expect(replicas.allSatisfy { kill($0, 0) == 0 })

        kill(supervisor.processIdentifier, SIGTERM)
        let stopped = await eventually(timeout: .seconds(30)) { !supervisor.isRunning }
        try #require(stopped, "the supervisor stops within its replicas' grace\n\(output())")
        #expect(supervisor.terminationStatus == 0)
        #expect(output().contains("stele: started 4 replicas"), "\(output())")
        #expect(output().contains("stele: cluster stopped"), "\(output())")
        #expect((0..<4).allSatisfy { directory.recordedPid(ReplicaID($0)) == nil }, "every pid file removed")
        #expect(!FileManager.default.fileExists(atPath: directory.supervisorPidPath))
        let gone = await eventually(timeout: .seconds(10)) { replicas.allSatisfy { kill($0, 0) != 0 } }
        #expect(gone, "every replica ended")
    }

    @Test("ends by itself, with no signal, once every replica has exited (here: none can read its key)")
    func endsWhenEveryReplicaExited() async throws {
        try initializeCluster()
        try FileManager.default.removeItem(atPath: directory.keysDirectory)
        let supervisor = try startSupervisor()
        defer { end(supervisor, replicas: []) }
        let ended = await eventually(timeout: .seconds(60)) { !supervisor.isRunning }
        try #require(ended, "\(output())")
        #expect(supervisor.terminationStatus == 0)
        let text = output()
        #expect(text.contains("stele: cluster stopped"), "\(text)")
        #expect((0..<4).allSatisfy { text.contains("[r\($0)] stele:") }, "each replica's error, prefixed: \(text)")
    }
}
