import SteleCore

// State transfer: a replica that is behind fetches committed blocks from a peer and accepts
// each only with a 2f+1 commit certificate that chains from its ledger head. One honest peer
// is enough; peers are rotated on retries.

extension Replica {
    // MARK: Fetching

    /// Notes that the blocks up to `target` (a stable checkpoint or a NEW-VIEW's min-s) must
    /// be fetched; `continueStateTransfer` sends the request at the end of the event.
    mutating func requestState(upTo target: SequenceNumber) {
        guard target > lastExecuted else { return }
        if let current = stateTarget, current >= target { return }
        stateTarget = target
    }

    /// After every event: send a STATE-REQUEST if one is needed and none is outstanding (a
    /// request unanswered for `retransmitTicks` is retried with the next peer).
    mutating func continueStateTransfer(_ out: inout Outbox) {
        guard let target = stateTarget else { return }
        guard target > lastExecuted else {
            finishStateTransfer()
            return
        }
        if let sent = stateRequestTick, now < sent.saturatingAdd(config.parameters.retransmitTicks) { return }
        sendStateRequest(&out)
    }

    mutating func finishStateTransfer() {
        stateTarget = nil
        stateRequestTick = nil
        stateTransferAttempt = 0
    }

    /// Later sequences committed here but the next one did not: fetch the gap.
    mutating func fetchMissingCommitted() {
        guard let highest = committed.keys.max(), highest > lastExecuted.next, committed[lastExecuted.next] == nil else { return }
        requestState(upTo: SequenceNumber(highest.value - 1))
    }

    private mutating func sendStateRequest(_ out: inout Outbox) {
        guard let target = stateTarget, target > lastExecuted else { return }
        let request = makeStateRequest(upTo: target)
        out.send(.stateRequest(request), to: stateTransferPeer())
        stateRequestTick = now
        stateTransferAttempt += 1
    }

    private func makeStateRequest(upTo target: SequenceNumber) -> StateRequest {
        let from = lastExecuted.next
        let to = min(target, from.adding(UInt64(limits.stateTransferBlocksMax - 1)))
        return StateRequest(fromHeight: from, toHeight: to, replica: id).signed(by: signer)
    }

    /// The peers in turn, starting after this replica.
    private func stateTransferPeer() -> ReplicaID {
        let n = config.n
        let offset = 1 + stateTransferAttempt % (n - 1)
        return ReplicaID(UInt16((Int(id.value) + offset) % n))
    }

    /// A peer sent a normal-case message above our high watermark: it may be far ahead. Ask it
    /// for the blocks after our head (its answer carries its newest stable checkpoint), at
    /// most once per retransmission interval, and only while no transfer is under way.
    mutating func probeState(from peer: ReplicaID, seen sequence: SequenceNumber, _ out: inout Outbox) {
        if sequence > probeTarget ?? .genesis {
            probeTarget = sequence
            probesLeft = limits.probesPerTargetMax
        }
        sendProbe(to: peer, &out)
    }

    /// Re-probes (rotating peers) while a sequence seen from a peer is not reached, at most
    /// `probesPerTargetMax` times without progress: a faulty peer's claim costs a few requests.
    mutating func continueProbing(_ out: inout Outbox) {
        guard let target = probeTarget else { return }
        guard target > lastExecuted, probesLeft > 0 else {
            probeTarget = nil
            return
        }
        sendProbe(to: stateTransferPeer(), &out)
    }

    private mutating func sendProbe(to peer: ReplicaID, _ out: inout Outbox) {
        guard stateTarget == nil, probesLeft > 0 else { return }
        if let last = stateProbeTick, now < last.saturatingAdd(config.parameters.retransmitTicks) { return }
        stateProbeTick = now
        probesLeft -= 1
        stateTransferAttempt += 1
        let request = makeStateRequest(upTo: lastExecuted.adding(UInt64(limits.stateTransferBlocksMax)))
        out.send(.stateRequest(request), to: peer)
    }

    // MARK: Serving

    /// The shell reads the blocks from the ledger (`StateServer.response`); at most
    /// `stateServesPerTickMax` per peer per tick.
    mutating func receiveStateRequest(_ request: StateRequest, _ out: inout Outbox) {
        guard request.fromHeight >= 1, request.fromHeight <= request.toHeight, request.fromHeight <= lastExecuted else { return }
        let served = stateServesThisTick[request.replica] ?? 0
        guard served < limits.stateServesPerTickMax else { return }
        stateServesThisTick[request.replica] = served + 1
        out.serveState(request)
    }

    // MARK: Receiving blocks

    /// Blocks above our head are applied in order while each checks out; a checkpoint
    /// certificate ahead of us is adopted first (it tells how far to fetch), one at or below
    /// our new head afterwards.
    mutating func receiveStateResponse(_ response: StateResponse, _ out: inout Outbox) {
        let before = lastExecuted
        if let certificate = response.checkpoint, certificate.sequence > lastExecuted { adoptTransferred(certificate, &out) }
        for block in response.blocks.prefix(limits.stateTransferBlocksMax) where block.height > lastExecuted {
            do throws(ProtocolViolation.Code) {
                try checkTransferred(block)
            } catch {
                reject(error, from: response.replica, .stateResponse, sequence: block.height)
                break
            }
            committed.removeValue(forKey: block.height)
            execute(block, sendReplies: false, &out)
        }
        if let certificate = response.checkpoint { adoptTransferred(certificate, &out) }
        executeReady(&out)
        if lastExecuted > before {
            stateRequestTick = nil  // progress: ask for the next range now
            probesLeft = limits.probesPerTargetMax
        }
    }

    /// A transferred block must be the next height, carry 2f+1 distinct member commit
    /// signatures (verified by the shell) and chain from the ledger head.
    func checkTransferred(_ block: CertifiedBlock) throws(ProtocolViolation.Code) {
        guard block.height == lastExecuted.next else { throw .unexpectedHeight(height: block.height, expected: lastExecuted.next) }
        guard block.height <= max(highWatermark, stateTarget ?? .genesis) else {
            throw .outsideWatermarks(low: stableCheckpoint, high: highWatermark)
        }
        guard QuorumShape.isValidCommitCertificate(block, config: config) else { throw .invalidCommitCertificate(height: block.height) }
        guard block.prevHash == ledgerHead.hash else { throw .brokenChain(height: block.height) }
    }

    /// A checkpoint certificate that came with transferred blocks (or as a hint).
    private mutating func adoptTransferred(_ certificate: CheckpointCertificate, _ out: inout Outbox) {
        guard certificate.sequence > stableCheckpoint, QuorumShape.isValidCheckpointCertificate(certificate, config: config) else { return }
        guard certificate.checkpoints.allSatisfy({ $0.sequence == certificate.sequence }) else { return }
        if certificate.sequence == lastExecuted, certificate.stateDigest != ledgerHead.hash { return }
        becomeStable(certificate, &out)
    }
}
