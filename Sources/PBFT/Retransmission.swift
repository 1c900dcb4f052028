import SteleCore

// The network loses messages: every `retransmitTicks` a replica re-sends what others may still
// need from it. Everything re-sent is bounded by the watermark window or a fixed count.

extension Replica {
    mutating func retransmit(_ out: inout Outbox) {
        if isInViewChange {
            if let viewChange = ownViewChange, viewChange.newView == view { out.broadcast(.viewChange(viewChange)) }
        } else {
            retransmitLog(&out)
            retransmitNewView(&out)
            forwardPendingRequests(&out)
        }
        retransmitCheckpoint(&out)
        fetchMissingCommitted()
        continueProbing(&out)
    }

    /// Own PRE-PREPAREs (as primary), PREPAREs and COMMITs of sequences not executed yet that
    /// were already waiting at the previous round (see `retransmitCandidates`).
    private mutating func retransmitLog(_ out: inout Outbox) {
        let previous = retransmitCandidates.view == view ? retransmitCandidates.sequences : []
        var waiting = Set<SequenceNumber>()
        for sequence in log.keys.sorted() where sequence > lastExecuted {
            guard let slot = log[sequence] else { continue }
            let ownPrePrepare = slot.prePrepare.flatMap { $0.primary == id ? $0 : nil }
            let prepare = slot.prepares[id]
            let commit = slot.commits[id]
            guard ownPrePrepare != nil || prepare != nil || commit != nil else { continue }
            waiting.insert(sequence)
            guard previous.contains(sequence) else { continue }
            if let ownPrePrepare { out.broadcast(.prePrepare(ownPrePrepare)) }
            if let prepare { out.broadcast(.prepare(prepare)) }
            if let commit { out.broadcast(.commit(commit)) }
        }
        retransmitCandidates = (view, waiting)
    }

    private mutating func retransmitNewView(_ out: inout Outbox) {
        guard let newView = ownNewView, newView.view == view, newViewRetransmitsLeft > 0 else { return }
        newViewRetransmitsLeft -= 1
        out.broadcast(.newView(newView))
    }

    /// A backup forwards the oldest pending requests not yet in a PRE-PREPARE to the primary.
    func forwardPendingRequests(_ out: inout Outbox) {
        guard !isPrimary, !isInViewChange else { return }
        let requests = pending.oldest(limits.forwardsPerRetransmitMax) { inFlight[RequestKey($0)] == nil }
        for request in requests { out.send(.request(request), to: primary) }
    }

    /// The latest own CHECKPOINT that is not stable yet.
    private func retransmitCheckpoint(_ out: inout Outbox) {
        guard let latest = ownCheckpoints.keys.max(), latest > stableCheckpoint, let checkpoint = ownCheckpoints[latest] else { return }
        out.broadcast(.checkpoint(checkpoint))
    }
}
