import SteleCore

/// One (view, sequence) of the log: where an equivocator splits, and what colluders vote on.
public struct LogSlot: Hashable, Sendable {
    public let view: View
    public let sequence: SequenceNumber

    public init(view: View, sequence: SequenceNumber) {
        self.view = view
        self.sequence = sequence
    }
}

/// What an equivocating primary sends for one (v, s) besides its core's batch A: batch B, its
/// COMMIT for B, and the backups that get them.
struct Split {
    let second: PrePrepare
    let commit: Message
    let groupB: Set<ReplicaID>
}

extension ReplicaAdversary {
    // MARK: equivocate

    func equivocate(_ message: Message, to targets: [ReplicaID]) -> [ForgedSend] {
        switch message {
        case .prePrepare(let prePrepare) where prePrepare.primary == me:
            return split(prePrepare, to: targets)
        case .prepare, .commit:
            let conflicting = conflictingVotes(message, to: targets)
            count("equivocate.double-vote", conflicting.count)
            return plain(message, to: targets) + conflicting
        default:
            return plain(message, to: targets)
        }
    }

    /// Batch A (what the core proposed) to the backups outside group B and to the accomplices;
    /// batch B with this replica's COMMIT for B to group B, so that B can commit there while the
    /// others are left with A. A re-sent PRE-PREPARE splits the same way.
    func split(_ first: PrePrepare, to targets: [ReplicaID]) -> [ForgedSend] {
        let slot = LogSlot(view: first.view, sequence: first.sequence)
        let split = splits[slot] ?? newSplit(first, slot: slot)
        var sends: [ForgedSend] = []
        for target in targets {
            if split.groupB.contains(target) {
                sends.append(ForgedSend(.prePrepare(split.second), to: target))
                sends.append(ForgedSend(split.commit, to: target))
            } else {
                sends.append(ForgedSend(.prePrepare(first), to: target))
            }
        }
        return sends
    }

    /// Batch B is A plus a forged request (in place of A's last one when A is full, so that a
    /// backup's batch checks accept it). Its COMMITs are scheduled to go to group B again.
    func newSplit(_ first: PrePrepare, slot: LogSlot) -> Split {
        let forged = forgedRequest()
        let full = first.batch.count >= config.parameters.batchSizeMax
        let batch = (full ? Array(first.batch.dropLast()) : first.batch) + [forged]
        let second = PrePrepare(view: first.view, sequence: first.sequence, primary: me, batch: batch).signed(by: signer)
        let vote = Vote(kind: .commit, view: first.view, sequence: first.sequence, digest: second.digest, replica: me)
        let split = Split(second: second, commit: .commit(vote.signed(by: signer)), groupB: groupB(for: first.sequence))
        if splits.count >= ReplicaAdversary.splitsMax { splits.removeAll() }
        splits[slot] = split
        let again = split.groupB.sorted().map { ForgedSend(split.commit, to: $0) }
        for delay in ReplicaAdversary.scheduledTicks { scheduled[ticks + delay, default: []] += again }
        count("equivocate.split")
        return split
    }

    /// Who gets batch B: every backup but the accomplices and one victim (rotating with the
    /// sequence number), or a random half of them; with one such backup, it or nobody.
    func groupB(for sequence: SequenceNumber) -> Set<ReplicaID> {
        var honest = others.filter { !accomplices.contains($0) }
        guard honest.count > 1 else { return random.chance(percent: 50) ? Set(honest) : [] }
        if random.chance(percent: 50) {
            let victim = honest[Int(sequence.value % UInt64(honest.count))]
            return Set(honest.filter { $0 != victim })
        }
        random.shuffle(&honest)
        return Set(honest[(honest.count / 2)...])
    }

    // MARK: double-vote

    /// This replica's PREPARE or COMMIT again, for a made-up digest, to `targets`; nothing for
    /// any other message.
    func conflictingVotes(_ message: Message, to targets: [ReplicaID]) -> [ForgedSend] {
        let vote: Vote
        switch message {
        case .prepare(let m), .commit(let m): vote = m
        default: return []
        }
        guard !targets.isEmpty else { return [] }
        let digest = Digest.of(random.bytes(16))
        let conflicting = Vote(kind: vote.kind, view: vote.view, sequence: vote.sequence, digest: digest, replica: me).signed(by: signer)
        return plain(vote.kind == .prepare ? .prepare(conflicting) : .commit(conflicting), to: targets)
    }

    func forgedRequest() -> Request { forger.request(payload: random.bytes(8)) }
}
