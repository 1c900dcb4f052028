import SteleCore

// Which normal-case messages a replica looks at: the watermarks h < s <= H, its own view
// (older views are replay, later ones wait in a bounded buffer until it enters them).

extension Replica {
    /// Normal-case messages pass the view and watermark checks here: old views and sequences at
    /// or below h are dropped (a peer below h is told about our stable checkpoint), later
    /// views are buffered, sequences above H are dropped.
    mutating func admitNormalCase(_ message: Message, view messageView: View, sequence: SequenceNumber, from: ReplicaID, _ out: inout Outbox) -> Bool {
        if sequence <= stableCheckpoint {
            hintStableCheckpoint(to: from, &out)
            reject(.outsideWatermarks(low: stableCheckpoint, high: highWatermark), from: from, message.tag, view: messageView, sequence: sequence)
            return false
        }
        if messageView < view {
            // The sender still works in an older view; if it is past our head, its certified
            // blocks are good in any view: fetch them.
            if sequence > lastExecuted { probeState(from: from, seen: sequence, &out) }
            reject(.staleView(current: view), from: from, message.tag, view: messageView, sequence: sequence)
            return false
        }
        if messageView > view || isInViewChange {
            bufferFutureMessage(message, from: from, view: messageView)
            return false
        }
        guard sequence <= highWatermark else {
            probeState(from: from, seen: sequence, &out)
            reject(.outsideWatermarks(low: stableCheckpoint, high: highWatermark), from: from, message.tag, view: messageView, sequence: sequence)
            return false
        }
        return true
    }

    /// Keeps a message of a later view until we enter it, if `futureBufferRefusal` (Bounds.swift)
    /// finds nothing wrong: per sender bounded by count and bytes, checked before buffering.
    mutating func bufferFutureMessage(_ message: Message, from: ReplicaID, view messageView: View) {
        let bytes = EncodedSize.of(message)
        if let reason = futureBufferRefusal(message, from: from, view: messageView, bytes: bytes) {
            reject(.notBuffered(reason: reason), from: from, message.tag, view: messageView)
            return
        }
        futureMessages.append(BufferedMessage(message: message, from: from, view: messageView, byteCount: bytes))
    }

    /// Handles the buffered messages of the view just entered; drops those of older views.
    mutating func replayFutureMessages(_ out: inout Outbox) {
        let ready = futureMessages.filter { $0.view == view }
        futureMessages.removeAll { $0.view <= view }
        for buffered in ready { receive(buffered.message, from: buffered.from, &out) }
    }
}
