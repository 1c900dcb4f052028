import PBFT
import SteleCore

/// What the simulator needs from a consensus core: the documented shape of `PBFT.Replica`
/// (see Sources/PBFT/API.swift). The simulator is generic over it so it can drive the real core
/// and, in tests, a deliberately broken one.
public protocol SimulatedReplica {
    init(config: ClusterConfig, signer: ReplicaSigner, recovery: RecoveryState?)
    mutating func handle(_ event: Event) -> [Action]
    var id: ReplicaID { get }
    var view: View { get }
    var isInViewChange: Bool { get }
    var lastExecuted: SequenceNumber { get }
    var stableCheckpoint: SequenceNumber { get }
}
