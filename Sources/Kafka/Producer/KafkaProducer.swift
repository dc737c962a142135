import CRdKafka
public import Logging
public import ServiceLifecycle
import Synchronization

/// Callback state of a producer handle: the logger and the reports of detached sends collected
/// during a poll, handed to the `deliveryReports` stream in one batch per poll.
final class ProducerContext: RdKafkaHandleContext, @unchecked Sendable {
    let pendingReports = Mutex<[KafkaDeliveryReport]>([])
    let reports: AsyncStream<[KafkaDeliveryReport]>.Continuation

    init(logger: Logger, reports: AsyncStream<[KafkaDeliveryReport]>.Continuation) {
        self.reports = reports
        super.init(logger: logger)
    }

    func flushReports() {
        let batch = pendingReports.withLock { reports -> [KafkaDeliveryReport] in
            defer { reports.removeAll(keepingCapacity: true) }
            return reports
        }
        if !batch.isEmpty { reports.yield(batch) }
    }
}

/// A Kafka producer over librdkafka, run as a `Service`.
///
/// - `send` waits for the broker's acknowledgement and throws a `KafkaError` on failure.
/// - `sendDetached` returns at once with an id; its report arrives on `deliveryReports`.
/// - `sendBatch` enqueues many messages and waits for all their acknowledgements.
///
/// Defaults are idempotent with `acks=all`. A dedicated thread serves librdkafka's callbacks,
/// or polls handed to a scheduler (`KafkaProducerConfiguration.callbacks`).
/// On graceful shutdown everything queued is flushed before the handle is released.
public final class KafkaProducer: Service, @unchecked Sendable {
    private enum Lifecycle: Int { case running = 0, shuttingDown = 1, shutDown = 2 }

    private let handle: OpaquePointer
    private let context: ProducerContext
    private let pollingThread: PollingThread?
    private let scheduledPoller: ScheduledPoller?
    private let topics = Mutex<[String: OpaquePointer]>([:])
    private let nextDetachedID = Atomic<UInt64>(0)
    private let lifecycle = Atomic<Int>(Lifecycle.running.rawValue)
    private let flushTimeout: Duration
    private let logger: Logger
    public let isTransactional: Bool

    /// Reports of `sendDetached` messages, in the order librdkafka delivered them.
    /// Consume it whenever `sendDetached` is used; reports are buffered until read.
    public let deliveryReports: KafkaDeliveryReports

    public init(configuration: KafkaProducerConfiguration, logger: Logger) throws(KafkaError) {
        let (stream, continuation) = AsyncStream<[KafkaDeliveryReport]>.makeStream()
        let context = ProducerContext(logger: logger, reports: continuation)
        let handle = try makeRdKafkaHandle(RD_KAFKA_PRODUCER, properties: configuration.librdkafkaProperties, context: context) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
                guard let message, let opaque else { return }
                guard let messageOpaque = message.pointee._private else { return }
                if let id = DeliveryOpaque.detachedID(messageOpaque) {
                    let context = Unmanaged<ProducerContext>.fromOpaque(opaque).takeUnretainedValue()
                    let m = message.pointee
                    let report = KafkaDeliveryReport(
                        id: id,
                        topicPartition: TopicPartition(topic: String(cString: rd_kafka_topic_name(m.rkt)), partition: m.partition),
                        offset: m.offset,
                        error: m.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(kind: .delivery, m.err))
                    context.pendingReports.withLock { $0.append(report) }
                } else {
                    Unmanaged<DeliveryWaiter>.fromOpaque(messageOpaque).takeRetainedValue().complete(message)
                }
            }
        }
        self.handle = handle
        self.context = context
        self.logger = logger
        self.flushTimeout = configuration.flushTimeout
        self.isTransactional = configuration.transactionalID != nil
        self.deliveryReports = KafkaDeliveryReports(stream)
        switch configuration.callbacks {
        case .pollingThread:
            let pollHandle = SendableHandle(handle)
            self.pollingThread = PollingThread(name: "kafka-producer-poll") {
                rd_kafka_poll(pollHandle.pointer, 100)
                context.flushReports()
            }
            self.scheduledPoller = nil
        case .scheduled(let schedule):
            self.pollingThread = nil
            self.scheduledPoller = ScheduledPoller(handle: handle, context: context, schedule: schedule)
        }
    }

    deinit {
        pollingThread?.requestStop()
        scheduledPoller?.close()
        // Anything still queued (sends racing a shutdown) fails its waiters instead of leaking them.
        rd_kafka_purge(handle, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
        rd_kafka_poll(handle, 0)
        for topic in topics.withLock({ $0.values }) { rd_kafka_topic_destroy(topic) }
        rd_kafka_destroy(handle)
        context.flushReports()
        context.reports.finish()
    }

    // MARK: Sending

    /// Sends one message and waits until the broker acknowledged it (per `acks`).
    /// - Throws: `KafkaError` with kind `.delivery` when it could not be written.
    @discardableResult
    public func send<Key, Value>(_ message: KafkaProducerMessage<Key, Value>) async throws -> KafkaDelivery {
        try checkRunning()
        let topic = try topicHandle(message.topic)
        return try await withCheckedThrowingContinuation { continuation in
            let waiter = SingleDeliveryWaiter(continuation)
            let opaque = Unmanaged.passRetained(waiter as DeliveryWaiter)
            let err = enqueue(message, topic: topic, opaque: opaque.toOpaque())
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                opaque.release()
                continuation.resume(throwing: KafkaError(kind: .delivery, err, context: "could not enqueue message for \(message.topic)"))
            }
        }
    }

    /// Enqueues a message and calls `onDelivery` with its delivery result, on the producer's
    /// polling thread or scheduled poll (keep it short: it holds up other reports). For callers that wait on their
    /// own terms, e.g. with a deadline, without a task per message.
    /// - Throws: `KafkaError` when the message cannot be enqueued (then `onDelivery` is not called).
    public func send<Key, Value>(
        _ message: KafkaProducerMessage<Key, Value>,
        onDelivery: @escaping @Sendable (Result<KafkaDelivery, KafkaError>) -> Void
    ) throws {
        try checkRunning()
        let topic = try topicHandle(message.topic)
        let opaque = Unmanaged.passRetained(CallbackDeliveryWaiter(onDelivery) as DeliveryWaiter)
        let err = enqueue(message, topic: topic, opaque: opaque.toOpaque())
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            opaque.release()
            throw KafkaError(kind: .delivery, err, context: "could not enqueue message for \(message.topic)")
        }
    }

    /// Enqueues a message without waiting for its acknowledgement. The returned id is the `id` of
    /// its report on `deliveryReports`. Waits (without blocking a thread) while the local queue is full.
    @discardableResult
    public func sendDetached<Key, Value>(_ message: KafkaProducerMessage<Key, Value>) async throws -> UInt64 {
        try checkRunning()
        let topic = try topicHandle(message.topic)
        let id = nextDetachedID.wrappingAdd(1, ordering: .relaxed).newValue
        while true {
            let err = enqueue(message, topic: topic, opaque: DeliveryOpaque.detached(id))
            if err == RD_KAFKA_RESP_ERR_NO_ERROR { return id }
            guard err == RD_KAFKA_RESP_ERR__QUEUE_FULL else {
                throw KafkaError(kind: .delivery, err, context: "could not enqueue message for \(message.topic)")
            }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// Enqueues all messages and waits for every acknowledgement.
    /// - Throws: `KafkaBatchDeliveryError` when one or more messages failed.
    public func sendBatch<Key, Value>(_ messages: some Sequence<KafkaProducerMessage<Key, Value>>) async throws {
        try checkRunning()
        let messages = Array(messages)
        guard !messages.isEmpty else { return }
        let waiter = BatchDeliveryWaiter(count: messages.count)
        var topicName = ""
        var topic: OpaquePointer?
        for message in messages {
            if message.topic != topicName || topic == nil {
                topicName = message.topic
                topic = try topicHandle(message.topic)
            }
            let opaque = Unmanaged.passRetained(waiter as DeliveryWaiter)
            while true {
                let err = enqueue(message, topic: topic!, opaque: opaque.toOpaque())
                if err == RD_KAFKA_RESP_ERR_NO_ERROR { break }
                if err == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                    try? await Task.sleep(for: .milliseconds(1))
                    continue
                }
                opaque.release()
                waiter.enqueueFailed(KafkaError(kind: .delivery, err, context: "could not enqueue message for \(message.topic)"))
                break
            }
        }
        let (failed, firstError) = await waiter.wait()
        if failed > 0, let firstError {
            throw KafkaBatchDeliveryError(failedCount: failed, totalCount: messages.count, firstError: firstError)
        }
    }

    private func enqueue<Key, Value>(
        _ message: KafkaProducerMessage<Key, Value>, topic: OpaquePointer, opaque: UnsafeMutableRawPointer?
    ) -> rd_kafka_resp_err_t {
        var headers: OpaquePointer?
        if !message.headers.isEmpty {
            headers = rd_kafka_headers_new(message.headers.count)
            for header in message.headers {
                if let value = header.value {
                    _ = value.withUnsafeBytes { rd_kafka_header_add(headers, header.key, -1, $0.baseAddress, $0.count) }
                } else {
                    rd_kafka_header_add(headers, header.key, -1, nil, 0)
                }
            }
        }
        let partition = message.partition ?? -1  // RD_KAFKA_PARTITION_UA: let the partitioner choose
        let err = message.value.withUnsafeKafkaBytes { value in
            if let key = message.key {
                return key.withUnsafeKafkaBytes { key in
                    swift_rdk_produce(handle, topic, partition, value.baseAddress, value.count, key.baseAddress, key.count, headers, opaque)
                }
            }
            return swift_rdk_produce(handle, topic, partition, value.baseAddress, value.count, nil, 0, headers, opaque)
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR, let headers { rd_kafka_headers_destroy(headers) }
        return err
    }

    private func topicHandle(_ name: String) throws -> OpaquePointer {
        try topics.withLock { topics in
            if let topic = topics[name] { return topic }
            guard let topic = rd_kafka_topic_new(handle, name, nil) else {
                throw KafkaError(kind: .delivery, rd_kafka_last_error(), context: "topic \(name)")
            }
            topics[name] = topic
            return topic
        }
    }

    private func checkRunning() throws {
        if lifecycle.load(ordering: .acquiring) != Lifecycle.running.rawValue {
            throw KafkaError(kind: .state, code: .destroyed, message: "the producer is shut down", isRetriable: false)
        }
    }

    /// Messages enqueued and not yet acknowledged.
    public var outstandingMessages: Int { Int(rd_kafka_outq_len(handle)) }

    // MARK: Transactions

    /// Registers the transactional id with the coordinator; call once before the first transaction.
    public func initTransactions(timeout: Duration = .seconds(30)) async throws {
        try await transactionStep(timeout) { rd_kafka_init_transactions($0, $1) }
    }

    public func beginTransaction() throws {
        if let error = rd_kafka_begin_transaction(handle) {
            throw KafkaError(kind: .transaction, consuming: error)
        }
    }

    /// Adds consumed offsets to the current transaction, so they commit atomically with its messages.
    public func sendOffsetsToTransaction(
        _ offsets: [TopicPartition: Int64], consumer: KafkaConsumer, timeout: Duration = .seconds(30)
    ) async throws {
        let handle = SendableHandle(handle)
        let millis = timeout.milliseconds
        let metadata = try consumer.groupMetadata()
        try await blockingCall { () throws(KafkaError) in
            let list = TopicPartitionList(offsets)
            defer { rd_kafka_consumer_group_metadata_destroy(metadata.pointer) }
            if let error = rd_kafka_send_offsets_to_transaction(handle.pointer, list.pointer, metadata.pointer, millis) {
                throw KafkaError(kind: .transaction, consuming: error)
            }
        }
    }

    /// Flushes and commits the current transaction.
    public func commitTransaction(timeout: Duration = .seconds(30)) async throws {
        try await transactionStep(timeout) { rd_kafka_commit_transaction($0, $1) }
    }

    /// Aborts the current transaction; its messages are never seen by read_committed consumers.
    public func abortTransaction(timeout: Duration = .seconds(30)) async throws {
        try await transactionStep(timeout) { rd_kafka_abort_transaction($0, $1) }
    }

    /// Runs a blocking transactional call off the cooperative pool and types its error.
    private func transactionStep(
        _ timeout: Duration, _ call: @escaping @Sendable (OpaquePointer, Int32) -> OpaquePointer?
    ) async throws {
        let handle = SendableHandle(handle)
        let millis = timeout.milliseconds
        try await blockingCall { () throws(KafkaError) in
            if let error = call(handle.pointer, millis) {
                throw KafkaError(kind: .transaction, consuming: error)
            }
        }
    }

    // MARK: Lifecycle

    /// Runs until graceful shutdown (or cancellation), then flushes everything queued.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Stops the way a killed process stops, for crash tests: queued and in-flight messages are
    /// abandoned (their callbacks report a purge error), nothing is flushed. Requests already
    /// on the wire may still be written by the broker, as after a real crash.
    public func simulateCrash() async {
        lifecycle.store(Lifecycle.shutDown.rawValue, ordering: .releasing)
        rd_kafka_purge(handle, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
        await stopPolling()
        rd_kafka_poll(handle, 0)  // the purged messages' callbacks, so no waiter is left hanging
        context.flushReports()
        context.reports.finish()
    }

    /// Stops accepting messages, waits up to the flush timeout for everything queued to be
    /// acknowledged, and stops the polling thread. Safe to call more than once.
    public func shutdown() async {
        guard lifecycle.compareExchange(
            expected: Lifecycle.running.rawValue, desired: Lifecycle.shuttingDown.rawValue, ordering: .acquiringAndReleasing
        ).exchanged else { return }
        let handle = SendableHandle(handle)
        let millis = flushTimeout.milliseconds
        let queued = outstandingMessages
        let err = await blockingCall { rd_kafka_flush(handle.pointer, millis) }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.error("producer flush did not finish", metadata: [
                "kafka.error": "\(KafkaErrorCode(err).name)", "kafka.outstanding": "\(outstandingMessages)",
            ])
            // What is still queued fails now (its callbacks report the purge) instead of never.
            rd_kafka_purge(handle.pointer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
            rd_kafka_poll(handle.pointer, 0)
        } else if queued > 0 {
            logger.debug("producer flushed", metadata: ["kafka.flushed": "\(queued)"])
        }
        await stopPolling()
        context.flushReports()
        context.reports.finish()
        lifecycle.store(Lifecycle.shutDown.rawValue, ordering: .releasing)
    }

    /// Stops serving callbacks from the polling thread or the scheduler; whoever calls
    /// `rd_kafka_poll` afterwards (shutdown, deinit) serves what is left.
    private func stopPolling() async {
        await pollingThread?.stop(timeout: .seconds(5))
        scheduledPoller?.close()
    }
}

/// Serves a producer's callbacks through `KafkaCallbackExecution.scheduled`: librdkafka calls
/// `trigger` on its own thread when the first report lands on the empty main queue, and the
/// scheduled poll drains the queue. `close` (before the handle is destroyed) stops both.
final class ScheduledPoller: @unchecked Sendable {
    private let handle: OpaquePointer
    private let context: ProducerContext
    private let schedule: @Sendable (@escaping @Sendable () -> Void) -> Void
    private let queue: OpaquePointer
    /// Guards every use of the handle by a scheduled poll against its destruction.
    private let closed = Mutex(false)

    init(handle: OpaquePointer, context: ProducerContext, schedule: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) {
        self.handle = handle
        self.context = context
        self.schedule = schedule
        self.queue = rd_kafka_queue_get_main(handle)
        // Not retained by librdkafka: `close` removes the trigger before this object can go.
        rd_kafka_queue_cb_event_enable(queue, { _, opaque in
            guard let opaque else { return }
            Unmanaged<ScheduledPoller>.fromOpaque(opaque).takeUnretainedValue().trigger()
        }, Unmanaged.passUnretained(self).toOpaque())
        trigger()  // anything queued before the trigger was installed
    }

    /// On librdkafka's thread: keep it short, call no librdkafka function.
    private func trigger() {
        schedule { [self] in poll() }
    }

    private func poll() {
        closed.withLock { closed in
            if !closed { rd_kafka_poll(handle, 0) }
        }
        context.flushReports()
    }

    /// Removes the trigger and waits for a running poll; later scheduled polls do nothing.
    func close() {
        closed.withLock { closed in
            guard !closed else { return }
            closed = true
            rd_kafka_queue_cb_event_enable(queue, nil, nil)
            rd_kafka_queue_destroy(queue)
        }
    }
}

/// Some messages of a `sendBatch` were not written.
public struct KafkaBatchDeliveryError: Error, Sendable, CustomStringConvertible {
    public var failedCount: Int
    public var totalCount: Int
    public var firstError: KafkaError
    public var description: String { "\(failedCount) of \(totalCount) messages failed; first: \(firstError)" }
}

/// The delivery reports of detached sends.
public struct KafkaDeliveryReports: AsyncSequence, Sendable {
    public typealias Element = KafkaDeliveryReport
    let batches: AsyncStream<[KafkaDeliveryReport]>

    init(_ batches: AsyncStream<[KafkaDeliveryReport]>) { self.batches = batches }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var batches: AsyncStream<[KafkaDeliveryReport]>.AsyncIterator
        var current: [KafkaDeliveryReport] = []
        var index = 0

        public mutating func next() async -> KafkaDeliveryReport? {
            while index >= current.count {
                guard let batch = await batches.next() else { return nil }
                current = batch
                index = 0
            }
            defer { index += 1 }
            return current[index]
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(batches: batches.makeAsyncIterator()) }
}

/// A librdkafka handle pointer handed to another thread. librdkafka's handles are thread-safe.
struct SendableHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}

extension Duration {
    var milliseconds: Int32 {
        let (seconds, attoseconds) = components
        return Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}
