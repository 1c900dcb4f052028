import SteleCore
import SteleCrypto

/// How a real replica process misbehaves when started with `--byzantine MODE`. Each mode runs
/// the honest core underneath and changes what leaves the process; the replica can sign
/// anything with its own key and nothing with anyone else's.
public enum ByzantineMode: String, CaseIterable, Sendable, CustomStringConvertible, Codable {
    /// As primary: one batch to one backup and another batch (with a request of its own) to the
    /// others, with its COMMITs for the second. As backup: every PREPARE and COMMIT also goes
    /// out for a second, made-up digest.
    case equivocate
    /// Receives everything, sends nothing: no protocol messages, no replies.
    case silent
    /// Sends pre-prepares and prepares but never a COMMIT.
    case withhold
    /// About half of what it sends has a flipped signature bit, a changed field under the old
    /// signature, or a broken signature nested inside (a request in a batch, a checkpoint proof,
    /// a view change in a NEW-VIEW, a commit certificate in a state transfer); replies too.
    case corrupt
    /// Re-sends its old messages — from old views and below the watermarks — every few ticks.
    case replay
    /// Sends VIEW-CHANGE messages for ever-higher views, every few ticks.
    case viewChangeStorm = "viewchange-storm"
    /// As new primary: a NEW-VIEW whose O-set drops a prepared request (re-proposes it as a null
    /// batch), or, with nothing prepared, carries a request nobody prepared.
    case lyingNewView = "lying-newview"

    public var description: String { rawValue }
}

/// One message a Byzantine replica puts on the wire to one peer.
public struct ForgedSend: Sendable {
    public let message: Message
    public let to: ReplicaID

    public init(_ message: Message, to: ReplicaID) {
        self.message = message
        self.to = to
    }
}

/// The misbehaviour of one real Byzantine replica. The runtime asks it what really goes out
/// whenever the honest core sends or replies, and once per tick. Not thread-safe: the replica's
/// core loop owns it.
public final class ReplicaAdversary {
    public let mode: ByzantineMode
    let config: ClusterConfig
    let signer: ReplicaSigner
    let forger: ClientSigner
    var random: SeededGenerator
    private var forgerTimestamp: UInt64 = 0
    private var ticks: UInt64 = 0
    /// Messages this replica sent, for `replay` (a ring of `historyCountMax`).
    private var history: [Message] = []
    private var historyNext = 0
    static let historyCountMax = 512
    private var stormView = View(0)
    private var lastViewChange: ViewChange?
    /// Forged COMMITs of an equivocating primary, re-sent at later ticks so that votes that
    /// arrive before their pre-prepare still count.
    private var scheduled: [UInt64: [ForgedSend]] = [:]
    static let scheduledTicks: [UInt64] = [2, 6, 15]
    /// How often each kind of misbehaviour happened ("equivocate.split", "replay.sent", ...).
    public private(set) var moves: [String: Int] = [:]

    /// `forgerSeed` makes the equivocating primary's own client key (its extra requests are
    /// validly signed, by a key that is nobody's).
    public init(mode: ByzantineMode, config: ClusterConfig, signer: ReplicaSigner, seed: UInt64) {
        self.mode = mode
        self.config = config
        self.signer = signer
        var generator = SeededGenerator(seed: seed)
        let clientKey = KeyPair(seed: generator.bytes(32)) ?? KeyPair.generate()
        self.forger = ClientSigner(cluster: config.cluster, keyPair: clientKey)
        self.random = generator
    }

    var me: ReplicaID { signer.replica }
    var others: [ReplicaID] { config.replicaIDs.filter { $0 != me } }

    func count(_ move: String, _ times: Int = 1) {
        guard times > 0 else { return }
        moves[move, default: 0] += times
    }

    // MARK: What goes out

    /// What really goes out when the honest core sends `message` to `targets`.
    public func outgoing(_ message: Message, to targets: [ReplicaID]) -> [ForgedSend] {
        if case .viewChange(let viewChange) = message { lastViewChange = viewChange }
        switch mode {
        case .silent:
            count("silent.dropped", targets.count)
            return []
        case .withhold:
            if case .commit = message {
                count("withhold.dropped", targets.count)
                return []
            }
            return plain(message, to: targets)
        case .equivocate:
            return equivocate(message, to: targets)
        case .corrupt:
            return targets.map { ForgedSend(maybeCorrupted(message), to: $0) }
        case .replay:
            remember(message)
            return plain(message, to: targets)
        case .viewChangeStorm:
            return plain(message, to: targets)
        case .lyingNewView:
            guard case .newView(let newView) = message, newView.primary == me else { return plain(message, to: targets) }
            count("lying-newview.lie", targets.count)
            return plain(.newView(lie(about: newView)), to: targets)
        }
    }

    /// What really goes back to a client when the honest core replies; nil sends nothing.
    public func reply(_ reply: Reply) -> Message? {
        switch mode {
        case .silent:
            count("silent.reply-dropped")
            return nil
        case .corrupt:
            return maybeCorrupted(.reply(reply))
        default:
            return .reply(reply)
        }
    }

    /// Unprompted misbehaviour, once per tick; `coreView` is the view the honest core is in.
    public func tick(coreView: View) -> [ForgedSend] {
        ticks += 1
        var sends = scheduled.removeValue(forKey: ticks) ?? []
        switch mode {
        case .replay:
            sends += replayOld()
        case .viewChangeStorm:
            sends += storm(coreView: coreView)
        default:
            break
        }
        return sends
    }

    func plain(_ message: Message, to targets: [ReplicaID]) -> [ForgedSend] {
        targets.map { ForgedSend(message, to: $0) }
    }

    // MARK: equivocate

    func equivocate(_ message: Message, to targets: [ReplicaID]) -> [ForgedSend] {
        switch message {
        case .prePrepare(let prePrepare) where prePrepare.primary == me:
            return split(prePrepare, to: targets)
        case .prepare(let vote), .commit(let vote):
            let conflicting = Vote(kind: vote.kind, view: vote.view, sequence: vote.sequence,
                                   digest: Digest.of(random.bytes(16)), replica: me).signed(by: signer)
            count("equivocate.double-vote", targets.count)
            let wrapped: Message = vote.kind == .prepare ? .prepare(conflicting) : .commit(conflicting)
            return plain(message, to: targets) + plain(wrapped, to: targets)
        default:
            return plain(message, to: targets)
        }
    }

    /// Batch A (what the core proposed) to one backup, which rotates with the sequence number;
    /// batch B — A plus one request of the adversary's own — to the others, with this replica's
    /// COMMIT for B, so that B can commit there while the first backup is left with A.
    func split(_ first: PrePrepare, to targets: [ReplicaID]) -> [ForgedSend] {
        let forged = forgerRequest()
        let second = PrePrepare(view: first.view, sequence: first.sequence, primary: me, batch: first.batch + [forged]).signed(by: signer)
        let backups = others
        let victim = backups[Int(first.sequence.value % UInt64(backups.count))]
        let commit = Message.commit(Vote(kind: .commit, view: first.view, sequence: first.sequence, digest: second.digest, replica: me).signed(by: signer))
        var sends: [ForgedSend] = []
        for target in targets {
            if target == victim {
                sends.append(ForgedSend(.prePrepare(first), to: target))
            } else {
                sends.append(ForgedSend(.prePrepare(second), to: target))
                sends.append(ForgedSend(commit, to: target))
            }
        }
        let again = targets.filter { $0 != victim }.map { ForgedSend(commit, to: $0) }
        for delay in ReplicaAdversary.scheduledTicks { scheduled[ticks + delay, default: []] += again }
        count("equivocate.split")
        return sends
    }

    func forgerRequest() -> Request {
        forgerTimestamp += 1
        return forger.request(timestamp: forgerTimestamp, payload: Array("equivocation \(forgerTimestamp)".utf8))
    }

    // MARK: corrupt

    /// Half the time: a flipped signature bit, a changed field, or a broken nested signature.
    func maybeCorrupted(_ message: Message) -> Message {
        guard random.chance(percent: 50) else { return message }
        count("corrupt.mangled")
        switch random.int(below: 3) {
        case 0: return message.replacingSignature(Forgery.flipBit(message.signature, random: &random))
        case 1: return message.mangledField(random: &random)
        default: return Forgery.mangledNested(message, signer: signer, random: &random)
        }
    }

    // MARK: replay

    func remember(_ message: Message) {
        if history.count < ReplicaAdversary.historyCountMax {
            history.append(message)
        } else {
            history[historyNext] = message
        }
        historyNext = (historyNext + 1) % ReplicaAdversary.historyCountMax
    }

    /// Every other tick, a burst of up to eight old messages, each to a random peer.
    func replayOld() -> [ForgedSend] {
        guard ticks % 2 == 0, !history.isEmpty else { return [] }
        var sends: [ForgedSend] = []
        for _ in 0..<min(8, history.count) {
            let old = history[random.int(below: history.count)]
            sends.append(ForgedSend(old, to: others[random.int(below: others.count)]))
        }
        count("replay.sent", sends.count)
        return sends
    }

    // MARK: viewchange-storm

    /// Every fifth tick, a VIEW-CHANGE for a view above any this replica asked for before.
    func storm(coreView: View) -> [ForgedSend] {
        guard ticks % 5 == 0 else { return [] }
        let target = View(max(stormView.value, coreView.value) + UInt64(random.int(in: 1...3)))
        stormView = target
        let base = lastViewChange
        let viewChange = ViewChange(
            newView: target, stableSequence: base?.stableSequence ?? .genesis, checkpointProof: base?.checkpointProof ?? [],
            prepared: base?.prepared ?? [], replica: me).signed(by: signer)
        count("viewchange-storm.sent")
        return plain(.viewChange(viewChange), to: others)
    }

    // MARK: lying-newview

    /// Drops the highest prepared request from O (re-proposed as a null batch); with nothing
    /// prepared, adds a request nobody prepared.
    func lie(about newView: NewView) -> NewView {
        var prePrepares = newView.prePrepares
        if let index = prePrepares.lastIndex(where: { !$0.batch.isEmpty }) {
            let dropped = prePrepares[index]
            prePrepares[index] = PrePrepare(view: dropped.view, sequence: dropped.sequence, primary: me, batch: []).signed(by: signer)
            count("lying-newview.dropped-prepared")
        } else {
            let sequence = prePrepares.last?.sequence.next ?? (newView.viewChanges.map(\.stableSequence).max() ?? .genesis).next
            prePrepares.append(PrePrepare(view: newView.view, sequence: sequence, primary: me, batch: [forgerRequest()]).signed(by: signer))
            count("lying-newview.invented")
        }
        return NewView(view: newView.view, viewChanges: newView.viewChanges, prePrepares: prePrepares, primary: me).signed(by: signer)
    }
}
