import DequeModule
import Kafka
import NIOCore
import NIOPosix
import Synchronization

/// One Kafka write that requests wait for: the first delivery of a webhook and any retry of
/// it that arrives while the write is pending share it. Waiting costs no task and no timer:
/// the delivery callback resumes the waiters, and the `DeadlineSweeper` resumes the ones whose
/// deadline passed first.
final class PendingPublish: Sendable {
    typealias Outcome = Result<KafkaDelivery, KafkaError>

    /// Unchecked: a waiter is resumed only by whoever removed it from `State.waiters` under the
    /// lock, so exactly once (a checked continuation costs an allocation per webhook).
    typealias Continuation = UnsafeContinuation<Outcome?, Never>

    struct Waiter {
        var id: UInt64
        var continuation: Continuation
        var home: LoopHandoff.Home?
    }

    private struct State {
        var outcome: Outcome?
        /// Almost always one: the first request. Retries that arrive meanwhile join it.
        var waiters: [Waiter] = []
        var nextWaiter: UInt64 = 0
    }

    private let state = Mutex(State())

    var waiterCount: Int { state.withLock { $0.waiters.count } }

    /// Records the delivery result and wakes everybody waiting.
    func complete(_ outcome: Outcome) {
        let waiters = state.withLock { state in
            state.outcome = outcome
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters {
            if let home = waiter.home { home.resume(waiter.continuation, with: outcome) }
            else { waiter.continuation.resume(returning: outcome) }
        }
    }

    /// The delivery result, or nil when `deadline` passed first. With a `home`, the result is
    /// handed to that loop to resume the waiter there.
    func wait(deadline: ContinuousClock.Instant, sweeper: DeadlineSweeper, home: LoopHandoff.Home? = nil) async -> Outcome? {
        await withUnsafeContinuation { continuation in
            let registered: UInt64? = state.withLock { state in
                if state.outcome != nil { return nil }
                state.nextWaiter += 1
                state.waiters.append(Waiter(id: state.nextWaiter, continuation: continuation, home: home))
                return state.nextWaiter
            }
            guard let id = registered else {
                continuation.resume(returning: state.withLock { $0.outcome })
                return
            }
            sweeper.schedule(deadline, self, waiter: id)
        }
    }

    /// Resumes waiter `id` with nil, unless the outcome came first.
    fileprivate func expire(_ id: UInt64) {
        let expired = state.withLock { state in
            state.waiters.firstIndex { $0.id == id }.map { state.waiters.remove(at: $0) }
        }
        expired?.continuation.resume(returning: nil)
    }
}

/// Resumes waiters on the event loop they suspended on, in one `execute` per loop and batch.
/// Delivery reports arrive on one loop; a request resumed there would write its response
/// across loops (a hop per request) and run its task away from its connection.
final class LoopHandoff: Sendable {
    /// The resumptions bound for one loop.
    final class Home: Sendable {
        typealias Item = (continuation: PendingPublish.Continuation, outcome: PendingPublish.Outcome)
        let loop: any EventLoop
        private let pending = Mutex<(items: [Item], scheduled: Bool)>(([], false))
        /// How many batches were handed over.
        let batches = Atomic<Int>(0)

        init(loop: any EventLoop) {
            self.loop = loop
        }

        func resume(_ continuation: PendingPublish.Continuation, with outcome: PendingPublish.Outcome) {
            if loop.inEventLoop {
                continuation.resume(returning: outcome)
                return
            }
            let schedule = pending.withLock { pending in
                pending.items.append((continuation, outcome))
                defer { pending.scheduled = true }
                return !pending.scheduled
            }
            if schedule {
                batches.add(1, ordering: .relaxed)
                loop.execute { self.drain() }
            }
        }

        private func drain() {
            let items = pending.withLock { pending in
                pending.scheduled = false
                defer { pending.items.removeAll(keepingCapacity: true) }
                return pending.items
            }
            for item in items { item.continuation.resume(returning: item.outcome) }
        }
    }

    let homes: [Home]

    init(group: MultiThreadedEventLoopGroup = .singleton) {
        homes = group.makeIterator().map { Home(loop: $0) }
    }

    /// The home of the loop this code runs on, if it is one of the group's.
    var current: Home? {
        guard let loop = MultiThreadedEventLoopGroup.currentEventLoop else { return nil }
        return homes.first { $0.loop === loop }
    }
}

/// Expires waits on publishes once their deadline passed, checking every `resolution`. All
/// deadlines of one ingress have the same length, so they arrive in order and a queue suffices.
final class DeadlineSweeper: Sendable {
    private typealias Entry = (deadline: ContinuousClock.Instant, publish: PendingPublish, waiter: UInt64)
    private let queue = Mutex(Deque<Entry>())
    let resolution: Duration

    init(resolution: Duration = .milliseconds(20)) {
        self.resolution = resolution
    }

    /// After `deadline`, `waiter` of `publish` gets nil unless its outcome came first.
    func schedule(_ deadline: ContinuousClock.Instant, _ publish: PendingPublish, waiter: UInt64) {
        queue.withLock { $0.append((deadline, publish, waiter)) }
    }

    /// Expires what is due; returns how many deadlines passed.
    @discardableResult
    func sweep(now: ContinuousClock.Instant = .now) -> Int {
        var due: [Entry] = []
        queue.withLock { queue in
            while let first = queue.first, first.deadline <= now { due.append(queue.removeFirst()) }
        }
        for entry in due { entry.publish.expire(entry.waiter) }
        return due.count
    }

    func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: resolution)
            sweep()
        }
        // Nobody is left waiting when the service stops.
        sweep(now: .now + .seconds(3600 * 24 * 365))
    }
}

/// The event ids the ingress has published (or is publishing), so that 8x8's retries of a
/// webhook are answered without a second Kafka record. Bounded: the oldest published ids are
/// forgotten first. An id whose write is pending is never forgotten, and a retry that arrives
/// meanwhile waits for that same write instead of starting another.
final class RecentEvents: Sendable {
    enum Claim {
        /// Published before: answer 200 without publishing.
        case published
        /// Being published by another request: share its outcome.
        case pending(PendingPublish)
        /// Nobody has it: the caller publishes and must call `finish`.
        case claimed(PendingPublish)
    }

    /// A webhook's identity: its tenant and event id, hashed to 128 bits by two differently
    /// prefixed runs of this process's randomly seeded SipHash. Fixed size, so a remembered id
    /// costs 16 bytes in each table instead of a string of its own, and a lookup compares two
    /// integers instead of strings. Two events are confused only if all 128 bits agree: with
    /// ten million ids remembered, a chance of about 10^-25.
    struct Key: Hashable, Sendable {
        let high: UInt64
        let low: UInt64

        /// `route`: the webhook's path, so one event id sent to two webhooks (an endpoint's and
        /// the handover webhook) is published for each; a retry goes to the same path.
        init(tenant: String?, route: WebhookIngress.Route? = nil, eventId: String) {
            var first = Hasher(), second = Hasher()
            first.combine(UInt8(1))
            second.combine(UInt8(2))
            // String hashing ends each string with a terminator: ("ab", "c") and ("a", "bc") differ.
            first.combine(tenant ?? "")
            second.combine(tenant ?? "")
            first.combine(route)
            second.combine(route)
            first.combine(eventId)
            second.combine(eventId)
            high = UInt64(UInt(bitPattern: first.finalize()))
            low = UInt64(UInt(bitPattern: second.finalize()))
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(low)
        }
    }

    private struct State {
        var pending: [Key: PendingPublish] = [:]
        var published: Set<Key> = []
        /// The published ids in the order they came: a ring, whose oldest is at `oldest` once
        /// it holds `capacity`.
        var order: [Key] = []
        var oldest = 0
    }

    private let state: Mutex<State>
    let capacity: Int

    /// The tables take their full size at once: growing one (a rehash of every id, tens of
    /// milliseconds at a million) would hold up every webhook behind the lock.
    init(capacity: Int) {
        self.capacity = capacity
        var state = State()
        // One more than the capacity: an id is added before the oldest goes.
        state.published.reserveCapacity(capacity + 1)
        state.order.reserveCapacity(capacity)
        self.state = Mutex(state)
    }

    func claim(_ id: Key) -> Claim {
        state.withLock { state in
            if state.published.contains(id) { return .published }
            if let pending = state.pending[id] { return .pending(pending) }
            let pending = PendingPublish()
            state.pending[id] = pending
            return .claimed(pending)
        }
    }

    /// Called with the write's result, however late it comes: a late acknowledgement still
    /// marks the event published, so the retry 8x8 sends after a 503 is not written again.
    func finish(_ id: Key, published: Bool) {
        state.withLock { state in
            state.pending.removeValue(forKey: id)
            guard published, capacity > 0, state.published.insert(id).inserted else { return }
            if state.order.count < capacity {
                state.order.append(id)
            } else {
                state.published.remove(state.order[state.oldest])
                state.order[state.oldest] = id
                state.oldest = (state.oldest + 1) % capacity
            }
        }
    }

    var count: (published: Int, pending: Int) {
        state.withLock { ($0.published.count, $0.pending.count) }
    }

    /// The ids the tables hold without growing.
    var storageCapacity: (published: Int, order: Int) {
        state.withLock { ($0.published.capacity, $0.order.capacity) }
    }
}
