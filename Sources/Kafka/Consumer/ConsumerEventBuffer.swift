import Foundation

/// The hand-over between the consumer's polling thread and its async caller.
///
/// The polling thread appends; when `capacity` messages are waiting it blocks (backpressure
/// reaches librdkafka, which stops fetching once its own queue is full). The caller takes events
/// one by one; taking a `partitionsRevoked` event acknowledges that every earlier event was
/// handled, which the polling thread waits for before it commits and gives the partitions up.
final class ConsumerEventBuffer: @unchecked Sendable {
    private let condition = NSCondition()
    private var events: [KafkaConsumerEvent] = []
    private var head = 0
    private var waiter: CheckedContinuation<KafkaConsumerEvent?, Never>?
    private var finished = false
    private var revokeAcknowledged = true
    private let capacity: Int

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    private var count: Int { events.count - head }

    // MARK: Polling thread

    /// Appends events in order, waiting while the buffer is full.
    func append(_ batch: [KafkaConsumerEvent]) {
        guard !batch.isEmpty else { return }
        condition.lock()
        while count >= capacity && !finished {
            condition.wait()
        }
        if finished {
            condition.unlock()
            return
        }
        var remaining = batch[...]
        var handOver: (CheckedContinuation<KafkaConsumerEvent?, Never>, KafkaConsumerEvent)?
        if let waiter, let first = remaining.first {
            self.waiter = nil
            remaining = remaining.dropFirst()
            acknowledgeIfRevoke(first)
            handOver = (waiter, first)
        }
        events.append(contentsOf: remaining)
        condition.unlock()
        if let (waiter, event) = handOver { waiter.resume(returning: event) }
    }

    /// Drops buffered messages of these partitions and returns the lowest dropped offset of each.
    @discardableResult
    func purge(_ partitions: Set<TopicPartition>) -> [TopicPartition: Int64] {
        condition.lock()
        defer { condition.unlock() }
        var lowest: [TopicPartition: Int64] = [:]
        var kept: [KafkaConsumerEvent] = []
        kept.reserveCapacity(count)
        for event in events[head...] {
            if case .message(let message) = event, partitions.contains(message.topicPartition) {
                lowest[message.topicPartition] = min(lowest[message.topicPartition] ?? .max, message.offset)
                continue
            }
            kept.append(event)
        }
        events = kept
        head = 0
        condition.broadcast()
        return lowest
    }

    /// Appends a revoke event and waits until the caller took it, or `timeout` passed.
    /// Returns whether the caller acknowledged in time.
    func appendRevokeAndWait(_ partitions: [TopicPartition], timeout: Duration) -> Bool {
        condition.lock()
        revokeAcknowledged = false
        condition.unlock()
        append([.partitionsRevoked(partitions)])
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        condition.lock()
        defer { condition.unlock() }
        while !revokeAcknowledged && !finished {
            if !condition.wait(until: deadline) { break }
        }
        return revokeAcknowledged
    }

    /// No more events will come; a waiting caller gets `nil` once the buffer is empty, and a
    /// polling thread blocked on a full buffer is released.
    func finish() {
        condition.lock()
        finished = true
        let waiter = self.waiter
        self.waiter = nil
        condition.broadcast()
        condition.unlock()
        waiter?.resume(returning: nil)
    }

    // MARK: Caller

    func next() async -> KafkaConsumerEvent? {
        await withCheckedContinuation { continuation in
            condition.lock()
            if head < events.count {
                let event = events[head]
                head += 1
                if head == events.count {
                    events.removeAll(keepingCapacity: true)
                    head = 0
                } else if head > 4096 && head * 2 > events.count {
                    events.removeFirst(head)
                    head = 0
                }
                acknowledgeIfRevoke(event)
                if count < capacity { condition.broadcast() }
                condition.unlock()
                continuation.resume(returning: event)
            } else if finished {
                condition.unlock()
                continuation.resume(returning: nil)
            } else {
                waiter = continuation
                condition.unlock()
            }
        }
    }

    private func acknowledgeIfRevoke(_ event: KafkaConsumerEvent) {
        if case .partitionsRevoked = event {
            revokeAcknowledged = true
            condition.broadcast()
        }
    }
}
