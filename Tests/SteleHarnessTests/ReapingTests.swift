import Foundation
import Testing
import SteleHarness

@Suite("Reaping killed children")
struct ReapingTests {
    func sleeper() throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sleep")
        process.arguments = ["60"]
        try process.run()
        return process
    }

    @Test("a child that is still running is waited for no longer than the timeout; once killed it is seen to end")
    func boundedWait() throws {
        let process = try sleeper()
        let start = ContinuousClock.now
        #expect(!waitForExit(process, timeout: .milliseconds(200)), "a live child is not reported gone")
        #expect(start.duration(to: .now) < .seconds(30), "the wait is bounded")
        kill(process.processIdentifier, SIGKILL)
        #expect(waitForExit(process, timeout: .seconds(30)), "the killed child is seen to end")
        // Reaped, not a zombie: the kernel no longer knows the PID.
        #expect(kill(process.processIdentifier, 0) != 0)
    }
}
