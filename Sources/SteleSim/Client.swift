import SteleCore
import SteleCrypto

/// A simulated client: signs requests with increasing timestamps, sends each to the primary it
/// believes in, retransmits to every replica on timeout, and accepts a result once f+1 distinct
/// replicas sent the same `Reply.Result`.
public final class SimClient {
    public struct Pending: Sendable {
        public let request: Request
        public let submittedTick: UInt64
        public var lastSentTick: UInt64
        public var retransmissionCount = 0
        /// Each replica's latest reply for this request.
        public var replies: [ReplicaID: Reply] = [:]
    }

    public struct Accepted: Sendable, Equatable {
        public let request: Request
        public let result: Reply.Result
        public let submittedTick: UInt64
        public let acceptedTick: UInt64
    }

    /// Where a request goes.
    public enum Send {
        case primary(Request, ReplicaID)
        case everyone(Request)
    }

    public let index: Int
    public let signer: ClientSigner
    let config: ClusterConfig
    let retransmitTicks: UInt64
    let pendingMax: Int
    public private(set) var nextTimestamp: UInt64 = 1
    public private(set) var believedView: View = 0
    public private(set) var pending: [UInt64: Pending] = [:]
    public private(set) var accepted: [UInt64: Accepted] = [:]
    public private(set) var submittedCount = 0

    public init(index: Int, signer: ClientSigner, config: ClusterConfig, retransmitTicks: UInt64, pendingMax: Int) {
        precondition(retransmitTicks >= 1, "retransmit after at least one tick")
        precondition(pendingMax >= 1, "a client keeps at least one request in flight")
        self.index = index
        self.signer = signer
        self.config = config
        self.retransmitTicks = retransmitTicks
        self.pendingMax = pendingMax
    }

    public var canSubmit: Bool { pending.count < pendingMax }
    public var acceptedCount: Int { accepted.count }

    /// Signs and submits the next request; it goes to the primary of the believed view.
    public func submit(payload: [UInt8], now: UInt64) -> Send {
        precondition(canSubmit, "too many requests in flight")
        let request = signer.request(timestamp: nextTimestamp, payload: payload)
        nextTimestamp += 1
        submittedCount += 1
        pending[request.timestamp] = Pending(request: request, submittedTick: now, lastSentTick: now)
        return .primary(request, config.primary(of: believedView))
    }

    /// Retransmissions due at `now`, oldest request first.
    public func retransmissions(now: UInt64) -> [Send] {
        var sends = [Send]()
        for timestamp in pending.keys.sorted() {
            guard var entry = pending[timestamp], now >= entry.lastSentTick + retransmitTicks else { continue }
            entry.lastSentTick = now
            entry.retransmissionCount += 1
            pending[timestamp] = entry
            sends.append(.everyone(entry.request))
        }
        return sends
    }

    /// Takes one authenticated reply (the shell checked its signature and that it came from
    /// `reply.replica`). Returns the acceptances this reply completed (f+1 matching results),
    /// in the order of its timestamps.
    public func receive(_ reply: Reply, now: UInt64) -> [Accepted] {
        guard reply.client == signer.publicKey, config.isMember(reply.replica) else { return [] }
        var acceptances = [Accepted]()
        for timestamp in reply.timestamps {
            guard var entry = pending[timestamp] else { continue }
            entry.replies[reply.replica] = reply
            pending[timestamp] = entry
            let matching = entry.replies.values.filter { $0.result == reply.result }
            guard matching.count >= config.weakQuorum else { continue }
            // The highest view that f+1 matching replies vouch for (so one liar cannot steer us).
            let views = matching.map(\.view).sorted(by: >)
            believedView = max(believedView, views[config.weakQuorum - 1])
            pending[timestamp] = nil
            let acceptance = Accepted(request: entry.request, result: reply.result, submittedTick: entry.submittedTick, acceptedTick: now)
            accepted[timestamp] = acceptance
            acceptances.append(acceptance)
        }
        return acceptances
    }
}
