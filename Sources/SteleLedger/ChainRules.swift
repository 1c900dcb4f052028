import SteleCore

/// The height and hash of the newest block (height 0 and the genesis hash for a new ledger).
public struct ChainHead: Hashable, Sendable, CustomStringConvertible {
    public let height: SequenceNumber
    public let hash: Digest

    public init(height: SequenceNumber, hash: Digest) {
        self.height = height
        self.hash = hash
    }

    public var description: String { "height \(height.value), hash \(hash.hex)" }
}

/// Where a ledger's chain stands while records are admitted: the head and the newest checkpoint.
struct ChainPosition {
    var head: ChainHead
    var latestCheckpoint: SequenceNumber?
}

/// What one admitted record added to the chain.
enum Admitted {
    case block(hash: Digest)
    case checkpoint(sequence: SequenceNumber)
}

/// The file, byte offset and operation a record is admitted at, for the error it may cause.
struct RecordPlace {
    let path: String
    let offset: UInt64
    let operation: LedgerError.Operation
}

/// The rules a record must satisfy to follow what precedes it in a ledger. Used when opening
/// (every record of the file) and when appending (every new record), so the two never differ.
enum ChainRules {
    /// A genesis every verifier accepts: n >= 1, n >= 3f+1, member ids exactly 0 ..< n in order,
    /// public keys distinct.
    static func checkGenesis(_ genesis: Genesis) throws(ChainViolation) {
        func violation(_ detail: String) -> ChainViolation { ChainViolation(code: .invalidGenesis, height: .genesis, detail: detail) }
        let n = genesis.members.count
        guard n <= CodecLimits.standard.membersMax else { throw violation("n = \(n) replicas, at most \(CodecLimits.standard.membersMax)") }
        guard n >= 1, n >= 3 * Int(genesis.f) + 1 else { throw violation("n = \(n) replicas cannot tolerate f = \(genesis.f) (n >= 3f+1)") }
        var keys = Set<[UInt8]>()
        for (index, member) in genesis.members.enumerated() {
            guard Int(member.id.value) == index else { throw violation("member \(index) has id \(member.id.value); ids must be 0 ..< n in order") }
            guard keys.insert(member.publicKey.bytes).inserted else { throw violation("replica \(member.id.value) repeats another replica's public key") }
        }
    }

    /// Nil if equal, else what differs first, for an operator.
    static func difference(found: Genesis, expected: Genesis) -> String? {
        if found.formatVersion != expected.formatVersion { return "format version \(found.formatVersion), expected \(expected.formatVersion)" }
        if found.cluster != expected.cluster { return "cluster id \(found.cluster.hex), expected \(expected.cluster.hex)" }
        if found.f != expected.f { return "f = \(found.f), expected \(expected.f)" }
        if found.members.count != expected.members.count { return "n = \(found.members.count), expected \(expected.members.count)" }
        for (mine, theirs) in zip(found.members, expected.members) where mine != theirs {
            return "replica \(mine.id.value) has public key \(mine.publicKey.hex), expected replica \(theirs.id.value) with \(theirs.publicKey.hex)"
        }
        return nil
    }

    /// Counts and lengths a decoder accepts, so that nothing is written that could not be read
    /// back (the codec checks them only when decoding).
    static func checkCodecLimits(_ record: LedgerRecord, height: SequenceNumber, limits: CodecLimits = .standard) throws(ChainViolation) {
        func violation(_ detail: String) -> ChainViolation { ChainViolation(code: .limitExceeded, height: height, detail: detail) }
        switch record {
        case .genesis:
            return
        case .block(let block):
            guard block.batch.count <= limits.batchCountMax else { throw violation("\(block.batch.count) requests, at most \(limits.batchCountMax)") }
            for (index, request) in block.batch.enumerated() where request.payload.count > limits.payloadBytesMax {
                throw violation("request \(index) has a \(request.payload.count)-byte payload, at most \(limits.payloadBytesMax)")
            }
            guard block.commitSignatures.count <= limits.signaturesMax else {
                throw violation("\(block.commitSignatures.count) commit signatures, at most \(limits.signaturesMax)")
            }
        case .checkpoint(let certificate):
            guard certificate.signatures.count <= limits.signaturesMax else {
                throw violation("\(certificate.signatures.count) checkpoint signatures, at most \(limits.signaturesMax)")
            }
        }
    }

    /// Block `head.height + 1`, chained to `head.hash`.
    static func checkBlock(_ block: CertifiedBlock, follows head: ChainHead) throws(ChainViolation) {
        let expected = head.height.next
        guard block.height == expected else {
            throw ChainViolation(code: .heightNotConsecutive, height: expected, detail: "found block \(block.height.value) where block \(expected.value) belongs")
        }
        guard block.prevHash == head.hash else {
            throw ChainViolation(code: .prevHashMismatch, height: expected,
                                 detail: "prevHash \(block.prevHash.hex), but block \(head.height.value) has hash \(head.hash.hex)")
        }
    }

    /// The one admission of a record after the genesis, on open (every record of the file) and on
    /// append (every new record): a block must follow the head; a checkpoint must name a block at
    /// or below the head, come no earlier than the latest one, and carry that block's hash, which
    /// `blockHash` looks up in whatever holds the chain so far. Advances `position` and says what
    /// was admitted; a broken rule throws, placed at `place`.
    static func admit(
        _ record: LedgerRecord, to position: inout ChainPosition, at place: RecordPlace,
        blockHash: (SequenceNumber) throws(LedgerError) -> Digest
    ) throws(LedgerError) -> Admitted {
        do {
            switch record {
            case .genesis:
                throw ChainViolation(code: .unexpectedGenesis, height: position.head.height.next,
                                     detail: "a ledger has exactly one genesis record, its first")
            case .block(let block):
                try checkBlock(block, follows: position.head)
                let hash = block.hash
                position.head = ChainHead(height: block.height, hash: hash)
                return .block(hash: hash)
            case .checkpoint(let certificate):
                try checkCheckpointPosition(certificate, head: position.head, latest: position.latestCheckpoint)
                let hash = try blockHash(certificate.sequence)
                try checkCheckpointDigest(certificate, blockHash: hash)
                position.latestCheckpoint = certificate.sequence
                return .checkpoint(sequence: certificate.sequence)
            }
        } catch let violation as ChainViolation {
            throw violation.at(place.path, offset: place.offset, operation: place.operation)
        } catch let error as LedgerError {
            throw error
        } catch {
            preconditionFailure("only chain violations and ledger errors are thrown here: \(error)")
        }
    }

    /// A checkpoint certificate names a block the ledger already holds, and certificates appear
    /// in non-decreasing sequence order.
    static func checkCheckpointPosition(_ certificate: CheckpointCertificate, head: ChainHead, latest: SequenceNumber?) throws(ChainViolation) {
        guard certificate.sequence <= head.height else {
            throw ChainViolation(code: .checkpointAboveHead, height: certificate.sequence,
                                 detail: "certificate for sequence \(certificate.sequence.value), head is \(head.height.value)")
        }
        if let latest, certificate.sequence < latest {
            throw ChainViolation(code: .checkpointOutOfOrder, height: certificate.sequence,
                                 detail: "certificate for sequence \(certificate.sequence.value) after one for \(latest.value)")
        }
    }

    /// The certificate's state digest is the hash of the block at its sequence.
    static func checkCheckpointDigest(_ certificate: CheckpointCertificate, blockHash: Digest) throws(ChainViolation) {
        guard certificate.stateDigest == blockHash else {
            throw ChainViolation(code: .checkpointDigestMismatch, height: certificate.sequence,
                                 detail: "certificate names \(certificate.stateDigest.hex), block \(certificate.sequence.value) has hash \(blockHash.hex)")
        }
    }
}
