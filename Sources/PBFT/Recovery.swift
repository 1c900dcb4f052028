import SteleCore

// Crash-restart (invariant 9, docs/invariants.md): rebuild, from the ledger head and the
// write-ahead log, enough never to sign anything that conflicts with what was signed before
// the crash.

extension Replica {
    mutating func recover(from recovery: RecoveryState) {
        var prePrepares = [PrePrepare]()
        var votes = [Vote]()
        for record in recovery.records {
            switch record {
            case .view(let recorded, let inViewChange): restoreView(recorded, inViewChange: inViewChange)
            case .prePrepare(let prePrepare): prePrepares.append(prePrepare)
            case .vote(let vote): votes.append(vote)
            case .prepared(let certificate): rememberPrepared(certificate)
            case .viewChange(let viewChange): restoreViewChange(viewChange)
            case .newView(let newView): restoreNewView(newView)
            case .stableCheckpoint(let certificate): restoreStable(certificate)
            }
        }
        if let newView = ownNewView, newView.view == view {
            // O's PRE-PREPAREs are this primary's own, whether or not their records made it.
            prePrepares.append(contentsOf: newView.prePrepares)
            for certificate in NewViewPlan(viewChanges: newView.viewChanges).certificates {
                rememberAccepted(certificate.prePrepare.batch, at: certificate.sequence)
            }
            newViewRetransmitsLeft = limits.newViewRetransmitRounds
        } else {
            ownNewView = nil
        }
        restoreLog(prePrepares: prePrepares, votes: votes)
        finishRecovery()
    }

    /// The view never goes back; the last record for the highest view says whether the
    /// replica was still waiting for its NEW-VIEW.
    private mutating func restoreView(_ recorded: View, inViewChange: Bool) {
        guard recorded >= view else { return }
        view = recorded
        isInViewChange = inViewChange
    }

    private mutating func restoreViewChange(_ viewChange: ViewChange) {
        guard viewChange.replica == id else { return }
        rememberSent(viewChange)
        if let held = ownViewChange, held.newView > viewChange.newView { return }
        ownViewChange = viewChange
        if viewChange.newView > view {
            view = viewChange.newView
            isInViewChange = true
        }
    }

    /// The NEW-VIEW this replica sent for its highest view; a view never goes back, so the
    /// NEW-VIEW of a view the log later left is dropped once every record is read.
    private mutating func restoreNewView(_ newView: NewView) {
        guard newView.primary == id, config.primary(of: newView.view) == id else { return }
        if let held = ownNewView, held.view >= newView.view { return }
        ownNewView = newView
        if newView.view > view {
            view = newView.view
            isInViewChange = true  // entering it is resumed from the NEW-VIEW itself
        }
    }

    private mutating func restoreStable(_ certificate: CheckpointCertificate) {
        guard certificate.sequence > stableCheckpoint else { return }
        stableCheckpoint = certificate.sequence
        stableCertificate = certificate
    }

    /// The current view's PRE-PREPAREs and own votes above h go back into the log, so the
    /// replica re-sends rather than re-decides them, and a primary never re-uses a sequence.
    private mutating func restoreLog(prePrepares: [PrePrepare], votes: [Vote]) {
        for prePrepare in prePrepares where prePrepare.view <= view {
            rememberAccepted(prePrepare.batch, at: prePrepare.sequence)
        }
        for prePrepare in prePrepares where prePrepare.view == view && prePrepare.sequence > stableCheckpoint {
            var slot = log[prePrepare.sequence] ?? Slot(view: view)
            slot.prePrepare = prePrepare
            log[prePrepare.sequence] = slot
            if prePrepare.primary == id {
                ownMessages[OwnMessageKey(kind: .prePrepare, view: view, sequence: prePrepare.sequence)] = prePrepare.digest
                if prePrepare.sequence >= nextSequence { nextSequence = prePrepare.sequence.next }
            }
            if prePrepare.sequence > lastExecuted {
                for request in prePrepare.batch { inFlight[RequestKey(request)] = prePrepare.sequence }
            }
        }
        for vote in votes where vote.view == view && vote.sequence > stableCheckpoint && vote.replica == id {
            let kind: OwnMessageKind = vote.kind == .prepare ? .prepare : .commit
            ownMessages[OwnMessageKey(kind: kind, view: view, sequence: vote.sequence)] = vote.digest
            var slot = log[vote.sequence] ?? Slot(view: view)
            switch vote.kind {
            case .prepare: slot.prepares[id] = vote
            case .commit: slot.commits[id] = vote
            }
            log[vote.sequence] = slot
        }
        for (sequence, certificate) in preparedCertificates where certificate.view == view {
            log[sequence]?.preparedCertificate = certificate
        }
    }

    private mutating func finishRecovery() {
        if isInViewChange {
            log = [:]
            inFlight = [:]
            if ownViewChange?.newView != view {
                ownViewChange = makeViewChange(for: view)
                if let own = ownViewChange { rememberSent(own) }
            }
            if let own = ownViewChange { viewChanges[id] = own }
        }
        preparedCertificates = preparedCertificates.filter { $0.key > stableCheckpoint }
        let floor = max(lastExecuted, stableCheckpoint)
        if nextSequence <= floor { nextSequence = floor.next }
        if stableCheckpoint > lastExecuted {
            checkpointAwaitingBlock = stableCertificate
            stateTarget = stableCheckpoint
        }
        nextRetransmitTick = 1  // re-send what peers may need right away
    }
}
