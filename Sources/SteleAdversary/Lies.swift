import SteleCore

extension ReplicaAdversary {
    // MARK: lying-viewchange

    /// The VIEW-CHANGE with its prepared certificates dropped (all or one), signed by this
    /// replica alone, joined by a forged one, or with a forged checkpoint proof above them.
    func lie(about viewChange: ViewChange) -> ViewChange {
        var prepared = viewChange.prepared
        var stable = viewChange.stableSequence
        var proof = viewChange.checkpointProof
        switch random.int(below: 5) {
        case 0:
            prepared = []
        case 1:
            if !prepared.isEmpty { prepared.remove(at: random.int(below: prepared.count)) }
        case 2:
            prepared = prepared.map(repeatedSignerCertificate)
            if prepared.isEmpty { prepared = [forgedCertificate(view: viewChange.newView, stable: stable)] }
        case 3:
            prepared.append(forgedCertificate(view: viewChange.newView, stable: stable))
        default:
            stable = SequenceNumber(stable.value + config.parameters.checkpointInterval)
            let forged = Checkpoint(sequence: stable, stateDigest: Digest.of(random.bytes(16)), replica: me).signed(by: signer)
            proof = Array(repeating: forged, count: config.quorum)
            prepared = prepared.filter { $0.sequence > stable }
        }
        return ViewChange(
            newView: viewChange.newView, stableSequence: stable, checkpointProof: proof, prepared: prepared, replica: me
        ).signed(by: signer)
    }

    /// The certificate's pre-prepare with this replica's own PREPARE repeated q - 1 times.
    func repeatedSignerCertificate(_ certificate: PreparedCertificate) -> PreparedCertificate {
        let own = Vote(kind: .prepare, view: certificate.view, sequence: certificate.sequence, digest: certificate.digest, replica: me)
        let prepares = Array(repeating: own.signed(by: signer), count: config.preparesForCertificate)
        return PreparedCertificate(prePrepare: certificate.prePrepare, prepares: prepares)
    }

    /// A "prepared" certificate for a batch nobody proposed: the pre-prepare and every prepare
    /// signed by this replica alone.
    func forgedCertificate(view newView: View, stable: SequenceNumber) -> PreparedCertificate {
        let view = View(newView.value == 0 ? 0 : newView.value - 1)
        let sequence = stable.next
        let prePrepare = PrePrepare(view: view, sequence: sequence, primary: me, batch: [forgedRequest()]).signed(by: signer)
        let own = Vote(kind: .prepare, view: view, sequence: sequence, digest: prePrepare.digest, replica: me).signed(by: signer)
        return PreparedCertificate(prePrepare: prePrepare, prepares: Array(repeating: own, count: config.preparesForCertificate))
    }

    // MARK: viewchange-storm

    /// Every fifth tick, a VIEW-CHANGE for a view above any this replica asked for before (with
    /// the checkpoint and certificates of its latest real one).
    func storm(coreView: View) -> [ForgedSend] {
        guard ticks % 5 == 0 else { return [] }
        let target = View(max(stormView.value, coreView.value) + UInt64(random.int(in: 1...3)))
        stormView = target
        let base = lastViewChange
        let viewChange = ViewChange(
            newView: target, stableSequence: base?.stableSequence ?? .genesis, checkpointProof: base?.checkpointProof ?? [],
            prepared: base?.prepared ?? [], replica: me
        ).signed(by: signer)
        count(mode == .viewChangeStorm ? "viewchange-storm.sent" : "lying-viewchange.storm")
        return plain(.viewChange(viewChange), to: others)
    }

    // MARK: lying-newview

    /// One lie per backup. The first backup always gets the one that threatens safety: the
    /// highest prepared request dropped from O (re-proposed as a null batch) or, with nothing
    /// prepared, a request nobody prepared. The others get a lie drawn at random: a prepared
    /// request dropped, a slot left out, a wrong batch, a VIEW-CHANGE missing from V, or an
    /// invented request.
    func lie(about newView: NewView, first: Bool) -> NewView {
        var viewChanges = newView.viewChanges
        var prePrepares = newView.prePrepares
        let nonNull = prePrepares.indices.filter { !prePrepares[$0].batch.isEmpty }
        switch first ? 0 : random.int(below: 5) {
        case 0 where !nonNull.isEmpty:
            let index = first ? nonNull[nonNull.count - 1] : nonNull[random.int(below: nonNull.count)]
            prePrepares[index] = reproposed(prePrepares[index], batch: [])
            count("lying-newview.dropped-prepared")
        case 1 where !prePrepares.isEmpty:
            prePrepares.remove(at: nonNull.last ?? random.int(below: prePrepares.count))
            count("lying-newview.left-out")
        case 2 where !prePrepares.isEmpty:
            let index = random.int(below: prePrepares.count)
            prePrepares[index] = reproposed(prePrepares[index], batch: [forgedRequest()])
            count("lying-newview.wrong-batch")
        case 3 where !viewChanges.isEmpty:
            viewChanges.removeLast()
            count("lying-newview.short-v")
        default:
            let stable = viewChanges.map(\.stableSequence).max() ?? .genesis
            let sequence = prePrepares.last?.sequence.next ?? stable.next
            prePrepares.append(PrePrepare(view: newView.view, sequence: sequence, primary: me, batch: [forgedRequest()]).signed(by: signer))
            count("lying-newview.invented")
        }
        return NewView(view: newView.view, viewChanges: viewChanges, prePrepares: prePrepares, primary: me).signed(by: signer)
    }

    func reproposed(_ prePrepare: PrePrepare, batch: [Request]) -> PrePrepare {
        PrePrepare(view: prePrepare.view, sequence: prePrepare.sequence, primary: me, batch: batch).signed(by: signer)
    }
}
