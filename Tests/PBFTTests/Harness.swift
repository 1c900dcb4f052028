import Testing
import SteleCore
import SteleCrypto
import SteleTestSupport
@testable import PBFT

/// One message in flight.
struct Envelope {
    let message: Message
    let from: ReplicaID
    let to: ReplicaID
}

/// A tiny deterministic cluster: n >= 3f+1 replicas with fixed keys, a FIFO message queue pumped
/// by hand, a ledger, a write-ahead log and a reply list per replica. Every message is
/// signature-checked with `SignatureVerifier` before delivery, and every action list is checked
/// for persist-before-send.
struct Cluster {
    let config: ClusterConfig
    let signers: [ReplicaSigner]
    let verifier: SignatureVerifier
    let client: ClientSigner
    var replicas: [Replica]
    var queue: [Envelope] = []
    var ledgers: [[CertifiedBlock]]
    var checkpoints: [[CheckpointCertificate]]
    var wal: [[PersistRecord]]
    var replies: [[Reply]]
    /// Every action list each replica returned, in order.
    var actionLists: [[[Action]]]
    /// Replicas cut off from the network (they still tick).
    var isolated: Set<ReplicaID> = []
    /// Messages for which this returns true are lost.
    var drops: (Envelope) -> Bool = { _ in false }
    var delivered = 0

    static let clusterID = ClusterID(bytes: [UInt8](repeating: 7, count: 16))!

    static func parameters(
        checkpointInterval: UInt64 = 4, watermarkWindow: UInt64 = 8, batchSizeMax: Int = 8, pipelineDepthMax: Int = 4,
        viewChangeTimeoutTicks: UInt64 = 10, retransmitTicks: UInt64 = 5
    ) -> ProtocolParameters {
        var parameters = ProtocolParameters()
        parameters.checkpointInterval = checkpointInterval
        parameters.watermarkWindow = watermarkWindow
        parameters.batchSizeMax = batchSizeMax
        parameters.pipelineDepthMax = pipelineDepthMax
        parameters.viewChangeTimeoutTicks = viewChangeTimeoutTicks
        parameters.viewChangeTimeoutTicksMax = viewChangeTimeoutTicks * 16
        parameters.retransmitTicks = retransmitTicks
        return parameters
    }

    /// n = 3f + 1 unless `replicaCount` says more (then the quorum is ⌈(n+f+1)/2⌉, above 2f + 1).
    init(f: Int = 1, replicaCount: Int? = nil, parameters: ProtocolParameters = Cluster.parameters()) {
        let n = replicaCount ?? 3 * f + 1
        let members = TestReplicas(n: n, f: f, cluster: Cluster.clusterID, parameters: parameters)
        let config = members.config
        let signers = members.signers
        self.config = config
        self.signers = signers
        verifier = SignatureVerifier(config: config)
        client = ClientSigner(cluster: Cluster.clusterID, keyPair: FixedKeys.repeating(200))
        replicas = signers.map { Replica(config: config, signer: $0) }
        ledgers = Array(repeating: [], count: n)
        checkpoints = Array(repeating: [], count: n)
        wal = Array(repeating: [], count: n)
        replies = Array(repeating: [], count: n)
        actionLists = Array(repeating: [], count: n)
    }

    var n: Int { config.n }
    var ids: [ReplicaID] { config.replicaIDs }

    func request(_ timestamp: UInt64, _ payload: String = "tx") -> Request {
        client.request(timestamp: timestamp, payload: Array("\(payload)-\(timestamp)".utf8))
    }

    // MARK: Driving

    /// Hands `request` to the given replicas as if the client sent it to them.
    mutating func submit(_ request: Request, to targets: [ReplicaID]? = nil) {
        for target in targets ?? ids where !isolated.contains(target) {
            perform(replicas[Int(target.value)].handle(.clientRequest(request)), by: target)
        }
    }

    /// Delivers one message directly (bypassing the queue, the drop rule and isolation) and
    /// returns the receiver's actions. The signatures are still checked.
    @discardableResult
    mutating func inject(_ message: Message, from: ReplicaID, to: ReplicaID, verify: Bool = true) -> [Action] {
        if verify { expectVerified(message, from: from) }
        let actions = replicas[Int(to.value)].handle(.message(message, from: from))
        perform(actions, by: to)
        return actions
    }

    /// Delivers queued messages until none are left (or `stepsMax` were delivered).
    mutating func run(stepsMax: Int = 100_000) {
        var steps = 0
        while !queue.isEmpty, steps < stepsMax {
            let envelope = queue.removeFirst()
            steps += 1
            guard !isolated.contains(envelope.from), !isolated.contains(envelope.to), !drops(envelope) else { continue }
            expectVerified(envelope.message, from: envelope.from)
            delivered += 1
            perform(replicas[Int(envelope.to.value)].handle(.message(envelope.message, from: envelope.from)), by: envelope.to)
        }
        #expect(queue.isEmpty, "the cluster did not quiesce within \(stepsMax) deliveries")
    }

    /// `count` ticks, each one to every running replica, delivering messages after each.
    mutating func tick(_ count: Int = 1) {
        for _ in 0..<count {
            for target in ids {
                perform(replicas[Int(target.value)].handle(.tick), by: target)
            }
            run()
        }
    }

    /// Ticks until `condition` holds (at most `ticksMax`); true if it did.
    @discardableResult
    mutating func tick(until condition: (Cluster) -> Bool, ticksMax: Int = 2000) -> Bool {
        for _ in 0..<ticksMax {
            if condition(self) { return true }
            tick()
        }
        return condition(self)
    }

    /// Restarts replica `id` from its ledger and write-ahead log (state since the last
    /// persist is lost, as in a crash).
    mutating func restart(_ id: ReplicaID) {
        var head = LedgerHead.genesis(config)
        for block in ledgers[Int(id.value)] { head.apply(block) }
        let recovery = RecoveryState(ledgerHead: head, records: wal[Int(id.value)])
        replicas[Int(id.value)] = Replica(config: config, signer: signers[Int(id.value)], recovery: recovery)
    }

    // MARK: The shell

    mutating func perform(_ actions: [Action], by id: ReplicaID) {
        let index = Int(id.value)
        actionLists[index].append(actions)
        Cluster.expectPersistBeforeSend(actions, durable: wal[index])
        #expect(replicas[index].checkInvariants() == [], "replica \(id) after an event")
        for action in actions {
            switch action {
            case .persist(let records): wal[index].append(contentsOf: records)
            case .send(let message, let to): queue.append(Envelope(message: message, from: id, to: to))
            case .broadcast(let message):
                for to in ids where to != id { queue.append(Envelope(message: message, from: id, to: to)) }
            case .commit(let block): appendBlock(block, at: index)
            case .reply(let reply): replies[index].append(reply)
            case .commitCheckpoint(let certificate):
                #expect(certificate.sequence.value <= UInt64(ledgers[index].count), "checkpoint after its block")
                checkpoints[index].append(certificate)
            case .serveState(let request): serve(request, by: id)
            }
        }
    }

    private mutating func appendBlock(_ block: CertifiedBlock, at index: Int) {
        let ledger = ledgers[index]
        #expect(block.height.value == UInt64(ledger.count + 1), "blocks are appended in height order")
        #expect(block.prevHash == (ledger.last?.hash ?? config.genesis.hash), "blocks chain")
        #expect(QuorumShape.isValidCommitCertificate(block, config: config), "a block carries 2f+1 distinct commit signers")
        var checks = [SignatureVerifier.Check]()
        verifier.appendChecks(block, path: "block", into: &checks)
        for check in checks { #expect(throws: Never.self) { try verifier.verify(check) } }
        ledgers[index].append(block)
    }

    private mutating func serve(_ request: StateRequest, by id: ReplicaID) {
        let index = Int(id.value)
        let ledger = LedgerInMemory(blocks: ledgers[index], checkpoints: checkpoints[index])
        let blocksMax = config.parameters.stateTransferBlocksMax
        let response = try! StateServer.response(to: request, from: ledger, blocksMax: blocksMax, signer: signers[index])
        guard let response else { return }
        queue.append(Envelope(message: .stateResponse(response), from: id, to: request.replica))
    }

    func expectVerified(_ message: Message, from: ReplicaID) {
        #expect(throws: Never.self, "signatures of \(message.tag) from \(from)") { try verifier.verify(message) }
    }

    /// Every PRE-PREPARE, PREPARE, COMMIT, VIEW-CHANGE and NEW-VIEW a replica sends is protected
    /// by a record persisted earlier in the same action list (a first send) or already in its
    /// write-ahead log (a re-send).
    static func expectPersistBeforeSend(_ actions: [Action], durable: [PersistRecord]) {
        var persisted = [PersistRecord]()
        for action in actions {
            switch action {
            case .persist(let records): persisted.append(contentsOf: records)
            case .send(let message, _), .broadcast(let message):
                if let needed = protectingRecord(message) {
                    #expect(persisted.contains(needed) || durable.contains(needed), "\(message.tag) sent before its record was persisted")
                }
            default: break
            }
        }
    }

    static func protectingRecord(_ message: Message) -> PersistRecord? {
        switch message {
        case .prePrepare(let prePrepare): .prePrepare(prePrepare)
        case .prepare(let vote), .commit(let vote): .vote(vote)
        case .viewChange(let viewChange): .viewChange(viewChange)
        case .newView(let newView): .newView(newView)
        default: nil
        }
    }

    // MARK: Observations

    func replica(_ id: ReplicaID) -> Replica { replicas[Int(id.value)] }
    func ledger(_ id: ReplicaID) -> [CertifiedBlock] { ledgers[Int(id.value)] }

    /// Messages `id` sent (send or broadcast) in all its action lists.
    func sent(by id: ReplicaID) -> [Message] {
        actionLists[Int(id.value)].flatMap { $0 }.compactMap { action in
            switch action {
            case .send(let message, _), .broadcast(let message): message
            default: nil
            }
        }
    }

    /// Every (client, timestamp) in `id`'s ledger appears once.
    func expectExactlyOnce(_ id: ReplicaID) {
        var seen = Set<String>()
        for block in ledger(id) {
            for request in block.batch {
                #expect(seen.insert("\(request.client.hex)/\(request.timestamp)").inserted, "request \(request.timestamp) executed twice")
            }
        }
    }
}

extension Array where Element == Action {
    var messages: [Message] {
        compactMap { action in
            switch action {
            case .send(let message, _), .broadcast(let message): message
            default: nil
            }
        }
    }
    var prepares: [Vote] { messages.compactMap { if case .prepare(let vote) = $0 { vote } else { nil } } }
    var commits: [Vote] { messages.compactMap { if case .commit(let vote) = $0 { vote } else { nil } } }
    var prePrepares: [PrePrepare] { messages.compactMap { if case .prePrepare(let m) = $0 { m } else { nil } } }
    var viewChanges: [ViewChange] { messages.compactMap { if case .viewChange(let m) = $0 { m } else { nil } } }
    var newViews: [NewView] { messages.compactMap { if case .newView(let m) = $0 { m } else { nil } } }
    var blocks: [CertifiedBlock] { compactMap { if case .commit(let block) = $0 { block } else { nil } } }
    var replies: [Reply] { compactMap { if case .reply(let reply) = $0 { reply } else { nil } } }
}
