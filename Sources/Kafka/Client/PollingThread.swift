import CRdKafka
import Foundation
import Logging
import Synchronization

/// A dedicated OS thread that repeatedly runs a polling step (which may block in librdkafka for
/// up to its own timeout) until stopped. Keeps librdkafka's blocking polls off Swift's
/// cooperative thread pool.
final class PollingThread: Sendable {
    private final class Flags: Sendable {
        let stopRequested = Atomic<Bool>(false)
        let finished = DispatchSemaphore(value: 0)
        /// The thread's `pthread_self`, set when it starts.
        let thread = Mutex<pthread_t?>(nil)
    }

    private let flags = Flags()

    /// `step` is called until `stop()`; `onExit` runs once on the thread after the last step.
    init(name: String, step: @escaping @Sendable () -> Void, onExit: @escaping @Sendable () -> Void = {}) {
        let flags = self.flags
        let thread = Thread {
            nameCurrentThread(name)
            flags.thread.withLock { $0 = pthread_self() }
            while !flags.stopRequested.load(ordering: .acquiring) {
                step()
            }
            onExit()
            flags.finished.signal()
        }
        thread.start()
    }

    var isStopping: Bool { flags.stopRequested.load(ordering: .acquiring) }

    func requestStop() { flags.stopRequested.store(true, ordering: .releasing) }

    /// Requests a stop and waits, blocking the caller, until the thread has exited, however long
    /// that takes: what follows is the handle's destroy, which must not run under a step (the
    /// step would use freed memory). For a teardown on a blocking thread. A wait past `slow` is
    /// logged once. The polling thread itself does not wait for itself.
    func stopAndWait(logger: Logger, slow: Duration = KafkaTeardowns.slow) {
        requestStop()
        let current = pthread_self()
        if let thread = flags.thread.withLock({ $0 }), pthread_equal(thread, current) != 0 { return }
        if flags.finished.wait(timeout: .now() + .milliseconds(Int(slow.milliseconds))) == .timedOut {
            logger.warning("kafka polling thread still in a step; its handle's teardown waits for it", metadata: [
                "kafka.waited_ms": "\(slow.milliseconds)",
            ])
            flags.finished.wait()
        }
        flags.finished.signal()  // later waiters see it finished too
    }

    /// `stopAndWait(logger:slow:)` off the cooperative pool.
    func stop(logger: Logger) async {
        await blockingCall { [self] in stopAndWait(logger: logger) }
    }

    /// Requests a stop and waits (off the cooperative pool) until the thread has exited.
    /// Returns false when it did not exit within `timeout`.
    @discardableResult
    func stop(timeout: Duration) async -> Bool {
        requestStop()
        let flags = self.flags
        let millis = Int(timeout.milliseconds)
        return await blockingCall { () -> Bool in
            let ok = flags.finished.wait(timeout: .now() + .milliseconds(millis)) == .success
            if ok { flags.finished.signal() }  // later waiters see it finished too
            return ok
        }
    }
}

/// Names the calling thread as `top -H`, `perf` and debuggers show it (Linux keeps 15 bytes).
/// Foundation's `Thread.name`, set before `start`, did not reach the system's thread here: a new
/// thread showed its creator's name.
func nameCurrentThread(_ name: String) {
    swift_set_thread_name(name)
}

/// The calling thread's name as the system has it.
func currentThreadName() -> String {
    var buffer = [CChar](repeating: 0, count: 16)
    swift_get_thread_name(&buffer)
    return String(cString: buffer)
}
