import Foundation
import SteleTestSupport
import Synchronization
import Testing

/// A flag one task sets and others poll.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

@Suite("offCooperativePool: long synchronous work leaves Swift's cooperative threads free")
struct OffPoolTests {
    @Test("as many blocked bodies as there are cores do not stop a task on the cooperative pool")
    func blockedBodiesLeaveThePoolFree() async throws {
        // The cooperative pool has one thread per core. If the bodies ran on it, they would
        // hold every thread, the task that releases them could never run, and each body would
        // give up at its deadline.
        let bodies = max(2, ProcessInfo.processInfo.activeProcessorCount)
        let released = Flag()
        let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<bodies {
                group.addTask {
                    await offCooperativePool {
                        let deadline = ContinuousClock.now + .seconds(60)
                        while !released.isSet, ContinuousClock.now < deadline { usleep(1_000) }
                        return released.isSet
                    }
                }
            }
            group.addTask {
                released.set()
                return true
            }
            var outcomes: [Bool] = []
            for try await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        #expect(outcomes.count == bodies + 1)
        #expect(outcomes.allSatisfy { $0 }, "a body timed out: it held a cooperative thread")
    }

    @Test("the body's value and error come back to the caller")
    func valuesAndErrorsComeBack() async throws {
        struct Probe: Error, Equatable {}
        #expect(await offCooperativePool { 6 * 7 } == 42)
        await #expect(throws: Probe.self) { try await offCooperativePool { throw Probe() } }
    }
}
