import SteleAdversary
import SteleCore
import SteleCrypto

/// How a Byzantine replica misbehaves. Each runs an honest core underneath and mutates what it
/// sends; it can sign anything with its own key.
public enum ByzantineStrategy: String, CaseIterable, Sendable, CustomStringConvertible {
    /// As primary: different batches for one (v, s) to different backups. As backup: votes for
    /// two digests. Colluding equivocators vote for every batch their primary sent.
    case equivocate
    /// Every PREPARE/COMMIT also goes out for a second, made-up digest.
    case doubleVote = "double-vote"
    /// Sends nothing at all.
    case silent
    /// Sends pre-prepares and prepares, never commits.
    case withhold
    /// Mangled signatures, fields, nested signatures and raw bytes.
    case badSignature = "bad-signature"
    /// Re-sends old messages (old views, below the watermark, other replicas' messages).
    case replay
    /// VIEW-CHANGEs with dropped or forged prepared certificates, forged checkpoint proofs,
    /// and a storm of VIEW-CHANGEs for ever-higher views.
    case lyingViewChange = "lying-viewchange"
    /// As new primary: a NEW-VIEW whose O drops a prepared request or carries wrong digests.
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
    /// As primary, orders every client's requests except one victim client's (its requests
    /// never reach this replica's core, so they are left out of its batches forever).
    case censor

    public var description: String { rawValue }

    /// The strategies that collude through one shared `Conspiracy`.
    public var isTargeted: Bool { self == .splitVote || self == .equivocatingNewView || self == .equivocatingViewChange }
}

/// One message the adversary puts on the network, from one of the replicas it controls.
public struct AdversarySend: Sendable {
    public let from: ReplicaID
    public let payload: SimPayload
    public let to: ReplicaID
}

/// The adversary: every Byzantine replica's key, strategy and memory, and one seeded stream.
/// Colluding equivocators share `equivocations`, so when their primary sends batch A to some
/// backups and batch B to others, every colluder votes for both.
final class Adversary {
    struct Slot: Hashable {
        let view: View
        let sequence: SequenceNumber
    }

    /// What an equivocating primary sent for one (v, s).
    struct Equivocation {
        let second: PrePrepare
        let secondGroup: Set<ReplicaID>
        var digests: [Digest]
    }

    static let historyCountMax = 128
    static let equivocationsMax = 4096

    let config: ClusterConfig
    let signers: [ReplicaID: ReplicaSigner]
    let strategies: [ReplicaID: ByzantineStrategy]
    let forger: ClientSigner
    var random: SimRandom
    private var forgerTimestamp: UInt64 = 0
    private var equivocations: [Slot: Equivocation] = [:]
    private var scheduledVotes: [UInt64: [Slot]] = [:]
    private var histories: [ReplicaID: [Message]] = [:]
    private var historyNext: [ReplicaID: Int] = [:]
    private var stormViews: [ReplicaID: View] = [:]
    var lastViewChanges: [ReplicaID: ViewChange] = [:]
    /// Targeted colluders: the slots they split, their scheduled re-sends, the next tick their
    /// coordinator may drive a view change, and the VIEW-CHANGEs they saw per new view.
    var splits: [Slot: SplitSlot] = [:]
    var scheduledSplits: [UInt64: [Slot]] = [:]
    var nextDriveTick: UInt64 = 0
    var seenViewChanges: [View: [ReplicaID: ViewChange]] = [:]
    /// Targeted colluders' shared state (nil when no replica plays a targeted strategy).
    var conspiracy: Conspiracy?
    /// The client whose requests a `censor` never lets into its core.
    let censoredClient: PublicKey?
    /// How often each kind of misbehaviour happened ("equivocate.split", "replay.sent", ...),
    /// so tests can tell a strategy that never got to act from one that was withstood.
    private(set) var moveCounts: [String: Int] = [:]

    func count(_ move: String, _ times: Int = 1) {
        guard times > 0 else { return }
        moveCounts[move, default: 0] += times
    }

    init(config: ClusterConfig, signers: [ReplicaID: ReplicaSigner], strategies: [ReplicaID: ByzantineStrategy], forger: ClientSigner,
         random: SimRandom, censoredClient: PublicKey? = nil) {
        self.config = config
        self.signers = signers
        self.strategies = strategies
        self.forger = forger
        self.random = random
        self.censoredClient = censoredClient
        conspiracy = Conspiracy.plan(config: config, strategies: strategies, random: &self.random)
    }

    var replicas: [ReplicaID] { config.replicaIDs }
    var colluders: [ReplicaID] { strategies.keys.sorted().filter { strategies[$0] == .equivocate } }

    func others(than replica: ReplicaID) -> [ReplicaID] { replicas.filter { $0 != replica } }

    /// A validly signed request from the adversary's own client, to make batches differ.
    func forgedRequest() -> Request {
        forgerTimestamp += 1
        return forger.request(timestamp: forgerTimestamp, payload: random.bytes(8))
    }

    func randomDigest() -> Digest { Digest.of(random.bytes(16)) }

    // MARK: - Outgoing messages

    /// What replica `replica` (Byzantine) really sends when its honest core sends `message`.
    func intercept(_ message: Message, from replica: ReplicaID, to targets: [ReplicaID], now: UInt64) -> [AdversarySend] {
        guard let strategy = strategies[replica], let signer = signers[replica] else {
            preconditionFailure("intercept is only for Byzantine replicas")
        }
        remember(message, at: replica)
        if case .viewChange(let viewChange) = message { lastViewChanges[replica] = viewChange }
        switch strategy {
        case .silent:
            count("silent.dropped", targets.count)
            return []
        case .withhold:
            if case .commit = message {
                count("withhold.dropped", targets.count)
                return []
            }
            return plain(message, from: replica, to: targets)
        case .twin:
            count("twin.sent", targets.count)
            return plain(message, from: replica, to: targets)
        case .splitVote, .equivocatingNewView, .equivocatingViewChange:
            return targeted(message, strategy: strategy, signer: signer, to: targets, now: now)
        case .censor:
            return plain(message, from: replica, to: targets)
        case .replay:
            return plain(message, from: replica, to: targets)
        case .doubleVote:
            let conflicting = conflictingVotes(message, signer: signer, to: targets)
            count("double-vote.conflicting", conflicting.count)
            return plain(message, from: replica, to: targets) + conflicting
        case .equivocate:
            return equivocate(message, signer: signer, to: targets, now: now)
        case .badSignature:
            return targets.map { AdversarySend(from: replica, payload: maybeMangled(message, signer: signer), to: $0) }
        case .lyingViewChange:
            guard case .viewChange(let viewChange) = message else { return plain(message, from: replica, to: targets) }
            count("lying-viewchange.lie")
            return plain(.viewChange(lie(about: viewChange, signer: signer)), from: replica, to: targets)
        case .lyingNewView:
            guard case .newView(let newView) = message else { return plain(message, from: replica, to: targets) }
            count("lying-newview.lie", targets.count)
            return targets.map { AdversarySend(from: replica, payload: .message(.newView(lie(about: newView, signer: signer))), to: $0) }
        }
    }

    /// What a Byzantine replica does with a reply its core produced.
    func interceptReply(_ reply: Reply, from replica: ReplicaID) -> SimPayload? {
        switch strategies[replica] {
        case .silent: return nil
        case .badSignature:
            guard let signer = signers[replica] else { return nil }
            return maybeMangled(.reply(reply), signer: signer)
        default: return .message(.reply(reply))
        }
    }

    func plain(_ message: Message, from replica: ReplicaID, to targets: [ReplicaID]) -> [AdversarySend] {
        targets.map { AdversarySend(from: replica, payload: .message(message), to: $0) }
    }

    // MARK: double-vote

    func conflictingVotes(_ message: Message, signer: ReplicaSigner, to targets: [ReplicaID]) -> [AdversarySend] {
        let vote: Vote
        switch message {
        case .prepare(let m), .commit(let m): vote = m
        default: return []
        }
        let conflicting = Vote(kind: vote.kind, view: vote.view, sequence: vote.sequence, digest: randomDigest(), replica: signer.replica).signed(by: signer)
        let wrapped: Message = vote.kind == .prepare ? .prepare(conflicting) : .commit(conflicting)
        return targets.filter { _ in random.chance(percent: 60) }.map { AdversarySend(from: signer.replica, payload: .message(wrapped), to: $0) }
    }

    // MARK: equivocate

    func equivocate(_ message: Message, signer: ReplicaSigner, to targets: [ReplicaID], now: UInt64) -> [AdversarySend] {
        switch message {
        case .prePrepare(let prePrepare) where prePrepare.primary == signer.replica:
            return splitPrePrepare(prePrepare, signer: signer, to: targets, now: now)
        case .prepare(let vote), .commit(let vote):
            let slot = Slot(view: vote.view, sequence: vote.sequence)
            if equivocations[slot] != nil {
                let votes = conspiracyVotes(slot, only: signer.replica)
                count("equivocate.conspiracy-votes", votes.count)
                return plain(message, from: signer.replica, to: targets) + votes
            }
            let conflicting = conflictingVotes(message, signer: signer, to: targets)
            count("equivocate.conflicting-votes", conflicting.count)
            return plain(message, from: signer.replica, to: targets) + conflicting
        default:
            return plain(message, from: signer.replica, to: targets)
        }
    }

    /// Batch A (the honest one) to one group of honest backups and to the colluders, batch B to
    /// the other honest backups; then every colluder votes for both.
    func splitPrePrepare(_ first: PrePrepare, signer: ReplicaSigner, to targets: [ReplicaID], now: UInt64) -> [AdversarySend] {
        let slot = Slot(view: first.view, sequence: first.sequence)
        let equivocation = equivocations[slot] ?? newEquivocation(first, signer: signer, slot: slot, now: now)
        return targets.map { target in
            let chosen = equivocation.secondGroup.contains(target) ? equivocation.second : first
            return AdversarySend(from: signer.replica, payload: .message(.prePrepare(chosen)), to: target)
        } + conspiracyVotes(slot, only: nil)
    }

    func newEquivocation(_ first: PrePrepare, signer: ReplicaSigner, slot: Slot, now: UInt64) -> Equivocation {
        let second = PrePrepare(view: first.view, sequence: first.sequence, primary: first.primary, batch: first.batch + [forgedRequest()]).signed(by: signer)
        var honest = replicas.filter { $0 != signer.replica && strategies[$0] != .equivocate }
        random.shuffle(&honest)
        let splitIndex = honest.count <= 1 ? random.int(in: 0...honest.count) : max(1, honest.count / 2)
        let equivocation = Equivocation(second: second, secondGroup: Set(honest[splitIndex...]), digests: [first.digest, second.digest])
        if equivocations.count >= Adversary.equivocationsMax { equivocations.removeAll() }
        count("equivocate.split")
        equivocations[slot] = equivocation
        for delayTicks: UInt64 in [3, 8, 20] { scheduledVotes[now + delayTicks, default: []].append(slot) }
        return equivocation
    }

    /// PREPAREs (from non-primaries) and COMMITs for every digest the primary sent at `slot`,
    /// from every colluder (or only from `only`), to every other replica.
    func conspiracyVotes(_ slot: Slot, only: ReplicaID?) -> [AdversarySend] {
        guard let equivocation = equivocations[slot] else { return [] }
        let voters = only.map { [$0] } ?? colluders
        var sends = [AdversarySend]()
        for voter in voters {
            guard let signer = signers[voter] else { continue }
            for digest in equivocation.digests {
                var votes = [Message]()
                if config.primary(of: slot.view) != voter {
                    votes.append(.prepare(Vote(kind: .prepare, view: slot.view, sequence: slot.sequence, digest: digest, replica: voter).signed(by: signer)))
                }
                votes.append(.commit(Vote(kind: .commit, view: slot.view, sequence: slot.sequence, digest: digest, replica: voter).signed(by: signer)))
                for vote in votes {
                    sends += others(than: voter).map { AdversarySend(from: voter, payload: .message(vote), to: $0) }
                }
            }
        }
        return sends
    }

    // MARK: bad-signature

    func maybeMangled(_ message: Message, signer: ReplicaSigner) -> SimPayload {
        guard random.chance(percent: 50) else { return .message(message) }
        count("bad-signature.mangled")
        switch random.int(below: 4) {
        case 0: return .message(message.replacingSignature(flipBit(message.signature)))
        case 1: return .message(message.mangledField(random: &random))
        case 2: return .message(mangledNested(message, signer: signer))
        default: return .bytes(garbled(message.encode()))
        }
    }

    func flipBit(_ signature: Signature) -> Signature { Forgery.flipBit(signature, random: &random) }

    func mangledNested(_ message: Message, signer: ReplicaSigner) -> Message {
        Forgery.mangledNested(message, signer: signer, random: &random)
    }

    func garbled(_ bytes: [UInt8]) -> [UInt8] { Forgery.garbled(bytes, random: &random) }

    // MARK: lying-viewchange

    func lie(about viewChange: ViewChange, signer: ReplicaSigner) -> ViewChange {
        var prepared = viewChange.prepared
        var stable = viewChange.stableSequence
        var proof = viewChange.checkpointProof
        switch random.int(below: 5) {
        case 0:
            prepared = []
        case 1:
            if !prepared.isEmpty { prepared.remove(at: random.int(below: prepared.count)) }
        case 2:
            prepared = prepared.map { repeatedSignerCertificate($0, signer: signer) }
            if prepared.isEmpty { prepared = [forgedCertificate(view: viewChange.newView, stable: stable, signer: signer)] }
        case 3:
            prepared.append(forgedCertificate(view: viewChange.newView, stable: stable, signer: signer))
        default:
            stable = SequenceNumber(stable.value + config.parameters.checkpointInterval)
            let forged = Checkpoint(sequence: stable, stateDigest: randomDigest(), replica: signer.replica).signed(by: signer)
            proof = Array(repeating: forged, count: config.quorum)
            prepared = prepared.filter { $0.sequence > stable }
        }
        return ViewChange(newView: viewChange.newView, stableSequence: stable, checkpointProof: proof, prepared: prepared, replica: signer.replica).signed(by: signer)
    }

    /// The certificate's pre-prepare with this replica's own PREPARE repeated q - 1 times.
    func repeatedSignerCertificate(_ certificate: PreparedCertificate, signer: ReplicaSigner) -> PreparedCertificate {
        let own = Vote(kind: .prepare, view: certificate.view, sequence: certificate.sequence, digest: certificate.digest, replica: signer.replica).signed(by: signer)
        return PreparedCertificate(prePrepare: certificate.prePrepare, prepares: Array(repeating: own, count: config.preparesForCertificate))
    }

    /// A "prepared" certificate for a batch nobody proposed: the pre-prepare and every prepare
    /// signed by this replica alone.
    func forgedCertificate(view newView: View, stable: SequenceNumber, signer: ReplicaSigner) -> PreparedCertificate {
        let view = View(newView.value == 0 ? 0 : newView.value - 1)
        let sequence = stable.next
        let prePrepare = PrePrepare(view: view, sequence: sequence, primary: signer.replica, batch: [forgedRequest()]).signed(by: signer)
        let own = Vote(kind: .prepare, view: view, sequence: sequence, digest: prePrepare.digest, replica: signer.replica).signed(by: signer)
        return PreparedCertificate(prePrepare: prePrepare, prepares: Array(repeating: own, count: config.preparesForCertificate))
    }

    // MARK: lying-newview

    func lie(about newView: NewView, signer: ReplicaSigner) -> NewView {
        var viewChanges = newView.viewChanges
        var prePrepares = newView.prePrepares
        let nonNull = prePrepares.indices.filter { !prePrepares[$0].batch.isEmpty }
        switch random.int(below: 5) {
        case 0 where !prePrepares.isEmpty:
            prePrepares.remove(at: nonNull.last ?? random.int(below: prePrepares.count))
        case 1 where !nonNull.isEmpty:
            let index = nonNull[random.int(below: nonNull.count)]
            prePrepares[index] = reproposed(prePrepares[index], batch: [], signer: signer)
        case 2 where !prePrepares.isEmpty:
            let index = random.int(below: prePrepares.count)
            prePrepares[index] = reproposed(prePrepares[index], batch: [forgedRequest()], signer: signer)
        case 3 where !viewChanges.isEmpty:
            viewChanges.removeLast()
        default:
            let sequence = prePrepares.last?.sequence.next ?? (viewChanges.map(\.stableSequence).max() ?? .genesis).next
            prePrepares.append(PrePrepare(view: newView.view, sequence: sequence, primary: signer.replica, batch: [forgedRequest()]).signed(by: signer))
        }
        return NewView(view: newView.view, viewChanges: viewChanges, prePrepares: prePrepares, primary: signer.replica).signed(by: signer)
    }

    func reproposed(_ prePrepare: PrePrepare, batch: [Request], signer: ReplicaSigner) -> PrePrepare {
        PrePrepare(view: prePrepare.view, sequence: prePrepare.sequence, primary: signer.replica, batch: batch).signed(by: signer)
    }

    // MARK: - Every tick

    /// Unprompted misbehaviour of `replica` at `now`: replays, view-change storms, and the
    /// colluders' scheduled votes. `coreView` is the view its honest core is in.
    func tick(replica: ReplicaID, coreView: View, now: UInt64) -> [AdversarySend] {
        guard let strategy = strategies[replica], let signer = signers[replica] else { return [] }
        switch strategy {
        case .replay: return replayOld(from: replica)
        case .lyingViewChange: return storm(from: signer, coreView: coreView)
        case .splitVote, .equivocatingNewView, .equivocatingViewChange:
            guard conspiracy?.members.first == replica else { return [] }
            return driveToColludingPrimary(coreView: coreView, now: now)
        default: return []
        }
    }

    /// The colluders' votes scheduled for `now` (sent again so that votes lost or early still count).
    func scheduledConspiracyVotes(now: UInt64) -> [AdversarySend] {
        let splitResends = scheduledSplitResends(now: now)
        guard let slots = scheduledVotes.removeValue(forKey: now) else { return splitResends }
        return slots.flatMap { conspiracyVotes($0, only: nil) } + splitResends
    }

    /// Remembers a message a Byzantine replica saw or sent, for replaying later.
    func remember(_ message: Message, at replica: ReplicaID) {
        if case .viewChange(let viewChange) = message, strategies[replica]?.isTargeted == true { rememberSeen(viewChange) }
        guard strategies[replica] == .replay else { return }
        var history = histories[replica] ?? []
        let next = historyNext[replica] ?? 0
        if history.count < Adversary.historyCountMax {
            history.append(message)
        } else {
            history[next % Adversary.historyCountMax] = message
        }
        histories[replica] = history
        historyNext[replica] = (next + 1) % Adversary.historyCountMax
    }

    func replayOld(from replica: ReplicaID) -> [AdversarySend] {
        guard random.chance(percent: 25), let history = histories[replica], let old = random.element(of: history),
              let target = random.element(of: others(than: replica)) else { return [] }
        count("replay.sent")
        return [AdversarySend(from: replica, payload: .message(old), to: target)]
    }

    /// A VIEW-CHANGE for a view ever higher than the last one, every so often.
    func storm(from signer: ReplicaSigner, coreView: View) -> [AdversarySend] {
        guard random.chance(percent: 4) else { return [] }
        let previous = max(stormViews[signer.replica] ?? coreView, coreView)
        let target = View(previous.value + UInt64(random.int(in: 1...3)))
        stormViews[signer.replica] = target
        count("lying-viewchange.storm")
        let base = lastViewChanges[signer.replica]
        let viewChange = ViewChange(
            newView: target, stableSequence: base?.stableSequence ?? .genesis, checkpointProof: base?.checkpointProof ?? [],
            prepared: base?.prepared ?? [], replica: signer.replica).signed(by: signer)
        return plain(.viewChange(viewChange), from: signer.replica, to: others(than: signer.replica))
    }
}
