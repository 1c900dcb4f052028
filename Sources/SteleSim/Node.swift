import PBFT
import SteleCore

/// One simulated replica process: its consensus core (nil while crashed) and what its shell
/// keeps durably — the write-ahead log of PersistRecords and the committed ledger with its
/// stable checkpoint certificates. A twin is two nodes for one replica id.
public final class SimNode<Core: ConsensusCore> {
    public let index: Int
    public let replica: ReplicaID
    /// 0, or 1 for the second copy of a twin.
    public let instance: Int
    public let signer: ReplicaSigner
    /// nil for an honest replica.
    public let strategy: ByzantineStrategy?
    /// Nil while crashed: set only through `crashCore()` and `restart(with:)`, which keep
    /// `isUp` in step (the simulator mutates a running core in place).
    var core: Core?
    /// Whether the core is running. Stored, because testing `core != nil` copies the whole core.
    public private(set) var isUp = true
    public private(set) var wal: [PersistRecord] = []
    public private(set) var ledger: [CertifiedBlock] = []
    public private(set) var checkpoints: [CheckpointCertificate] = []
    private(set) var ledgerTip: Digest
    var restartAtTick: UInt64?
    /// Set by the fault scheduler: the next event this node handles crashes it part-way.
    var crashPending = false
    public internal(set) var crashCount = 0
    public internal(set) var tornWriteCount = 0
    /// Packets this replica put on the network.
    public internal(set) var sentCount = 0

    init(index: Int, replica: ReplicaID, instance: Int, signer: ReplicaSigner, strategy: ByzantineStrategy?, genesisHash: Digest, core: Core) {
        self.index = index
        self.replica = replica
        self.instance = instance
        self.signer = signer
        self.strategy = strategy
        self.ledgerTip = genesisHash
        self.core = core
    }

    public var isHonest: Bool { strategy == nil }

    func crashCore() {
        core = nil
        isUp = false
    }

    func restart(with core: Core) {
        self.core = core
        isUp = true
    }
    public var height: SequenceNumber { SequenceNumber(UInt64(ledger.count)) }

    func appendToWAL(_ records: some Sequence<PersistRecord>) { wal.append(contentsOf: records) }

    /// Appends a committed block if it is the next height and chains; otherwise says why not.
    func appendToLedger(_ block: CertifiedBlock) -> String? {
        guard block.height == height.next else {
            return "asked to commit height \(block.height.value) with the ledger at \(height.value)"
        }
        guard block.prevHash == ledgerTip else {
            return "block \(block.height.value) has prevHash \(block.prevHash), the ledger tip is \(ledgerTip)"
        }
        ledger.append(block)
        ledgerTip = block.hash
        return nil
    }

    func appendCheckpoint(_ certificate: CheckpointCertificate) { checkpoints.append(certificate) }

    /// What a restarted process recovers: the ledger replayed, and the whole WAL.
    func recoveryState(config: ClusterConfig) -> RecoveryState {
        var head = LedgerHead.genesis(config)
        for block in ledger { head.apply(block) }
        return RecoveryState(ledgerHead: head, records: wal)
    }

    /// The highest view the WAL proves this replica entered or moved to.
    var highestLoggedView: View? {
        var highest: View?
        for record in wal {
            if case .view(let view, _) = record { highest = max(highest ?? view, view) }
        }
        return highest
    }
}

/// The ledger a node serves state transfer from.
extension SimNode: CommittedLedger {
    public var headHeight: SequenceNumber { height }

    public func block(at height: SequenceNumber) -> CertifiedBlock {
        precondition(height.value >= 1 && height <= self.height, "block \(height.value) is not in the ledger")
        return ledger[Int(height.value - 1)]
    }

    /// The newest stable checkpoint certificate at or below `height`.
    public func latestCheckpoint(atOrBelow height: SequenceNumber) -> CheckpointCertificate? {
        checkpoints.filter { $0.sequence <= height }.max { $0.sequence < $1.sequence }
    }
}
