import Foundation
import Logging
import Prometheus
import SteleCore
import SteleCrypto
import SteleLedger
import SteleTestSupport
import Testing
@testable import SteleNode

/// Opens a TCP connection to 127.0.0.1:`port` and returns its descriptor, or nil if refused.
private func dial(_ port: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { close(fd); return nil }
    return fd
}

/// Runs `server` until it listens on `port`, bursts 64 connections at it and cancels it at once.
/// Returns how many of the burst's connections were made before the cancel.
private func burstThenCancel(port: Int, _ server: @escaping @Sendable () async throws -> Void) async throws -> Int {
    let running = Task { try await server() }
    let listening = await eventually(timeout: .seconds(60), interval: .milliseconds(10)) {
        guard let fd = dial(port) else { return false }
        close(fd)
        return true
    }
    guard listening else { running.cancel(); return 0 }
    let burst = (0..<64).compactMap { _ in dial(port) }
    running.cancel()
    // The run ends (how is not the point) and the process is still here to check it.
    _ = try? await running.value
    burst.forEach { close($0) }
    return burst.count
}

/// NIO hands accepted connections to an accept loop through a buffer. A server stopped
/// (SIGTERM cancels a replica's run task) while connections sat in that buffer dropped them
/// without finishing their writers, and NIO traps on that: the replica crashed instead of
/// exiting. Each round bursts connections at a listening server and cancels it at once; the
/// test process itself is the server, so a trap fails the whole run.
@Suite("Stopping a server with connections in its accept queue")
struct ShutdownTests {
    @Test("a replica cancelled with connections still waiting in its accept queue stops without trapping")
    func replica() async throws {
        let scratch = TemporaryDirectory(prefix: "stele-shutdown")
        let logger = Logger(label: "test.shutdown") { _ in SwiftLogNoOpLogHandler() }
        for round in 0..<6 {
            let (config, keys) = try localCluster()
            let store = try LedgerStore.create(path: scratch.file("ledger-\(round).stele"), genesis: config.genesis)
            let node = try ReplicaNode(config: config, id: ReplicaID(0), keyPair: keys[0], ledger: store,
                                       walPath: scratch.file("wal-\(round).log"), logger: logger)
            let made = try await burstThenCancel(port: Int(config.replicas[0].port)) { try await node.run() }
            #expect(made > 0, "round \(round): connections were made before the cancel")
        }
    }

    @Test("the metrics endpoint cancelled with connections still waiting in its accept queue stops without trapping")
    func metricsEndpoint() async throws {
        let registry = PrometheusCollectorRegistry()
        for round in 0..<6 {
            let port = try LocalPorts.free(1)[0]
            let made = try await burstThenCancel(port: port) {
                try await PrometheusMetrics.serve(registry: registry, host: "127.0.0.1", port: port)
            }
            #expect(made > 0, "round \(round): connections were made before the cancel")
        }
    }
}
