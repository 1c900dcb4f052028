import PBFT
import SteleCore
import SteleCrypto

/// The targeted colluders' shared plan. PBFT's safety rests on quorum intersection: any two
/// quorums of q = config.quorum replicas share at least one correct replica (2q - n > f). With
/// K = f+1 colluders that is no longer true: the colluders plus honest group A form a quorum,
/// and the colluders plus the disjoint honest group B form another, so every vote the two
/// groups need can be given twice — A-votes only to group A, B-votes only to group B, so
/// neither group ever sees a conflicting vote that would make it refuse the other digest.
struct Conspiracy {
    /// The replicas playing a targeted strategy, sorted; the first one coordinates.
    let members: [ReplicaID]
    /// Honest replicas that get the A side (and any honest replica outside both groups).
    let groupA: Set<ReplicaID>
    /// Honest replicas that get the B side.
    let groupB: Set<ReplicaID>

    enum Side { case a, b }

    /// Groups of q - K honest replicas each when two fit (K >= f+1); otherwise (K <= f) the
    /// honest replicas split in halves, and at most one side can reach a quorum.
    static func plan(config: ClusterConfig, strategies: [ReplicaID: ByzantineStrategy], random: inout SimRandom) -> Conspiracy? {
        let members = strategies.keys.sorted().filter { strategies[$0]?.isTargeted == true }
        guard !members.isEmpty else { return nil }
        var honest = config.replicaIDs.filter { !members.contains($0) }
        random.shuffle(&honest)
        let groupSize = max(1, config.quorum - members.count)
        let bCount = 2 * groupSize <= honest.count ? groupSize : honest.count / 2
        let groupB = Set(honest.prefix(bCount))
        return Conspiracy(members: members, groupA: Set(honest.dropFirst(bCount)), groupB: groupB)
    }

    func side(of replica: ReplicaID) -> Side { groupB.contains(replica) ? .b : .a }

    func isMember(_ replica: ReplicaID) -> Bool { members.contains(replica) }
}

/// One (v, s) at which the colluders proposed two batches: `a` to group A, `b` to group B.
struct SplitSlot {
    let a: PrePrepare
    let b: PrePrepare

    func prePrepare(for side: Conspiracy.Side) -> PrePrepare { side == .a ? a : b }
}

extension Adversary {
    static let splitResendDelaysTicks: [UInt64] = [3, 8, 20, 40]
    static let seenViewChangeViewsMax = 8

    /// What a targeted colluder sends instead of what its honest core sent.
    func targeted(_ message: Message, strategy: ByzantineStrategy, signer: ReplicaSigner, to targets: [ReplicaID], now: UInt64) -> [AdversarySend] {
        switch message {
        case .prePrepare(let prePrepare) where prePrepare.primary == signer.replica:
            return splitProposal(prePrepare, signer: signer, to: targets, now: now)
        case .prepare(let vote), .commit(let vote):
            let slot = Slot(view: vote.view, sequence: vote.sequence)
            guard splits[slot] != nil else { return plain(message, from: signer.replica, to: targets) }
            return targetedVotes(slot, voters: [signer.replica])
        case .viewChange(let viewChange) where strategy == .equivocatingViewChange:
            return equivocatedViewChange(viewChange, signer: signer, to: targets)
        case .newView(let newView) where strategy == .equivocatingNewView:
            return equivocatedNewView(newView, signer: signer, to: targets, now: now)
        default:
            return plain(message, from: signer.replica, to: targets)
        }
    }

    // MARK: split-vote

    /// The colluding primary's PRE-PREPARE: its core's batch A to group A (and the colluders),
    /// a batch B of the same size limits to group B; then every colluder's targeted votes.
    func splitProposal(_ first: PrePrepare, signer: ReplicaSigner, to targets: [ReplicaID], now: UInt64) -> [AdversarySend] {
        guard let conspiracy else { return plain(.prePrepare(first), from: signer.replica, to: targets) }
        let slot = Slot(view: first.view, sequence: first.sequence)
        let split = splits[slot] ?? newSplit(first, signer: signer, slot: slot, now: now)
        let proposals = targets.map { target in
            AdversarySend(from: signer.replica, payload: .message(.prePrepare(split.prePrepare(for: conspiracy.side(of: target)))), to: target)
        }
        return proposals + targetedVotes(slot, voters: conspiracy.members)
    }

    /// Batch B: batch A with its last request replaced by (or, below the batch limit, followed
    /// by) a fresh validly signed request, so a backup's batch checks accept it.
    func newSplit(_ first: PrePrepare, signer: ReplicaSigner, slot: Slot, now: UInt64) -> SplitSlot {
        let batchB = first.batch.count >= config.parameters.batchSizeMax ? Array(first.batch.dropLast()) + [forgedRequest()] : first.batch + [forgedRequest()]
        let second = PrePrepare(view: first.view, sequence: first.sequence, primary: first.primary, batch: batchB).signed(by: signer)
        let split = SplitSlot(a: first, b: second)
        record(split, at: slot, now: now, move: "split-vote.split")
        return split
    }

    func record(_ split: SplitSlot, at slot: Slot, now: UInt64, move: String) {
        if splits.count >= Adversary.equivocationsMax { splits.removeAll() }
        splits[slot] = split
        count(move)
        for delayTicks in Adversary.splitResendDelaysTicks { scheduledSplits[now + delayTicks, default: []].append(slot) }
    }

    /// PREPAREs (from non-primaries) and COMMITs of `voters` at `slot`: for digest A to group A
    /// and the other colluders, for digest B to group B only.
    func targetedVotes(_ slot: Slot, voters: [ReplicaID]) -> [AdversarySend] {
        guard let split = splits[slot], let conspiracy else { return [] }
        var sends = [AdversarySend]()
        for voter in voters {
            guard let signer = signers[voter] else { continue }
            for side in [Conspiracy.Side.a, .b] {
                let digest = split.prePrepare(for: side).digest
                var kinds: [VoteKind] = [.commit]
                if config.primary(of: slot.view) != voter { kinds.insert(.prepare, at: 0) }
                let receivers = others(than: voter).filter { conspiracy.side(of: $0) == side }
                for kind in kinds {
                    let vote = Vote(kind: kind, view: slot.view, sequence: slot.sequence, digest: digest, replica: voter).signed(by: signer)
                    let message: Message = kind == .prepare ? .prepare(vote) : .commit(vote)
                    sends += receivers.map { AdversarySend(from: voter, payload: .message(message), to: $0) }
                }
            }
        }
        count("split-vote.targeted-votes", sends.count)
        return sends
    }

    /// The split PRE-PREPAREs and votes again, so that loss and reordering do not save the groups.
    func scheduledSplitResends(now: UInt64) -> [AdversarySend] {
        guard let slots = scheduledSplits.removeValue(forKey: now), let conspiracy else { return [] }
        var sends = [AdversarySend]()
        for slot in slots {
            guard let split = splits[slot] else { continue }
            let primary = config.primary(of: slot.view)
            sends += others(than: primary).map { target in
                AdversarySend(from: primary, payload: .message(.prePrepare(split.prePrepare(for: conspiracy.side(of: target)))), to: target)
            }
            sends += targetedVotes(slot, voters: conspiracy.members)
        }
        return sends
    }

    /// §4.5.2 gives f+1 VIEW-CHANGEs for a higher view the power to pull every correct replica
    /// into it. K >= f+1 colluders use it to reach a view whose primary is one of them: every
    /// colluder signs a VIEW-CHANGE for it (its latest real one, re-targeted), once per base
    /// timeout while the colluders' view has an honest primary.
    func driveToColludingPrimary(coreView: View, now: UInt64) -> [AdversarySend] {
        guard let conspiracy, !conspiracy.isMember(config.primary(of: coreView)), now >= nextDriveTick else { return [] }
        nextDriveTick = now + config.parameters.viewChangeTimeoutTicks
        var target = coreView.next
        while !conspiracy.isMember(config.primary(of: target)) { target = target.next }
        count("split-vote.view-drive")
        var sends = [AdversarySend]()
        for member in conspiracy.members {
            guard let signer = signers[member] else { continue }
            let viewChange = retargeted(lastViewChanges[member], to: target, signer: signer)
            rememberSeen(viewChange)
            sends += plain(.viewChange(viewChange), from: member, to: others(than: member))
        }
        return sends
    }

    /// A VIEW-CHANGE for `target` with `base`'s checkpoint and certificates (genesis if none),
    /// optionally without its prepared certificates.
    func retargeted(_ base: ViewChange?, to target: View, signer: ReplicaSigner, dropPrepared: Bool = false) -> ViewChange {
        let prepared = dropPrepared ? [] : (base?.prepared ?? []).filter { $0.view < target }
        return ViewChange(
            newView: target, stableSequence: base?.stableSequence ?? .genesis, checkpointProof: base?.checkpointProof ?? [],
            prepared: prepared, replica: signer.replica).signed(by: signer)
    }

    // MARK: equivocate-viewchange

    /// Two validly signed VIEW-CHANGEs for one new view: with the prepared certificates to
    /// group A and the colluders, without them to group B (and so to a group-B new primary).
    func equivocatedViewChange(_ viewChange: ViewChange, signer: ReplicaSigner, to targets: [ReplicaID]) -> [AdversarySend] {
        guard let conspiracy, !viewChange.prepared.isEmpty else { return plain(.viewChange(viewChange), from: signer.replica, to: targets) }
        let without = retargeted(viewChange, to: viewChange.newView, signer: signer, dropPrepared: true)
        count("equivocate-viewchange.split")
        return targets.map { target in
            let chosen = conspiracy.side(of: target) == .b ? without : viewChange
            return AdversarySend(from: signer.replica, payload: .message(.viewChange(chosen)), to: target)
        }
    }

    // MARK: equivocate-newview

    /// The colluding new primary's NEW-VIEW goes to group A as its core built it; group B gets
    /// another valid NEW-VIEW from a different quorum: the colluders' VIEW-CHANGEs without
    /// prepared certificates plus group B's own. Where the two O's disagree, the slot is split.
    func equivocatedNewView(_ newView: NewView, signer: ReplicaSigner, to targets: [ReplicaID], now: UInt64) -> [AdversarySend] {
        guard let conspiracy, let other = alternativeNewView(newView, signer: signer) else { return plain(.newView(newView), from: signer.replica, to: targets) }
        count("equivocate-newview.split")
        for (first, second) in zip(newView.prePrepares, other.prePrepares) where first.sequence == second.sequence && first.digest != second.digest {
            record(SplitSlot(a: first, b: second), at: Slot(view: newView.view, sequence: first.sequence), now: now, move: "equivocate-newview.split-slot")
        }
        var sends = targets.map { target in
            AdversarySend(from: signer.replica, payload: .message(.newView(conspiracy.side(of: target) == .b ? other : newView)), to: target)
        }
        // Sorted: dictionary order differs between processes, and a seed must replay exactly.
        let splitSlots = splits.keys.filter { $0.view == newView.view }.sorted { $0.sequence < $1.sequence }
        for slot in splitSlots { sends += targetedVotes(slot, voters: conspiracy.members) }
        return sends
    }

    /// NEW-VIEW(v, V', O') with V' = the colluders' certificate-free VIEW-CHANGEs, then group B's,
    /// then anyone's until a quorum; nil if V' would equal the core's V or no quorum is held.
    func alternativeNewView(_ newView: NewView, signer: ReplicaSigner) -> NewView? {
        guard let conspiracy else { return nil }
        var chosen = [ReplicaID: ViewChange]()
        for member in conspiracy.members {
            guard let memberSigner = signers[member] else { continue }
            let base = seenViewChanges[newView.view]?[member] ?? lastViewChanges[member]
            chosen[member] = retargeted(base, to: newView.view, signer: memberSigner, dropPrepared: true)
        }
        let seen = seenViewChanges[newView.view] ?? [:]
        let ordered = seen.keys.sorted().filter { conspiracy.side(of: $0) == .b } + seen.keys.sorted()
        for replica in ordered where chosen.count < config.quorum && chosen[replica] == nil { chosen[replica] = seen[replica] }
        guard chosen.count >= config.quorum else { return nil }
        let viewChanges = chosen.keys.sorted().prefix(config.quorum).compactMap { chosen[$0] }
        guard viewChanges != newView.viewChanges else { return nil }
        let plan = NewViewPlan(viewChanges: viewChanges)
        let prePrepares = plan.prePrepares(view: newView.view, primary: signer.replica).map { $0.signed(by: signer) }
        return NewView(view: newView.view, viewChanges: viewChanges, prePrepares: prePrepares, primary: signer.replica).signed(by: signer)
    }

    /// Keeps the VIEW-CHANGEs the colluders saw, per new view (the latest few views only).
    func rememberSeen(_ viewChange: ViewChange) {
        seenViewChanges[viewChange.newView, default: [:]][viewChange.replica] = viewChange
        while seenViewChanges.count > Adversary.seenViewChangeViewsMax, let oldest = seenViewChanges.keys.min() {
            seenViewChanges[oldest] = nil
        }
    }
}
