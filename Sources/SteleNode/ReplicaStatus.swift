import Synchronization

/// A replica's status, served to `stele cluster status`.
public struct ReplicaStatus: Codable, Sendable, Equatable {
    public var replica: UInt16
    public var view: UInt64
    public var primary: UInt16
    public var inViewChange: Bool
    public var height: UInt64
    public var headHash: String
    public var stableCheckpoint: UInt64
    public var connectedPeers: [UInt16]
    public var committedBlocks: UInt64
    public var viewChanges: UInt64
    /// The Byzantine mode this replica was started in (`stele replica --byzantine`), if any,
    /// and how often each kind of misbehaviour happened so far.
    public var byzantineMode: String? = nil
    public var byzantineMoves: [String: Int]? = nil
    /// Client requests and connections shed by the defences, by reason (`ShedReason`'s raw
    /// values: "rate", "duplicate", "signature", "connection").
    public var shed: [String: Int]? = nil
}

/// The replica's latest status: written by the core loop after each turn, read by clients'
/// status requests, with what the defences shed added on reading.
final class StatusBoard: Sendable {
    private let status: Mutex<ReplicaStatus>
    private let shed: ShedTally

    init(_ initial: ReplicaStatus, shed: ShedTally) {
        self.status = Mutex(initial)
        self.shed = shed
    }

    /// Replaces the status; `body` sees the previous one.
    func update(_ body: (inout ReplicaStatus) -> Void) {
        status.withLock { body(&$0) }
    }

    var current: ReplicaStatus {
        var current = status.withLock { $0 }
        current.shed = shed.byLabel
        return current
    }
}
