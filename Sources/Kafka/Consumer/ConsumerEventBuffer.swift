import Foundation
import Synchronization

/// The hand-over between the consumer's polling thread and its async caller.
///
/// The polling thread appends batches. When `capacity` events are waiting, `tryAppend`
/// refuses and the polling thread keeps what it polled, waits a little for room and, if the
/// caller stays busy, pauses fetching while it goes on polling (see
/// `ConsumerContext.flushOrHoldBack`). The caller takes everything buffered at once and works
/// through it locally, so the lock is taken once per batch, not once per message. When the
/// caller reaches a `partitionsRevoked` event it has handled every earlier event; it
/// acknowledges, and the polling thread, which waits for that, then commits and gives the
/// partitions up.
final class ConsumerEventBuffer: @unchecked Sendable {
    private let condition = NSCondition()
    private var events: [KafkaConsumerEvent] = []
    private var waiter: CheckedContinuation<[KafkaConsumerEvent]?, Never>?
    private var finished = false
    /// The caller takes no more events (its work ended by an error): what comes is dropped
    /// and nothing waits for it.
    private var abandoned = false
    /// Revokes appended, and acknowledged by the caller (counted: a late acknowledgement of
    /// one revoke is not taken for the next one's).
    private var revokesAppended = 0
    private var revokesAcknowledged = 0
    /// Partitions of revokes the polling thread stopped waiting for: they were given up
    /// (committed, unassigned, maybe owned by another member now) while the caller still had
    /// events of theirs to reach. Those events are not handed out, and the caller can ask
    /// (`isGivenUp`), until it reaches the revoke.
    /// With the number of the last revoke given up for each: an earlier revoke's
    /// acknowledgement does not clear a later one's.
    private var givenUp: [TopicPartition: Int] = [:]
    private let givenUpCount = Atomic<Int>(0)
    private var appenderWaiting = false
    private let capacity: Int

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    // MARK: Polling thread

    /// Appends events in order whether or not there is room: rebalance events and what was
    /// polled before them (the polling thread must not stop polling for them; they are few).
    func append(_ batch: [KafkaConsumerEvent]) {
        guard !batch.isEmpty else { return }
        condition.lock()
        handOverLocked(batch)
    }

    /// Appends events in order when there is room (or the buffer ended: they are dropped);
    /// false, keeping nothing, when the buffer is full.
    func tryAppend(_ batch: [KafkaConsumerEvent]) -> Bool {
        guard !batch.isEmpty else { return true }
        condition.lock()
        guard events.count < capacity || finished || abandoned else {
            condition.unlock()
            return false
        }
        handOverLocked(batch)
        return true
    }

    /// With the lock held: gives `batch` to a waiting caller or buffers it (drops it once the
    /// buffer ended), and unlocks.
    private func handOverLocked(_ batch: [KafkaConsumerEvent]) {
        if finished || abandoned {
            condition.unlock()
            return
        }
        if let waiter {
            // The caller is waiting, so nothing is buffered: hand the batch over directly.
            self.waiter = nil
            condition.unlock()
            waiter.resume(returning: batch)
            return
        }
        if events.isEmpty { events = batch } else { events.append(contentsOf: batch) }
        condition.unlock()
    }

    /// Events waiting to be taken.
    var count: Int {
        condition.lock()
        defer { condition.unlock() }
        return events.count
    }

    /// The room at which the polling thread resumes fetching: half the capacity.
    var resumeBelow: Int { max(1, capacity / 2) }

    /// Waits until the buffer has room, it ended, or `timeout` passed.
    func waitForRoom(timeout: Duration) {
        let deadline = Date().addingTimeInterval(Double(timeout.milliseconds) / 1000)
        condition.lock()
        defer { condition.unlock() }
        while events.count >= capacity && !finished && !abandoned {
            appenderWaiting = true
            if !condition.wait(until: deadline) { break }
        }
        appenderWaiting = false
    }

    /// Drops buffered (not yet handed out) messages of these partitions and returns the lowest
    /// dropped offset of each.
    @discardableResult
    func purge(_ partitions: Set<TopicPartition>) -> [TopicPartition: Int64] {
        condition.lock()
        defer { condition.unlock() }
        var lowest: [TopicPartition: Int64] = [:]
        events.removeAll { event in
            guard case .message(let message) = event, partitions.contains(message.topicPartition) else { return false }
            lowest[message.topicPartition] = min(lowest[message.topicPartition] ?? .max, message.offset)
            return true
        }
        condition.broadcast()
        return lowest
    }

    /// Appends a revoke event and waits until the caller reached it, or `timeout` passed.
    /// Returns whether the caller acknowledged in time.
    /// Not acknowledged in time, the partitions count as given up until the caller reaches the
    /// revoke (see `givenUp`).
    func appendRevokeAndWait(_ partitions: [TopicPartition], lost: Bool = false, timeout: Duration) -> Bool {
        let number = appendRevoke(partitions, lost: lost)
        let deadline = Date().addingTimeInterval(Double(timeout.milliseconds) / 1000)
        condition.lock()
        defer { condition.unlock() }
        while revokesAcknowledged < number && !finished && !abandoned {
            if !condition.wait(until: deadline) { break }
        }
        let acknowledged = revokesAcknowledged >= number || abandoned
        if !acknowledged, !finished {
            for partition in partitions { givenUp[partition] = number }
            givenUpCount.store(givenUp.count, ordering: .releasing)
        }
        return acknowledged
    }

    /// Appends a revoke without waiting for it (a closing consumer); its number.
    @discardableResult
    func appendRevoke(_ partitions: [TopicPartition], lost: Bool) -> Int {
        condition.lock()
        revokesAppended += 1
        let number = revokesAppended
        condition.unlock()
        append([.partitionsRevoked(partitions, lost: lost)])
        return number
    }

    /// Whether `partition` was given up while the caller had not reached its revoke.
    func isGivenUp(_ partition: TopicPartition) -> Bool {
        guard givenUpCount.load(ordering: .acquiring) > 0 else { return false }
        condition.lock()
        defer { condition.unlock() }
        return givenUp[partition] != nil
    }

    /// The caller takes no more events: the buffered ones are dropped, and the polling thread
    /// neither waits for room nor for a revoke's acknowledgement, so a close is not held up by
    /// events nobody will handle (their offsets were not stored: they are read again).
    func abandon() {
        condition.lock()
        abandoned = true
        events = []
        condition.broadcast()
        condition.unlock()
    }

    /// No more events will come; a waiting caller gets `nil` once the buffer is empty, and a
    /// polling thread waiting for room is released.
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

    /// Everything buffered, waiting for at least one event; `nil` once finished and drained.
    func nextBatch() async -> [KafkaConsumerEvent]? {
        // Fast path: events are waiting, so no continuation (and no suspension) is needed.
        if let batch = tryTakeAll() { return batch }
        return await withCheckedContinuation { continuation in
            condition.lock()
            if let batch = takeAllLocked() {
                condition.unlock()
                continuation.resume(returning: batch)
            } else if finished {
                condition.unlock()
                continuation.resume(returning: nil)
            } else {
                waiter = continuation
                condition.unlock()
            }
        }
    }

    /// The caller reached a `partitionsRevoked` event: everything before it is handled.
    func acknowledgeRevoke() {
        condition.lock()
        // Revokes are handed out and acknowledged in the order they were appended.
        revokesAcknowledged += 1
        if !givenUp.isEmpty {
            let reached = revokesAcknowledged
            givenUp = givenUp.filter { $0.value > reached }
            givenUpCount.store(givenUp.count, ordering: .releasing)
        }
        condition.broadcast()
        condition.unlock()
    }

    private func tryTakeAll() -> [KafkaConsumerEvent]? {
        condition.lock()
        defer { condition.unlock() }
        return takeAllLocked()
    }

    private func takeAllLocked() -> [KafkaConsumerEvent]? {
        guard !events.isEmpty else { return nil }
        var batch: [KafkaConsumerEvent] = []
        swap(&batch, &events)
        if appenderWaiting { condition.broadcast() }
        return batch
    }
}

/// Walks the batches of a `ConsumerEventBuffer` one event at a time.
struct ConsumerEventCursor {
    let buffer: ConsumerEventBuffer
    private var batch: [KafkaConsumerEvent] = []
    private var index = 0

    init(buffer: ConsumerEventBuffer) { self.buffer = buffer }

    /// A revoke was handed out; it is acknowledged when the caller asks for the next event,
    /// that is, once the caller has handled the revoke itself (finished its in-flight work).
    private var revokeHandedOut = false

    /// Events are ready without waiting.
    var hasBufferedEvents: Bool { index < batch.count }

    mutating func next() async -> KafkaConsumerEvent? {
        if revokeHandedOut {
            revokeHandedOut = false
            buffer.acknowledgeRevoke()
        }
        while true {
            if index == batch.count {
                guard let next = await buffer.nextBatch() else { return nil }
                batch = next
                index = 0
            }
            let event = batch[index]
            index += 1
            switch event {
            case .partitionsRevoked:
                revokeHandedOut = true
            case .message(let message) where buffer.isGivenUp(message.topicPartition):
                // Its partition was given up before the caller got here: another member may
                // be working on it already. Not handed out (its offset was not stored).
                continue
            default:
                break
            }
            return event
        }
    }
}
