import Foundation
import Testing
import SteleCore
import SteleCrypto
import SteleHarness
import SteleTestSupport
@testable import SteleNode

/// Hostile clients and a hostile replica-key holder flood real replica processes while an
/// honest client submits. The honest client's transactions must all commit exactly once, every
/// replica must keep running, and the defence meant for each flood must be seen acting (so a
/// replica without it fails the test). Throughput under each flood is measured by
/// `stele bench --flood KIND`, not here.
@Suite("End to end: hostile clients and peers", .serialized)
struct FloodEndToEndTests {
    /// Starts a cluster, floods replicas `targets` while an honest client submits three waves,
    /// checks the honest transactions, and returns the flood's report and the replicas' status.
    func underFlood(_ kind: FloodKind, targets: [ReplicaID] = [0, 1, 2, 3], live: [ReplicaID] = [0, 1, 2, 3])
        async throws -> (FloodReport, [ReplicaID: ReplicaStatus]) {
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        try cluster.startAll()
        #expect(try await cluster.waitUntilServing(), "replicas answer status queries")
        let impersonated = (ReplicaID(3), try KeyFile.read(from: cluster.directory.keyPath(3)))
        let config = cluster.config
        let progress = FloodTally()
        let flood = Task {
            await Flood.run(kind, config: config, targets: targets, replicaKey: impersonated, until: .now + .seconds(300), progress: progress)
        }
        defer { flood.cancel() }
        let (acks, statuses) = try await cluster.withClient { client -> ([SubmitResult], [ReplicaID: ReplicaStatus]) in
            // The honest load starts once the flood is under way.
            let started = await eventually(timeout: .seconds(30)) { progress.snapshot.framesSent > 0 }
            #expect(started, "the \(kind) flood started")
            var acks: [SubmitResult] = []
            for wave in 0..<3 { acks += try await submit(client, 10, prefix: "\(kind)-\(wave)") }
            var statuses: [ReplicaID: ReplicaStatus] = [:]
            for id in cluster.config.replicaIDs { statuses[id] = await client.status(of: id) }
            return (acks, statuses)
        }
        flood.cancel()
        let report = await flood.value
        #expect(acks.count == 30, "every honest transaction acknowledged under the \(kind) flood")
        try await expectAcknowledgedExactlyOnce(acks, cluster: cluster, live: live)
        let running = cluster.processes.started.allSatisfy(cluster.isRunning)
        #expect(running, "every replica survived the \(kind) flood")
        #expect(report.framesSent > 0, "the flood ran: \(report)")
        return (report, statuses)
    }

    func shed(_ statuses: [ReplicaID: ReplicaStatus], _ reason: String) -> Int {
        statuses.values.map { $0.shed?[reason] ?? 0 }.reduce(0, +)
    }

    @Test("bad-signature flood: connections are cut after a few bad signatures; honest clients are served")
    func badSignatures() async throws {
        let (report, statuses) = try await underFlood(.badSignatures)
        #expect(report.connectionsClosedByReplica > 0, "the replicas closed the flooding connections: \(report)")
        #expect(shed(statuses, "signature") > 0)
        #expect(shed(statuses, "connection") > 0)
    }

    @Test("retransmission flood: copies of one request skip verification and are shed; honest clients are served")
    func retransmissions() async throws {
        let (report, statuses) = try await underFlood(.retransmit)
        #expect(report.framesSent >= 1000, "thousands of copies sent: \(report)")
        #expect(shed(statuses, "duplicate") > 0, "retransmissions shed before verification: \(statuses.mapValues { $0.shed ?? [:] })")
    }

    @Test("malformed and oversize frames at full speed: each such connection is closed; honest clients are served")
    func malformedFrames() async throws {
        let (report, _) = try await underFlood(.malformedFrames)
        #expect(report.connectionsClosedByReplica > 0, "\(report)")
        #expect(report.connectionsClosedByReplica >= report.connectionsOpened / 2, "most malformed connections were closed by the replica: \(report)")
    }

    @Test("a replica-key holder opening many connections: each replica keeps one per replica, the rest are closed")
    func connectionFlood() async throws {
        // The impersonated replica 3 is the faulty one here; its own links are displaced.
        let (report, statuses) = try await underFlood(.connections, targets: [0, 1, 2], live: [0, 1, 2])
        #expect(report.connectionsClosedByReplica > 0, "\(report)")
        #expect(shed(statuses, "connection") > 0)
    }
}
