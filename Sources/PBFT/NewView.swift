import SteleCore

// PBFT §4.4: the new primary's NEW-VIEW(v+1, V, O) and the backups' check of it.

/// What a set of VIEW-CHANGEs determines for the new view: min-s (the highest stable
/// checkpoint among them, with its proof), max-s (the highest prepared sequence) and, for each
/// sequence in (min-s, max-s], the batch to re-propose — that of the prepared certificate with
/// the highest view, or the null request (empty batch).
public struct NewViewPlan: Sendable, Equatable {
    public let minSequence: SequenceNumber
    public let checkpointProof: [Checkpoint]
    public let maxSequence: SequenceNumber
    /// One batch per sequence minSequence+1 ... maxSequence.
    public let batches: [[Request]]
    /// Every prepared certificate of V above min-s (not only the winners): any of them may come
    /// back in a later O, so their requests are not ordered afresh elsewhere (invariant 7).
    let certificates: [PreparedCertificate]

    /// Computes the plan from VIEW-CHANGEs already checked with `Replica.validate(_:)`.
    public init(viewChanges: [ViewChange]) {
        var minSequence = SequenceNumber.genesis
        var proof = [Checkpoint]()
        for viewChange in viewChanges where viewChange.stableSequence > minSequence {
            minSequence = viewChange.stableSequence
            proof = viewChange.checkpointProof
        }
        var best = [SequenceNumber: PreparedCertificate]()
        var all = [PreparedCertificate]()
        for viewChange in viewChanges {
            for certificate in viewChange.prepared where certificate.sequence > minSequence {
                all.append(certificate)
                if let held = best[certificate.sequence], !NewViewPlan.outranks(certificate, held) { continue }
                best[certificate.sequence] = certificate
            }
        }
        let maxSequence = best.keys.max() ?? minSequence
        self.minSequence = minSequence
        self.checkpointProof = proof
        self.maxSequence = maxSequence
        self.certificates = all
        self.batches = (minSequence.value..<maxSequence.value).map { best[SequenceNumber($0 + 1)]?.prePrepare.batch ?? [] }
    }

    /// The highest view wins; equal views (possible only with more than f faulty replicas)
    /// are broken by digest, so every replica computes the same O.
    static func outranks(_ candidate: PreparedCertificate, _ held: PreparedCertificate) -> Bool {
        if candidate.view != held.view { return candidate.view > held.view }
        return candidate.digest < held.digest
    }

    public var sequences: [SequenceNumber] { (minSequence.value..<maxSequence.value).map { SequenceNumber($0 + 1) } }

    /// O: the PRE-PREPAREs the primary of `view` sends (unsigned).
    public func prePrepares(view: View, primary: ReplicaID) -> [PrePrepare] {
        zip(sequences, batches).map { PrePrepare(view: view, sequence: $0, primary: primary, batch: $1) }
    }
}

extension Replica {
    // MARK: Sending NEW-VIEW (primary of the new view)

    /// With q valid VIEW-CHANGEs for our view, its own included, the new primary computes
    /// O, persists it, broadcasts NEW-VIEW and enters the view.
    mutating func sendNewViewIfReady(_ out: inout Outbox) {
        guard isInViewChange, config.primary(of: view) == id, let own = viewChanges[id], own.newView == view else { return }
        if let recovered = ownNewView, recovered.view == view {
            resumeOwnNewView(&out)  // signed before a restart: that one, never another
            return
        }
        let held = viewChanges(for: view)
        let others = held.keys.sorted().filter { $0 != id }.compactMap { held[$0] }
        guard 1 + others.count >= config.quorum else { return }
        let chosen = ([own] + others.prefix(config.quorum - 1)).sorted { $0.replica < $1.replica }
        let plan = NewViewPlan(viewChanges: chosen)
        let prePrepares = plan.prePrepares(view: view, primary: id).map { $0.signed(by: signer) }
        let newView = NewView(view: view, viewChanges: chosen, prePrepares: prePrepares, primary: id).signed(by: signer)
        ownNewView = newView
        newViewRetransmitsLeft = limits.newViewRetransmitRounds
        out.persist(.newView(newView))
        enterView(view, plan: plan, prePrepares: prePrepares, &out)
        out.broadcast(.newView(newView))
    }

    /// A primary restarted after persisting its NEW-VIEW but before it recorded entering the
    /// view (a torn group commit) enters it with that NEW-VIEW and re-sends it: the same
    /// message, so nothing conflicting is signed for the view.
    mutating func resumeOwnNewView(_ out: inout Outbox) {
        guard isInViewChange, let newView = ownNewView, newView.view == view, newView.primary == id else { return }
        let plan: NewViewPlan
        do throws(ProtocolViolation) {
            plan = try validate(newView)
        } catch {
            lastViolation = error
            ownNewView = nil  // not a NEW-VIEW anyone would accept: compute a valid one
            return
        }
        newViewRetransmitsLeft = limits.newViewRetransmitRounds
        enterView(view, plan: plan, prePrepares: newView.prePrepares, &out)
        out.broadcast(.newView(newView))
    }

    // MARK: Receiving NEW-VIEW (backups)

    mutating func receiveNewView(_ newView: NewView, _ out: inout Outbox) {
        guard newView.view <= limits.viewMax else {
            reject(.viewOutOfRange, from: newView.primary, .newView, view: newView.view)
            return
        }
        guard newView.view > view || (newView.view == view && isInViewChange) else {
            reject(.staleView(current: view), from: newView.primary, .newView, view: newView.view)
            return
        }
        let plan: NewViewPlan
        do throws(ProtocolViolation) {
            plan = try validate(newView)
        } catch {
            lastViolation = error
            return
        }
        if newView.view > view { leaveCurrentView() }
        enterView(newView.view, plan: plan, prePrepares: newView.prePrepares, &out)
    }

    /// Invariant 11 (docs/invariants.md): signed by primary(v); q valid VIEW-CHANGEs for v
    /// from distinct replicas; O equal to the recomputation from V — same sequences, same digests.
    public func validate(_ newView: NewView) throws(ProtocolViolation) -> NewViewPlan {
        func violation(_ code: ProtocolViolation.Code, _ sequence: SequenceNumber? = nil) -> ProtocolViolation {
            ProtocolViolation(code, replica: newView.primary, message: .newView, view: newView.view, sequence: sequence)
        }
        let expected = config.primary(of: newView.view)
        guard newView.primary == expected else { throw violation(.notPrimary(expected: expected)) }
        var senders = Set<ReplicaID>()
        for viewChange in newView.viewChanges {
            guard viewChange.newView == newView.view else { throw violation(.viewChangeForOtherView(viewChange.newView)) }
            guard senders.insert(viewChange.replica).inserted else { throw violation(.duplicateViewChange(viewChange.replica)) }
            try validate(viewChange)
        }
        guard senders.count >= config.quorum else { throw violation(.tooFewViewChanges(count: senders.count)) }
        let plan = NewViewPlan(viewChanges: newView.viewChanges)
        try checkO(newView, against: plan, violation)
        return plan
    }

    private func checkO(_ newView: NewView, against plan: NewViewPlan, _ violation: (ProtocolViolation.Code, SequenceNumber?) -> ProtocolViolation) throws(ProtocolViolation) {
        let sequences = plan.sequences
        guard newView.prePrepares.count == sequences.count else {
            throw violation(.newViewMismatch(reason: "O has \(newView.prePrepares.count) PRE-PREPAREs, expected \(sequences.count) for (\(plan.minSequence), \(plan.maxSequence)]"), nil)
        }
        for (index, prePrepare) in newView.prePrepares.enumerated() {
            let sequence = sequences[index]
            guard prePrepare.sequence == sequence else {
                throw violation(.newViewMismatch(reason: "O[\(index)] is for \(prePrepare.sequence), expected \(sequence)"), prePrepare.sequence)
            }
            guard prePrepare.view == newView.view, prePrepare.primary == newView.primary else {
                throw violation(.newViewMismatch(reason: "O[\(index)] is not a PRE-PREPARE of the new view by its primary"), sequence)
            }
            guard Batch.digest(prePrepare.batch) == prePrepare.digest else { throw violation(.digestMismatch, sequence) }
            guard prePrepare.digest == Batch.digest(plan.batches[index]) else {
                throw violation(.newViewMismatch(reason: "O[\(index)] re-proposes another batch than the highest-view prepared certificate"), sequence)
            }
        }
    }

    // MARK: Entering the new view

    /// Enters `newView` with the plan its NEW-VIEW carried: adopt min-s as stable (fetching
    /// blocks if behind), log O's PRE-PREPAREs (backups send PREPAREs), restart timers.
    mutating func enterView(_ newView: View, plan: NewViewPlan, prePrepares: [PrePrepare], _ out: inout Outbox) {
        view = newView
        isInViewChange = false
        newViewDeadline = nil
        stopRequestTimer()
        ownMessages = ownMessages.filter { $0.key.view >= newView }
        viewChanges = viewChanges.filter { $0.value.newView > newView }
        pendingViewChanges = [:]
        out.persist(.view(newView, inViewChange: false))
        if plan.minSequence > stableCheckpoint, !plan.checkpointProof.isEmpty {
            becomeStable(CheckpointCertificate(checkpoints: plan.checkpointProof), &out)
        }
        requestState(upTo: plan.minSequence)
        nextSequence = max(plan.maxSequence, plan.minSequence, lastExecuted, stableCheckpoint).next
        for certificate in plan.certificates { rememberAccepted(certificate.prePrepare.batch, at: certificate.sequence) }
        // Within h < s <= H only: O spans (min-s, min-s + L], and min-s became h above unless
        // our own checkpoint there disagrees — which f faulty replicas cannot cause, but then
        // the slots above H could never be processed, only held.
        for prePrepare in prePrepares where prePrepare.sequence > stableCheckpoint && prePrepare.sequence <= highWatermark {
            installFromNewView(prePrepare, &out)
        }
        pending.rewind()
        restartRequestTimer()  // the new primary gets a whole timeout for the oldest request
        forwardPendingRequests(&out)
        replayFutureMessages(&out)
        proposeBatches(&out)
    }

    /// O's PRE-PREPAREs are mandated by V: no duplicate-transaction check (refusing one would
    /// stall the view); an executed sequence is voted on only if O matches what we executed.
    private mutating func installFromNewView(_ prePrepare: PrePrepare, _ out: inout Outbox) {
        if prePrepare.sequence <= lastExecuted, executedDigests[prePrepare.sequence] != prePrepare.digest { return }
        acceptPrePrepare(prePrepare, &out)
    }
}
