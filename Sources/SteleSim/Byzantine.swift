import PBFT
import SteleAdversary
import SteleCore
import SteleCrypto

/// How a Byzantine replica misbehaves in the simulator. The per-replica strategies are
/// SteleAdversary's modes (`mode`): the simulator drives one `ReplicaAdversary` per Byzantine
/// replica, the code `stele replica --byzantine MODE` runs. What needs the whole cluster stays
/// here: twins, colluders that share a plan, and garbled wire bytes.
///
/// The order of the cases is part of every seed: `--strategy all` draws a strategy by index.
public enum ByzantineStrategy: String, CaseIterable, Sendable, CustomStringConvertible {
    /// `ByzantineMode.equivocate`; colluding equivocators also vote for every batch their
    /// primary sent, to everyone.
    case equivocate
    /// `ByzantineMode.doubleVote`.
    case doubleVote = "double-vote"
    /// `ByzantineMode.silent`.
    case silent
    /// `ByzantineMode.withhold`.
    case withhold
    /// `ByzantineMode.corrupt`; one in `Adversary.garbledOneIn` of its sends also goes out as
    /// garbled bytes.
    case corrupt
    /// `ByzantineMode.replay`.
    case replay
    /// `ByzantineMode.lyingViewChange` (its storm is `viewchange-storm`'s).
    case lyingViewChange = "lying-viewchange"
    /// `ByzantineMode.lyingNewView`.
    case lyingNewView = "lying-newview"
    /// Two copies of the replica share its key, each running an honest core.
    case twin
    /// Targeted colluders (see TargetedAdversary.swift): their primary sends batch A to honest
    /// group A and batch B to group B, and every colluder sends A-votes only to group A and
    /// B-votes only to group B. They drive view changes towards a view with a colluding primary.
    case splitVote = "split-vote"
    /// A targeted colluder that, as new primary, sends different valid NEW-VIEWs (built from
    /// different quorums of VIEW-CHANGEs) to the two groups; otherwise plays split-vote.
    case equivocatingNewView = "equivocate-newview"
    /// A targeted colluder that sends its VIEW-CHANGE with its prepared certificates to group A
    /// and one without them to group B (both validly signed); otherwise plays split-vote.
    case equivocatingViewChange = "equivocate-viewchange"
    /// `ByzantineMode.censor`, its victim client 0.
    case censor

    public var description: String { rawValue }

    /// The SteleAdversary mode this strategy runs; nil for those that need the whole cluster.
    public var mode: ByzantineMode? {
        switch self {
        case .equivocate: .equivocate
        case .doubleVote: .doubleVote
        case .silent: .silent
        case .withhold: .withhold
        case .corrupt: .corrupt
        case .replay: .replay
        case .lyingViewChange: .lyingViewChange
        case .lyingNewView: .lyingNewView
        case .censor: .censor
        case .twin, .splitVote, .equivocatingNewView, .equivocatingViewChange: nil
        }
    }

    /// The strategies that collude through one shared `Conspiracy`.
    public var isTargeted: Bool { self == .splitVote || self == .equivocatingNewView || self == .equivocatingViewChange }
}

/// One message the adversary puts on the network, from one of the replicas it controls.
public struct AdversarySend: Sendable {
    public let from: ReplicaID
    public let payload: SimPayload
    public let to: ReplicaID
}

/// The adversary: every Byzantine replica's `ReplicaAdversary`, and what only the whole cluster
/// can do — twins, the colluders' shared memory, garbled bytes on the simulated wire — drawing
/// from one seeded stream (each `ReplicaAdversary` from its own).
final class Adversary {
    typealias Slot = LogSlot

    static let equivocationsMax = 4096
    /// One in this many messages a `corrupt` replica sends goes out as garbled bytes instead.
    static let garbledOneIn = 8
    static let conspiracyVoteDelaysTicks: [UInt64] = [3, 8, 20]

    let config: ClusterConfig
    let signers: [ReplicaID: ReplicaSigner]
    let strategies: [ReplicaID: ByzantineStrategy]
    /// The per-replica strategies' adversaries.
    let replicaAdversaries: [ReplicaID: ReplicaAdversary]
    var forger: RequestForger
    var random: SimRandom
    /// Colluding equivocators: the digests their primary sent per (v, s), and when to vote again.
    private var equivocations: [Slot: [Digest]] = [:]
    private var scheduledVotes: [UInt64: [Slot]] = [:]
    var lastViewChanges: [ReplicaID: ViewChange] = [:]
    /// Targeted colluders: the slots they split, their scheduled re-sends, the next tick their
    /// coordinator may drive a view change, and the VIEW-CHANGEs they saw per new view.
    var splits: [Slot: SplitSlot] = [:]
    var scheduledSplits: [UInt64: [Slot]] = [:]
    var nextDriveTick: UInt64 = 0
    var seenViewChanges: [View: [ReplicaID: ViewChange]] = [:]
    /// Targeted colluders' shared state (nil when no replica plays a targeted strategy).
    var conspiracy: Conspiracy?
    private var clusterMoves: [String: Int] = [:]

    /// `stream(replica)` is the seeded stream of that replica's `ReplicaAdversary`; the censor's
    /// victim is `censoredClient`.
    init(config: ClusterConfig, signers: [ReplicaID: ReplicaSigner], strategies: [ReplicaID: ByzantineStrategy],
         forger: ClientSigner, random: SimRandom, stream: (ReplicaID) -> SimRandom, censoredClient: PublicKey? = nil) {
        self.config = config
        self.signers = signers
        self.strategies = strategies
        self.forger = RequestForger(signer: forger)
        self.random = random
        let equivocators = Set(strategies.keys.filter { strategies[$0] == .equivocate })
        var adversaries: [ReplicaID: ReplicaAdversary] = [:]
        for replica in strategies.keys.sorted() {
            guard let mode = strategies[replica]?.mode, let signer = signers[replica] else { continue }
            adversaries[replica] = ReplicaAdversary(
                mode: mode, config: config, signer: signer, random: stream(replica), censoredClient: censoredClient,
                accomplices: mode == .equivocate ? equivocators.subtracting([replica]) : [])
        }
        replicaAdversaries = adversaries
        conspiracy = Conspiracy.plan(config: config, strategies: strategies, random: &self.random)
    }

    var replicas: [ReplicaID] { config.replicaIDs }
    var colluders: [ReplicaID] { strategies.keys.sorted().filter { strategies[$0] == .equivocate } }

    func others(than replica: ReplicaID) -> [ReplicaID] { replicas.filter { $0 != replica } }

    /// How often each kind of misbehaviour happened ("equivocate.split", "replay.sent", ...),
    /// so tests can tell a strategy that never got to act from one that was withstood.
    var moveCounts: [String: Int] {
        replicaAdversaries.values.reduce(into: clusterMoves) { $0.merge($1.moves, uniquingKeysWith: +) }
    }

    func count(_ move: String, _ times: Int = 1) {
        guard times > 0 else { return }
        clusterMoves[move, default: 0] += times
    }

    /// A validly signed request from the adversary's own client, to make batches differ.
    func forgedRequest() -> Request { forger.request(payload: random.bytes(8)) }

    // MARK: - Incoming messages

    /// Whether Byzantine `replica`'s core sees `event` (a censor hides its victim's requests);
    /// what the replica hears is remembered for replaying and by targeted colluders.
    func admits(_ event: Event, at replica: ReplicaID) -> Bool {
        guard let message = event.message else { return true }
        if case .viewChange(let viewChange) = message, strategies[replica]?.isTargeted == true {
            rememberSeen(viewChange)
        }
        return replicaAdversaries[replica]?.admits(message) ?? true
    }

    // MARK: - Outgoing messages

    /// What replica `replica` (Byzantine) really sends when its honest core sends `message`.
    func intercept(_ message: Message, from replica: ReplicaID, to targets: [ReplicaID], now: UInt64) -> [AdversarySend] {
        guard let strategy = strategies[replica], let signer = signers[replica] else {
            preconditionFailure("intercept is only for Byzantine replicas")
        }
        if case .viewChange(let viewChange) = message {
            lastViewChanges[replica] = viewChange
            if strategy.isTargeted { rememberSeen(viewChange) }
        }
        switch strategy {
        case .twin:
            count("twin.sent", targets.count)
            return plain(message, from: replica, to: targets)
        case .splitVote, .equivocatingNewView, .equivocatingViewChange:
            return targeted(message, strategy: strategy, signer: signer, to: targets, now: now)
        case .equivocate:
            return colluding(message, from: replica, to: targets, now: now)
        default:
            return perReplica(message, from: replica, to: targets)
        }
    }

    /// What a Byzantine replica does with a reply its core produced.
    func interceptReply(_ reply: Reply, from replica: ReplicaID) -> SimPayload? {
        guard let adversary = replicaAdversaries[replica] else { return .message(.reply(reply)) }
        return adversary.reply(reply).map { wire($0, from: replica) }
    }

    func plain(_ message: Message, from replica: ReplicaID, to targets: [ReplicaID]) -> [AdversarySend] {
        targets.map { AdversarySend(from: replica, payload: .message(message), to: $0) }
    }

    /// What the replica's `ReplicaAdversary` sends instead of `message`.
    func perReplica(_ message: Message, from replica: ReplicaID, to targets: [ReplicaID]) -> [AdversarySend] {
        guard let adversary = replicaAdversaries[replica] else {
            preconditionFailure("\(replica) plays no per-replica mode")
        }
        return adversary.outgoing(message, to: targets).map { sent(from: replica, $0) }
    }

    func sent(from replica: ReplicaID, _ send: ForgedSend) -> AdversarySend {
        AdversarySend(from: replica, payload: wire(send.message, from: replica), to: send.to)
    }

    /// A message as it goes on the simulated wire: from a `corrupt` replica, now and then as
    /// garbled bytes that a decoder must reject or survive (a real replica's frames carry
    /// messages only, so these are the simulator's).
    func wire(_ message: Message, from replica: ReplicaID) -> SimPayload {
        guard strategies[replica] == .corrupt, random.chance(1, in: Adversary.garbledOneIn) else {
            return .message(message)
        }
        count("corrupt.garbled")
        return .bytes(Forgery.garbled(message.encode(), random: &random))
    }

    // MARK: equivocate

    /// A colluding equivocator runs `ByzantineMode.equivocate`; on top, every colluder votes
    /// for every batch their primary sent for a (v, s), to everyone, there and again later.
    func colluding(
        _ message: Message, from replica: ReplicaID, to targets: [ReplicaID], now: UInt64
    ) -> [AdversarySend] {
        switch message {
        case .prePrepare(let prePrepare) where prePrepare.primary == replica:
            let sends = perReplica(message, from: replica, to: targets)
            let slot = Slot(view: prePrepare.view, sequence: prePrepare.sequence)
            learn(slot, first: prePrepare, sends: sends, now: now)
            return sends + conspiracyVotes(slot, only: nil)
        case .prepare(let vote), .commit(let vote):
            let slot = Slot(view: vote.view, sequence: vote.sequence)
            guard equivocations[slot] != nil else { return perReplica(message, from: replica, to: targets) }
            let votes = conspiracyVotes(slot, only: replica)
            count("equivocate.conspiracy-votes", votes.count)
            return plain(message, from: replica, to: targets) + votes
        default:
            return perReplica(message, from: replica, to: targets)
        }
    }

    /// Notes the batches the colluding primary sent at `slot` and schedules the votes for them.
    func learn(_ slot: Slot, first: PrePrepare, sends: [AdversarySend], now: UInt64) {
        guard equivocations[slot] == nil else { return }
        var digests = [first.digest]
        let proposals = sends.compactMap { send -> PrePrepare? in
            if case .message(.prePrepare(let prePrepare)) = send.payload { return prePrepare }
            return nil
        }
        for prePrepare in proposals where !digests.contains(prePrepare.digest) {
            digests.append(prePrepare.digest)
        }
        if equivocations.count >= Adversary.equivocationsMax { equivocations.removeAll() }
        equivocations[slot] = digests
        for delayTicks in Adversary.conspiracyVoteDelaysTicks {
            scheduledVotes[now + delayTicks, default: []].append(slot)
        }
    }

    /// PREPAREs (from non-primaries) and COMMITs for every digest the primary sent at `slot`,
    /// from every colluder (or only from `only`), to every other replica.
    func conspiracyVotes(_ slot: Slot, only: ReplicaID?) -> [AdversarySend] {
        guard let digests = equivocations[slot] else { return [] }
        var sends = [AdversarySend]()
        for voter in only.map({ [$0] }) ?? colluders {
            guard let signer = signers[voter] else { continue }
            for digest in digests {
                var kinds: [VoteKind] = [.commit]
                if config.primary(of: slot.view) != voter { kinds.insert(.prepare, at: 0) }
                for kind in kinds {
                    let vote = Vote(kind: kind, view: slot.view, sequence: slot.sequence, digest: digest, replica: voter)
                    let signed = vote.signed(by: signer)
                    let message: Message = kind == .prepare ? .prepare(signed) : .commit(signed)
                    sends += plain(message, from: voter, to: others(than: voter))
                }
            }
        }
        return sends
    }

    // MARK: - Every tick

    /// Unprompted misbehaviour of `replica` at `now`: its `ReplicaAdversary`'s (replays, storms,
    /// re-sent votes), or the targeted colluders' drive to a view with a colluding primary.
    /// `coreView` is the view its honest core is in.
    func tick(replica: ReplicaID, coreView: View, now: UInt64) -> [AdversarySend] {
        guard let strategy = strategies[replica] else { return [] }
        if strategy.isTargeted {
            guard conspiracy?.members.first == replica else { return [] }
            return driveToColludingPrimary(coreView: coreView, now: now)
        }
        guard let adversary = replicaAdversaries[replica] else { return [] }
        return adversary.tick(coreView: coreView).map { sent(from: replica, $0) }
    }

    /// The colluders' votes scheduled for `now` (sent again so that votes lost or early still count).
    func scheduledConspiracyVotes(now: UInt64) -> [AdversarySend] {
        let splitResends = scheduledSplitResends(now: now)
        guard let slots = scheduledVotes.removeValue(forKey: now) else { return splitResends }
        return slots.flatMap { conspiracyVotes($0, only: nil) } + splitResends
    }
}
