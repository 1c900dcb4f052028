import SteleCore

/// The client requests a replica knows of and has not executed, in arrival order, bounded.
///
/// Backups wait on them (view-change timer) and forward them to the primary; the primary
/// proposes them in order. `cursor` marks how far the primary has looked for proposals:
/// requests before it were proposed (or skipped as in flight) in this view. Removal is lazy:
/// `order` may hold keys that are gone; it is compacted once dead keys outnumber live ones.
struct RequestQueue: Sendable {
    let capacity: Int
    /// Encoded request bytes held at most: with 64 KiB payloads the count alone allowed 2 GiB.
    let bytesCapacity: Int
    /// Encoded bytes of the requests held.
    private(set) var bytes = 0
    private(set) var entries: [RequestKey: Request] = [:]
    private var order: [RequestKey] = []
    /// `orderBytes[i]`: the encoded size of the request `order[i]` named when it was queued.
    private var orderBytes: [Int] = []
    private var cursor = 0
    /// Every position of `order` before this one names a request that is gone: where the
    /// search for the oldest live request starts (a backup's view-change timer waits for it).
    private var head = 0
    /// The encoded bytes of the requests after the cursor (`orderBytes` from the cursor on),
    /// the same kind of upper bound as `unexaminedCount`.
    private(set) var unexaminedBytes = 0
    /// Requests a replica relayed (not received from their client), per relay at most
    /// `relayCapacity` of them and `relayBytesCapacity` bytes: a faulty replica relaying
    /// requests of keys it made up fills only its own quota, not the queue.
    let relayCapacity: Int
    let relayBytesCapacity: Int
    private var relays: [RequestKey: ReplicaID] = [:]
    private var relayedCounts: [ReplicaID: Int] = [:]
    private var relayedByteCounts: [ReplicaID: Int] = [:]

    init(capacity: Int, bytesCapacity: Int = .max, relayCapacity: Int = .max, relayBytesCapacity: Int = .max) {
        precondition(capacity >= 1 && bytesCapacity >= 1 && relayCapacity >= 1 && relayBytesCapacity >= 1)
        self.capacity = capacity
        self.bytesCapacity = bytesCapacity
        self.relayCapacity = relayCapacity
        self.relayBytesCapacity = relayBytesCapacity
    }

    /// Encoded bytes of the held requests that `relay` relayed.
    func relayedBytes(by relay: ReplicaID) -> Int { relayedByteCounts[relay] ?? 0 }
    func relayedCount(by relay: ReplicaID) -> Int { relayedCounts[relay] ?? 0 }

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }

    func contains(_ key: RequestKey) -> Bool { entries[key] != nil }

    /// Requests the primary has not looked at in this view (an upper bound: lazily removed
    /// ones still count until compaction). What the next batch can hold at most.
    var unexaminedCount: Int { order.count - cursor }

    /// Adds a request; false if it is already known or the queue is full (by count or bytes;
    /// an empty queue takes any one request).
    /// `relayedBy`: the replica that relayed it, charged to that relay's quota (a relayed
    /// request never goes alone past it, unlike a client's in an empty queue).
    @discardableResult
    mutating func insert(_ request: Request, relayedBy relay: ReplicaID? = nil) -> Bool {
        let key = RequestKey(request)
        let size = request.encodedByteCount
        guard entries[key] == nil, entries.count < capacity, entries.isEmpty || bytes + size <= bytesCapacity else { return false }
        if let relay {
            guard relayedCount(by: relay) < relayCapacity, relayedBytes(by: relay) + size <= relayBytesCapacity else { return false }
            relays[key] = relay
            relayedCounts[relay, default: 0] += 1
            relayedByteCounts[relay, default: 0] += size
        }
        entries[key] = request
        bytes += size
        order.append(key)
        orderBytes.append(size)
        unexaminedBytes += size
        return true
    }

    mutating func remove(_ key: RequestKey) {
        guard let removed = entries.removeValue(forKey: key) else { return }
        bytes -= removed.encodedByteCount
        if let relay = relays.removeValue(forKey: key) {
            relayedCounts[relay, default: 0] -= 1
            relayedByteCounts[relay, default: 0] -= removed.encodedByteCount
        }
        compactIfSparse()
    }

    /// The primary starts proposing from the oldest request again (a new view).
    mutating func rewind() {
        cursor = 0
        unexaminedBytes = orderBytes.reduce(0, +)
    }

    /// Requests after the cursor that `isProposable` accepts, in order: at most `countMax` of
    /// them and at most `bytesMax` encoded bytes, except that a first request larger than
    /// `bytesMax` goes alone (so no request is ever stuck). The cursor advances past every
    /// request looked at, and stops at the first one that no longer fits.
    mutating func takeForProposal(countMax: Int, bytesMax: Int = .max, isProposable: (Request) -> Bool) -> [Request] {
        var batch = [Request]()
        var batchBytes = 0
        let expected = max(0, min(countMax, order.count - cursor))
        var taken = Set<RequestKey>(minimumCapacity: expected)
        batch.reserveCapacity(expected)
        while cursor < order.count, batch.count < countMax {
            let key = order[cursor]
            guard let request = entries[key], !taken.contains(key), isProposable(request) else {
                advanceCursor()
                continue
            }
            let size = request.encodedByteCount
            if !batch.isEmpty, batchBytes + size > bytesMax { break }
            advanceCursor()
            taken.insert(key)
            batch.append(request)
            batchBytes += size
        }
        return batch
    }

    private mutating func advanceCursor() {
        unexaminedBytes -= orderBytes[cursor]
        cursor += 1
    }

    /// The oldest request still held (§4.4: the one a backup's timer waits for), or nil.
    mutating func oldestKey() -> RequestKey? {
        while head < order.count {
            let key = order[head]
            if entries[key] != nil { return key }
            head += 1
        }
        return nil
    }

    /// The oldest `countMax` live requests that `isIncluded` accepts (for forwarding).
    func oldest(_ countMax: Int, where isIncluded: (Request) -> Bool) -> [Request] {
        var out = [Request]()
        var seen = Set<RequestKey>()
        for key in order where out.count < countMax {
            guard let request = entries[key], seen.insert(key).inserted, isIncluded(request) else { continue }
            out.append(request)
        }
        return out
    }

    private mutating func compactIfSparse() {
        guard order.count > 64, order.count > 2 * entries.count else { return }
        var live = [RequestKey]()
        var liveBytes = [Int]()
        live.reserveCapacity(entries.count)
        liveBytes.reserveCapacity(entries.count)
        var seen = Set<RequestKey>()
        var liveBeforeCursor = 0
        for (index, key) in order.enumerated() where entries[key] != nil && seen.insert(key).inserted {
            if index < cursor { liveBeforeCursor += 1 }
            live.append(key)
            liveBytes.append(orderBytes[index])
        }
        order = live
        orderBytes = liveBytes
        cursor = liveBeforeCursor
        head = 0
        unexaminedBytes = orderBytes[cursor...].reduce(0, +)
    }
}
