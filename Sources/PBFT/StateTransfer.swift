import SteleCore

// State transfer: a replica that is behind fetches committed blocks from a peer and accepts
// each only with a 2f+1 commit certificate that chains from its ledger head. One honest peer
// is enough; peers are rotated on retries.

extension Replica {
    // MARK: Fetching

    /// Fetch blocks up to `target` (a stable checkpoint or NEW-VIEW min-s above lastExecuted).
    mutating func requestState(upTo target: SequenceNumber, _ out: inout Outbox) {
        guard target > lastExecuted else { return }
        if let current = stateTarget, current >= target { return }
        stateTarget = target
        sendStateRequest(&out)
    }

    mutating func retryStateTransfer(_ out: inout Outbox) {
        if let highest = committed.keys.max(), highest > lastExecuted.next, committed[lastExecuted.next] == nil {
            // Later sequences committed here but the next one did not: fetch the gap.
            requestState(upTo: SequenceNumber(highest.value - 1), &out)
        }
        guard let target = stateTarget else { return }
        if target <= lastExecuted {
            stateTarget = nil
            stateTransferAttempt = 0
            return
        }
        if stateRequestTick == now { return }
        sendStateRequest(&out)
    }

    private mutating func sendStateRequest(_ out: inout Outbox) {
        guard let target = stateTarget, target > lastExecuted else { return }
        let from = lastExecuted.next
        let to = min(target, from.adding(UInt64(CodecLimits.standard.stateTransferBlocksMax - 1)))
        let request = StateRequest(fromHeight: from, toHeight: to, replica: id).signed(by: signer)
        out.send(.stateRequest(request), to: stateTransferPeer())
        stateRequestTick = now
        stateTransferAttempt += 1
    }

    /// The peers in turn, starting after this replica.
    private func stateTransferPeer() -> ReplicaID {
        let n = config.n
        let offset = 1 + stateTransferAttempt % (n - 1)
        return ReplicaID(UInt16((Int(id.value) + offset) % n))
    }

    // MARK: Serving

    /// The shell reads the blocks from the ledger; at most `stateServesPerTickMax` per peer per tick.
    mutating func receiveStateRequest(_ request: StateRequest, _ out: inout Outbox) {
        guard request.fromHeight >= 1, request.fromHeight <= request.toHeight, request.fromHeight <= lastExecuted else { return }
        let served = stateServesThisTick[request.replica] ?? 0
        guard served < limits.stateServesPerTickMax else { return }
        stateServesThisTick[request.replica] = served + 1
        out.serveState(request)
    }

    // MARK: Receiving blocks

    mutating func receiveStateResponse(_ response: StateResponse, _ out: inout Outbox) {
        let before = lastExecuted
        for block in response.blocks.prefix(CodecLimits.standard.stateTransferBlocksMax) where block.height > lastExecuted {
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
        if lastExecuted > before, let target = stateTarget, target > lastExecuted { sendStateRequest(&out) }
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
        if certificate.sequence == lastExecuted, certificate.stateDigest != ledgerHead.hash { return }
        becomeStable(certificate, &out)
    }
}
