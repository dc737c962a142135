import ChatEvents
import DequeModule
import Synchronization

/// What the egress knows about the commands of one partition: which are finished (delivered,
/// dead-lettered or skipped, by this egress or a previous owner), which a previous owner was
/// calling 8x8 with when it stopped, and per conversation the messages delivered lately (to
/// recognise our own message among 8x8's). Rebuilt from `eightbyeight.delivery.v1` when a
/// partition is assigned; bounded in memory.
final class DeliveryLedger: Sendable {
    struct State {
        var finished: Set<String> = []
        var finishedOrder = Deque<String>()
        var attempting: [String: (at: Int64, agentBefore: String?)] = [:]
        var recent: [String: Deque<(digest: String, at: Int64)>] = [:]
        var recentOrder = Deque<String>()
    }

    let capacity: Int
    static let messagesPerConversation = 16
    private let state = Mutex(State())

    /// When this egress took the partition (milliseconds since 1970): a previous owner sent
    /// nothing after it.
    let takenAt: Int64

    init(capacity: Int, takenAt: Int64 = EgressGeneration.now) {
        self.capacity = max(capacity, 1)
        self.takenAt = takenAt
    }

    func isFinished(_ commandId: String) -> Bool { state.withLock { $0.finished.contains(commandId) } }

    /// The time a previous owner started calling 8x8 with this command, when it did not
    /// record how that ended, and for a queue move the agent it found before; asked once.
    func takeAttempt(_ commandId: String) -> (at: Int64, agentBefore: String?)? {
        state.withLock { $0.attempting.removeValue(forKey: commandId) }
    }

    func finish(_ commandId: String, conversation: String, delivered fingerprint: String?, at: Int64) {
        state.withLock { state in
            state.attempting[commandId] = nil
            if state.finished.insert(commandId).inserted {
                state.finishedOrder.append(commandId)
                if state.finishedOrder.count > capacity, let oldest = state.finishedOrder.popFirst() { state.finished.remove(oldest) }
            }
            guard let fingerprint else { return }
            if state.recent[conversation] == nil {
                state.recentOrder.append(conversation)
                if state.recentOrder.count > capacity, let oldest = state.recentOrder.popFirst() { state.recent[oldest] = nil }
            }
            state.recent[conversation, default: []].append((fingerprint, at))
            if state.recent[conversation]!.count > Self.messagesPerConversation { state.recent[conversation]!.removeFirst() }
        }
    }

    /// How many messages with this digest we delivered to the conversation since `since`.
    func deliveredCount(conversation: String, digest: String, since: Int64) -> Int {
        state.withLock { state in
            state.recent[conversation]?.count { $0.digest == digest && $0.at >= since } ?? 0
        }
    }

    /// Applies one restored result (in the order they were written).
    func restore(_ result: DeliveryResult) {
        switch result.outcome {
        case .attempting:
            state.withLock { state in
                if !state.finished.contains(result.commandId) { state.attempting[result.commandId] = (result.at, result.agentBefore) }
            }
        case .delivered:
            finish(result.commandId, conversation: result.conversationId, delivered: result.fingerprint, at: result.at)
        case .deadLettered, .skipped:
            finish(result.commandId, conversation: result.conversationId, delivered: nil, at: result.at)
        }
    }

    var uncertainCount: Int { state.withLock { $0.attempting.count } }
}

/// A bound on concurrent work (requests to 8x8 in flight), waiting in FIFO order.
final class AsyncSemaphore: Sendable {
    private struct State {
        var available: Int
        var waiters = Deque<CheckedContinuation<Void, Never>>()
    }

    private let state: Mutex<State>

    init(_ count: Int) {
        state = Mutex(State(available: count))
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let go = state.withLock { state -> Bool in
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if go { continuation.resume() }
        }
    }

    func signal() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let next = state.waiters.popFirst() { return next }
            state.available += 1
            return nil
        }
        next?.resume()
    }
}
