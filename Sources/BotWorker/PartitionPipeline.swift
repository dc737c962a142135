import DequeModule
import Kafka
import Synchronization

/// An event whose records (commands, analytics) Kafka acknowledged.
public struct AcknowledgedEvent: Sendable {
    public var eventId: String
    /// The inbound record's Kafka timestamp (milliseconds since 1970), when it has one.
    public var inboundTimestamp: Int64?
}

/// The in-flight events of one inbound partition, in offset order, and what each still waits
/// for. An event is finished when its commands are acknowledged and then its session record
/// is; offsets are stored only up to the oldest unfinished event, so a crash never skips one.
///
/// A session record is sent only after the event's commands are acknowledged, and session
/// records leave in event order, so a durable session that says "event e processed" implies
/// e's commands are durable too. That is what lets a restarted worker skip e safely.
final class PartitionPipeline: Sendable {
    struct Entry {
        var offset: Int64
        var pendingCommands: Int
        /// Reported to `onAcknowledged` when the last of the event's records is acknowledged.
        var event: AcknowledgedEvent?
        var session: (key: String, value: [UInt8])?
        var sessionSent = false
        var sessionAcked = false
    }

    struct State {
        var entries = Deque<Entry>()
        var failure: KafkaError?
        /// Records besides the events' (tombstones) not yet acknowledged.
        var sideWrites = 0
        /// The last offset given to `storeOffset` (stores happen under the lock: the highest).
        var storedNext: Int64?
        /// How many entries from the front have their session record sent (or have none):
        /// records leave in order, so they are a prefix, and `pump` starts after it.
        var sentPrefix = 0
        /// A `pump` is due after librdkafka's queue was full.
        var retryScheduled = false
        /// The offset of the newest event added.
        var lastAdded: Int64?

        /// The position of the entry of `offset` (entries are in offset order).
        func index(of offset: Int64) -> Int? {
            var low = 0, high = entries.count
            while low < high {
                let middle = (low + high) / 2
                if entries[middle].offset < offset { low = middle + 1 } else { high = middle }
            }
            return low < entries.count && entries[low].offset == offset ? low : nil
        }
    }

    let partition: TopicPartition
    private let state = Mutex(State())
    /// Sends a session record; calls back with the result.
    private let sendSession: @Sendable (_ key: String, _ value: [UInt8], _ done: @escaping @Sendable (Result<KafkaDelivery, KafkaError>) -> Void) throws -> Void
    /// Stores the next offset to commit; false when the consumer refused it (the partition is
    /// no longer assigned).
    private let storeOffset: @Sendable (Int64) -> Bool
    private let onFailure: @Sendable (KafkaError) -> Void
    private let onAcknowledged: @Sendable (AcknowledgedEvent) -> Void

    init(
        partition: TopicPartition,
        sendSession: @escaping @Sendable (String, [UInt8], @escaping @Sendable (Result<KafkaDelivery, KafkaError>) -> Void) throws -> Void,
        storeOffset: @escaping @Sendable (Int64) -> Bool,
        onFailure: @escaping @Sendable (KafkaError) -> Void,
        onAcknowledged: @escaping @Sendable (AcknowledgedEvent) -> Void = { _ in }
    ) {
        self.partition = partition
        self.sendSession = sendSession
        self.storeOffset = storeOffset
        self.onFailure = onFailure
        self.onAcknowledged = onAcknowledged
    }

    /// Events not finished, and side writes not acknowledged: a revoke waits for both.
    var inFlight: Int { state.withLock { $0.entries.count + $0.sideWrites } }
    /// The next offset to read that was last stored (the offsets below it are finished).
    var storedNext: Int64? { state.withLock { $0.storedNext } }

    /// A record that belongs to no event (a tombstone) is on its way.
    func sideWriteStarted() { state.withLock { $0.sideWrites += 1 } }

    /// Its acknowledgement; a failure fails the pipeline.
    func sideWriteDone(_ result: Result<KafkaDelivery, KafkaError>) {
        state.withLock { $0.sideWrites -= 1 }
        if case .failure(let error) = result { fail(error) }
    }

    /// It could not be handed to the producer after all.
    func sideWriteNotSent() { state.withLock { $0.sideWrites -= 1 } }

    /// The conversations with a session record not yet acknowledged.
    func sessionKeysInFlight() -> Set<String> {
        state.withLock { state in
            var keys = Set<String>()
            for entry in state.entries where !entry.sessionAcked {
                if let session = entry.session { keys.insert(session.key) }
            }
            return keys
        }
    }
    var failure: KafkaError? { state.withLock { $0.failure } }

    /// Registers an event before its records are sent; `event` is reported once they are all
    /// acknowledged (an event without records is not reported).
    /// False, failing the pipeline, for an offset that does not follow the last one added (the
    /// consumer's position reset): entries are found by offset and offsets are stored in
    /// order, so the worker starts over from its commits. The caller then sends nothing.
    @discardableResult
    func add(offset: Int64, commands: Int, session: (key: String, value: [UInt8])?, event: AcknowledgedEvent? = nil) -> Bool {
        let inOrder = state.withLock { state in
            if let last = state.lastAdded, offset <= last { return false }
            state.lastAdded = offset
            state.entries.append(Entry(offset: offset, pendingCommands: commands, event: commands > 0 ? event : nil, session: session))
            return true
        }
        guard inOrder else {
            fail(KafkaError(kind: .consumer, code: .state, message: "offset \(offset) of \(partition) came after a later one", isRetriable: true))
            return false
        }
        if commands == 0 { pump() }
        return true
    }

    func commandDone(offset: Int64, _ result: Result<KafkaDelivery, KafkaError>) {
        if case .failure(let error) = result { return fail(error) }
        commandDone(offset: offset)
    }

    /// One of the entry's records is done with (acknowledged, or left out on purpose).
    func commandDone(offset: Int64) {
        let acknowledged = state.withLock { state -> AcknowledgedEvent? in
            guard let index = state.index(of: offset) else { return nil }
            state.entries[index].pendingCommands -= 1
            return state.entries[index].pendingCommands == 0 ? state.entries[index].event : nil
        }
        if let acknowledged { onAcknowledged(acknowledged) }
        pump()
    }

    private func sessionDone(offset: Int64, _ result: Result<KafkaDelivery, KafkaError>) {
        if case .failure(let error) = result { return fail(error) }
        state.withLock { state in
            if let index = state.index(of: offset) {
                state.entries[index].sessionAcked = true
            }
        }
        pump()
    }

    /// Nothing more of this pipeline is sent or stored; `report`: its owner hears of it (and
    /// ends the generation), not when the owner itself gives the pipeline up.
    func fail(_ error: KafkaError, report: Bool = true) {
        let first = state.withLock { state -> Bool in
            defer { if state.failure == nil { state.failure = error } }
            return state.failure == nil
        }
        if first, report { onFailure(error) }
    }

    /// Sends the session records that may go now (in order) and stores the offset after the
    /// finished prefix. Sends and stores happen under the lock so records leave in event order
    /// and stored offsets only grow, whichever thread pumps.
    ///
    /// A full librdkafka queue is no failure: the records in it make room as they are
    /// acknowledged, so the sending stops there and is tried again a millisecond later (a
    /// worker catching up on a backlog fills the queue with commands; failing would restart
    /// it into the same backlog, again and again).
    private func pump() {
        var sendError: KafkaError?
        var retry = false
        state.withLock { state in
            guard state.failure == nil else { return }
            var index = state.sentPrefix
            while index < state.entries.count, state.entries[index].pendingCommands == 0 {
                if let session = state.entries[index].session {
                    let offset = state.entries[index].offset
                    do {
                        try sendSession(session.key, session.value) { [weak self] result in self?.sessionDone(offset: offset, result) }
                    } catch let error as KafkaError where error.code == .queueFull {
                        retry = !state.retryScheduled
                        state.retryScheduled = true
                        break
                    } catch {
                        sendError = error as? KafkaError ?? KafkaError(kind: .delivery, code: .state, message: "\(error)", isRetriable: false)
                        break
                    }
                    state.entries[index].sessionSent = true
                } else {
                    state.entries[index].sessionSent = true
                    state.entries[index].sessionAcked = true
                }
                index += 1
                state.sentPrefix = index
            }
            var last: Int64?
            while !state.entries.isEmpty, state.entries[0].sessionAcked {
                last = state.entries[0].offset
                state.entries.removeFirst()
                state.sentPrefix -= 1
            }
            // Under the lock, so stores never go backwards and `storedNext` is what was stored.
            if let last, storeOffset(last + 1) { state.storedNext = last + 1 }
        }
        if let sendError { return fail(sendError) }
        if retry {
            Task {
                try? await Task.sleep(for: .milliseconds(1))
                self.state.withLock { $0.retryScheduled = false }
                self.pump()
            }
        }
    }
}
