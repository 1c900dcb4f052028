import Foundation
import Testing
import SteleCore
import SteleCrypto
import SteleHarness

/// Jepsen-style crash-restart against four real `stele replica` processes on 127.0.0.1
/// (issue 6, point 4). Every wait polls with a generous bound; every process the run started
/// is stopped by PID at the end, also on failure; the scratch directory is removed (set
/// STELE_KEEP_CHAOS=1 to keep it).
@Suite("Crash-restart under load: four replica processes")
struct CrashRestartTests {
    @Test("SIGKILL/restart, SIGSTOP/SIGCONT and torn ledger tails for 20 rounds: every ack exactly once in every ledger, ledgers agree, stele-check passes")
    func crashRestartRounds() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("stele-chaos-test-\(UUID().uuidString.prefix(8))").path
        var options = ChaosOptions(executable: builtSteleExecutable(), root: root)
        options.rounds = 20
        options.seed = 20_260_601
        options.acksPerFault = 6
        options.keepDirectory = ProcessInfo.processInfo.environment["STELE_KEEP_CHAOS"] != nil
        let runner = ChaosRunner(options: options) { print($0) }
        let summary = try await runner.run()
        print(summary)
        #expect(summary.violations.isEmpty, "\(summary)")
        #expect(summary.roundsRun == 20)
        #expect(summary.kills == 20 && summary.pauses == 20, "a crash and a pause every round")
        #expect(summary.tornWrites.count == 5, "a torn ledger tail every 4th round")
        #expect(summary.acknowledged >= 40 * options.acksPerFault, "every fault held until enough acks")
        #expect(summary.auditVerdict == "pass")
        #expect(Set(summary.heights.values).count == 1, "all four ledgers end at one height: \(summary.heights)")
        #expect(!FileManager.default.fileExists(atPath: root) || options.keepDirectory == true, "the scratch directory is removed")
    }
}

/// The end-of-run checker must be able to fail, and say which ack on which replica.
@Suite("Crash-restart checker")
struct AckCheckerTests {
    let signer = KeyPair.generate()
    let genesisHash = Digest(bytes: [UInt8](repeating: 7, count: 32))!

    func request(_ timestamp: UInt64) -> Request {
        Request(client: signer.publicKey, timestamp: timestamp, payload: Array("tx-\(timestamp)".utf8), signature: .zero)
    }

    /// A chain of blocks, block i holding the given timestamps.
    func chain(_ batches: [[UInt64]]) -> [CertifiedBlock] {
        var blocks: [CertifiedBlock] = []
        var previous = genesisHash
        for (index, timestamps) in batches.enumerated() {
            let block = CertifiedBlock(height: SequenceNumber(UInt64(index + 1)), prevHash: previous, batch: timestamps.map(request),
                                       certificateView: 0, commitSignatures: [])
            blocks.append(block)
            previous = block.hash
        }
        return blocks
    }

    func ack(_ timestamp: UInt64, in blocks: [CertifiedBlock], height: Int) -> Acknowledgement {
        Acknowledgement(client: signer.publicKey, timestamp: timestamp, height: UInt64(height), blockHash: blocks[height - 1].hash.hex)
    }

    @Test("four equal ledgers holding every ack once pass")
    func clean() {
        let blocks = chain([[1, 2], [3], []])
        let acks = [ack(1, in: blocks, height: 1), ack(3, in: blocks, height: 2)]
        let ledgers: [ReplicaID: [CertifiedBlock]] = [0: blocks, 1: blocks, 2: blocks, 3: blocks]
        #expect(AckChecker.check(acks: acks, ledgers: ledgers, requireEqualHeights: true).isEmpty)
    }

    @Test("a missing, a duplicated and a misplaced ack are each reported with the replica")
    func brokenPromises() {
        let blocks = chain([[1, 2], [3], []])
        let acks = [ack(1, in: blocks, height: 1), ack(3, in: blocks, height: 2)]
        let missing = Acknowledgement(client: signer.publicKey, timestamp: 9, height: 3, blockHash: blocks[2].hash.hex)
        let duplicated = chain([[1, 2], [3], [1]])
        let misplaced = Acknowledgement(client: signer.publicKey, timestamp: 2, height: 2, blockHash: blocks[1].hash.hex)
        let ledgers: [ReplicaID: [CertifiedBlock]] = [0: blocks, 1: blocks, 2: duplicated, 3: blocks]
        let violations = AckChecker.check(acks: acks + [missing, misplaced], ledgers: ledgers, requireEqualHeights: true)
        #expect(violations.contains { $0.kind == .ackMissing && $0.replica == 3 && $0.detail.contains("t=9") })
        #expect(violations.contains { $0.kind == .ackDuplicated && $0.replica == 2 && $0.detail.contains("t=1") })
        #expect(violations.contains { $0.kind == .ackMisplaced && $0.replica == 0 && $0.detail.contains("t=2") })
        #expect(violations.contains { $0.kind == .ledgersDisagree && $0.replica == 2 }, "block 3 differs on replica 2")
    }

    @Test("a lagging ledger is a prefix, but must catch up when equal heights are required")
    func lagging() {
        let blocks = chain([[1], [2], [3]])
        let acks = [ack(3, in: blocks, height: 3)]
        let ledgers: [ReplicaID: [CertifiedBlock]] = [0: blocks, 1: Array(blocks.prefix(2)), 2: blocks, 3: blocks]
        let strict = AckChecker.check(acks: acks, ledgers: ledgers, requireEqualHeights: true)
        #expect(strict.contains { $0.kind == .heightsDiffer && $0.replica == 1 })
        #expect(strict.contains { $0.kind == .ackMissing && $0.replica == 1 })
        #expect(!strict.contains { $0.kind == .ledgersDisagree })
    }
}
