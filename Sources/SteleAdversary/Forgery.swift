import SteleCore
import SteleCrypto

/// Validly signed requests from a client key that is nobody's: what a Byzantine replica adds to
/// a batch to make it differ from its core's.
public struct RequestForger: Sendable {
    public let signer: ClientSigner
    public private(set) var timestamp: UInt64 = 0

    public init(signer: ClientSigner) { self.signer = signer }

    public mutating func request(payload: [UInt8]) -> Request {
        timestamp += 1
        return signer.request(timestamp: timestamp, payload: payload)
    }
}

/// Ways to break a signed message so that a correct receiver must reject it.
public enum Forgery {
    public static func flipBit<Random: RandomStream>(_ signature: Signature, random: inout Random) -> Signature {
        var bytes = signature.bytes
        let index = random.int(below: bytes.count)
        bytes[index] ^= UInt8(1 << random.int(below: 8))
        return Signature(bytes: bytes) ?? signature
    }

    /// Breaks a signature nested inside the message, then signs the outside properly.
    public static func mangledNested<Random: RandomStream>(
        _ message: Message, signer: ReplicaSigner, random: inout Random
    ) -> Message {
        switch message {
        case .prePrepare(let m) where !m.batch.isEmpty:
            var batch = m.batch
            batch[0] = batch[0].withSignature(flipBit(batch[0].signature, random: &random))
            return .prePrepare(PrePrepare(view: m.view, sequence: m.sequence, primary: m.primary, batch: batch).signed(by: signer))
        case .viewChange(let m) where !m.checkpointProof.isEmpty:
            var proof = m.checkpointProof
            let c = proof[0]
            proof[0] = Checkpoint(sequence: c.sequence, stateDigest: c.stateDigest, replica: c.replica, signature: flipBit(c.signature, random: &random))
            return .viewChange(ViewChange(newView: m.newView, stableSequence: m.stableSequence, checkpointProof: proof, prepared: m.prepared, replica: m.replica).signed(by: signer))
        case .newView(let m) where !m.viewChanges.isEmpty:
            var viewChanges = m.viewChanges
            viewChanges[0] = viewChanges[0].withSignature(flipBit(viewChanges[0].signature, random: &random))
            return .newView(NewView(view: m.view, viewChanges: viewChanges, prePrepares: m.prePrepares, primary: m.primary).signed(by: signer))
        case .stateResponse(let m) where !m.blocks.isEmpty:
            var blocks = m.blocks
            let block = blocks[0]
            var signatures = block.commitSignatures
            if !signatures.isEmpty { signatures[0] = ReplicaSignature(replica: signatures[0].replica, signature: flipBit(signatures[0].signature, random: &random)) }
            blocks[0] = CertifiedBlock(height: block.height, prevHash: block.prevHash, batch: block.batch, certificateView: block.certificateView, commitSignatures: signatures)
            return .stateResponse(StateResponse(blocks: blocks, checkpoint: m.checkpoint, replica: m.replica).signed(by: signer))
        default:
            return message.replacingSignature(flipBit(message.signature, random: &random))
        }
    }

    /// Raw bytes a decoder must reject or survive: truncated, a flipped byte, or an extra byte.
    public static func garbled<Random: RandomStream>(_ bytes: [UInt8], random: inout Random) -> [UInt8] {
        guard !bytes.isEmpty else { return [0xFF] }
        var out = bytes
        switch random.int(below: 3) {
        case 0: out.removeLast(random.int(in: 1...out.count))
        case 1:
            let index = random.int(below: out.count)
            out[index] ^= UInt8(1 << random.int(below: 8))
        default: out.append(UInt8(truncatingIfNeeded: random.next()))
        }
        return out
    }
}

// MARK: - Mangling helpers

extension Message {
    /// The same message with another outer signature.
    public func replacingSignature(_ signature: Signature) -> Message {
        switch self {
        case .request(let m): .request(m.withSignature(signature))
        case .prePrepare(let m): .prePrepare(m.withSignature(signature))
        case .prepare(let m): .prepare(m.withSignature(signature))
        case .commit(let m): .commit(m.withSignature(signature))
        case .reply(let m):
            .reply(m.withSignature(signature))
        case .checkpoint(let m):
            .checkpoint(Checkpoint(sequence: m.sequence, stateDigest: m.stateDigest, replica: m.replica, signature: signature))
        case .viewChange(let m): .viewChange(m.withSignature(signature))
        case .newView(let m): .newView(m.withSignature(signature))
        case .stateRequest(let m):
            .stateRequest(StateRequest(fromHeight: m.fromHeight, toHeight: m.toHeight, replica: m.replica, signature: signature))
        case .stateResponse(let m):
            .stateResponse(StateResponse(blocks: m.blocks, checkpoint: m.checkpoint, replica: m.replica, signature: signature))
        }
    }

    /// One signed field changed, the old signature kept (so it no longer verifies).
    public func mangledField<Random: RandomStream>(random: inout Random) -> Message {
        switch self {
        case .request(let m):
            .request(Request(client: m.client, timestamp: m.timestamp &+ 1, payload: m.payload, signature: m.signature))
        case .prePrepare(let m):
            .prePrepare(PrePrepare(view: m.view, sequence: m.sequence.next, primary: m.primary, batch: m.batch, signature: m.signature))
        case .prepare(let m):
            .prepare(Vote(kind: .prepare, view: m.view, sequence: m.sequence, digest: Digest.of(random.bytes(8)), replica: m.replica, signature: m.signature))
        case .commit(let m):
            .commit(Vote(kind: .commit, view: m.view.next, sequence: m.sequence, digest: m.digest, replica: m.replica, signature: m.signature))
        case .reply(let m):
            .reply(Reply(view: m.view, timestamps: m.timestamps, client: m.client, replica: m.replica, height: m.height.next, blockHash: m.blockHash, signature: m.signature))
        case .checkpoint(let m):
            .checkpoint(Checkpoint(sequence: m.sequence, stateDigest: Digest.of(random.bytes(8)), replica: m.replica, signature: m.signature))
        case .viewChange(let m):
            .viewChange(ViewChange(newView: m.newView.next, stableSequence: m.stableSequence, checkpointProof: m.checkpointProof, prepared: m.prepared, replica: m.replica, signature: m.signature))
        case .newView(let m):
            .newView(NewView(view: m.view.next, viewChanges: m.viewChanges, prePrepares: m.prePrepares, primary: m.primary, signature: m.signature))
        case .stateRequest(let m):
            .stateRequest(StateRequest(fromHeight: m.fromHeight, toHeight: m.toHeight.next, replica: m.replica, signature: m.signature))
        case .stateResponse(let m) where m.blocks.isEmpty:
            replacingSignature(.zero)
        case .stateResponse(let m):
            .stateResponse(StateResponse(blocks: Array(m.blocks.dropLast()), checkpoint: m.checkpoint, replica: m.replica, signature: m.signature))
        }
    }
}
