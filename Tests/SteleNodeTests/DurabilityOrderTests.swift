import Foundation
import Logging
import NIOPosix
import PBFT
import SteleCore
import SteleCrypto
import SteleLedger
import Synchronization
import Testing
import SteleTestSupport
@testable import SteleNode

/// A ledger archive whose fsync can be held shut: `sync()` blocks while the gate is closed
/// and counts the callers waiting in it.
final class GatedArchive: LedgerArchive, @unchecked Sendable {
    let store: LedgerStore
    private let gate = Mutex<(open: Bool, waiting: Int)>((false, 0))

    init(_ store: LedgerStore) { self.store = store }

    var waiting: Int { gate.withLock { $0.waiting } }
    func open() { gate.withLock { $0.open = true } }

    var headHeight: SequenceNumber { store.headHeight }
    var headHash: Digest { store.headHash }
    func append(_ block: CertifiedBlock) throws { try store.append(block) }
    func append(_ checkpoint: CheckpointCertificate) throws { try store.append(checkpoint) }
    func sync() throws {
        gate.withLock { $0.waiting += 1 }
        // Bounded: a test that forgets to open the gate fails instead of hanging CI.
        let deadline = ContinuousClock.now + .seconds(600)
        while !gate.withLock({ $0.open }) && ContinuousClock.now < deadline { usleep(2_000) }
        gate.withLock { $0.waiting -= 1 }
        try store.sync()
    }
    func blocks(from: SequenceNumber, through: SequenceNumber) throws -> [CertifiedBlock] { try store.blocks(from: from, through: through) }
    func latestCheckpoint(atOrBelow height: SequenceNumber) throws -> CheckpointCertificate? { try store.latestCheckpoint(atOrBelow: height) }
    func forEachBlock(_ body: (CertifiedBlock) throws -> Void) throws { try store.forEachBlock(body) }
}

@Suite("Group commit: nothing goes out before it is durable")
struct DurabilityOrderTests {
    @Test("while every replica's ledger fsync is held, no reply reaches the client; once released, the submit is acknowledged")
    func repliesWaitForTheLedgerFsync() async throws {
        let scratch = TemporaryDirectory(prefix: "stele-durability")
        let (config, keys) = try localCluster()
        let logger = Logger(label: "test.durability") { _ in SwiftLogNoOpLogHandler() }
        var settings = NodeSettings()
        settings.tickInterval = .milliseconds(20)
        var archives: [GatedArchive] = []
        var nodes: [ReplicaNode] = []
        for index in 0..<4 {
            let store = try LedgerStore.create(path: scratch.file("ledger-\(index).stele"), genesis: config.genesis)
            let archive = GatedArchive(store)
            archives.append(archive)
            nodes.append(try ReplicaNode(config: config, id: ReplicaID(UInt16(index)), keyPair: keys[index], ledger: archive,
                                         walPath: scratch.file("wal-\(index).log"), settings: settings, logger: logger))
        }
        defer { archives.forEach { $0.open() } }

        // No retransmission while the replies are held: a retransmitted request reaches the
        // backups directly and starts their request timers, and a replica that timed out would
        // ask for a view change that the others, suspended in their held fsyncs, cannot join
        // until the gates open. A CI run once ended with one replica never reaching its fsync;
        // this is the likeliest way there.
        var clientSettings = SteleClient.Settings()
        clientSettings.retransmitAfter = .seconds(600)
        clientSettings.retransmitAfterMax = .seconds(600)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for node in nodes { group.addTask { try await node.run() } }
            try await SteleClient.with(config: config, keyPair: KeyPair.generate(), settings: clientSettings, logger: logger) { client in
                let answered = Mutex<Bool>(false)
                let submission = Task {
                    let result = try await client.submit(Array("held".utf8), timeout: .seconds(600))
                    answered.withLock { $0 = true }
                    return result
                }
                // Every replica has executed the batch and is inside its ledger fsync. Generous:
                // in a parallel `swift test`, synchronous simulator and fuzz tests can hold the
                // cooperative threads this test's client and replicas run on for half a minute.
                let allHeld = await eventually(timeout: .seconds(300)) { archives.allSatisfy { $0.waiting > 0 } }
                #expect(allHeld, "every replica reached its ledger fsync")
                // Replies sent before the fsync returned would arrive within milliseconds; give
                // them a whole second (a negative check: nothing must happen while held).
                let leaked = await eventually(timeout: .seconds(1)) { answered.withLock { $0 } }
                #expect(!leaked, "a reply went out before the block it names was durable")
                archives.forEach { $0.open() }
                let result = try await submission.value
                #expect(result.height == 1)
                #expect(archives.allSatisfy { $0.headHeight == SequenceNumber(1) })
            }
            group.cancelAll()
        }
    }
}
