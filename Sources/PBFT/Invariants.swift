import SteleCore

/// A structural invariant of a replica's state that `Replica.checkInvariants()` found broken:
/// a bug in the core, never the fault of a peer (what peers send is checked before it is
/// stored). The simulator checks after every event; debug builds assert it in `handle`.
public struct CoreInvariantViolation: Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// A log slot outside h < s <= H.
        case logSlotOutsideWatermarks = "log-slot-outside-watermarks"
        /// A log slot of a view other than the current one.
        case logSlotOfOtherView = "log-slot-of-other-view"
        /// A committed-local batch at or below the last executed sequence (it should have
        /// executed and left `committed`).
        case committedAtOrBelowExecuted = "committed-at-or-below-executed"
        /// An in-flight request whose sequence has no accepted PRE-PREPARE carrying it.
        case inFlightWithoutLogSlot = "in-flight-without-log-slot"
        /// An executed digest outside (h, lastExecuted].
        case executedDigestOutsideWindow = "executed-digest-outside-window"
        /// A prepared certificate at or below h (garbage that a checkpoint should have freed).
        case preparedCertificateAtOrBelowLowWatermark = "prepared-certificate-at-or-below-low-watermark"
        /// A request timer running on the primary, or while changing views.
        case requestTimerWhereNoneRuns = "request-timer-where-none-runs"
    }

    public let code: Code
    public let sequence: SequenceNumber?
    public let detail: String

    public init(_ code: Code, sequence: SequenceNumber? = nil, detail: String) {
        self.code = code
        self.sequence = sequence
        self.detail = detail
    }

    public var description: String {
        sequence.map { "\(code.rawValue) at \($0): \(detail)" } ?? "\(code.rawValue): \(detail)"
    }
}

extension Replica {
    /// Every structural invariant of this replica's state that does not hold (empty if all do).
    /// Linear in the log, the in-flight requests and the committed and executed windows, all
    /// bounded by the watermark window.
    public func checkInvariants() -> [CoreInvariantViolation] {
        var broken = [CoreInvariantViolation]()
        checkLog(into: &broken)
        checkInFlight(into: &broken)
        checkWindows(into: &broken)
        if requestDeadline != nil, isPrimary || isInViewChange {
            let role = isPrimary ? "the primary of \(view)" : "changing views to \(view)"
            broken.append(CoreInvariantViolation(.requestTimerWhereNoneRuns, detail: "a request timer runs on \(role)"))
        }
        return broken
    }

    private func checkLog(into broken: inout [CoreInvariantViolation]) {
        for (sequence, slot) in log {
            if sequence <= stableCheckpoint || sequence > highWatermark {
                broken.append(CoreInvariantViolation(
                    .logSlotOutsideWatermarks, sequence: sequence,
                    detail: "h = \(stableCheckpoint.value), H = \(highWatermark.value)"))
            }
            if slot.view != view {
                broken.append(CoreInvariantViolation(
                    .logSlotOfOtherView, sequence: sequence, detail: "slot of \(slot.view), replica in \(view)"))
            }
        }
    }

    private func checkInFlight(into broken: inout [CoreInvariantViolation]) {
        for (key, sequence) in inFlight {
            let carried = log[sequence]?.prePrepare?.batch.contains { RequestKey($0) == key } ?? false
            guard !carried else { continue }
            broken.append(CoreInvariantViolation(
                .inFlightWithoutLogSlot, sequence: sequence,
                detail: "request t\(key.timestamp) is in flight there without an accepted PRE-PREPARE carrying it"))
        }
    }

    private func checkWindows(into broken: inout [CoreInvariantViolation]) {
        for sequence in committed.keys where sequence <= lastExecuted {
            broken.append(CoreInvariantViolation(
                .committedAtOrBelowExecuted, sequence: sequence, detail: "last executed \(lastExecuted.value)"))
        }
        for sequence in executedDigests.keys where sequence <= stableCheckpoint || sequence > lastExecuted {
            broken.append(CoreInvariantViolation(
                .executedDigestOutsideWindow, sequence: sequence,
                detail: "h = \(stableCheckpoint.value), last executed \(lastExecuted.value)"))
        }
        for sequence in preparedCertificates.keys where sequence <= stableCheckpoint {
            broken.append(CoreInvariantViolation(
                .preparedCertificateAtOrBelowLowWatermark, sequence: sequence, detail: "h = \(stableCheckpoint.value)"))
        }
    }
}
