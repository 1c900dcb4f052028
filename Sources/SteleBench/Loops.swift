import SteleNode
import Synchronization

/// The closed loop of one client: `chains` requests in flight, each chain sending its next
/// request from the completion of the one before (`SteleClient.submit(_:timeout:completion:)`),
/// so no task waits per request.
public final class ClosedLoop: Sendable {
    private struct State {
        var tally = LoadTally()
        var running = 0
        var stopped = false
        var done: CheckedContinuation<Void, Never>?
    }

    let client: SteleClient
    let payload: [UInt8]
    let window: MeasuredWindow
    private let state = Mutex(State())

    public init(client: SteleClient, payload: [UInt8], window: MeasuredWindow) {
        (self.client, self.payload, self.window) = (client, payload, window)
    }

    /// Runs until every chain has seen `stopAt` pass, or the calling task is cancelled (then at
    /// once, leaving requests in flight uncounted).
    public func run(chains: Int) async -> LoadTally {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                let startNow = state.withLock { state -> Bool in
                    if Task.isCancelled || chains == 0 { return false }
                    state.running = chains
                    state.done = done
                    return true
                }
                guard startNow else { return done.resume() }
                for _ in 0..<chains { next() }
            }
        } onCancel: {
            let done = state.withLock { state in
                state.stopped = true
                defer { state.done = nil }
                return state.done
            }
            done?.resume()
        }
        return state.withLock { $0.tally }
    }

    private func next() {
        guard ContinuousClock.now < window.stopAt, !state.withLock({ $0.stopped }) else { return chainEnded() }
        let sent = ContinuousClock.now
        client.submit(payload, timeout: .seconds(20)) { result in
            let now = ContinuousClock.now
            self.state.withLock { $0.tally.record(result, sent: sent, now: now, window: self.window) }
            // A payload refused before sending fails at once, inside `submit`: going on would
            // recurse without end. A cancelled request means the client is closing.
            if case .failure(let error as ClientError) = result, case .payloadTooLarge = error.code {
                return self.chainEnded()
            }
            if case .failure(is CancellationError) = result { return self.chainEnded() }
            self.next()
        }
    }

    private func chainEnded() {
        let done = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.running -= 1
            guard state.running == 0 else { return nil }
            defer { state.done = nil }
            return state.done
        }
        done?.resume()
    }
}

/// The open loop of one client: `workers` tasks, each sending a request every
/// `perRequestInterval` (late if its previous one is still outstanding), their phases spread
/// evenly over the interval across all clients' workers (in phase they would arrive as one
/// burst per interval). One pacer per client sending what is due through completion handlers
/// measured worse at a quarter of peak (docs/performance-log.md, round 8).
public struct OpenLoop: Sendable {
    public var client: SteleClient
    public var payload: [UInt8]
    public var window: MeasuredWindow
    public var perRequestInterval: Duration
    /// This client's index among `clients`, each running `workers` workers.
    public var clientIndex: Int
    public var clients: Int
    public var workers: Int

    public init(client: SteleClient, payload: [UInt8], window: MeasuredWindow, perRequestInterval: Duration,
                clientIndex: Int, clients: Int, workers: Int) {
        (self.client, self.payload, self.window) = (client, payload, window)
        self.perRequestInterval = perRequestInterval
        (self.clientIndex, self.clients, self.workers) = (clientIndex, clients, workers)
    }

    public func run() async -> LoadTally {
        await withTaskGroup(of: LoadTally.self) { group in
            for workerIndex in 0..<workers {
                group.addTask { await worker(clientIndex * workers + workerIndex) }
            }
            var total = LoadTally()
            for await tally in group { total.add(tally) }
            return total
        }
    }

    private func worker(_ worker: Int) async -> LoadTally {
        var tally = LoadTally()
        let phase = Double(worker) / Double(clients * workers)
        var nextSend = ContinuousClock.now + perRequestInterval * phase
        while ContinuousClock.now < window.stopAt {
            // A send due after the run would only stretch it (and its CPU figures).
            if nextSend >= window.stopAt { break }
            let due = nextSend
            if due > ContinuousClock.now { try? await Task.sleep(until: due) }
            nextSend += perRequestInterval
            let result: Result<SubmitResult, any Error>
            do {
                result = .success(try await client.submit(payload, timeout: .seconds(20)))
            } catch {
                result = .failure(error)
            }
            // Counted from when the request was due, not from when it went out: a late timer
            // or a previous request still outstanding delays the send, and that wait belongs to
            // the latency an open-loop user sees.
            tally.record(result, sent: due, now: .now, window: window, latencyFrom: due)
        }
        return tally
    }
}
