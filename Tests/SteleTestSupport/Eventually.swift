/// Polls `condition` every `interval` until it holds or `timeout` passes, then returns whether
/// it held; a last check runs at the deadline. Every wait in a test is one of these: no fixed
/// sleep stands in for a condition, and no wait is unbounded.
public func eventually(
    timeout: Duration = .seconds(60), interval: Duration = .milliseconds(50), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    precondition(timeout >= .zero && interval > .zero, "eventually needs a timeout >= 0 and an interval > 0")
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline, !Task.isCancelled {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}
