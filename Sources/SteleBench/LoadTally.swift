import Histogram
import SteleNode

/// The window a load counts in: from `measureFrom` (the warm-up's end) to `stopAt`.
public struct MeasuredWindow: Sendable {
    public var measureFrom: ContinuousClock.Instant
    public var stopAt: ContinuousClock.Instant

    public init(measureFrom: ContinuousClock.Instant, stopAt: ContinuousClock.Instant) {
        (self.measureFrom, self.stopAt) = (measureFrom, stopAt)
    }
}

/// What one client's load counted: requests sent after the warm-up that were acknowledged by
/// `stopAt` (with their latency) or failed.
public struct LoadTally: Sendable {
    public var acknowledged = 0
    public var failed = 0
    /// Latencies in microseconds, up to two minutes.
    public var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)

    public init() {}

    public mutating func add(_ other: LoadTally) {
        acknowledged += other.acknowledged
        failed += other.failed
        histogram.add(other.histogram)
    }

    /// `latencyFrom`: the open loop's due time; without it the latency is the client's, from
    /// the submit call to the accepted result.
    public mutating func record(_ result: Result<SubmitResult, any Error>, sent: ContinuousClock.Instant,
                                now: ContinuousClock.Instant, window: MeasuredWindow,
                                latencyFrom due: ContinuousClock.Instant? = nil) {
        guard sent >= window.measureFrom else { return }
        switch result {
        case .success(let result):
            guard now <= window.stopAt else { return }
            acknowledged += 1
            let fromDue = due.map { UInt64(max(0, $0.duration(to: now).nanoseconds) / 1000) }
            _ = histogram.record(fromDue ?? result.latencyMicroseconds)
        case .failure:
            failed += 1
        }
    }
}
