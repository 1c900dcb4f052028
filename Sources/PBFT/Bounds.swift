import SteleCore
import SteleCrypto

// What a peer can make an honest replica hold is bounded by bytes as well as by count: a count
// alone lets one peer pin its count times the frame limit. Sizes here are the canonical encodings (SteleCore's codec), computed from the
// fields without encoding; `ReplicaLimits` (Log.swift) derives every bound from the config.

/// Encoded sizes of the messages a peer can make the core hold (envelope's 2 bytes included).
enum EncodedSize {
    static let envelope = 2
    static let signature = Signature.byteCount
    /// PREPARE or COMMIT: view, sequence, digest, replica, signature.
    static let vote = envelope + Vote.encodedByteCount
    /// CHECKPOINT: sequence, state digest, replica, signature.
    static let checkpoint = envelope + 8 + Digest.byteCount + 2 + signature
    /// PRE-PREPARE without its batch: view, sequence, primary, batch count, signature.
    static let prePrepareHeader = envelope + 8 + 8 + 2 + 4 + signature
    /// A request without its payload: client key, timestamp, payload length, signature.
    static let requestHeader = PublicKey.byteCount + 8 + 4 + signature
    /// VIEW-CHANGE without proof and certificates: views, counts, replica, signature.
    static let viewChangeHeader = envelope + 8 + 8 + 4 + 4 + 2 + signature
    /// One (client, timestamp) remembered in `acceptedRequests` or `inFlight`.
    static let requestKey = PublicKey.byteCount + 8

    static func of(_ prePrepare: PrePrepare) -> Int {
        prePrepare.batch.reduce(prePrepareHeader) { $0 + $1.encodedByteCount }
    }

    static func of(_ certificate: PreparedCertificate) -> Int {
        of(certificate.prePrepare) - envelope + 4 + certificate.prepares.count * (vote - envelope)
    }

    static func of(_ viewChange: ViewChange) -> Int {
        let proof = viewChange.checkpointProof.count * (checkpoint - envelope)
        return viewChange.prepared.reduce(viewChangeHeader + proof) { $0 + of($1) }
    }

    /// The normal-case messages that can wait in `futureMessages`.
    static func of(_ message: Message) -> Int {
        switch message {
        case .prePrepare(let prePrepare): of(prePrepare)
        case .prepare, .commit: vote
        case .checkpoint: checkpoint
        case .viewChange(let viewChange): of(viewChange)
        case .request(let request): envelope + request.encodedByteCount
        default: message.encode().count
        }
    }
}

extension Replica {
    /// The bytes this replica holds on behalf of `peer`: what it buffered for later views,
    /// its CHECKPOINTs, its VIEW-CHANGEs, its PRE-PREPAREs and votes in the log (with the
    /// request keys the PRE-PREPAREs put in `acceptedRequests`), and the requests it relayed
    /// that are still pending. Never more than `limits.bytesHeldPerReplicaMax`
    /// (docs/security.md).
    func bytesHeld(for peer: ReplicaID) -> Int {
        var bytes = futureMessages.reduce(0) { $0 + ($1.from == peer ? $1.byteCount : 0) }
        bytes += (checkpointMessages[peer]?.count ?? 0) * EncodedSize.checkpoint
        bytes += viewChanges[peer].map(EncodedSize.of) ?? 0
        bytes += pendingViewChanges[peer].map(EncodedSize.of) ?? 0
        for slot in log.values {
            if slot.prepares[peer] != nil { bytes += EncodedSize.vote }
            if slot.commits[peer] != nil { bytes += EncodedSize.vote }
            if let prePrepare = slot.prePrepare, prePrepare.primary == peer {
                bytes += EncodedSize.of(prePrepare) + prePrepare.batch.count * EncodedSize.requestKey
            }
        }
        bytes += pending.relayedBytes(by: peer)
        return bytes
    }

    /// Why `message` (for `messageView`, above ours) is not buffered, or nil if it may be:
    /// the cheap checks come first — a view within `futureViewsMax` of ours, a PRE-PREPARE
    /// from primary(v), a PREPARE not from it, a plausible size, room in the sender's quota.
    func futureBufferRefusal(_ message: Message, from: ReplicaID, view messageView: View, bytes: Int) -> String? {
        guard messageView <= limits.viewMax, messageView.value - view.value <= limits.futureViewsMax else {
            return "view \(messageView.value) is more than \(limits.futureViewsMax) views ahead"
        }
        let primary = config.primary(of: messageView)
        switch message {
        case .prePrepare(let prePrepare) where prePrepare.primary != primary: return "PRE-PREPARE not from primary(\(messageView.value))"
        case .prepare(let vote) where vote.replica == primary: return "PREPARE from primary(\(messageView.value))"
        default: break
        }
        guard bytes <= limits.prePrepareBytesMax else { return "\(bytes) bytes, more than any correct replica sends" }
        var heldCount = 0
        var heldBytes = 0
        for buffered in futureMessages where buffered.from == from {
            heldCount += 1
            heldBytes += buffered.byteCount
        }
        guard heldCount < limits.futureMessagesPerReplicaMax else { return "\(heldCount) messages of this sender buffered" }
        guard heldBytes + bytes <= limits.futureBytesPerReplicaMax else { return "\(heldBytes) bytes of this sender buffered" }
        return nil
    }
}
