import SteleCore
import SteleNode
import Testing
import SteleBench

/// How `stele bench` counts a result: which results count, and from when their latency runs.
@Suite struct LoadTallyTests {
    let now = ContinuousClock.now

    /// An accepted result whose client-side latency (submit call to result) was 1 µs.
    let accepted: Result<SubmitResult, any Error> = .success(
        SubmitResult(timestamp: 1, height: 1, blockDigest: Digest(bytes: [UInt8](repeating: 7, count: 32))!, latencyMicroseconds: 1))

    func window(_ measureFrom: ContinuousClock.Instant, _ stopAt: ContinuousClock.Instant) -> MeasuredWindow {
        MeasuredWindow(measureFrom: measureFrom, stopAt: stopAt)
    }

    @Test func openLoopLatencyRunsFromTheDueTimeNotFromTheSend() {
        // Due 40 ms ago: a late timer or an outstanding predecessor delayed the send, and the
        // client itself took 1 µs. The wait is the open-loop user's latency.
        let due = now - .milliseconds(40)
        var tally = LoadTally()
        tally.record(accepted, sent: due, now: now, window: window(due - .seconds(1), now + .seconds(1)),
                     latencyFrom: due)
        #expect(tally.acknowledged == 1)
        #expect((39_900...40_100).contains(tally.histogram.max))
    }

    @Test func closedLoopLatencyIsTheClients() {
        var tally = LoadTally()
        tally.record(accepted, sent: now - .milliseconds(40), now: now,
                     window: window(now - .seconds(1), now + .seconds(1)))
        #expect(tally.acknowledged == 1)
        #expect(tally.histogram.max == 1)
    }

    @Test func resultsOutsideTheMeasuredWindowAreNotCounted() {
        var tally = LoadTally()
        // Due during the warm-up.
        tally.record(accepted, sent: now - .seconds(2), now: now, window: window(now - .seconds(1), now + .seconds(1)),
                     latencyFrom: now - .seconds(2))
        // Accepted after the run ended.
        tally.record(accepted, sent: now - .seconds(1), now: now,
                     window: window(now - .seconds(2), now - .milliseconds(1)), latencyFrom: now - .seconds(1))
        #expect(tally.acknowledged == 0)
        #expect(tally.histogram.totalCount == 0)
        // A failure inside the window counts as failed.
        tally.record(.failure(CancellationError()), sent: now, now: now,
                     window: window(now - .seconds(1), now + .seconds(1)), latencyFrom: now)
        #expect(tally.failed == 1)
    }
}
