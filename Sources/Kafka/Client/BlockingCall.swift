import Foundation
import Logging
import Synchronization

/// Runs a blocking librdkafka call (flush, sync commit, admin wait, transaction step) on a
/// thread of `BlockingThreads` so it never occupies a thread of Swift's cooperative pool, nor
/// waits for one of Dispatch's, which adds threads to a busy pool about once a second.
func blockingCall<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
    let result: Result<T, E> = await withCheckedContinuation { continuation in
        BlockingThreads.shared.run {
            do throws(E) {
                continuation.resume(returning: .success(try body()))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
    }
    return try result.get()
}

/// Runs a librdkafka handle's teardown (`rd_kafka_destroy` and what must come before it) on a
/// thread of `BlockingThreads`. For a `deinit`, which runs wherever the last reference went:
/// with NIO's event loops as Swift's executor that is often a loop that also serves HTTP. The
/// destroy joins the handle's threads, and a broker thread in a slow DNS lookup holds it for as
/// long. `teardown` must capture what the handle's callbacks use (its context), so that it
/// lives until the destroy ended. One that takes longer than `KafkaTeardowns.slow` is logged.
func tearDownInBackground(logger: Logger, _ teardown: @escaping @Sendable () -> Void) {
    let ticket = KafkaTeardowns.begin()
    BlockingThreads.shared.run {
        let started = ContinuousClock.now
        teardown()
        let took = ContinuousClock.now - started
        if took > KafkaTeardowns.slow {
            logger.warning("kafka client teardown was slow", metadata: ["kafka.teardown_ms": "\(took.milliseconds)"])
        }
        KafkaTeardowns.end(ticket)
    }
}

/// The librdkafka handles being destroyed in the background (`tearDownInBackground`). Before
/// the process exits it waits for them (at most `atExit`), so that no librdkafka thread still
/// runs when the C runtime's cleanup, OpenSSL's among it, begins.
public enum KafkaTeardowns {
    static let slow: Duration = .seconds(5)
    static let atExit: Duration = .seconds(10)
    /// The tickets of the teardowns under way, and the next ticket.
    private static let state = Mutex<(inFlight: Set<Int>, next: Int, exitHook: Bool)>(([], 0, false))

    /// Teardowns under way.
    public static var inFlight: Int { state.withLock { $0.inFlight.count } }

    /// Waits until the teardowns begun before this call have ended, at most `timeout`; false if
    /// some have not. Those begun meanwhile (other clients going) are not waited for.
    public static func finish(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        let issued = state.withLock { $0.next }
        while state.withLock({ $0.inFlight.contains { $0 < issued } }) {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    /// A teardown begins; its ticket, for `end`.
    static func begin() -> Int {
        let (ticket, install) = state.withLock { state in
            let ticket = state.next
            state.next += 1
            state.inFlight.insert(ticket)
            defer { state.exitHook = true }
            return (ticket, !state.exitHook)
        }
        // Installed once a handle exists, so after librdkafka initialized OpenSSL: exit runs
        // its handlers in reverse order, this one before OpenSSL's cleanup.
        if install {
            atexit {
                let deadline = ContinuousClock.now + KafkaTeardowns.atExit
                while KafkaTeardowns.inFlight > 0, ContinuousClock.now < deadline { usleep(5_000) }
            }
        }
        return ticket
    }

    static func end(_ ticket: Int) {
        _ = state.withLock { $0.inFlight.remove(ticket) }
    }
}

/// Threads for blocking calls: a call runs at once on an idle thread or a new one, so calls
/// that block (a flush during an outage, an admin request to a slow broker) never hold the
/// others back. Up to `idleLimit` threads wait `idleTimeout` for the next call; the rest end.
final class BlockingThreads: @unchecked Sendable {
    static let shared = BlockingThreads(idleLimit: 4, idleTimeout: .seconds(30))

    let idleLimit: Int
    let idleTimeout: Duration
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var jobs: [@Sendable () -> Void] = []  // few: one per blocked caller
    private var idle = 0
    private var threads = 0
    private var started = 0

    init(idleLimit: Int, idleTimeout: Duration) {
        self.idleLimit = idleLimit
        self.idleTimeout = idleTimeout
    }

    /// The threads alive, and how many were ever started.
    var counts: (alive: Int, started: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (threads, started)
    }

    func run(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        // Each queued job has an idle thread of its own, or gets a new one.
        let spawn = jobs.count > idle
        if spawn {
            threads += 1
            started += 1
        } else {
            condition.signal()
        }
        condition.unlock()
        if spawn {
            let thread = Thread { [self] in
                nameCurrentThread("kafka-blocking")
                serve()
            }
            thread.start()
        }
    }

    private func serve() {
        let seconds = Double(idleTimeout.milliseconds) / 1000
        condition.lock()
        while true {
            if !jobs.isEmpty {
                var job: (@Sendable () -> Void)? = jobs.removeFirst()
                condition.unlock()
                job?()
                // The call and what it captured go before the lock is taken again: a capture's
                // deinit may hand work to these threads (a Kafka client's teardown), which locks.
                job = nil
                condition.lock()
                continue
            }
            guard idle < idleLimit else { break }
            idle += 1
            let deadline = Date(timeIntervalSinceNow: seconds)
            while jobs.isEmpty, condition.wait(until: deadline) {}
            idle -= 1
            if jobs.isEmpty { break }
        }
        threads -= 1
        condition.unlock()
    }
}
