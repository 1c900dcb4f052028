import SteleCore

/// Why the core dropped a message: what was wrong, who sent it and where in the protocol.
/// The core never throws at its shell — a bad message is dropped — but it remembers the last
/// reason (`Replica.lastViolation`) and the validation entry points throw it, so the
/// simulator and the tests can say exactly which rule a message broke.
public struct ProtocolViolation: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: Error, Equatable, Sendable {
        /// The sender is not a member of the cluster.
        case notAMember
        /// The authenticated transport sender differs from the replica that signed the message.
        case senderMismatch(signer: ReplicaID)
        /// A PRE-PREPARE or NEW-VIEW not signed by primary(v).
        case notPrimary(expected: ReplicaID)
        /// A message for a view this replica has left.
        case staleView(current: View)
        /// A view number too large to ever be reached (overflow guard).
        case viewOutOfRange
        /// A valid message answered recently: this peer's next answer waits for its interval.
        case rateLimited
        /// A message not buffered: its view is too far ahead, it is larger than any correct
        /// replica sends, or its sender's buffer is full (by count or bytes).
        case notBuffered(reason: String)
        /// A sequence outside h < s <= h + L.
        case outsideWatermarks(low: SequenceNumber, high: SequenceNumber)
        /// A second PRE-PREPARE for (v, s) with another digest.
        case conflictingPrePrepare(accepted: Digest)
        /// A batch's digest does not match its requests.
        case digestMismatch
        /// More requests in one batch than batchSizeMax.
        case batchTooLarge(count: Int, limit: Int)
        /// More than batchBytesMax encoded request bytes in a batch of two or more requests.
        case batchBytesTooLarge(bytes: Int, limit: Int)
        /// Two requests of one batch share (client, timestamp).
        case duplicateRequestInBatch(timestamp: UInt64)
        /// A request in the batch was already executed (or is below the client window).
        case requestAlreadyExecuted(timestamp: UInt64)
        /// A request in the batch is already in another accepted, unexecuted PRE-PREPARE.
        case requestInFlight(timestamp: UInt64, at: SequenceNumber)
        /// A PRE-PREPARE for an executed sequence whose digest is not the executed block's (or
        /// that block's digest is no longer known here).
        case sequenceExecutedDifferently
        /// The replica's ledger is below its stable checkpoint: it cannot judge new batches yet.
        case behindStableCheckpoint(lastExecuted: SequenceNumber)
        /// A PREPARE from the primary of its view (the primary never prepares).
        case prepareFromPrimary
        /// A second, different vote from the same replica for one (v, s).
        case conflictingVote
        /// A checkpoint proof without q distinct matching member signatures.
        case invalidCheckpointProof
        /// A prepared certificate that does not prove what it claims.
        case invalidPreparedCertificate(sequence: SequenceNumber, reason: String)
        /// Two prepared certificates for one sequence in one VIEW-CHANGE.
        case duplicatePreparedCertificate(sequence: SequenceNumber)
        /// A VIEW-CHANGE inside a NEW-VIEW for another view.
        case viewChangeForOtherView(View)
        /// A NEW-VIEW without q valid VIEW-CHANGEs from distinct replicas.
        case tooFewViewChanges(count: Int)
        /// A NEW-VIEW carrying two VIEW-CHANGEs of one replica.
        case duplicateViewChange(ReplicaID)
        /// A NEW-VIEW whose O differs from the recomputation from its V.
        case newViewMismatch(reason: String)
        /// A transferred block without q distinct member commit signatures.
        case invalidCommitCertificate(height: SequenceNumber)
        /// A transferred block whose prevHash does not chain from the ledger head.
        case brokenChain(height: SequenceNumber)
        /// A transferred block at a height that does not follow the ledger head.
        case unexpectedHeight(height: SequenceNumber, expected: SequenceNumber)
    }

    public let code: Code
    /// The replica that sent the offending message.
    public let replica: ReplicaID
    /// The message type.
    public let message: MessageTag
    public let view: View?
    public let sequence: SequenceNumber?

    public init(_ code: Code, replica: ReplicaID, message: MessageTag, view: View? = nil, sequence: SequenceNumber? = nil) {
        self.code = code
        self.replica = replica
        self.message = message
        self.view = view
        self.sequence = sequence
    }

    public var description: String {
        var context = "\(message) from \(replica)"
        if let view { context += " \(view)" }
        if let sequence { context += " \(sequence)" }
        return "\(context): \(code)"
    }
}
