import Synchronization

/// A bounded multi-producer, single-consumer queue. Producers never wait: at `capacity` the
/// oldest half is dropped (the protocol retransmits; fresher messages matter more). The consumer takes everything queued at
/// once, which is how the node group-commits.
public final class Mailbox<Item: Sendable>: Sendable {
    private struct State {
        var items: [Item] = []
        var waiter: CheckedContinuation<Void, Never>?
        var closed = false
        var droppedCount = 0
    }

    private let state = Mutex(State())
    public let capacity: Int

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    /// Queues an item; returns false if the mailbox is closed.
    @discardableResult
    public func post(_ item: Item) -> Bool {
        let (queued, waiter): (Bool, CheckedContinuation<Void, Never>?) = state.withLock { state in
            guard !state.closed else { return (false, nil) }
            if state.items.count >= capacity {
                // Drop the oldest half at once: amortised O(1) per post under overload.
                let dropped = max(1, capacity / 2)
                state.items.removeFirst(dropped)
                state.droppedCount += dropped
            }
            state.items.append(item)
            defer { state.waiter = nil }
            return (true, state.waiter)
        }
        waiter?.resume()
        return queued
    }

    /// Waits until at least one item is queued (or the mailbox closes), then takes them all.
    /// Returns an empty array only once closed or when the waiting task is cancelled.
    public func takeAll() async -> [Item] {
        while true {
            let taken: [Item]? = state.withLock { state in
                if !state.items.isEmpty {
                    defer { state.items.removeAll(keepingCapacity: true) }
                    return state.items
                }
                return state.closed ? [] : nil
            }
            if let taken { return taken }
            if Task.isCancelled { return [] }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state -> Bool in
                        if !state.items.isEmpty || state.closed || Task.isCancelled { return true }
                        state.waiter = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                    defer { state.waiter = nil }
                    return state.waiter
                }
                waiter?.resume()
            }
        }
    }

    public func close() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.closed = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    public var droppedCount: Int { state.withLock { $0.droppedCount } }
}
