import SteleCore

// PBFT §4.4 (view changes) and §4.5.2 (liveness): timers, VIEW-CHANGE, joining higher views.

extension Replica {
    // MARK: Timers

    mutating func checkTimers(_ out: inout Outbox) {
        if !isInViewChange, let deadline = requestDeadline, now >= deadline {
            startViewChange(to: view.next, &out)
        } else if isInViewChange, let deadline = newViewDeadline, now >= deadline {
            startViewChange(to: view.next, &out)
        }
    }

    // MARK: Starting a view change

    /// Moves to `newView` and sends VIEW-CHANGE: stop taking normal-case messages of the old
    /// view, keep the prepared certificates, persist before broadcasting. The NEW-VIEW timer
    /// gets the current timeout; the next one doubles (capped).
    mutating func startViewChange(to newView: View, _ out: inout Outbox) {
        precondition(newView > view, "a replica never moves to a lower view")
        guard newView <= limits.viewMax else { return }
        leaveCurrentView()
        pendingViewChanges = [:]
        view = newView
        isInViewChange = true
        stopRequestTimer()
        newViewDeadline = nil
        newViewWaitTicks = timeoutTicks
        timeoutTicks = min(timeoutTicks.saturatingAdd(timeoutTicks), config.parameters.viewChangeTimeoutTicksMax)
        ownNewView = nil
        let viewChange = makeViewChange(for: newView)
        ownViewChange = viewChange
        rememberSent(viewChange)
        viewChanges[id] = viewChange
        out.persist(.view(newView, inViewChange: true))
        out.persist(.viewChange(viewChange))
        out.broadcast(.viewChange(viewChange))
        futureMessages.removeAll { $0.view < newView }
        viewChangeProgress(&out)
    }

    /// Keeps the VIEW-CHANGE we signed for its view, at most `sentViewChangesMax` of the latest.
    mutating func rememberSent(_ viewChange: ViewChange) {
        guard viewChange.replica == id else { return }
        sentViewChanges[viewChange.newView] = viewChange
        while sentViewChanges.count > Replica.sentViewChangesMax, let oldest = sentViewChanges.keys.min() {
            sentViewChanges[oldest] = nil
        }
    }

    static let sentViewChangesMax = 8

    /// Forgets the current view's log; requests of unexecuted PRE-PREPAREs go back to pending
    /// so they are forwarded (or proposed) in the next view.
    mutating func leaveCurrentView() {
        for sequence in log.keys.sorted() where sequence > lastExecuted {
            guard let prePrepare = log[sequence]?.prePrepare else { continue }
            for request in prePrepare.batch {
                if case .new = clientStatus(request) { pending.insert(request) }
            }
        }
        log = [:]
        inFlight = [:]
    }

    /// VIEW-CHANGE(v+1, h, C, P, i): the stable checkpoint with its proof and, per sequence
    /// above it, the prepared certificate of the highest view.
    func makeViewChange(for newView: View) -> ViewChange {
        let window = stableCheckpoint.adding(config.parameters.watermarkWindow)
        let prepared = preparedCertificates.keys.sorted()
            .filter { $0 > stableCheckpoint && $0 <= window }
            .compactMap { preparedCertificates[$0] }
        return ViewChange(
            newView: newView, stableSequence: stableCheckpoint,
            checkpointProof: stableCertificate?.checkpoints ?? [], prepared: prepared, replica: id
        ).signed(by: signer)
    }

    // MARK: Receiving VIEW-CHANGE

    mutating func receiveViewChange(_ viewChange: ViewChange, _ out: inout Outbox) {
        let sender = viewChange.replica
        guard viewChange.newView <= limits.viewMax else {
            reject(.viewOutOfRange, from: sender, .viewChange, view: viewChange.newView)
            return
        }
        // Cheapest check first: larger than any valid VIEW-CHANGE, it is neither kept nor answered.
        let bytes = EncodedSize.of(viewChange)
        guard bytes <= limits.viewChangeBytesMax else {
            reject(.notBuffered(reason: "\(bytes) bytes, more than a valid VIEW-CHANGE"), from: sender, .viewChange, view: viewChange.newView)
            return
        }
        if viewChange.newView < view || (viewChange.newView == view && !isInViewChange) {
            helpReplicaBehind(viewChange, &out)
            return
        }
        do throws(ProtocolViolation) {
            try validate(viewChange)
        } catch {
            lastViolation = error
            return
        }
        if let held = viewChanges[sender], held.newView >= viewChange.newView {
            // Its sender has moved past it, but it is still a valid vote for our pending view.
            guard isInViewChange, viewChange.newView == view, held.newView > view, pendingViewChanges[sender] == nil else { return }
            pendingViewChanges[sender] = viewChange
            viewChangeProgress(&out)
            return
        }
        viewChanges[sender] = viewChange
        viewChangeProgress(&out)
    }

    /// A VIEW-CHANGE for a view this replica has completed (or left): its sender missed the
    /// NEW-VIEW, or is below our stable checkpoint. What we send back (a NEW-VIEW can be tens
    /// of MiB) is far larger than what asked for it, so the VIEW-CHANGE must first be valid —
    /// a correct replica signed it — and each peer is answered at most once per retransmission
    /// interval: a replayed or forged one buys nothing, a stream of them one answer per period.
    private mutating func helpReplicaBehind(_ viewChange: ViewChange, _ out: inout Outbox) {
        let peer = viewChange.replica
        do throws(ProtocolViolation) {
            try validate(viewChange)
        } catch {
            lastViolation = error
            return
        }
        if viewChange.stableSequence < stableCheckpoint { hintStableCheckpoint(to: peer, &out) }
        // Two replicas that both entered the view would otherwise bounce their VIEW-CHANGEs
        // back and forth, and a replayed VIEW-CHANGE would be answered each time.
        if let last = helpSentTicks[peer], now < last.saturatingAdd(config.parameters.retransmitTicks) {
            reject(.rateLimited, from: peer, .viewChange, view: viewChange.newView)
            return
        }
        helpSentTicks[peer] = now
        if !isInViewChange, let newView = ownNewView, newView.view == view {
            out.send(.newView(newView), to: peer)  // valid for it too: our view is at least the one it asks for
        }
        // §4.5.2 liveness relies on eventual delivery: the peer is stuck changing to a view we
        // entered or left, and plain retransmission of our VIEW-CHANGE for it has stopped.
        // Re-send the VIEW-CHANGE we signed for that view, if we did (already signed, so
        // nothing new or conflicting is signed): the peer can gather q there, and then its
        // NEW-VIEW timer runs even if that view's primary lost its NEW-VIEW in a restart (the
        // NEW-VIEW itself cannot be relayed: the transport binds a message to its signer).
        if let sent = sentViewChanges[viewChange.newView] { out.send(.viewChange(sent), to: peer) }
        // And our current VIEW-CHANGE, so it can apply the f+1 rule and join higher views.
        if viewChange.newView < view, isInViewChange, let own = ownViewChange, own.newView == view { out.send(.viewChange(own), to: peer) }
    }

    /// After any change to the VIEW-CHANGEs held: join a higher view f+1 replicas moved to,
    /// start the NEW-VIEW timer once q are in, and, as the new primary, send NEW-VIEW.
    mutating func viewChangeProgress(_ out: inout Outbox) {
        joinViewIfWeakQuorumAhead(&out)
        guard isInViewChange else { return }
        if newViewDeadline == nil, viewChangeCount(for: view) >= config.quorum {
            newViewDeadline = now.saturatingAdd(newViewWaitTicks)
        }
        if config.primary(of: view) == id { sendNewViewIfReady(&out) }
    }

    func viewChangeCount(for target: View) -> Int {
        viewChanges(for: target).count
    }

    /// The VIEW-CHANGEs held for `target`, one per replica: its latest, or (for our pending
    /// view) the one it sent before moving higher.
    func viewChanges(for target: View) -> [ReplicaID: ViewChange] {
        var held = viewChanges.filter { $0.value.newView == target }
        if target == view {
            for (replica, viewChange) in pendingViewChanges where held[replica] == nil && viewChange.newView == target {
                held[replica] = viewChange
            }
        }
        return held
    }

    /// §4.5.2: f+1 VIEW-CHANGEs for views above ours mean at least one correct replica moved;
    /// join the smallest of those views even before our own timer fires.
    private mutating func joinViewIfWeakQuorumAhead(_ out: inout Outbox) {
        let ahead = viewChanges.values.filter { $0.newView > view }
        guard ahead.count >= config.weakQuorum, let smallest = ahead.map(\.newView).min() else { return }
        startViewChange(to: smallest, &out)
    }

    // MARK: Validity (invariant 10, docs/invariants.md)

    /// Checks a VIEW-CHANGE's quorum shapes (its signatures were checked by the shell): the
    /// checkpoint proof, and each prepared certificate — PRE-PREPARE from its view's primary,
    /// view below the new view, sequence inside the checkpoint's window, q - 1 matching PREPAREs
    /// from distinct backups — at most one per sequence.
    public func validate(_ viewChange: ViewChange) throws(ProtocolViolation) {
        let sender = viewChange.replica
        func violation(_ code: ProtocolViolation.Code, _ sequence: SequenceNumber? = nil) -> ProtocolViolation {
            ProtocolViolation(code, replica: sender, message: .viewChange, view: viewChange.newView, sequence: sequence)
        }
        guard config.isMember(sender) else { throw violation(.notAMember) }
        guard viewChange.newView <= limits.viewMax else { throw violation(.viewOutOfRange) }
        guard isValidCheckpointProof(viewChange.checkpointProof, sequence: viewChange.stableSequence) else {
            throw violation(.invalidCheckpointProof, viewChange.stableSequence)
        }
        let high = viewChange.stableSequence.adding(config.parameters.watermarkWindow)
        var sequences = Set<SequenceNumber>()
        for certificate in viewChange.prepared {
            guard sequences.insert(certificate.sequence).inserted else {
                throw violation(.duplicatePreparedCertificate(sequence: certificate.sequence), certificate.sequence)
            }
            guard certificate.sequence > viewChange.stableSequence, certificate.sequence <= high else {
                throw violation(.invalidPreparedCertificate(sequence: certificate.sequence, reason: "outside the checkpoint's window"), certificate.sequence)
            }
            if let reason = flaw(in: certificate, below: viewChange.newView) {
                throw violation(.invalidPreparedCertificate(sequence: certificate.sequence, reason: reason), certificate.sequence)
            }
        }
    }

    /// q CHECKPOINTs of distinct members for one (sequence, digest); empty at genesis.
    func isValidCheckpointProof(_ proof: [Checkpoint], sequence: SequenceNumber) -> Bool {
        if sequence == .genesis { return proof.isEmpty }
        guard let first = proof.first else { return false }
        guard proof.allSatisfy({ $0.sequence == sequence && $0.stateDigest == first.stateDigest }) else { return false }
        guard let signers = QuorumShape.distinctMembers(proof.map(\.replica), config: config) else { return false }
        return signers.count >= config.quorum
    }

    /// What is wrong with a prepared certificate, or nil if it proves (v, s, d) prepared.
    func flaw(in certificate: PreparedCertificate, below newView: View) -> String? {
        let prePrepare = certificate.prePrepare
        let primary = config.primary(of: prePrepare.view)
        guard prePrepare.view < newView else { return "its view is not below the new view" }
        guard prePrepare.primary == primary else { return "PRE-PREPARE not from primary(\(prePrepare.view))" }
        guard Batch.digest(prePrepare.batch) == prePrepare.digest else { return "batch digest mismatch" }
        for prepare in certificate.prepares {
            guard prepare.kind == .prepare, prepare.view == prePrepare.view, prepare.sequence == prePrepare.sequence, prepare.digest == prePrepare.digest else {
                return "a PREPARE does not match the PRE-PREPARE"
            }
            guard prepare.replica != primary else { return "a PREPARE from the primary" }
        }
        guard let backups = QuorumShape.distinctMembers(certificate.prepares.map(\.replica), config: config) else {
            return "PREPAREs repeat a replica or come from a non-member"
        }
        let needed = config.preparesForCertificate
        guard backups.count >= needed else { return "\(backups.count) PREPAREs from distinct backups, a prepared certificate needs q - 1 = \(needed)" }
        return nil
    }
}
