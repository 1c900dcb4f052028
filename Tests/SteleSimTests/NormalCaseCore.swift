import PBFT
import SteleCore
import SteleSim

/// A deliberately small PBFT core for testing the simulator itself: the normal case only
/// (view 0, no view change, no checkpoints, no state transfer), one request per batch.
struct NormalCaseCore: ConsensusCore {
    let config: ClusterConfig
    let signer: ReplicaSigner
    var prePrepares: [SequenceNumber: PrePrepare] = [:]
    var prepares: [SequenceNumber: [ReplicaID: Digest]] = [:]
    var commits: [SequenceNumber: [ReplicaID: Vote]] = [:]
    var sentCommit: Set<SequenceNumber> = []
    var nextSequence = SequenceNumber(1)
    var head: LedgerHead
    var proposed: Set<Digest> = []

    init(config: ClusterConfig, signer: ReplicaSigner, recovery: RecoveryState?) {
        self.config = config
        self.signer = signer
        self.head = recovery?.ledgerHead ?? LedgerHead.genesis(config)
        nextSequence = head.height.next
        guard let recovery else { return }
        for record in recovery.records {
            switch record {
            case .prePrepare(let m):
                prePrepares[m.sequence] = m
                for request in m.batch { proposed.insert(request.contentDigest) }
                if m.sequence >= nextSequence { nextSequence = m.sequence.next }
            case .vote(let vote) where vote.kind == .commit: sentCommit.insert(vote.sequence)
            default: break
            }
        }
    }

    var id: ReplicaID { signer.replica }
    var view: View { 0 }
    var isInViewChange: Bool { false }
    var lastExecuted: SequenceNumber { head.height }
    var stableCheckpoint: SequenceNumber { .genesis }
    /// No watermark window, view changes or timers: nothing structural can break.
    func checkInvariants() -> [CoreInvariantViolation] { [] }
    var isPrimary: Bool { config.primary(of: 0) == id }

    mutating func handle(_ event: Event) -> [Action] {
        switch event {
        case .tick: return []
        case .clientRequest(let request): return receive(request)
        case .message(.request(let request), _): return receive(request)
        case .message(.prePrepare(let m), let from) where from == m.primary && m.primary == config.primary(of: 0) && m.view == 0:
            return accept(m)
        case .message(.prepare(let vote), let from) where from == vote.replica && vote.view == 0:
            prepares[vote.sequence, default: [:]][vote.replica] = vote.digest
            return advance(vote.sequence)
        case .message(.commit(let vote), let from) where from == vote.replica && vote.view == 0:
            commits[vote.sequence, default: [:]][vote.replica] = vote
            return advance(vote.sequence)
        default: return []
        }
    }

    mutating func receive(_ request: Request) -> [Action] {
        if case .executed(let result) = head.clients[request.client]?.status(of: request.timestamp) ?? .new {
            return [.reply(reply(request, result))]
        }
        guard isPrimary, proposed.insert(request.contentDigest).inserted else { return [] }
        let prePrepare = PrePrepare(view: 0, sequence: nextSequence, primary: id, batch: [request]).signed(by: signer)
        nextSequence = nextSequence.next
        prePrepares[prePrepare.sequence] = prePrepare
        return [.persist([.prePrepare(prePrepare)]), .broadcast(.prePrepare(prePrepare))]
    }

    mutating func accept(_ prePrepare: PrePrepare) -> [Action] {
        guard prePrepare.sequence > head.height, prePrepares[prePrepare.sequence] == nil else { return [] }
        prePrepares[prePrepare.sequence] = prePrepare
        let prepare = Vote(kind: .prepare, view: 0, sequence: prePrepare.sequence, digest: prePrepare.digest, replica: id).signed(by: signer)
        prepares[prePrepare.sequence, default: [:]][id] = prePrepare.digest
        return [.persist([.prePrepare(prePrepare), .vote(prepare)]), .broadcast(.prepare(prepare))] + advance(prePrepare.sequence)
    }

    mutating func advance(_ sequence: SequenceNumber) -> [Action] {
        guard let prePrepare = prePrepares[sequence] else { return [] }
        var actions = [Action]()
        let matching = (prepares[sequence] ?? [:]).filter { $0.value == prePrepare.digest && $0.key != prePrepare.primary }
        if matching.count >= 2 * config.f, sentCommit.insert(sequence).inserted {
            let commit = Vote(kind: .commit, view: 0, sequence: sequence, digest: prePrepare.digest, replica: id).signed(by: signer)
            commits[sequence, default: [:]][id] = commit
            actions += [.persist([.vote(commit)]), .broadcast(.commit(commit))]
        }
        return actions + execute()
    }

    mutating func execute() -> [Action] {
        var actions = [Action]()
        while let prePrepare = prePrepares[head.height.next], sentCommit.contains(prePrepare.sequence) {
            let votes = (commits[prePrepare.sequence] ?? [:]).values.filter { $0.digest == prePrepare.digest }.sorted { $0.replica < $1.replica }
            guard votes.count >= config.quorum else { break }
            let block = CertifiedBlock(
                height: prePrepare.sequence, prevHash: head.hash, batch: prePrepare.batch, certificateView: 0,
                commitSignatures: votes.map { ReplicaSignature(replica: $0.replica, signature: $0.signature) })
            head.apply(block)
            actions.append(.commit(block))
            for request in block.batch {
                actions.append(.reply(reply(request, Reply.Result(height: block.height, blockHash: block.hash))))
            }
        }
        return actions
    }

    func reply(_ request: Request, _ result: Reply.Result) -> Reply {
        Reply(view: 0, timestamp: request.timestamp, client: request.client, replica: id, height: result.height, blockHash: result.blockHash).signed(by: signer)
    }
}

/// A test core that is the normal-case core with one thing changed: everything it does not
/// override goes to `inner`.
protocol NormalCaseVariant: ConsensusCore {
    var inner: NormalCaseCore { get set }
}

extension NormalCaseVariant {
    mutating func handle(_ event: Event) -> [Action] { inner.handle(event) }
    var id: ReplicaID { inner.id }
    var view: View { inner.view }
    var isInViewChange: Bool { inner.isInViewChange }
    var lastExecuted: SequenceNumber { inner.lastExecuted }
    var stableCheckpoint: SequenceNumber { inner.stableCheckpoint }
    func checkInvariants() -> [CoreInvariantViolation] { inner.checkInvariants() }
}

/// The normal-case core with a crash bug: it ignores its write-ahead log on restart, so it
/// forgets the pre-prepares and votes it signed — the simulator must catch it re-signing.
struct AmnesiacCore: NormalCaseVariant {
    var inner: NormalCaseCore

    init(config: ClusterConfig, signer: ReplicaSigner, recovery: RecoveryState?) {
        let forgotten = recovery.map { RecoveryState(ledgerHead: $0.ledgerHead, records: []) }
        inner = NormalCaseCore(config: config, signer: signer, recovery: forgotten)
    }
}

/// The normal-case core with a structural bug: once it has executed a block it reports its
/// committed table out of step, as a core that forgot to drop an executed batch would.
struct UntidyCore: NormalCaseVariant {
    var inner: NormalCaseCore

    init(config: ClusterConfig, signer: ReplicaSigner, recovery: RecoveryState?) {
        inner = NormalCaseCore(config: config, signer: signer, recovery: recovery)
    }

    func checkInvariants() -> [CoreInvariantViolation] {
        guard lastExecuted > .genesis else { return [] }
        return [CoreInvariantViolation(.committedAtOrBelowExecuted, sequence: lastExecuted, detail: "kept after executing")]
    }
}
