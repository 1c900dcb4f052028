import SteleCore
import SteleCrypto

/// A transaction a client saw acknowledged: f+1 replicas sent the same signed reply naming
/// this height and block hash.
public struct Acknowledgement: Sendable, Hashable, CustomStringConvertible {
    public let client: PublicKey
    public let timestamp: UInt64
    public let height: UInt64
    /// Hex of the acknowledged block's hash.
    public let blockHash: String

    public init(client: PublicKey, timestamp: UInt64, height: UInt64, blockHash: String) {
        self.client = client
        self.timestamp = timestamp
        self.height = height
        self.blockHash = blockHash
    }

    public var description: String { "t=\(timestamp) (client \(client), height \(height), block \(blockHash.prefix(16)))" }
}

/// One broken promise found at the end of a run.
public struct ChaosViolation: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case ackMissing = "ack missing"
        case ackDuplicated = "ack duplicated"
        case ackMisplaced = "ack at another height or block"
        case ledgersDisagree = "ledgers disagree"
        case heightsDiffer = "heights differ"
        case auditFailed = "stele-check failed"
        case ledgerUnreadable = "ledger unreadable"
        case noProgress = "no progress"
        case notCaughtUp = "replica did not catch up"
        case tornTailNotReported = "torn tail not reported"
        case tornBlockServed = "torn block served"
        case processExited = "replica process exited"
    }

    public let kind: Kind
    public let replica: ReplicaID?
    public let detail: String

    public init(_ kind: Kind, replica: ReplicaID?, _ detail: String) {
        self.kind = kind
        self.replica = replica
        self.detail = detail
    }

    public var description: String {
        let who = replica.map { "replica \($0.value): " } ?? ""
        return "\(kind.rawValue): \(who)\(detail)"
    }
}

/// The end-of-run checks over the ledgers themselves (stele-check is run beside them):
/// every acknowledged transaction is in every ledger exactly once, at the acknowledged height
/// in the acknowledged block; the ledgers are one chain (a shorter one is a prefix of the
/// longest), and, with `requireEqualHeights`, all the same length.
public enum AckChecker {
    public static func check(acks: [Acknowledgement], ledgers: [ReplicaID: [CertifiedBlock]],
                             requireEqualHeights: Bool) -> [ChaosViolation] {
        var violations: [ChaosViolation] = []
        violations += agreement(ledgers, requireEqualHeights: requireEqualHeights)
        for (id, blocks) in ledgers.sorted(by: { $0.key < $1.key }) {
            violations += exactlyOnce(acks, in: blocks, replica: id)
        }
        return violations
    }

    /// Every ledger is a prefix of the longest one (block hashes equal at every shared height).
    static func agreement(_ ledgers: [ReplicaID: [CertifiedBlock]], requireEqualHeights: Bool) -> [ChaosViolation] {
        // The longest ledger is the reference (the lowest id among equals).
        guard let (referenceID, reference) = ledgers.sorted(by: { $0.key < $1.key }).max(by: { $0.value.count < $1.value.count }) else { return [] }
        var violations: [ChaosViolation] = []
        for (id, blocks) in ledgers.sorted(by: { $0.key < $1.key }) where id != referenceID {
            if let index = zip(blocks, reference).enumerated().first(where: { $0.element.0.hash != $0.element.1.hash })?.offset {
                violations.append(ChaosViolation(.ledgersDisagree, replica: id,
                    "block \(blocks[index].height.value) is \(blocks[index].hash.hex.prefix(16)), replica \(referenceID.value) has \(reference[index].hash.hex.prefix(16))"))
            }
            if requireEqualHeights, blocks.count != reference.count {
                violations.append(ChaosViolation(.heightsDiffer, replica: id, "height \(blocks.count), replica \(referenceID.value) has \(reference.count)"))
            }
        }
        return violations
    }

    struct TransactionKey: Hashable {
        let client: PublicKey
        let timestamp: UInt64
    }

    static func exactlyOnce(_ acks: [Acknowledgement], in blocks: [CertifiedBlock], replica: ReplicaID) -> [ChaosViolation] {
        var heights: [TransactionKey: [UInt64]] = [:]
        for block in blocks {
            for request in block.batch {
                heights[TransactionKey(client: request.client, timestamp: request.timestamp), default: []].append(block.height.value)
            }
        }
        var violations: [ChaosViolation] = []
        for ack in acks {
            let found = heights[TransactionKey(client: ack.client, timestamp: ack.timestamp)] ?? []
            switch found.count {
            case 0:
                violations.append(ChaosViolation(.ackMissing, replica: replica, "\(ack) is not in the ledger (height \(blocks.count))"))
            case 1:
                let index = Int(found[0]) - 1
                let hash = blocks[index].hash.hex
                if found[0] != ack.height || hash != ack.blockHash {
                    violations.append(ChaosViolation(.ackMisplaced, replica: replica, "\(ack) is in block \(found[0]) (\(hash.prefix(16)))"))
                }
            default:
                violations.append(ChaosViolation(.ackDuplicated, replica: replica, "\(ack) appears \(found.count) times, at heights \(found)"))
            }
        }
        return violations
    }
}
