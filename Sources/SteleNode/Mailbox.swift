import Synchronization

/// A bounded multi-producer, single-consumer queue. Producers never wait: at `capacity` items,
/// or past `byteBudget` by the `weigh` estimate, the oldest half is dropped (the protocol
/// retransmits; fresher messages matter more). The consumer takes everything queued at once,
/// which is how the node group-commits.
public final class Mailbox<Item: Sendable>: Sendable {
    private struct State {
        var items: [Item] = []
        /// `weigh` of each item, in step with `items` (empty when nothing is weighed).
        var weights: [Int] = []
        var bytes = 0
        var waiter: CheckedContinuation<Void, Never>?
        var closed = false
        var droppedCount = 0
        /// While above zero, posts do not wake the consumer (`holdingWakeUps`).
        var holds = 0
        /// A consumer that is called instead of awaited (`setWakeHandler`), and whether the
        /// next post should call it (it is re-armed by `takeAllNow`).
        var wakeHandler: (@Sendable () -> Void)?
        var armed = true

        /// Everything queued, leaving the queue empty.
        mutating func takeItems() -> [Item] {
            defer {
                items.removeAll(keepingCapacity: true)
                weights.removeAll(keepingCapacity: true)
                bytes = 0
            }
            return items
        }

        /// The wake handler if it is armed (disarming it), else nil.
        mutating func takeWakeHandler() -> (@Sendable () -> Void)? {
            guard armed, let wakeHandler else { return nil }
            armed = false
            return wakeHandler
        }
    }

    private let state = Mutex(State())
    public let capacity: Int
    public let byteBudget: Int
    private let weigh: (@Sendable (Item) -> Int)?

    /// `weigh` estimates an item's bytes for `byteBudget`; without it only items are counted.
    public init(capacity: Int, byteBudget: Int = .max, weigh: (@Sendable (Item) -> Int)? = nil) {
        precondition(capacity > 0 && byteBudget > 0)
        self.capacity = capacity
        self.byteBudget = byteBudget
        self.weigh = weigh
    }

    /// Queues an item; returns false if the mailbox is closed.
    @discardableResult
    public func post(_ item: Item) -> Bool {
        let weight = weigh?(item) ?? 0
        let (queued, waiter, handler): (Bool, CheckedContinuation<Void, Never>?, (@Sendable () -> Void)?) = state.withLock { state in
            guard !state.closed else { return (false, nil, nil) }
            if state.items.count >= capacity {
                // Drop the oldest half at once: amortised O(1) per post under overload.
                drop(max(1, capacity / 2), from: &state)
            }
            while !state.items.isEmpty, state.bytes > byteBudget - weight {
                drop(max(1, state.items.count / 2), from: &state)
            }
            state.items.append(item)
            if weigh != nil {
                state.weights.append(weight)
                state.bytes += weight
            }
            guard state.holds == 0 else { return (true, nil, nil) }
            defer { state.waiter = nil }
            return (true, state.waiter, state.takeWakeHandler())
        }
        waiter?.resume()
        handler?()
        return queued
    }

    /// Runs `body` with the consumers of `mailboxes` not woken by its posts, then wakes each
    /// once if anything was posted to it: items posted in a burst are taken together (one
    /// socket write instead of one per item, where the consumer would wake at the first and
    /// race the rest). Calls may nest and overlap; wake-ups resume when the last one ends.
    public static func holdingWakeUps<T>(of mailboxes: some Collection<Mailbox>, _ body: () throws -> T) rethrows -> T {
        for mailbox in mailboxes { mailbox.state.withLock { $0.holds += 1 } }
        defer { for mailbox in mailboxes { mailbox.releaseHold() } }
        return try body()
    }

    private func releaseHold() {
        let (waiter, handler) = state.withLock { state -> (CheckedContinuation<Void, Never>?, (@Sendable () -> Void)?) in
            state.holds -= 1
            guard state.holds == 0, !state.items.isEmpty || state.closed else { return (nil, nil) }
            defer { state.waiter = nil }
            return (state.waiter, state.items.isEmpty ? nil : state.takeWakeHandler())
        }
        waiter?.resume()
        handler?()
    }

    /// Makes `handler` the consumer: it is called (on the posting thread, outside the lock)
    /// when items arrive, once until `takeAllNow` takes them, and at once if items are already
    /// queued. It must not block; typically it schedules `takeAllNow` on an event loop. This
    /// saves the hand-off to a consumer task for every burst. Nil restores `takeAll`.
    public func setWakeHandler(_ handler: (@Sendable () -> Void)?) {
        let callNow = state.withLock { state -> (@Sendable () -> Void)? in
            state.wakeHandler = handler
            state.armed = true
            return state.items.isEmpty || state.holds > 0 ? nil : state.takeWakeHandler()
        }
        callNow?()
    }

    /// Takes everything queued without waiting (possibly nothing), and re-arms the wake handler.
    public func takeAllNow() -> [Item] {
        state.withLock { state in
            state.armed = true
            return state.takeItems()
        }
    }

    private func drop(_ count: Int, from state: inout State) {
        state.items.removeFirst(count)
        if weigh != nil {
            state.bytes -= state.weights.prefix(count).reduce(0, +)
            state.weights.removeFirst(count)
        }
        state.droppedCount += count
    }

    /// Waits until at least one item is queued (or the mailbox closes), then takes them all.
    /// Returns an empty array only once closed or when the waiting task is cancelled.
    public func takeAll() async -> [Item] {
        while true {
            let taken: [Item]? = state.withLock { state in
                if !state.items.isEmpty { return state.takeItems() }
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

    /// How many items are queued.
    public var count: Int { state.withLock { $0.items.count } }

    /// Whether the consumer is waiting in `takeAll` (for tests).
    var hasWaiter: Bool { state.withLock { $0.waiter != nil } }
}
