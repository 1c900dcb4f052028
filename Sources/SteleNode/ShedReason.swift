import Synchronization

/// Why a defence shed a client request or a connection. The raw values are the label values of
/// `stele_requests_shed_total{reason}` and the keys of the status's `shed` field; operators'
/// dashboards and docs/operations.md name them, so they do not change.
enum ShedReason: String, CaseIterable, Sendable {
    /// Over the connection's request rate (`RequestGate`'s token bucket).
    case rate
    /// A retransmission of a verified request that the core saw moments ago.
    case duplicate
    /// A client request whose signature does not verify.
    case signature
    /// A connection closed or refused: the handshake backlog is full, a newer connection came
    /// from the same replica, or a client sent too many bad signatures.
    case connection
}

/// What the defences shed, by reason: counted for the status and in the metrics.
final class ShedTally: Sendable {
    private let counts = Mutex<[ShedReason: Int]>([:])
    private let metrics: NodeMetrics

    init(metrics: NodeMetrics) { self.metrics = metrics }

    func record(_ reason: ShedReason) {
        counts.withLock { $0[reason, default: 0] += 1 }
        switch reason {
        case .rate: metrics.requestsRateLimited.increment()
        case .duplicate: metrics.requestsDuplicate.increment()
        case .signature: metrics.requestsBadSignature.increment()
        case .connection: metrics.connectionsShed.increment()
        }
    }

    /// The counts by label value, or nil before anything was shed (the status's `shed` field).
    var byLabel: [String: Int]? {
        let counts = counts.withLock { $0 }
        guard !counts.isEmpty else { return nil }
        return Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) })
    }
}
