import SteleCore

// PBFT §4.3 (garbage collection): CHECKPOINT every K sequences, q matching make it stable,
// the low watermark h moves up and the log at or below it is discarded.

extension Replica {
    /// After each execution: a CHECKPOINT at every multiple of K, and a stable checkpoint that
    /// was waiting for this block goes to the ledger.
    mutating func afterExecution(_ out: inout Outbox) {
        let height = lastExecuted
        if height.value % config.parameters.checkpointInterval == 0 { makeCheckpoint(&out) }
        if let certificate = checkpointAwaitingBlock, certificate.sequence <= height {
            checkpointAwaitingBlock = nil
            if certificate.sequence == height, certificate.stateDigest == ledgerHead.hash { out.commitCheckpoint(certificate) }
        }
        if let target = stateTarget, target <= height { finishStateTransfer() }
    }

    private mutating func makeCheckpoint(_ out: inout Outbox) {
        let checkpoint = Checkpoint(sequence: lastExecuted, stateDigest: ledgerHead.hash, replica: id).signed(by: signer)
        ownCheckpoints[checkpoint.sequence] = checkpoint
        guard checkpoint.sequence > stableCheckpoint else { return }
        out.broadcast(.checkpoint(checkpoint))
        store(checkpoint)
        checkStable(checkpoint.sequence, digest: checkpoint.stateDigest, &out)
    }

    mutating func receiveCheckpoint(_ checkpoint: Checkpoint, _ out: inout Outbox) {
        guard checkpoint.sequence > stableCheckpoint else {
            if checkpoint.sequence < stableCheckpoint { hintStableCheckpoint(to: checkpoint.replica, &out) }
            return
        }
        store(checkpoint)
        checkStable(checkpoint.sequence, digest: checkpoint.stateDigest, &out)
        proposeBatches(&out)  // the window may have moved
    }

    /// Keeps at most `checkpointsPerReplicaMax` CHECKPOINTs per replica, the highest ones (a
    /// correct replica's checkpoints only go up; a faulty one fills only its own quota).
    private mutating func store(_ checkpoint: Checkpoint) {
        var held = checkpointMessages[checkpoint.replica] ?? [:]
        guard held[checkpoint.sequence] == nil else { return }
        if held.count >= limits.checkpointsPerReplicaMax {
            guard let lowest = held.keys.min(), lowest < checkpoint.sequence else { return }
            held.removeValue(forKey: lowest)
        }
        held[checkpoint.sequence] = checkpoint
        checkpointMessages[checkpoint.replica] = held
    }

    private mutating func checkStable(_ sequence: SequenceNumber, digest: Digest, _ out: inout Outbox) {
        let matching = config.replicaIDs.compactMap { replica -> Checkpoint? in
            guard let checkpoint = checkpointMessages[replica]?[sequence], checkpoint.stateDigest == digest else { return nil }
            return checkpoint
        }
        guard matching.count >= config.quorum else { return }
        becomeStable(CheckpointCertificate(checkpoints: matching), &out)
    }

    /// Makes a proven checkpoint stable: persist it, move h, discard the log at or below it,
    /// and fetch the blocks up to it if this replica has not executed them.
    mutating func becomeStable(_ certificate: CheckpointCertificate, _ out: inout Outbox) {
        let sequence = certificate.sequence
        guard sequence > stableCheckpoint else { return }
        if let own = ownCheckpoints[sequence], own.stateDigest != certificate.stateDigest { return }  // our state diverged: never adopt
        stableCheckpoint = sequence
        stableCertificate = certificate
        out.persist(.stableCheckpoint(certificate))
        if lastExecuted >= sequence {
            out.commitCheckpoint(certificate)
        } else {
            checkpointAwaitingBlock = certificate
            requestState(upTo: sequence)
        }
        collectGarbage()
        if nextSequence <= sequence { nextSequence = sequence.next }
    }

    private mutating func collectGarbage() {
        let low = stableCheckpoint
        log = log.filter { $0.key > low }
        preparedCertificates = preparedCertificates.filter { $0.key > low }
        executedDigests = executedDigests.filter { $0.key > low }
        ownCheckpoints = ownCheckpoints.filter { $0.key >= low }
        ownMessages = ownMessages.filter { $0.key.sequence > low }
        committed = committed.filter { $0.key > lastExecuted }
        inFlight = inFlight.filter { $0.value > low }
        acceptedRequests = acceptedRequests.filter { $0.key > max(low, lastExecuted) }
        for (replica, held) in checkpointMessages {
            checkpointMessages[replica] = held.filter { $0.key > low }
        }
    }

    /// A peer revealed it is below our stable checkpoint: send it the certificate (an empty
    /// STATE-RESPONSE carrying it), at most once per retransmission interval per peer.
    mutating func hintStableCheckpoint(to peer: ReplicaID, _ out: inout Outbox) {
        guard let certificate = stableCertificate else { return }
        if let last = checkpointHintTicks[peer], now < last.saturatingAdd(config.parameters.retransmitTicks) { return }
        checkpointHintTicks[peer] = now
        let hint = StateResponse(blocks: [], checkpoint: certificate, replica: id).signed(by: signer)
        out.send(.stateResponse(hint), to: peer)
    }
}
