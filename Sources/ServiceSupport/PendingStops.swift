import Synchronization

/// The stops a consuming service starts from its shutdown handlers (which cannot wait), so
/// its `run` waits for them before it returns: the producer's last records are flushed and
/// the group is left before the process may exit.
public final class PendingStops: Sendable {
    private let tasks = Mutex<[Task<Void, Never>]>([])

    public init() {}

    public func start(_ stop: @escaping @Sendable () async -> Void) {
        tasks.withLock { $0.append(Task { await stop() }) }
    }

    public func wait() async {
        for task in tasks.withLock({ $0 }) { await task.value }
    }
}
