import CRdKafka
import Synchronization

/// How a producer groups messages into produce requests.
public enum KafkaBatching: Sendable, Equatable {
    /// librdkafka's: a partition's messages wait `linger.ms`, then go out together.
    case linger
    /// No fixed wait: a message goes to librdkafka at once while its partition has fewer than
    /// 5 messages in flight (librdkafka's linger is 0); beyond that, new messages collect and
    /// go out together, in order, as soon as acknowledgements bring the partition under 5. A
    /// message at a low rate waits for nothing, and under load the batches grow with the round
    /// trip instead of a fixed wait. Applies to messages with a key or a partition, of a topic
    /// whose partition count is known (the producer asks the cluster when a topic is first
    /// used, then every minute), from a producer that is not transactional; the others go
    /// straight to librdkafka.
    ///
    /// Why 5: librdkafka 2.0's idempotent producer lets a partition have only 5 messages in
    /// requests, and while a partition has messages queued beyond that, its broker thread with
    /// a linger of 0 polls with a zero timeout (spins) until an acknowledgement comes. Holding
    /// them here instead keeps the queue empty then. A linger avoids the spin too, but makes
    /// every message wait, and librdkafka rounds that wait up to whole milliseconds.
    case adaptive
}

/// What a topic's gate did (`KafkaProducer.gateStatistics(topic:)`).
public struct KafkaGateStatistics: Sendable, Equatable {
    /// The partition count the gate works with; 0 while unknown (messages are not gated yet)
    /// or after a crash.
    public var partitions = 0
    /// Messages waiting now for their partition's acknowledgements.
    public var held = 0
    /// Messages that found their partition idle and went to librdkafka at once.
    public var sentAtOnce = 0
    /// Groups of held messages handed to librdkafka when an acknowledgement came, and the
    /// messages in them.
    public var releasedBatches = 0
    public var releasedMessages = 0
}

/// The room in librdkafka's queue (`queue.buffering.max.messages`) that the gates of one
/// producer share. A held message, and a message on its way into librdkafka, holds a claim, and
/// a claim is given only while the claims and librdkafka's queue together stay under the
/// limit. So a full queue refuses a message when it is sent (its sender waits or retries, as
/// with librdkafka's own queue), never when it is released: a message released from its hold
/// always finds room, whichever topic's messages went to librdkafka meanwhile. (Bytes are
/// counted per topic only, `queue.buffering.max.kbytes` against each gate's held bytes: the
/// messages' limit is the one a chat connector meets first.)
final class QueueRoom: @unchecked Sendable {
    private let claims = Atomic<Int>(0)
    let limit: Int
    private let producer: OpaquePointer

    init(limit: Int, producer: OpaquePointer) {
        self.limit = limit
        self.producer = producer
    }

    /// Claims room for one message; false when there is none. With `always: false` (a
    /// message that goes to librdkafka at once) and no claims outstanding, librdkafka's own
    /// count is not asked: no held message can be kept from its room, and librdkafka refuses a
    /// message over its limit by itself.
    func claim(always: Bool) -> Bool {
        var current = claims.load(ordering: .relaxed)
        while true {
            if always || current > 0, current + Int(rd_kafka_outq_len(producer)) >= limit { return false }
            let (exchanged, original) = claims.compareExchange(expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
    }

    /// `count` messages reached librdkafka (or were refused, or failed while held).
    func release(_ count: Int) {
        claims.subtract(count, ordering: .acquiringAndReleasing)
    }
}

/// The messages of one topic under `KafkaBatching.adaptive`: for each partition, how many of
/// its messages librdkafka has and which wait until fewer than `window` are in flight.
///
/// Lives as long as its producer's topic handle; librdkafka knows it as the topic's opaque, so
/// a delivery report finds it without a lookup.
final class PartitionGate: @unchecked Sendable {
    /// A message waiting for its partition's acknowledgement: its key and value, copied into
    /// one allocation (the caller's bytes do not outlive `send`; `deallocate` frees it once
    /// librdkafka copied them), its headers and its delivery opaque.
    struct Held {
        let storage: UnsafeMutableRawPointer
        /// -1 for a null value (a tombstone), as librdkafka gets it when the caller's buffer has
        /// no address.
        let valueCount: Int
        /// -1 for a message without a key (or with a key buffer without an address).
        let keyCount: Int
        let headers: [KafkaHeader]
        let opaque: UnsafeMutableRawPointer

        init(value: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer?, headers: [KafkaHeader], opaque: UnsafeMutableRawPointer) {
            let keyCount = key?.count ?? 0
            storage = .allocate(byteCount: max(1, keyCount + value.count), alignment: 1)
            if let key, keyCount > 0 { storage.copyMemory(from: key.baseAddress!, byteCount: keyCount) }
            if value.count > 0 { (storage + keyCount).copyMemory(from: value.baseAddress!, byteCount: value.count) }
            self.valueCount = value.baseAddress == nil ? -1 : value.count
            self.keyCount = key?.baseAddress == nil ? -1 : keyCount
            self.headers = headers
            self.opaque = opaque
        }

        var key: UnsafeRawBufferPointer? { keyCount < 0 ? nil : UnsafeRawBufferPointer(start: storage, count: keyCount) }
        var value: UnsafeRawBufferPointer {
            valueCount < 0 ? UnsafeRawBufferPointer(start: nil, count: 0) : UnsafeRawBufferPointer(start: storage + max(0, keyCount), count: valueCount)
        }
        /// The bytes it keeps.
        var size: Int { max(0, keyCount) + max(0, valueCount) }

        func deallocate() { storage.deallocate() }
    }

    struct Partition {
        /// Messages handed to librdkafka (or being handed) whose reports have not come.
        var inFlight = 0
        var held: [Held] = []
        /// Held messages are on their way to librdkafka outside the lock: newer ones wait,
        /// so they cannot overtake them.
        var releasing = false
    }

    private struct State {
        var partitions: [Partition] = []
        /// The producer stops gracefully: held messages go without waiting for the window.
        var draining = false
        /// The producer crashed or went away: nothing is gated any more.
        var closed = false
        var statistics = KafkaGateStatistics()
        /// Messages and bytes held in all partitions.
        var heldCount = 0
        var heldBytes = 0

        /// Takes what `partition` holds when it may go now (nothing on its way, room in the
        /// window or draining), counting it in flight.
        mutating func takeIfReady(_ index: Int) -> [Held] {
            guard !partitions[index].releasing, !partitions[index].held.isEmpty,
                  partitions[index].inFlight < PartitionGate.window || draining else { return [] }
            let held = partitions[index].held
            partitions[index].held = []
            partitions[index].inFlight += held.count
            heldCount -= held.count
            heldBytes -= held.reduce(0) { $0 + $1.size }
            partitions[index].releasing = true
            statistics.releasedBatches += 1
            statistics.releasedMessages += held.count
            return held
        }
    }

    typealias Partitioner = @convention(c) (
        OpaquePointer?, UnsafeRawPointer?, Int, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?
    ) -> Int32

    /// Messages of a partition librdkafka may have at once: the idempotent producer's limit.
    static let window = 5

    private let state = Mutex(State())
    /// The partitioner librdkafka would use for a keyed message, nil when it is not key-based.
    let partitioner: Partitioner?
    /// The `_random` partitioners choose at random for an empty key (a Swift empty key reaches
    /// librdkafka as a null pointer): such messages are not gated.
    let emptyKeyIsRandom: Bool
    /// Set once the topic's handle exists (the handle is made with this gate as its opaque).
    nonisolated(unsafe) var topic: OpaquePointer?

    /// The producer's handle, for messages with headers (`rd_kafka_produce_batch` takes none).
    private let producer: OpaquePointer
    /// librdkafka's queue limits: the number of messages (`queue.buffering.max.messages`),
    /// shared by the producer's gates, and the bytes this topic may hold
    /// (`queue.buffering.max.kbytes`, in bytes).
    let room: QueueRoom
    private let maxBytes: Int

    init(partitioner: String, producer: OpaquePointer, room: QueueRoom, maxBytes: Int = 1_073_741_824) {
        self.partitioner = Self.partitioner(named: partitioner)
        self.emptyKeyIsRandom = partitioner.hasSuffix("_random")
        self.producer = producer
        self.room = room
        self.maxBytes = maxBytes
    }

    /// librdkafka's partitioner for the `partitioner` property, for a message with a key: the
    /// `_random` variants differ from the plain ones only for messages without a key.
    static func partitioner(named name: String) -> Partitioner? {
        switch name {
        case "murmur2", "murmur2_random": rd_kafka_msg_partitioner_murmur2
        case "consistent", "consistent_random": rd_kafka_msg_partitioner_consistent
        case "fnv1a", "fnv1a_random": rd_kafka_msg_partitioner_fnv1a
        default: nil
        }
    }

    /// The topic's partition count as the cluster reported it; 0 while unknown. Messages are
    /// gated from the moment it is known.
    func setPartitionCount(_ count: Int) {
        state.withLock { state in
            if count > state.partitions.count {
                state.partitions.append(contentsOf: repeatElement(Partition(), count: count - state.partitions.count))
            }
        }
    }

    enum Admission: Equatable {
        /// Not gated: straight to librdkafka, which partitions it.
        case ungated
        /// To librdkafka now, for this partition; it counts as in flight, and its claim on
        /// the queue's room is released (`room.release`) once librdkafka took or refused it.
        case now(Int32)
        /// Held until its partition's messages in flight are reported.
        case held
        /// Refused: claims (held messages, messages on their way) and librdkafka's queue
        /// together reach the queue's limit.
        case full
    }

    /// Where a message goes: ungated (no partition and no key-based partitioner, partition
    /// count unknown, gate closed), to librdkafka now (room in its partition's window and
    /// nothing held before it), or held (`hold` makes what is kept). A message with an explicit
    /// partition is gated too, so it cannot overtake the held messages of its partition.
    func admit(partition explicit: Int32?, key: UnsafeRawBufferPointer?, hold: () -> Held) -> Admission {
        guard let topic else { return .ungated }
        return state.withLock { state in
            guard !state.closed, !state.partitions.isEmpty else { return .ungated }
            let partition: Int32
            if let explicit {
                partition = explicit
            } else if let key, let partitioner, key.count > 0 || !emptyKeyIsRandom {
                partition = partitioner(topic, key.baseAddress, key.count, Int32(state.partitions.count), nil, nil)
            } else {
                return .ungated
            }
            let index = Int(partition)
            guard index >= 0, index < state.partitions.count else { return .ungated }
            // Field by field: a copy of the partition would share `held`, and the append below copy it.
            if !state.partitions[index].releasing && state.partitions[index].held.isEmpty
                && (state.partitions[index].inFlight < Self.window || state.draining) {
                guard room.claim(always: false) else { return .full }
                state.partitions[index].inFlight += 1
                state.statistics.sentAtOnce += 1
                return .now(partition)
            }
            let message = hold()
            guard state.heldBytes + message.size <= maxBytes, room.claim(always: true) else {
                message.deallocate()
                return .full
            }
            state.partitions[index].held.append(message)
            state.heldCount += 1
            state.heldBytes += message.size
            return .held
        }
    }

    /// `count` messages of `partition` are no longer with librdkafka (reported, or not
    /// enqueued after all). Returns what waited for them when it may go now, counted in
    /// flight, for `send`.
    func finished(_ partition: Int32, count: Int = 1) -> [Held] {
        state.withLock { state in
            let index = Int(partition)
            guard index >= 0, index < state.partitions.count else { return [] }
            state.partitions[index].inFlight = max(0, state.partitions[index].inFlight - count)
            return state.takeIfReady(index)
        }
    }

    /// Hands `held` (what `finished` or `drain` returned) to librdkafka for `partition`, in
    /// order, in one batch, then whatever its partition held meanwhile if it may go. A message
    /// librdkafka refuses fails (its waiter or detached report says why).
    func send(_ held: [Held], partition: Int32, context: ProducerContext) {
        guard !held.isEmpty, let topic else { return }
        var batch = held
        while !batch.isEmpty {
            let refused = enqueue(batch, partition: partition, topic: topic, context: context)
            room.release(batch.count)
            for message in batch { message.deallocate() }
            batch = state.withLock { state in
                let index = Int(partition)
                state.partitions[index].inFlight = max(0, state.partitions[index].inFlight - refused)
                state.partitions[index].releasing = false
                return state.takeIfReady(index)
            }
        }
    }

    /// Returns how many of `batch` librdkafka refused (each already failed).
    private func enqueue(_ batch: [Held], partition: Int32, topic: OpaquePointer, context: ProducerContext) -> Int {
        var refused = 0
        func fail(_ message: Held, _ err: rd_kafka_resp_err_t) {
            refused += 1
            let name = String(cString: rd_kafka_topic_name(topic))
            context.failed(opaque: message.opaque, topicPartition: TopicPartition(topic: name, partition: partition),
                           error: KafkaError(kind: .delivery, err, context: "could not enqueue message for \(name)"))
        }
        if batch.contains(where: { !$0.headers.isEmpty }) {
            for message in batch {
                let err = produceMessage(producer, topic, partition: partition, value: message.value, key: message.key, headers: message.headers, opaque: message.opaque)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR { fail(message, err) }
            }
        } else {
            // One call, one lock of the partition's queue: librdkafka's broker thread cannot
            // take the first messages into a request of their own while the rest are enqueued.
            var messages = batch.map { message in
                var m = rd_kafka_message_t()
                m.partition = partition
                m.payload = UnsafeMutableRawPointer(mutating: message.value.baseAddress)
                m.len = message.value.count
                if let key = message.key {
                    m.key = UnsafeMutableRawPointer(mutating: key.baseAddress)
                    m.key_len = key.count
                }
                m._private = message.opaque
                return m
            }
            let enqueued = rd_kafka_produce_batch(topic, partition, RD_KAFKA_MSG_F_COPY, &messages, Int32(messages.count))
            if enqueued < messages.count {
                for (index, message) in messages.enumerated() where message.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    fail(batch[index], message.err)
                }
            }
        }
        if refused > 0 { context.flushReports() }
        return refused
    }

    /// The producer stops gracefully: returns what each partition holds, for `send`, and from
    /// now on lets every message go without waiting for the window (after the ones held).
    func drain() -> [(partition: Int32, held: [Held])] {
        state.withLock { state in
            state.draining = true
            return state.partitions.indices.compactMap { index in
                let held = state.takeIfReady(index)
                return held.isEmpty ? nil : (Int32(index), held)
            }
        }
    }

    /// The producer crashed or goes away: stops gating and returns everything held, to fail.
    func close() -> [(partition: Int32, held: [Held])] {
        state.withLock { state in
            state.closed = true
            var result: [(Int32, [Held])] = []
            for index in state.partitions.indices where !state.partitions[index].held.isEmpty {
                result.append((Int32(index), state.partitions[index].held))
                state.partitions[index].held = []
            }
            room.release(state.heldCount)
            state.heldCount = 0
            state.heldBytes = 0
            return result
        }
    }

    var statistics: KafkaGateStatistics {
        state.withLock { state in
            var statistics = state.statistics
            statistics.partitions = state.closed ? 0 : state.partitions.count
            statistics.held = state.heldCount
            return statistics
        }
    }

    /// Messages held now in all partitions.
    var heldCount: Int { state.withLock { $0.heldCount } }
}
