import Foundation

/// A test waited longer than its guard allows.
public struct TestTimeout: Error, CustomStringConvertible {
    public var what: String
    public init(what: String) { self.what = what }
    public var description: String { "timed out waiting for \(what)" }
}

/// Runs `body`, failing instead of hanging when it does not finish within `seconds`.
/// A guard against a stuck test, not an assertion about speed. The body runs as a task of its
/// own, which is cancelled, not waited for, once the time is up: a body stuck where
/// cancellation does not reach (a continuation nobody resumes) fails its test instead of
/// holding up the whole run.
public func within<T: Sendable>(
    _ seconds: Int, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = FirstResult<T>()
    let work = Task {
        do { race.offer(.success(try await body())) } catch { race.offer(.failure(error)) }
    }
    let timer = Task {
        guard (try? await Task.sleep(for: .seconds(seconds))) != nil else { return }
        race.offer(.failure(TestTimeout(what: what)))
    }
    let result = await withTaskCancellationHandler { await race.value() } onCancel: { work.cancel() }
    timer.cancel()
    work.cancel()  // after a timeout; nothing when the body finished
    return try result.get()
}

/// The first of several results offered, handed to one waiter.
private final class FirstResult<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    // Guarded by `lock`.
    private var result: Result<T, any Error>?
    private var waiter: CheckedContinuation<Result<T, any Error>, Never>?

    func offer(_ offered: Result<T, any Error>) {
        lock.lock()
        guard result == nil else { return lock.unlock() }
        result = offered
        let waiter = waiter
        self.waiter = nil
        lock.unlock()
        waiter?.resume(returning: offered)
    }

    func value() async -> Result<T, any Error> {
        await withCheckedContinuation { continuation in
            lock.lock()
            if let result {
                lock.unlock()
                continuation.resume(returning: result)
            } else {
                waiter = continuation
                lock.unlock()
            }
        }
    }
}

/// Runs CPU-heavy synchronous work on a thread of its own. Swift's cooperative pool has one
/// thread per core (two here); a test that computes on it for seconds stalls every server and
/// client of the tests running beside it.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}
