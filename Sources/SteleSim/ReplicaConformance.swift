import PBFT

// The real consensus core is what the simulator drives by default.
extension Replica: SimulatedReplica {}
