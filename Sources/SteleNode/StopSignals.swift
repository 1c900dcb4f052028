import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGINT and SIGTERM, caught rather than fatal: from `init` until `cancel()`, each one that
/// arrives calls `handler` (on a global queue) with its number. The one place a Stele process
/// stops on a signal: `stele replica`, and the launcher of replica processes behind
/// `stele cluster start` and `stele bench`.
///
/// The signals' action is set to SIG_IGN first, so that one arriving while the sources are set
/// up cannot end the process, and it stays so after `cancel()`: a process that has begun to stop
/// on a signal is not ended half-way by a second one. A child started after `init` inherits the
/// ignored disposition. Keep a reference: the sources end with it.
public final class StopSignals: @unchecked Sendable {
    public static let numbers: [Int32] = [SIGINT, SIGTERM]

    // Dispatch sources are thread-safe; they are only created here and cancelled.
    private let sources: [any DispatchSourceSignal]

    public init(_ handler: @escaping @Sendable (Int32) -> Void) {
        for number in Self.numbers { signal(number, SIG_IGN) }
        sources = Self.numbers.map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler(number) }
            source.resume()
            return source
        }
    }

    public func cancel() {
        sources.forEach { $0.cancel() }
    }

    deinit { cancel() }

    /// Returns the first stop signal to arrive, or nil once `stopWaiting()` holds (polled every
    /// `interval`) or the calling task is cancelled.
    public static func next(
        interval: Duration = .milliseconds(200), unless stopWaiting: @escaping @Sendable () -> Bool = { false }
    ) async -> Int32? {
        let stream = AsyncStream<Int32?> { continuation in
            let signals = StopSignals { continuation.yield($0) }
            let watcher = Task {
                while !Task.isCancelled, !stopWaiting() { try? await Task.sleep(for: interval) }
                continuation.yield(nil)
            }
            continuation.onTermination = { _ in
                signals.cancel()
                watcher.cancel()
            }
        }
        for await number in stream { return number }
        return nil
    }
}
