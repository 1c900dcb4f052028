import SteleCore
import SteleCrypto

/// How one Byzantine replica misbehaves: the one list of per-replica attacks, run by a real
/// replica process (`stele replica --byzantine MODE`) and by the simulator's strategies alike.
/// Each mode runs the honest core underneath and changes what reaches the core and what leaves
/// it; the replica can sign anything with its own key and nothing with anyone else's.
public enum ByzantineMode: String, CaseIterable, Sendable, CustomStringConvertible, Codable {
    /// As primary: for each (v, s), batch A (what the core proposed) to one group of backups and
    /// batch B (A plus a request of its own) with its COMMIT for B to the others — the same
    /// split on every re-send. As backup: every PREPARE and COMMIT also goes out for a second,
    /// made-up digest.
    case equivocate
    /// Receives everything, sends nothing: no protocol messages, no replies.
    case silent
    /// Sends pre-prepares and prepares but never a COMMIT.
    case withhold
    /// About half of what it sends has a flipped signature bit, a changed field under the old
    /// signature, or a broken signature nested inside (a request in a batch, a checkpoint proof,
    /// a view change in a NEW-VIEW, a commit certificate in a state transfer); replies too.
    case corrupt
    /// Re-sends messages it sent or received — from old views, below the watermarks, other
    /// replicas' — in bursts every other tick.
    case replay
    /// Sends VIEW-CHANGE messages for ever-higher views, every few ticks.
    case viewChangeStorm = "viewchange-storm"
    /// As new primary: a NEW-VIEW whose O-set drops a prepared request (re-proposes it as a null
    /// batch), leaves a slot out, carries a wrong batch or one nobody prepared, or whose V lacks
    /// a VIEW-CHANGE — a different lie to each backup.
    case lyingNewView = "lying-newview"
    /// Every PREPARE and COMMIT also goes, to a random part of its targets, for a made-up digest.
    case doubleVote = "double-vote"
    /// Every VIEW-CHANGE lies: prepared certificates dropped, forged or signed by this replica
    /// alone, or a forged checkpoint proof; and the storm of `viewchange-storm`.
    case lyingViewChange = "lying-viewchange"
    /// No REQUEST of one victim client (the first client it hears from, unless one is named)
    /// reaches the core, directly or relayed: as primary it never orders them.
    case censor

    public var description: String { rawValue }
}

/// One message a Byzantine replica puts on the wire to one peer.
public struct ForgedSend: Sendable, Equatable {
    public let message: Message
    public let to: ReplicaID

    public init(_ message: Message, to: ReplicaID) {
        self.message = message
        self.to = to
    }
}

/// The misbehaviour of one Byzantine replica. Its shell asks it what the core may see of each
/// incoming message, what really goes out whenever the honest core sends or replies, and what
/// it sends unprompted once per tick. Every choice is drawn from the stream it was given, so a
/// simulated replica replays exactly from its seed. Not thread-safe: the replica's core loop
/// (or the simulator) owns it.
public final class ReplicaAdversary {
    public let mode: ByzantineMode
    let config: ClusterConfig
    let signer: ReplicaSigner
    var random: any RandomStream
    var forger: RequestForger
    /// Replicas that collude with this one (the simulator's fellow equivocators): an
    /// equivocating primary gives them batch A and splits only the others.
    let accomplices: Set<ReplicaID>
    /// The censor's victim; nil until the first client request arrives, unless named.
    private(set) var censoredClient: PublicKey?
    private(set) var ticks: UInt64 = 0
    /// Messages sent and received, for `replay` (a ring of `historyCountMax`).
    private var history: [Message] = []
    private var historyNext = 0
    static let historyCountMax = 512
    var stormView = View(0)
    var lastViewChange: ViewChange?
    /// An equivocating primary's split per (v, s), so a re-sent PRE-PREPARE splits the same way.
    var splits: [LogSlot: Split] = [:]
    static let splitsMax = 4096
    /// Forged COMMITs of an equivocating primary, re-sent at later ticks so that votes that
    /// arrive before their pre-prepare still count.
    var scheduled: [UInt64: [ForgedSend]] = [:]
    static let scheduledTicks: [UInt64] = [2, 6, 15]
    /// How often each kind of misbehaviour happened ("equivocate.split", "replay.sent", ...).
    public private(set) var moves: [String: Int] = [:]

    /// A real replica's adversary: every choice from SplitMix64 seeded with `seed` (its forged
    /// requests are signed by a client key made from it, a key that is nobody's).
    public convenience init(mode: ByzantineMode, config: ClusterConfig, signer: ReplicaSigner, seed: UInt64) {
        self.init(mode: mode, config: config, signer: signer, random: SeededGenerator(seed: seed))
    }

    /// `random` makes every choice, the forging client's key first. `censoredClient` names the
    /// censor's victim; `accomplices` are the replicas an equivocating primary colludes with.
    public init(mode: ByzantineMode, config: ClusterConfig, signer: ReplicaSigner, random: some RandomStream,
                censoredClient: PublicKey? = nil, accomplices: Set<ReplicaID> = []) {
        precondition(!accomplices.contains(signer.replica), "a replica is not its own accomplice")
        var random = random
        guard let clientKey = KeyPair(seed: random.bytes(KeyPair.seedByteCount)) else {
            preconditionFailure("a 32-byte seed always makes a key pair")
        }
        self.mode = mode
        self.config = config
        self.signer = signer
        self.forger = RequestForger(signer: ClientSigner(cluster: config.cluster, keyPair: clientKey))
        self.accomplices = accomplices
        self.censoredClient = censoredClient
        self.random = random
    }

    var me: ReplicaID { signer.replica }
    var others: [ReplicaID] { config.replicaIDs.filter { $0 != me } }

    func count(_ move: String, _ times: Int = 1) {
        guard times > 0 else { return }
        moves[move, default: 0] += times
    }

    // MARK: What comes in

    /// Whether the honest core gets to see `message` (a client's REQUEST as `.request`), after
    /// its signatures were checked. A censor hides its victim's requests; a replayer keeps what
    /// it hears for later.
    public func admits(_ message: Message) -> Bool {
        switch mode {
        case .replay:
            remember(message)
            return true
        case .censor:
            guard case .request(let request) = message else { return true }
            if censoredClient == nil { censoredClient = request.client }
            guard request.client == censoredClient else { return true }
            count("censor.dropped")
            return false
        default:
            return true
        }
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
            guard case .commit = message else { return plain(message, to: targets) }
            count("withhold.dropped", targets.count)
            return []
        case .equivocate:
            return equivocate(message, to: targets)
        case .doubleVote:
            let conflicting = conflictingVotes(message, to: targets.filter { _ in random.chance(percent: 60) })
            count("double-vote.conflicting", conflicting.count)
            return plain(message, to: targets) + conflicting
        case .corrupt:
            return targets.map { ForgedSend(maybeCorrupted(message), to: $0) }
        case .replay:
            remember(message)
            return plain(message, to: targets)
        case .lyingViewChange:
            guard case .viewChange(let viewChange) = message, viewChange.replica == me else {
                return plain(message, to: targets)
            }
            count("lying-viewchange.lie")
            return plain(.viewChange(lie(about: viewChange)), to: targets)
        case .lyingNewView:
            guard case .newView(let newView) = message, newView.primary == me else { return plain(message, to: targets) }
            count("lying-newview.lie", targets.count)
            return targets.enumerated().map { index, target in
                ForgedSend(.newView(lie(about: newView, first: index == 0)), to: target)
            }
        case .viewChangeStorm, .censor:
            return plain(message, to: targets)
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
        case .viewChangeStorm, .lyingViewChange:
            sends += storm(coreView: coreView)
        default:
            break
        }
        return sends
    }

    func plain(_ message: Message, to targets: [ReplicaID]) -> [ForgedSend] {
        targets.map { ForgedSend(message, to: $0) }
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
}
