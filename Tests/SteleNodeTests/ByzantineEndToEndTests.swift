import Foundation
import Testing
import SteleAdversary
import SteleAudit
import SteleCore
import SteleHarness
import SteleTestSupport
@testable import SteleNode

/// Four real replica processes, one of them started with `--byzantine MODE`. Clients keep
/// submitting; at the end every acknowledged transaction is in all three honest ledgers exactly
/// once at the acknowledged height and hash, the honest ledgers agree and audit clean, the
/// cluster still commits, and the honest replicas went through a bounded number of views.
/// Each test also checks that the Byzantine replica really misbehaved (its move counts), so a
/// mode that silently does nothing fails.
@Suite("End to end: one Byzantine replica process", .serialized)
struct ByzantineEndToEndTests {
    static let waves = 4
    static let perWave = 10
    /// Honest replicas may go through a few views (a Byzantine primary is replaced, a lying new
    /// primary too), not through an unbounded number.
    static let honestViewMax: UInt64 = 8

    /// Runs one attack. `pause` is SIGSTOPped before the second wave and SIGCONTed after it
    /// (to force a view change without a crash: a slow replica is not a faulty one).
    func attack(_ mode: ByzantineMode, by byzantine: ReplicaID, expectMove move: String, honestViewMin: UInt64 = 0, pause: ReplicaID? = nil,
                checkDuringPause: ((TestCluster, SteleClient) async throws -> Void)? = nil) async throws {
        let cluster = try TestCluster(byzantine: [byzantine: mode])
        defer { cluster.shutdown() }
        try cluster.startAll()
        let honest = cluster.config.replicaIDs.filter { $0 != byzantine }
        var acks: [SubmitResult] = []
        try await cluster.withClient { client in
            for wave in 0..<Self.waves {
                if wave == 1, let pause { cluster.signal(pause, SIGSTOP) }
                acks += try await submit(client, Self.perWave, prefix: "\(mode)-wave\(wave)")
                if wave == 1, let pause {
                    try await checkDuringPause?(cluster, client)
                    cluster.signal(pause, SIGCONT)
                }
            }
            // The cluster keeps committing after the attack: one more wave, all acknowledged.
            let last = try await submit(client, Self.perWave, prefix: "\(mode)-after")
            #expect(last.count == Self.perWave)
            acks += last
            // An honest replica left behind (the equivocating primary's victim, a paused one)
            // catches up at checkpoints: submit a few more until all three hold the top ack.
            let top = acks.map(\.height).max() ?? 0
            for round in 0..<12 {
                if await eventually(timeout: .seconds(5), { honest.allSatisfy { cluster.height($0) >= top } }) { break }
                acks += try await submit(client, Int(cluster.config.parameters.checkpointInterval), prefix: "\(mode)-fill\(round)")
            }
            let adversary = await client.status(of: byzantine)
            let moves = adversary?.byzantineMoves ?? [:]
            #expect(adversary?.byzantineMode == mode.rawValue, "replica \(byzantine.value) runs in mode \(mode)")
            #expect((moves[move] ?? 0) > 0, "the Byzantine replica really acted (\(move)); its moves: \(moves)")
            for id in honest {
                let status = await client.status(of: id)
                #expect(status != nil, "honest replica \(id.value) answers")
                #expect((status?.view ?? 0) <= Self.honestViewMax, "honest replica \(id.value) is in view \(status?.view ?? 0)")
                #expect((status?.view ?? 0) >= honestViewMin, "honest replica \(id.value) left the Byzantine primary's view: it is in view \(status?.view ?? 0)")
            }
        }
        #expect(Set(acks.map(\.timestamp)).count == acks.count)
        try await expectAcknowledgedExactlyOnce(acks, cluster: cluster, live: honest)
        let honestHeads = try honest.map { try cluster.ledgerBlocks($0).map(\.hash) }
        let shortest = honestHeads.map(\.count).min() ?? 0
        for chain in honestHeads {
            #expect(Array(chain.prefix(shortest)) == Array(honestHeads[0].prefix(shortest)), "honest ledgers agree")
        }
        let allRunning = honest.allSatisfy { cluster.isRunning($0) }
        #expect(allRunning, "every honest replica is still running")
    }

    @Test("equivocate: a primary that sends different batches to different backups is replaced; nothing forks")
    func equivocatingPrimary() async throws {
        try await attack(.equivocate, by: 0, expectMove: "equivocate.split", honestViewMin: 1)
    }

    @Test("silent: a primary that sends nothing is replaced by a view change")
    func silentPrimary() async throws {
        try await attack(.silent, by: 0, expectMove: "silent.dropped", honestViewMin: 1)
    }

    @Test("withhold: a primary that never sends COMMITs cannot stop the others committing")
    func withholdingPrimary() async throws {
        try await attack(.withhold, by: 0, expectMove: "withhold.dropped")
    }

    @Test("corrupt: bad signatures and mangled fields from the primary are dropped; progress continues")
    func corruptPrimary() async throws {
        try await attack(.corrupt, by: 0, expectMove: "corrupt.mangled")
    }

    @Test("replay: old-view and below-watermark messages change nothing")
    func replayingPrimary() async throws {
        try await attack(.replay, by: 0, expectMove: "replay.sent")
    }

    @Test("viewchange-storm: VIEW-CHANGEs for ever-higher views from one replica do not move the others")
    func viewChangeStorm() async throws {
        try await attack(.viewChangeStorm, by: 0, expectMove: "viewchange-storm.sent")
    }

    @Test("lying-newview: a new primary whose NEW-VIEW drops a prepared request is rejected and replaced")
    func lyingNewPrimary() async throws {
        // Replica 1 is the primary of view 1. Pausing replica 0 (the primary of view 0) forces
        // the view change; the lie must make the honest replicas move on to view 2.
        try await attack(.lyingNewView, by: 1, expectMove: "lying-newview.lie", honestViewMin: 2, pause: 0) { cluster, client in
            let moved = await eventually(timeout: .seconds(60)) {
                guard let status = await client.status(of: 2) else { return false }
                return status.view >= 2 && !status.inViewChange
            }
            #expect(moved, "honest replica 2 passed view 1 (the liar's) to a view with an honest primary\n\(cluster.logTail(2))")
        }
    }

    @Test("double-vote: a primary whose COMMITs also go out for made-up digests cannot stop the others committing")
    func doubleVotingPrimary() async throws {
        try await attack(.doubleVote, by: 0, expectMove: "double-vote.conflicting")
    }

    @Test("lying-viewchange: a backup whose VIEW-CHANGEs lie and storm cannot stop a view change")
    func lyingViewChanges() async throws {
        // Pausing replica 0 (the primary of view 0) makes every core send VIEW-CHANGEs, the liar's too.
        try await attack(.lyingViewChange, by: 1, expectMove: "lying-viewchange.lie", honestViewMin: 1, pause: 0)
    }

    @Test("censor: a primary that never orders one client's requests is replaced by a view change")
    func censoringPrimary() async throws {
        try await attack(.censor, by: 0, expectMove: "censor.dropped", honestViewMin: 1)
    }
}

@Suite("Byzantine modes cannot be switched on by accident")
struct ByzantineFlagTests {
    func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: builtSteleExecutable())
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("--byzantine without --allow-byzantine is refused before anything starts")
    func refusedWithoutConfirmation() throws {
        let result = try run(["replica", "--dir", "/nonexistent-stele-dir", "--id", "0", "--byzantine", "silent"])
        #expect(result.status != 0)
        #expect(result.output.contains("--allow-byzantine"), "\(result.output)")
    }

    @Test("an unknown mode is a usage error naming the valid ones")
    func unknownMode() throws {
        let result = try run(["replica", "--dir", "/nonexistent-stele-dir", "--id", "0", "--byzantine", "evil", "--allow-byzantine"])
        #expect(result.status != 0)
        #expect(result.output.contains("equivocate") && result.output.contains("lying-newview"), "\(result.output)")
    }

    @Test("cluster start --byzantine takes I:MODE and rejects anything else")
    func clusterStartSyntax() throws {
        let result = try run(["cluster", "start", "--dir", "/nonexistent-stele-dir", "--byzantine", "0-silent"])
        #expect(result.status != 0)
        #expect(result.output.contains("--byzantine"), "\(result.output)")
    }
}
