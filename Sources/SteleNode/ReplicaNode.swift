import Foundation
import Logging
import NIOCore
import NIOPosix
import PBFT
import SteleAdversary
import SteleCore
import SteleCrypto

/// What every part of a replica process knows about itself.
struct NodeContext: Sendable {
    let config: ClusterConfig
    let id: ReplicaID
    let keyPair: KeyPair
    let settings: NodeSettings
    let logger: Logger
    let metrics: NodeMetrics

    /// The handshake this replica runs on every connection, as acceptor or connector.
    func handshakeDriver() -> HandshakeDriver {
        HandshakeDriver(handshake: Handshake(config: config), myIdentity: .replica(id), myKey: keyPair)
    }
}

/// The runtime shell around the PBFT core: it verifies signatures, feeds events to the core,
/// and performs the core's actions — durably persisting before it sends, appending blocks
/// before it replies. It adds no protocol logic.
///
/// It composes four parts, one job each: `CoreLoop` (the core, the write-ahead log and the
/// ledger, with group commit), `InboundServer` (accepted connections and their handshakes),
/// `ClientAdmission` (clients' connections, requests and replies) and `PeerLinks` (the
/// outbound links to the other replicas).
public final class ReplicaNode: Sendable {
    public let config: ClusterConfig
    public let id: ReplicaID
    let context: NodeContext
    let coreLoop: CoreLoop
    let inboundServer: InboundServer
    let clientAdmission: ClientAdmission
    let peerLinks: PeerLinks
    let status: StatusBoard

    public init(config: ClusterConfig, id: ReplicaID, keyPair: KeyPair, ledger: LedgerArchive, walPath: String,
                settings: NodeSettings = NodeSettings(), byzantine: ByzantineMode? = nil, logger: Logger) throws {
        guard config.publicKey(of: id) == keyPair.publicKey else {
            throw ConnectionError(
                description: "the key file's public key is not replica \(id.value)'s key in the cluster config")
        }
        let context = NodeContext(config: config, id: id, keyPair: keyPair, settings: settings, logger: logger,
                                  metrics: NodeMetrics())
        let (state, head) = try Self.recover(context: context, ledger: ledger, walPath: walPath, byzantine: byzantine)
        let shed = ShedTally(metrics: context.metrics)
        let status = StatusBoard(Self.initialStatus(id: id, replica: state.replica, head: head), shed: shed)
        let verifier = SignatureVerifier(
            config: config, memo: VerifiedSignatures(capacity: Self.memoCapacity(config.parameters)))
        let inbox = Mailbox<Event>(capacity: settings.inboxEventsMax)
        let peerLinks = PeerLinks(context: context)
        let clientAdmission = ClientAdmission(context: context, verifier: verifier, inbox: inbox, shed: shed,
                                              status: status)
        self.config = config
        self.id = id
        self.context = context
        self.status = status
        self.peerLinks = peerLinks
        self.clientAdmission = clientAdmission
        self.inboundServer = InboundServer(context: context, verifier: verifier, inbox: inbox, shed: shed,
                                           clients: clientAdmission, peerFrameBytesMax: peerLinks.frameBytesMax)
        self.coreLoop = CoreLoop(context: context, state: state, inbox: inbox, peers: peerLinks,
                                 clients: clientAdmission, status: status)
    }

    /// Opens the write-ahead log, replays the ledger's head and rebuilds the core from both;
    /// arms the adversary if the replica was started Byzantine.
    private static func recover(context: NodeContext, ledger: LedgerArchive, walPath: String,
                                byzantine: ByzantineMode?) throws -> (CoreLoop.CoreState, LedgerHead) {
        let (config, logger) = (context.config, context.logger)
        let wal = try WriteAheadLog(path: walPath)
        if wal.tornBytesDropped > 0 {
            logger.warning("write-ahead log had a torn tail; dropped it",
                           metadata: ["bytes": "\(wal.tornBytesDropped)", "file": "\(walPath)"])
        }
        let head = try ledger.replayHead(config: config)
        let signer = ReplicaSigner(replica: context.id, cluster: config.cluster, keyPair: context.keyPair)
        let recovery = RecoveryState(ledgerHead: head, records: wal.records)
        let replica = Replica(config: config, signer: signer, recovery: recovery)
        var adversary: ReplicaAdversary?
        if let byzantine {
            let seed = UInt64.random(in: 0...UInt64.max)
            adversary = ReplicaAdversary(mode: byzantine, config: config, signer: signer, seed: seed)
            logger.critical(
                "BYZANTINE MODE: this replica attacks its own cluster on purpose; for fault-injection tests only",
                metadata: ["mode": "\(byzantine)", "seed": "\(seed)"])
        }
        logger.info("recovered", metadata: ["view": "\(replica.view.value)", "height": "\(head.height.value)",
                                            "walRecords": "\(wal.records.count)"])
        return (CoreLoop.CoreState(replica: replica, wal: wal, ledger: ledger, adversary: adversary), head)
    }

    private static func initialStatus(id: ReplicaID, replica: Replica, head: LedgerHead) -> ReplicaStatus {
        ReplicaStatus(
            replica: id.value, view: replica.view.value, primary: replica.primary.value,
            inViewChange: replica.isInViewChange, height: head.height.value,
            headHash: head.hash.hex, stableCheckpoint: replica.stableCheckpoint.value,
            connectedPeers: [], committedBlocks: 0, viewChanges: 0)
    }

    public var currentStatus: ReplicaStatus { status.current }

    /// Runs until the task is cancelled: the server, the peer links, the clock and the core.
    public func run(group: MultiThreadedEventLoopGroup = .singleton) async throws {
        let server = try await inboundServer.bind(group: group)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await self.inboundServer.acceptLoop(server) }
            group.addTask { await self.peerLinks.run() }
            group.addTask { await self.coreLoop.runClock() }
            group.addTask { try await self.coreLoop.run() }
        }
    }

    /// Entries of the verified-signature memo: at least a full window of full batches, so the
    /// requests of every certificate a VIEW-CHANGE or NEW-VIEW can carry were seen recently
    /// enough to be remembered (bounded: ~80 bytes an entry).
    static func memoCapacity(_ parameters: ProtocolParameters) -> Int {
        let window = Int(clamping: parameters.watermarkWindow).multipliedReportingOverflow(by: parameters.batchSizeMax)
        return min(max(32_768, window.overflow ? Int.max : window.partialValue), 262_144)
    }
}
