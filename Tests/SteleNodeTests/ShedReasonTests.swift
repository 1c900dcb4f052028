import Testing
@testable import SteleNode

/// The shed reasons are label values of `stele_requests_shed_total{reason}` and keys of the
/// status's `shed` field: dashboards and docs/operations.md name them, so they must not change.
@Suite("shed reasons")
struct ShedReasonTests {
    @Test("the raw values are the metric's label values and the status's keys")
    func labels() {
        #expect(ShedReason.allCases.map(\.rawValue) == ["rate", "duplicate", "signature", "connection"])
    }

    @Test("the tally counts by label value, and is nil before anything was shed")
    func tally() {
        let tally = ShedTally(metrics: NodeMetrics())
        #expect(tally.byLabel == nil)
        tally.record(.duplicate)
        tally.record(.duplicate)
        tally.record(.connection)
        #expect(tally.byLabel == ["duplicate": 2, "connection": 1])
    }
}
