import Testing
import SteleCore
@testable import PBFT

/// Exactly-once state per client (§4.1: the last reply is cached and re-sent; here a window of
/// replies, since clients pipeline).
@Suite("Exactly-once window per client")
struct ClientRecordTests {
    func result(_ height: UInt64) -> Reply.Result { Reply.Result(height: SequenceNumber(height), blockHash: Digest.of([UInt8(truncatingIfNeeded: height)])) }

    @Test("sparse, out-of-order timestamps (wall-clock microseconds) never make a pending request look old")
    func sparseTimestampsStayNew() {
        var record = ClientRecord()
        // The client sent t = 1_000_000 ... in steps of 5,000 µs; the newest executed first.
        let timestamps = (0..<200).map { UInt64(1_000_000 + $0 * 5_000) }
        for (index, timestamp) in timestamps.dropFirst(10).reversed().enumerated() {
            record.record(timestamp: timestamp, result: result(UInt64(index + 1)))
        }
        for pending in timestamps.prefix(10) {
            #expect(record.status(of: pending) == .new, "t=\(pending) was never executed")
        }
        #expect(record.status(of: timestamps[50]) != .new)
    }

    @Test("an executed request answers with its cached result; it is never new again")
    func cachedResult() {
        var record = ClientRecord()
        record.record(timestamp: 7, result: result(3))
        #expect(record.status(of: 7) == .executed(result(3)))
        #expect(record.status(of: 8) == .new)
        #expect(record.status(of: 6) == .new)
    }

    @Test("past twice the window, the oldest results are forgotten and everything at or below them is refused")
    func forgetting() {
        var record = ClientRecord()
        let count = 2 * ClientRecord.windowSize + 1
        for timestamp in 1...UInt64(count) { record.record(timestamp: timestamp * 10, result: result(timestamp)) }
        #expect(record.recent.count == ClientRecord.windowSize)
        let forgottenLargest = UInt64(count - ClientRecord.windowSize) * 10
        #expect(record.floor == forgottenLargest)
        #expect(record.status(of: forgottenLargest) == .tooOld)
        #expect(record.status(of: 5) == .tooOld)
        #expect(record.status(of: forgottenLargest + 10) == .executed(result(UInt64(count - ClientRecord.windowSize + 1))))
        #expect(record.status(of: forgottenLargest + 5) == .new)
    }
}
