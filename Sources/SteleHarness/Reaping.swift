import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Waits, bounded, until a child process that was sent SIGKILL is gone, and reaps it if
/// Foundation did not. `Process.waitUntilExit()` can wait for ever: a replica that crashed
/// while stopping was held by Swift's backtracer, and after the SIGKILL Foundation on Linux
/// spun in `waitUntilExit` with the child a zombie it never reaped, hanging a CI run. Returns
/// whether the process was seen to end within `timeout`.
@discardableResult
public func waitForExit(_ process: Process, timeout: Duration = .seconds(30)) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if !process.isRunning { return true }
        var status: Int32 = 0
        let reaped = waitpid(process.processIdentifier, &status, WNOHANG)
        // Ours to reap, or already reaped by Foundation (no such child any more).
        if reaped == process.processIdentifier || (reaped < 0 && errno == ECHILD) { return true }
        usleep(10_000)
    }
    return false
}
