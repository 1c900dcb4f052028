import SteleCore

/// What the serving side of state transfer reads: a replica's committed ledger (the archive of
/// the blocks the core no longer keeps in memory).
public protocol CommittedLedger {
    var headHeight: SequenceNumber { get }
    /// Block `height`, for 1 ... headHeight.
    func block(at height: SequenceNumber) throws -> CertifiedBlock
    /// The newest checkpoint certificate at or below `height`.
    func latestCheckpoint(atOrBelow height: SequenceNumber) throws -> CheckpointCertificate?
}

/// State transfer, serving side: the one rule every shell runs for `Action.serveState`.
public enum StateServer {
    /// The signed STATE-RESPONSE to `request`: the blocks from request.fromHeight on, never past
    /// request.toHeight or the ledger's head, at most `blocksMax` of them (the cluster's
    /// `ProtocolParameters.stateTransferBlocksMax`), and only as many as weigh `bytesMax` by
    /// `weight` (always the first: any block fit a frame as a PRE-PREPARE; the peer asks for
    /// the rest once these are applied). It carries the newest checkpoint certificate at or
    /// below the last block. nil when the request names nothing this ledger holds.
    /// Blocks are read one at a time, so a request costs at most what it is sent.
    public static func response(
        to request: StateRequest, from ledger: some CommittedLedger, blocksMax: Int,
        bytesMax: Int = .max, weight: (CertifiedBlock) -> Int = { _ in 0 }, signer: ReplicaSigner
    ) throws -> StateResponse? {
        precondition(blocksMax >= 1, "a state-transfer response holds at least one block")
        precondition(blocksMax <= CodecLimits.standard.stateTransferBlocksMax, "a response must decode at its receiver")
        let from = request.fromHeight
        guard from.value >= 1, from <= request.toHeight, from <= ledger.headHeight else { return nil }
        let last = min(request.toHeight, ledger.headHeight, from.adding(UInt64(blocksMax - 1)))
        var blocks: [CertifiedBlock] = []
        var bytes = 0
        for height in from.value...last.value {
            let block = try ledger.block(at: SequenceNumber(height))
            bytes = Bound.sum(bytes, weight(block))
            if !blocks.isEmpty, bytes > bytesMax { break }
            blocks.append(block)
        }
        assert(blocks.count <= blocksMax, "the response holds at most blocksMax blocks")
        guard let newest = blocks.last else { preconditionFailure("the range from..last is never empty") }
        let checkpoint = try ledger.latestCheckpoint(atOrBelow: newest.height)
        return StateResponse(blocks: blocks, checkpoint: checkpoint, replica: signer.replica).signed(by: signer)
    }
}
