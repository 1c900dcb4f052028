import Foundation
import NIOCore
import NIOPosix
import Testing
import SteleAudit
import SteleCore
import SteleCrypto
import SteleHarness
import SteleTestSupport
@testable import SteleNode

/// Real `stele replica` processes on 127.0.0.1 with ephemeral ports. Every wait polls its
/// condition with a generous bound; every process is stopped by PID at the end, even on failure.
@Suite("End to end: four replica processes", .serialized)
struct EndToEndTests {
    @Test("normal case: transactions commit on all four replicas and the ledgers audit clean, awaited or with completion handlers")
    func normalCase() async throws {
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        try cluster.startAll()
        let acks = try await cluster.withClient { client in
            let awaited = try await submit(client, 30, prefix: "normal")
            let handled = try await submitWithCompletions(client, 30, chains: 4, prefix: "handled")
            return awaited + handled
        }
        #expect(acks.count == 60)
        #expect(Set(acks.map(\.timestamp)).count == 60)
        try await expectAcknowledgedExactlyOnce(acks, cluster: cluster, live: cluster.config.replicaIDs)
    }

    @Test("SIGKILL of the primary: a view change, then commits continue")
    func primaryKilled() async throws {
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        try cluster.startAll()
        let before = try await cluster.withClient { try await submit($0, 10, prefix: "before") }
        let after = try await killPrimaryThenSubmit(cluster, 10)
        #expect(after.count == 10)
        try await expectAcknowledgedExactlyOnce(before + after, cluster: cluster, live: [1, 2, 3])
    }

    /// Below the first checkpoint every prepared certificate rides in the VIEW-CHANGEs, whole:
    /// 24 requests of 8 KiB in batches of at most 48 KiB (each PRE-PREPARE fits the 64 KiB
    /// that clients may send) make the VIEW-CHANGEs and the NEW-VIEW several times that. Before
    /// round 5 links between replicas had the same limit, the receiver closed the connection on
    /// the first VIEW-CHANGE, and no view change ever completed.
    @Test("SIGKILL of the primary after 8 KiB transactions: VIEW-CHANGE and NEW-VIEW larger than a client frame get through")
    func primaryKilledWithLargeCertificates() async throws {
        let cluster = try TestCluster(frameBytesMax: 64 * 1024, batchBytesMax: 48 * 1024)
        defer { cluster.shutdown() }
        try cluster.startAll()
        let payload = [UInt8](repeating: 0x62, count: 8 * 1024)
        let before = try await cluster.withClient { client in
            try await withThrowingTaskGroup(of: SubmitResult.self) { group in
                for index in 0..<24 { group.addTask { try await client.submit(payload + Array("before-\(index)".utf8), timeout: .seconds(60)) } }
                var results: [SubmitResult] = []
                for try await result in group { results.append(result) }
                return results
            }
        }
        let height = before.map(\.height).max() ?? 0
        #expect(height < cluster.config.parameters.checkpointInterval, "no checkpoint yet, so every certificate is in the VIEW-CHANGEs")
        // f+1 replies acknowledge a request; replica 1 may append the last block a moment later.
        #expect(await eventually(timeout: .seconds(30)) { cluster.height(1) >= height }, "replica 1 reaches height \(height)")
        let batched = try cluster.ledgerBlocks(1).map { $0.batch.reduce(0) { $0 + $1.encodedByteCount } }
        #expect(batched.reduce(0, +) > 2 * 64 * 1024, "the certificates hold more than two client frames")
        #expect(batched.allSatisfy { $0 <= 48 * 1024 }, "every PRE-PREPARE fits a client frame")
        let after = try await killPrimaryThenSubmit(cluster, 5)
        #expect(after.count == 5)
        try await expectAcknowledgedExactlyOnce(before + after, cluster: cluster, live: [1, 2, 3])
        for id in [ReplicaID(1), 2, 3] {
            #expect(!cluster.logTail(id, lines: 400).contains("too large for one frame"), "replica \(id.value) dropped an oversize message")
        }
    }

    @Test("SIGKILL and restart of a backup: it catches up by state transfer and its ledger equals the others'")
    func backupRestarted() async throws {
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        try cluster.startAll()
        let first = try await cluster.withClient { try await submit($0, 10, prefix: "first") }
        cluster.kill9(3)
        let second = try await cluster.withClient { try await submit($0, 40, prefix: "second") }
        try cluster.start(3)
        let top = (first + second).map(\.height).max() ?? 0
        let caughtUp = await eventually { cluster.height(3) >= top }
        #expect(caughtUp, "restarted replica reaches height \(top), has \(cluster.height(3))\n\(cluster.logTail(3))")
        try await expectAcknowledgedExactlyOnce(first + second, cluster: cluster, live: cluster.config.replicaIDs)
        let reference = try cluster.ledgerBlocks(0).prefix(Int(top)).map(\.hash)
        #expect(try cluster.ledgerBlocks(3).prefix(Int(top)).map(\.hash) == reference)
    }

    @Test("SIGSTOP of a backup for a while, then SIGCONT: it catches up")
    func backupPaused() async throws {
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        try cluster.startAll()
        cluster.signal(2, SIGSTOP)
        let acks = try await cluster.withClient { try await submit($0, 30, prefix: "paused") }
        cluster.signal(2, SIGCONT)
        try await expectAcknowledgedExactlyOnce(acks, cluster: cluster, live: cluster.config.replicaIDs)
    }

    @Test("garbage, oversize and truncated frames and a wrong handshake key are dropped; the replica keeps serving")
    func hostileConnections() async throws {
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        try cluster.startAll()
        #expect(try await cluster.waitUntilServing(), "replicas answer status queries")
        let target = cluster.config.replicas[1]
        let attacks: [[UInt8]] = [
            Array(repeating: 0xAB, count: 4096),                              // garbage
            [0x7f, 0xff, 0xff, 0xff] + Array(repeating: 1, count: 64),        // oversize length
            [0x00, 0x00, 0x01, 0x00, 0x01, 0x02],                             // truncated frame, then close
            [0x00, 0x00, 0x00, 0x00],                                         // empty frame
        ]
        for bytes in attacks {
            try await sendRaw(bytes, to: target)
        }
        // A client handshake proven with the wrong key.
        try await wrongKeyHandshake(to: target, cluster: cluster)
        // A replica handshake for an id that is not a member.
        let acks = try await cluster.withClient { try await submit($0, 10, prefix: "after-attacks") }
        #expect(acks.count == 10)
        try await expectAcknowledgedExactlyOnce(acks, cluster: cluster, live: cluster.config.replicaIDs)
        let allRunning = cluster.processes.started.allSatisfy(cluster.isRunning)
        #expect(allRunning, "every replica is still running")
    }

    func sendRaw(_ bytes: [UInt8], to endpoint: ReplicaEndpoint) async throws {
        // The replica must close the connection (or we stop waiting after a bound).
        let closed = try await Flood.sendRawBytes(bytes, to: endpoint, waitingForCloseUpTo: .seconds(10))
        // A truncated frame simply waits for more bytes: there closing is our side's job.
        // Garbage, an oversize length and an empty frame must make the replica close.
        let truncated = bytes.count == 6 && bytes[0] == 0x00
        if !truncated {
            #expect(closed, "the replica dropped a connection that sent \(bytes.prefix(4))")
        }
    }

    func wrongKeyHandshake(to endpoint: ReplicaEndpoint, cluster: TestCluster) async throws {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: endpoint.host, port: Int(endpoint.port)) { channel in
                wrapFrameChannel(channel, frameBytesMax: 1 << 20)
            }
        let claimed = KeyPair.generate()
        let actual = KeyPair.generate()
        try await channel.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            let myNonce = Handshake.freshNonce()
            try await outbound.write(.hello(Hello(cluster: cluster.config.cluster, identity: .client(claimed.publicKey), nonce: myNonce)))
            guard case .hello(let theirs)? = try await iterator.next() else {
                Issue.record("replica did not answer HELLO")
                return
            }
            try await outbound.write(.proof(Handshake.prove(keyPair: actual, cluster: cluster.config.cluster, verifierNonce: theirs.nonce, proverNonce: myNonce)))
            var refused = false
            while let frame = try? await iterator.next() {
                if case .refusal = frame { refused = true }
                if case .proof = frame { Issue.record("replica completed a handshake with a wrong key") }
            }
            #expect(refused, "the replica refused the wrong key")
        }
    }
}

/// SIGKILLs replica 0 (the first primary), submits `count` transactions and expects replica 1
/// to have moved to a new view.
private func killPrimaryThenSubmit(_ cluster: TestCluster, _ count: Int) async throws -> [SubmitResult] {
    cluster.kill9(0)
    return try await cluster.withClient { client -> [SubmitResult] in
        let acks = try await submit(client, count, prefix: "after")
        let moved = await eventually(timeout: .seconds(30)) {
            let status = await client.status(of: 1)
            return (status?.view ?? 0) >= 1 && status?.inViewChange == false
        }
        #expect(moved, "replica 1 moved to a new view")
        return acks
    }
}
