import DequeModule
import Kafka
import Synchronization

/// The commands of one outbound partition in flight: a lane per conversation, delivered one
/// at a time in offset order, while at most `maxRunning` lanes deliver at once. The offset is
/// stored only up to the oldest command not finished, so a crash never skips one.
final class ConversationLanes<Item: Sendable>: Sendable {
    struct State {
        /// Offsets read and not yet behind the stored position, with whether each is finished.
        var offsets = Deque<(offset: Int64, finished: Bool)>()
        /// Per conversation, the commands not yet started, in offset order.
        var lanes: [String: Deque<(offset: Int64, item: Item)>] = [:]
        /// Conversations with a runner.
        var running: Set<String> = []
        /// Conversations with commands waiting for a runner slot, in arrival order.
        var ready = Deque<String>()
        var closed = false
        /// Commands a runner took and that are not finished yet.
        var inProgress = 0
        /// The partition moved on: nothing is stored any more.
        var revoked = false
    }

    let partition: TopicPartition
    let maxRunning: Int
    /// Revoked with the lanes: a delivery holding it stops before its next call to 8x8.
    let ticket = DeliveryTicket()
    private let state = Mutex(State())
    /// Delivers one command and returns when the next of its conversation may go; calls
    /// `finished` once the command's result is durable. Returns false when delivery stopped.
    private let deliver: @Sendable (_ conversation: String, _ item: Item, _ finished: @escaping @Sendable () -> Void) async -> Bool
    /// Starts a runner task (the owner keeps the handles to cancel them).
    private let spawn: @Sendable (_ body: @escaping @Sendable () async -> Void) -> Void
    /// Stores the next offset to commit.
    private let storeOffset: @Sendable (Int64) -> Void

    init(
        partition: TopicPartition, maxRunning: Int,
        deliver: @escaping @Sendable (String, Item, @escaping @Sendable () -> Void) async -> Bool,
        spawn: @escaping @Sendable (@escaping @Sendable () async -> Void) -> Void,
        storeOffset: @escaping @Sendable (Int64) -> Void
    ) {
        self.partition = partition
        self.maxRunning = maxRunning
        self.deliver = deliver
        self.spawn = spawn
        self.storeOffset = storeOffset
    }

    /// Commands read and not finished.
    var buffered: Int { state.withLock { $0.offsets.count } }
    /// Commands taken by a runner and not finished (being delivered, or their result not yet
    /// acknowledged). One whose delivery stopped (`deliver` returned false) stays counted.
    var inProgress: Int { state.withLock { $0.inProgress } }

    /// Adds a command read at `offset` (offsets arrive in increasing order).
    func add(offset: Int64, conversation: String, item: Item) {
        let start = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.offsets.append((offset, false))
            // A ready conversation always has a lane; a running one may have emptied it.
            let waiting = state.lanes[conversation] != nil
            state.lanes[conversation, default: []].append((offset, item))
            guard !waiting, !state.running.contains(conversation) else { return false }
            if state.running.count < maxRunning {
                state.running.insert(conversation)
                return true
            }
            state.ready.append(conversation)
            return false
        }
        if start { startRunner(conversation) }
    }

    /// Marks a read offset finished without delivering anything (an unreadable record that
    /// was dead-lettered).
    func addFinished(offset: Int64) {
        state.withLock { $0.offsets.append((offset, true)) }
        advance()
    }

    /// No more runners start; running ones stop after their current command.
    func close() { state.withLock { $0.closed = true } }

    /// The partition is no longer this consumer's: closed, no offset is stored after this
    /// returns (a late one could overwrite the next owner's), and deliveries holding the
    /// ticket stop before their next call to 8x8.
    func revoke() {
        state.withLock {
            $0.closed = true
            $0.revoked = true
        }
        ticket.revoke()
    }

    private func startRunner(_ conversation: String) {
        spawn { [self] in
            var current: String? = conversation
            while let lane = current {
                while let (offset, item) = next(lane) {
                    guard await deliver(lane, item, { [self] in finish(offset) }) else { return }  // delivery stopped
                }
                current = handOver(lane)
            }
        }
    }

    private func next(_ conversation: String) -> (Int64, Item)? {
        state.withLock { state in
            guard !state.closed, var lane = state.lanes[conversation], let first = lane.popFirst() else { return nil }
            state.lanes[conversation] = lane.isEmpty ? nil : lane
            state.inProgress += 1
            return first
        }
    }

    /// The lane is empty: frees its slot, or gives the runner the next ready conversation.
    private func handOver(_ conversation: String) -> String? {
        state.withLock { state in
            // A command may have arrived between `next` returning nil and now.
            if state.lanes[conversation] != nil, !state.closed { return conversation }
            state.running.remove(conversation)
            guard !state.closed, let next = state.ready.popFirst() else { return nil }
            state.running.insert(next)
            return next
        }
    }

    private func finish(_ offset: Int64) {
        state.withLock { state in
            // Offsets are sorted: binary search.
            var low = 0
            var high = state.offsets.count
            while low < high {
                let mid = (low + high) / 2
                if state.offsets[mid].offset < offset { low = mid + 1 } else { high = mid }
            }
            if low < state.offsets.count, state.offsets[low].offset == offset {
                state.offsets[low].finished = true
                state.inProgress -= 1
            }
        }
        advance()
    }

    private func advance() {
        state.withLock { state in
            var last: Int64?
            while let head = state.offsets.first, head.finished {
                last = head.offset
                state.offsets.removeFirst()
            }
            // Under the lock: stores never go backwards, and none follows `revoke`.
            if let last, !state.revoked { storeOffset(last + 1) }
        }
    }
}

/// Whether the lanes a delivery belongs to were revoked.
final class DeliveryTicket: Sendable {
    private let revoked = Atomic<Bool>(false)
    var isRevoked: Bool { revoked.load(ordering: .acquiring) }
    func revoke() { revoked.store(true, ordering: .releasing) }
}
