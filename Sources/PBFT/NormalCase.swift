import SteleCore
import SteleCrypto

// PBFT §4.2 (normal-case operation): REQUEST, PRE-PREPARE, PREPARE, COMMIT, execution, REPLY.

extension Replica {
    // MARK: Requests

    /// A client REQUEST (signature verified by the shell).
    mutating func receiveClientRequest(_ request: Request, _ out: inout Outbox) {
        switch clientStatus(request) {
        case .executed(let result): out.reply(signedReply(request, result: result))
        case .tooOld: return
        case .new: admitNewRequest(request, &out)
        }
    }

    /// A client REQUEST relayed by replica `relay` (its client signature verified by the
    /// shell). PBFT §4.4: a replica treats a relayed request like the client's own — the
    /// primary orders it, a backup starts its timer for it (and forwards it to its primary in
    /// the next retransmission round). The relay gains no amplification: an executed request
    /// gets no reply (a REPLY goes to its client, who retransmits to every replica itself), a
    /// known one changes nothing, and a new one is queued only within the relay's quota
    /// (`relayedRequestsPerReplicaMax`, by count and bytes) — nothing is sent back or on at once.
    mutating func receiveRelayedRequest(_ request: Request, from relay: ReplicaID, _ out: inout Outbox) {
        guard case .new = clientStatus(request) else { return }
        guard pending.contains(RequestKey(request)) || pending.insert(request, relayedBy: relay) else {
            reject(.notBuffered(reason: "pending queue or this relay's quota is full"), from: relay, .request)
            return
        }
        if isInViewChange { return }
        if isPrimary {
            proposeBatches(&out)
        } else if requestDeadline == nil {
            restartRequestTimer()
        }
    }

    func clientStatus(_ request: Request) -> ClientRecord.Status {
        ledgerHead.clients[request.client]?.status(of: request.timestamp) ?? .new
    }

    private mutating func admitNewRequest(_ request: Request, _ out: inout Outbox) {
        guard pending.contains(RequestKey(request)) || pending.insert(request) else { return }  // full: drop
        if isInViewChange { return }
        if isPrimary {
            proposeBatches(&out)
            return
        }
        out.send(.request(request), to: primary)
        // §4.4: a backup starts its timer when it receives a request and none is running.
        if requestDeadline == nil { restartRequestTimer() }
    }

    func signedReply(_ request: Request, result: Reply.Result) -> Reply {
        Reply(view: view, timestamp: request.timestamp, client: request.client, replica: id, height: result.height, blockHash: result.blockHash)
            .signed(by: signer)
    }

    // MARK: Batching (primary)

    /// Cuts batches while requests are queued, the pipeline has room and the next sequence is
    /// inside the window — adapting to load: a batch smaller than `batchSizeMax` is cut only when
    /// no proposed batch is waiting to execute, or when one just executed (`afterExecution`: one
    /// partial batch per execution, so the pipeline is clocked by executions). Otherwise requests
    /// accumulate until a batch is full. At low load a request is proposed at once; under load
    /// batches grow instead of the pipeline filling with tiny ones, whose per-batch cost (three
    /// signed protocol messages per replica, their verification, the fsyncs) dominates.
    mutating func proposeBatches(afterExecution: Bool = false, _ out: inout Outbox) {
        guard isPrimary, !isInViewChange, lastExecuted >= stableCheckpoint else { return }
        var partialBatchesAllowed = afterExecution ? 1 : 0
        while hasRoomForProposal {
            let isFull = pending.unexaminedCount >= config.parameters.batchSizeMax
                || pending.unexaminedBytes >= config.parameters.batchBytesMax
            if !isFull, proposedUnexecuted > 0 {
                guard partialBatchesAllowed > 0 else { return }
                partialBatchesAllowed -= 1
            }
            let inFlight = self.inFlight
            let clients = ledgerHead.clients
            let prepared = preparedRequests()
            let batch = pending.takeForProposal(countMax: config.parameters.batchSizeMax, bytesMax: config.parameters.batchBytesMax) {
                Replica.isProposable($0, inFlight: inFlight, prepared: prepared, clients: clients)
            }
            if batch.isEmpty {
                // Liveness: a request held back only by an earlier view's PRE-PREPARE at a
                // sequence this view has not reached yet is freed once that sequence executes;
                // fill the gap with null batches rather than stall.
                guard holdsBackForLaterSequence(prepared, inFlight: inFlight) else { return }
                propose([], &out)
                continue
            }
            propose(batch, &out)
        }
    }

    /// Whether some pending, unexecuted request is not proposable only because it was seen
    /// (in an earlier view) at a sequence at or above `nextSequence`.
    private func holdsBackForLaterSequence(_ prepared: [RequestKey: [SequenceNumber]], inFlight: [RequestKey: SequenceNumber]) -> Bool {
        let next = nextSequence
        let ahead = prepared.filter { $0.value.contains { $0 >= next } }
        guard !ahead.isEmpty else { return false }
        return pending.oldest(1) { request in
            let key = RequestKey(request)
            guard inFlight[key] == nil, ahead[key] != nil else { return false }
            if case .new = clientStatus(request) { return true }
            return false
        }.isEmpty == false
    }

    /// Sequences this primary proposed that have not executed yet.
    private var proposedUnexecuted: UInt64 {
        nextSequence.value > lastExecuted.value ? nextSequence.value - 1 - lastExecuted.value : 0
    }

    private var hasRoomForProposal: Bool {
        nextSequence <= highWatermark && proposedUnexecuted < UInt64(config.parameters.pipelineDepthMax)
    }

    /// Not in an accepted, unexecuted PRE-PREPARE (of any view), not in a prepared certificate
    /// of an unexecuted sequence, and never executed.
    private static func isProposable(_ request: Request, inFlight: [RequestKey: SequenceNumber], prepared: [RequestKey: [SequenceNumber]], clients: [PublicKey: ClientRecord]) -> Bool {
        guard inFlight[RequestKey(request)] == nil, prepared[RequestKey(request)] == nil else { return false }
        guard case .new = clients[request.client]?.status(of: request.timestamp) ?? .new else { return false }
        return true
    }

    private mutating func propose(_ batch: [Request], _ out: inout Outbox) {
        // A primary proposes once per (v, s): skip any sequence its log says it already used.
        while ownMessages[OwnMessageKey(kind: .prePrepare, view: view, sequence: nextSequence)] != nil { nextSequence = nextSequence.next }
        let sequence = nextSequence
        nextSequence = sequence.next
        let prePrepare = PrePrepare(view: view, sequence: sequence, primary: id, batch: batch).signed(by: signer)
        out.broadcast(.prePrepare(prePrepare))
        acceptPrePrepare(prePrepare, &out)
    }

    // MARK: PRE-PREPARE

    mutating func receivePrePrepare(_ prePrepare: PrePrepare, from: ReplicaID, _ out: inout Outbox) {
        guard admitNormalCase(.prePrepare(prePrepare), view: prePrepare.view, sequence: prePrepare.sequence, from: from, &out) else { return }
        do throws(ProtocolViolation.Code) {
            try checkPrePrepare(prePrepare)
        } catch {
            reject(error, from: from, .prePrepare, view: prePrepare.view, sequence: prePrepare.sequence)
            return
        }
        if log[prePrepare.sequence]?.prePrepare != nil { return }  // the same one again
        acceptPrePrepare(prePrepare, &out)
    }

    /// Whether a backup may accept this PRE-PREPARE of its current view (the watermarks and the
    /// view were checked by `admitNormalCase`).
    func checkPrePrepare(_ prePrepare: PrePrepare) throws(ProtocolViolation.Code) {
        let expected = config.primary(of: prePrepare.view)
        guard prePrepare.primary == expected else { throw .notPrimary(expected: expected) }
        // No digest check here: a PrePrepare's digest is computed from its batch whenever one is
        // made or decoded (the wire form does not carry it), so it cannot disagree.
        if let accepted = log[prePrepare.sequence]?.prePrepare, accepted.digest != prePrepare.digest {
            throw .conflictingPrePrepare(accepted: accepted.digest)
        }
        if prePrepare.sequence <= lastExecuted {
            // Executed already (e.g. via state transfer): help only if it is what we executed.
            guard executedDigests[prePrepare.sequence] == prePrepare.digest else { throw .sequenceExecutedDifferently }
            return
        }
        try checkBatch(prePrepare.batch, at: prePrepare.sequence)
    }

    /// No duplicate transactions: every (client, timestamp) lands in the ledger at most once.
    func checkBatch(_ batch: [Request], at sequence: SequenceNumber) throws(ProtocolViolation.Code) {
        guard lastExecuted >= stableCheckpoint else { throw .behindStableCheckpoint(lastExecuted: lastExecuted) }
        let limit = config.parameters.batchSizeMax
        guard batch.count <= limit else { throw .batchTooLarge(count: batch.count, limit: limit) }
        if batch.count > 1 {
            let bytes = batch.reduce(0) { $0 + $1.encodedByteCount }
            let bytesLimit = config.parameters.batchBytesMax
            guard bytes <= bytesLimit else { throw .batchBytesTooLarge(bytes: bytes, limit: bytesLimit) }
        }
        // acceptedRequests stays bounded: a sequence left unexecuted through many views takes
        // no more than `acceptedRequestsPerSequenceMax` keys from normal-case PRE-PREPAREs.
        let accepted = acceptedRequests[sequence]?.count ?? 0
        guard accepted + batch.count <= limits.acceptedRequestsPerSequenceMax else {
            throw .notBuffered(reason: "\(accepted) requests already accepted at \(sequence.value) in earlier views")
        }
        var seen = Set<RequestKey>()
        let prepared = preparedRequests()
        for request in batch {
            let key = RequestKey(request)
            guard seen.insert(key).inserted else { throw .duplicateRequestInBatch(timestamp: request.timestamp) }
            guard case .new = clientStatus(request) else { throw .requestAlreadyExecuted(timestamp: request.timestamp) }
            if let other = inFlight[key], other != sequence { throw .requestInFlight(timestamp: request.timestamp, at: other) }
            if let other = prepared[key]?.first(where: { $0 != sequence }) { throw .requestInFlight(timestamp: request.timestamp, at: other) }
        }
    }

    /// Invariant 7 across view changes: the requests of the prepared certificates this replica
    /// holds for unexecuted sequences, of any view. Such a certificate goes into our VIEW-CHANGEs
    /// and may come back in a later NEW-VIEW's O (§4.4), which is installed without a duplicate
    /// check; so the request must not be ordered afresh at another sequence meanwhile — neither
    /// proposed by a primary nor accepted by a backup — or the ledger would hold it twice.
    ///
    /// The same holds for every PRE-PREPARE accepted at an unexecuted sequence in any earlier
    /// view (`acceptedRequests`): a certificate prepared in view v needs q replicas, so q - f
    /// correct ones, to have accepted its PRE-PREPARE, and a fresh ordering at another sequence
    /// needs q - f correct replicas too; 2(q - f) > n - f, so some correct replica refuses it. Sorted, for deterministic
    /// violation reports.
    func preparedRequests() -> [RequestKey: [SequenceNumber]] {
        var keys = [RequestKey: Set<SequenceNumber>]()
        for (sequence, certificate) in preparedCertificates where sequence > lastExecuted {
            for request in certificate.prePrepare.batch { keys[RequestKey(request), default: []].insert(sequence) }
        }
        for (sequence, requests) in acceptedRequests where sequence > lastExecuted {
            for key in requests { keys[key, default: []].insert(sequence) }
        }
        return keys.mapValues { $0.sorted() }
    }

    /// Remembers, across view changes, the requests accepted at an unexecuted sequence.
    mutating func rememberAccepted(_ batch: [Request], at sequence: SequenceNumber) {
        guard sequence > lastExecuted, sequence > stableCheckpoint, !batch.isEmpty else { return }
        acceptedRequests[sequence, default: []].formUnion(batch.map(RequestKey.init))
    }

    /// Logs a PRE-PREPARE of the current view (own, a backup's accepted one, or one of a
    /// NEW-VIEW's O) and, at a backup, sends PREPARE.
    mutating func acceptPrePrepare(_ prePrepare: PrePrepare, _ out: inout Outbox) {
        let sequence = prePrepare.sequence
        let isOwn = prePrepare.primary == id
        let ownKey = OwnMessageKey(kind: isOwn ? .prePrepare : .prepare, view: prePrepare.view, sequence: sequence)
        if let signed = ownMessages[ownKey], signed != prePrepare.digest { return }  // never equivocate, even after a restart
        var slot = log[sequence] ?? Slot(view: prePrepare.view)
        slot.prePrepare = prePrepare
        log[sequence] = slot
        if sequence > lastExecuted {
            for request in prePrepare.batch { inFlight[RequestKey(request)] = sequence }
        }
        rememberAccepted(prePrepare.batch, at: sequence)
        out.persist(.prePrepare(prePrepare))
        if isOwn {
            ownMessages[ownKey] = prePrepare.digest
        } else {
            sendVote(.prepare, for: prePrepare, &out)
        }
        checkPrepared(sequence, &out)
    }

    /// Signs, persists, broadcasts and logs this replica's own PREPARE or COMMIT.
    mutating func sendVote(_ kind: VoteKind, for prePrepare: PrePrepare, _ out: inout Outbox) {
        let key = OwnMessageKey(kind: kind == .prepare ? .prepare : .commit, view: prePrepare.view, sequence: prePrepare.sequence)
        if ownMessages[key] != nil { return }  // signed already (after a restart: maybe another digest — never again)
        let vote = Vote(kind: kind, view: prePrepare.view, sequence: prePrepare.sequence, digest: prePrepare.digest, replica: id).signed(by: signer)
        ownMessages[key] = vote.digest
        out.persist(.vote(vote))
        out.broadcast(kind == .prepare ? .prepare(vote) : .commit(vote))
        record(vote)
    }

    private mutating func record(_ vote: Vote) {
        var slot = log[vote.sequence] ?? Slot(view: vote.view)
        switch vote.kind {
        case .prepare: slot.prepares[vote.replica] = vote
        case .commit: slot.commits[vote.replica] = vote
        }
        log[vote.sequence] = slot
    }

    // MARK: PREPARE and COMMIT

    mutating func receivePrepare(_ vote: Vote, from: ReplicaID, _ out: inout Outbox) {
        guard admitNormalCase(.prepare(vote), view: vote.view, sequence: vote.sequence, from: from, &out) else { return }
        guard vote.replica != config.primary(of: vote.view) else {
            reject(.prepareFromPrimary, from: from, .prepare, view: vote.view, sequence: vote.sequence)
            return
        }
        guard storeVote(vote, from: from, &out) else { return }
        checkPrepared(vote.sequence, &out)
    }

    mutating func receiveCommit(_ vote: Vote, from: ReplicaID, _ out: inout Outbox) {
        guard admitNormalCase(.commit(vote), view: vote.view, sequence: vote.sequence, from: from, &out) else { return }
        guard storeVote(vote, from: from, &out) else { return }
        checkCommitted(vote.sequence, &out)
    }

    /// Logs a peer's vote (one per replica per (v, s)); true if it is new. A peer still voting
    /// on a sequence this replica executed is behind: it gets our own votes again.
    private mutating func storeVote(_ vote: Vote, from: ReplicaID, _ out: inout Outbox) -> Bool {
        let slot = log[vote.sequence]
        let existing = vote.kind == .prepare ? slot?.prepares[from] : slot?.commits[from]
        if let existing {
            if existing.digest != vote.digest {
                reject(.conflictingVote, from: from, vote.kind.tag, view: vote.view, sequence: vote.sequence)
            } else if vote.sequence <= lastExecuted, let slot {
                resendOwnVotes(slot, to: from, &out)
            }
            return false
        }
        record(vote)
        return true
    }

    /// A peer re-sent a vote for a sequence we executed: it is still waiting for votes. Re-send
    /// ours, at most once per tick for each (peer, sequence).
    private mutating func resendOwnVotes(_ slot: Slot, to peer: ReplicaID, _ out: inout Outbox) {
        guard slot.isCommittedLocal, let commit = slot.commits[id] else { return }
        guard votesResentThisTick.insert(PeerSequence(peer: peer, sequence: commit.sequence)).inserted else { return }
        if let prepare = slot.prepares[id] { out.send(.prepare(prepare), to: peer) }
        out.send(.commit(commit), to: peer)
    }

    /// prepared(m, v, s, i): the PRE-PREPARE and q - 1 matching PREPAREs from distinct backups
    /// (q replicas in all; the paper's 2f at n = 3f + 1). With fewer, two certificates for one
    /// (v, s) could meet only in faulty replicas when n > 3f + 1 (ClusterConfig.quorum).
    mutating func checkPrepared(_ sequence: SequenceNumber, _ out: inout Outbox) {
        guard var slot = log[sequence], let prePrepare = slot.prePrepare, !slot.isPrepared else { return }
        let prepares = slot.matchingPrepares(prePrepare.digest)
        let needed = config.preparesForCertificate
        guard prepares.count >= needed else { return }
        let certificate = PreparedCertificate(prePrepare: prePrepare, prepares: Array(prepares.prefix(needed)))
        slot.preparedCertificate = certificate
        log[sequence] = slot
        rememberPrepared(certificate)
        out.persist(.prepared(certificate))
        sendVote(.commit, for: prePrepare, &out)
        checkCommitted(sequence, &out)
    }

    mutating func rememberPrepared(_ certificate: PreparedCertificate) {
        if let held = preparedCertificates[certificate.sequence], held.view >= certificate.view { return }
        preparedCertificates[certificate.sequence] = certificate
    }

    /// committed-local(m, v, s, i): prepared and q matching COMMITs from distinct members.
    mutating func checkCommitted(_ sequence: SequenceNumber, _ out: inout Outbox) {
        guard var slot = log[sequence], let prePrepare = slot.prePrepare, slot.isPrepared, !slot.isCommittedLocal else { return }
        let commits = slot.matchingCommits(prePrepare.digest)
        guard commits.count >= config.quorum else { return }
        slot.isCommittedLocal = true
        log[sequence] = slot
        if sequence > lastExecuted, committed[sequence] == nil {
            let signatures = commits.prefix(config.quorum).map { ReplicaSignature(replica: $0.replica, signature: $0.signature) }
            committed[sequence] = CommittedBatch(prePrepare: prePrepare, signatures: signatures)
        }
        executeReady(&out)
    }

    // MARK: Execution

    /// Executes committed batches strictly in sequence order.
    mutating func executeReady(_ out: inout Outbox) {
        var executedAny = false
        while let batch = committed.removeValue(forKey: lastExecuted.next) {
            let block = CertifiedBlock(
                height: lastExecuted.next, prevHash: ledgerHead.hash, prePrepare: batch.prePrepare, commitSignatures: batch.signatures)
            execute(block, sendReplies: true, &out)
            executedAny = true
        }
        proposeBatches(afterExecution: executedAny, &out)
    }

    /// Appends one block to the ledger and applies it; the caller checked height and chain.
    mutating func execute(_ block: CertifiedBlock, sendReplies: Bool, _ out: inout Outbox) {
        precondition(block.height == lastExecuted.next && block.prevHash == ledgerHead.hash)
        out.commit(block)
        ledgerHead.apply(block)
        // Blocks at or below h arrive by state transfer up to a stable checkpoint; no PRE-PREPARE
        // there is ever judged again (the watermarks refuse it), so their digests are not kept.
        if block.height > stableCheckpoint { executedDigests[block.height] = block.batchDigest }
        // Entries are kept only for unexecuted sequences: drop this height without rebuilding
        // the table for every block.
        acceptedRequests.removeValue(forKey: block.height)
        if acceptedRequests.keys.contains(where: { $0 < block.height }) {
            acceptedRequests = acceptedRequests.filter { $0.key > block.height }
        }
        var executedRequest = false
        // One signed reply per client of the block, in the order of each client's first request.
        var replyClients: [PublicKey] = []
        var replyTimestamps: [PublicKey: [UInt64]] = [:]
        for request in block.batch {
            let key = RequestKey(request)
            pending.remove(key)
            if inFlight[key] == block.height { inFlight.removeValue(forKey: key) }
            guard case .executed(let result) = clientStatus(request), result.height == block.height else { continue }
            executedRequest = true
            guard sendReplies else { continue }
            if replyTimestamps[request.client] == nil { replyClients.append(request.client) }
            replyTimestamps[request.client, default: []].append(request.timestamp)
        }
        let blockHash = ledgerHead.hash
        for client in replyClients {
            let reply = Reply(view: view, timestamps: replyTimestamps[client] ?? [], client: client, replica: id, height: block.height, blockHash: blockHash)
            out.reply(reply.signed(by: signer))
        }
        requestsExecuted(progress: executedRequest)
        afterExecution(&out)
    }

    /// The view-change timer after an execution (§4.4): "a backup stops the timer when it is
    /// no longer waiting to execute the request, but restarts it if at that point it is
    /// waiting to execute some other request". The timer waits for one request; executing
    /// others leaves its deadline alone. Only when that request executed (or left the queue) is
    /// the timer restarted, from now, for the oldest request still pending — never a newer one,
    /// so a request waits for at most one timeout per request older than it. The timeout
    /// returns to its base once a request executes in a stable view.
    mutating func requestsExecuted(progress: Bool) {
        guard !isInViewChange else { return }
        if progress { timeoutTicks = config.parameters.viewChangeTimeoutTicks }
        if let key = requestTimerKey, requestDeadline != nil, pending.contains(key), !isPrimary { return }
        restartRequestTimer()
    }

    /// Starts the timer for the oldest pending request, from now; stops it if this replica is
    /// the primary, is changing views or waits for nothing.
    mutating func restartRequestTimer() {
        guard !isPrimary, !isInViewChange, let oldest = pending.oldestKey() else {
            stopRequestTimer()
            return
        }
        requestTimerKey = oldest
        requestDeadline = now.saturatingAdd(timeoutTicks)
    }

    mutating func stopRequestTimer() {
        requestTimerKey = nil
        requestDeadline = nil
    }
}
