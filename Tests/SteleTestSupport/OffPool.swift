import Foundation

/// A task executor that runs each job on a thread of its own: neither on Swift's cooperative
/// pool (one thread per core, two on the CI machine) nor on libdispatch's worker pools, which
/// the replicas' fsync queues use and which long CPU-bound jobs would fill just the same. The
/// threads run at nice 10, so the cores go first to the threads that in-process clients and
/// replicas are waiting on, and the long computations take what is left.
final class ThreadPerJobExecutor: TaskExecutor, @unchecked Sendable {
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let thread = Thread {
            // On Linux the nice value is per thread: `who` 0 is the calling thread only.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
}

private let offPoolExecutor = ThreadPerJobExecutor()

/// Runs `body` (typically a long synchronous computation: a simulator slice, a fuzz loop) in
/// the calling task but on a thread outside Swift's cooperative pool.
///
/// In a parallel `swift test`, synchronous tests occupy cooperative threads for as long as they
/// run; with two of them, a few seconds of simulation stalls every in-process client and
/// replica of the end-to-end tests, whose deadlines then fire. The body stays in the same task,
/// so `#expect` inside it is attributed to its test as usual.
public func offCooperativePool<T>(_ body: () async throws -> T) async rethrows -> T {
    try await withTaskExecutorPreference(offPoolExecutor) { try await body() }
}
