import DequeModule
import Synchronization

/// The event ids the ingress has published (or is publishing), so that 8x8's retries of a
/// webhook are answered without a second Kafka record. Bounded: the oldest published ids are
/// forgotten first. An id whose publish is still pending is never forgotten, and a retry that
/// arrives meanwhile waits for that same publish instead of starting another.
final class RecentEvents<Outcome: Sendable>: Sendable {
    enum Claim {
        /// Published before: answer 200 without publishing.
        case published
        /// Being published by another request: share its outcome.
        case pending(Task<Outcome, any Error>)
        /// Nobody has it: the caller's task now owns it.
        case claimed(Task<Outcome, any Error>)
    }

    private struct State {
        var pending: [String: Task<Outcome, any Error>] = [:]
        var published: Set<String> = []
        var order: Deque<String> = []
    }

    private let state = Mutex(State())
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Claims `id`, starting `publish` only when nobody published or is publishing it. The
    /// publish task records its own result, so the id is remembered even when the request
    /// that started it gave up waiting (a late Kafka acknowledgement still counts).
    func claim(_ id: String, publish: @escaping @Sendable () async throws -> Outcome) -> Claim {
        state.withLock { state in
            if state.published.contains(id) { return .published }
            if let task = state.pending[id] { return .pending(task) }
            let task = Task {
                do {
                    let outcome = try await publish()
                    self.finish(id, published: true)
                    return outcome
                } catch {
                    self.finish(id, published: false)
                    throw error
                }
            }
            state.pending[id] = task
            return .claimed(task)
        }
    }

    private func finish(_ id: String, published: Bool) {
        state.withLock { state in
            state.pending.removeValue(forKey: id)
            guard published, capacity > 0, state.published.insert(id).inserted else { return }
            state.order.append(id)
            while state.order.count > capacity {
                state.published.remove(state.order.removeFirst())
            }
        }
    }

    var count: (published: Int, pending: Int) {
        state.withLock { ($0.published.count, $0.pending.count) }
    }
}
