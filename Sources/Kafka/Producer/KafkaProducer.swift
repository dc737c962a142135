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

    /// A delivery report from librdkafka: the waiter or the detached report, then, for a gated
    /// message, what its partition's gate held back for it.
    func delivered(_ message: UnsafePointer<rd_kafka_message_t>) {
        guard let tagged = message.pointee._private else { return }
        let (messageOpaque, gated) = DeliveryOpaque.ungated(tagged)
        let m = message.pointee
        if let id = DeliveryOpaque.detachedID(messageOpaque) {
            let report = KafkaDeliveryReport(
                id: id,
                topicPartition: TopicPartition(topic: String(cString: rd_kafka_topic_name(m.rkt)), partition: m.partition),
                offset: m.offset,
                error: m.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(kind: .delivery, m.err))
            pendingReports.withLock { $0.append(report) }
        } else {
            Unmanaged<DeliveryWaiter>.fromOpaque(messageOpaque).takeRetainedValue().complete(message)
        }
        if gated, let gate = rd_kafka_topic_opaque(m.rkt) {
            let gate = Unmanaged<PartitionGate>.fromOpaque(gate).takeUnretainedValue()
            gate.send(gate.finished(m.partition), partition: m.partition, context: self)
        }
    }

    /// A message that never reached librdkafka fails: its waiter is told, or its detached
    /// report says so.
    func failed(opaque tagged: UnsafeMutableRawPointer, topicPartition: TopicPartition, error: KafkaError) {
        let messageOpaque = DeliveryOpaque.ungated(tagged).opaque
        if let id = DeliveryOpaque.detachedID(messageOpaque) {
            pendingReports.withLock { $0.append(KafkaDeliveryReport(id: id, topicPartition: topicPartition, offset: -1, error: error)) }
        } else {
            Unmanaged<DeliveryWaiter>.fromOpaque(messageOpaque).takeRetainedValue().enqueueFailed(error)
        }
    }

    /// Yields the pending reports. Under the lock: senders of held messages call it too (a
    /// release that librdkafka refused), and two batches must not overtake each other.
    func flushReports() {
        pendingReports.withLock { pending in
            guard !pending.isEmpty else { return }
            reports.yield(pending)
            pending.removeAll(keepingCapacity: true)
        }
    }
}

/// A topic handle of a producer and, under `KafkaBatching.adaptive`, its gate.
/// Sendable: librdkafka's topic handles may be used from any thread.
struct ProducerTopic: @unchecked Sendable {
    let pointer: OpaquePointer
    let gate: PartitionGate?
}

/// Enqueues one message (librdkafka copies key and value). `partition` -1 lets librdkafka's
/// partitioner choose. On success librdkafka owns the opaque's reference.
func produceMessage(
    _ handle: OpaquePointer, _ topic: OpaquePointer, partition: Int32, value: UnsafeRawBufferPointer,
    key: UnsafeRawBufferPointer?, headers: [KafkaHeader], opaque: UnsafeMutableRawPointer?
) -> rd_kafka_resp_err_t {
    var rdHeaders: OpaquePointer?
    if !headers.isEmpty {
        rdHeaders = rd_kafka_headers_new(headers.count)
        for header in headers {
            if let value = header.value {
                _ = value.withUnsafeBytes { rd_kafka_header_add(rdHeaders, header.key, -1, $0.baseAddress, $0.count) }
            } else {
                rd_kafka_header_add(rdHeaders, header.key, -1, nil, 0)
            }
        }
    }
    let err = swift_rdk_produce(handle, topic, partition, value.baseAddress, value.count, key?.baseAddress, key?.count ?? 0, rdHeaders, opaque)
    if err != RD_KAFKA_RESP_ERR_NO_ERROR, let rdHeaders { rd_kafka_headers_destroy(rdHeaders) }
    return err
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
    private let topics = Mutex<[String: ProducerTopic]>([:])
    private let partitionCountTasks = Mutex<[Task<Void, Never>]>([])
    /// Set when messages go through a `PartitionGate` per topic (`KafkaBatching.adaptive`).
    private let gatesPartitioner: String?
    /// librdkafka's queue limits, which held messages count against.
    private let queueLimits: (messages: Int, bytes: Int)
    /// The room in librdkafka's queue, shared by the topics' gates.
    private let queueRoom: QueueRoom
    private let nextDetachedID = Atomic<UInt64>(0)
    private let lifecycle = Atomic<Int>(Lifecycle.running.rawValue)
    /// Enqueues under way. A stop or crash waits for them after leaving `running`, and an
    /// enqueue that starts later sees that and refuses: no message reaches librdkafka behind
    /// the purge or flush that ends the producer (sequentially consistent on both sides).
    private let enqueuesInProgress = Atomic<Int>(0)
    private let flushTimeout: Duration
    private let logger: Logger
    public let isTransactional: Bool
    /// How messages are grouped into requests: `.adaptive` only when configured so and not
    /// transactional.
    public var batching: KafkaBatching { gatesPartitioner == nil ? .linger : .adaptive }

    /// Reports of `sendDetached` messages, in the order librdkafka delivered them.
    /// Consume it whenever `sendDetached` is used; reports are buffered until read.
    public let deliveryReports: KafkaDeliveryReports

    public init(configuration: KafkaProducerConfiguration, logger: Logger) throws(KafkaError) {
        let (stream, continuation) = AsyncStream<[KafkaDeliveryReport]>.makeStream()
        let context = ProducerContext(logger: logger, reports: continuation)
        let handle = try makeRdKafkaHandle(RD_KAFKA_PRODUCER, properties: configuration.librdkafkaProperties, context: context) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
                guard let message, let opaque else { return }
                Unmanaged<ProducerContext>.fromOpaque(opaque).takeUnretainedValue().delivered(message)
            }
        }
        self.handle = handle
        self.context = context
        self.logger = logger
        self.flushTimeout = configuration.flushTimeout
        self.isTransactional = configuration.transactionalID != nil
        let properties = configuration.librdkafkaProperties
        self.gatesPartitioner = configuration.batching == .adaptive && properties["transactional.id"] == nil
            ? configuration.partitionerName : nil
        // librdkafka 2.0's defaults: 100,000 messages, 1,048,576 KiB.
        self.queueLimits = (
            properties["queue.buffering.max.messages"].flatMap(Int.init) ?? 100_000,
            (properties["queue.buffering.max.kbytes"].flatMap(Int.init) ?? 1_048_576) * 1024)
        self.queueRoom = QueueRoom(limit: queueLimits.messages, producer: handle)
        self.deliveryReports = KafkaDeliveryReports(stream)
        switch configuration.callbacks {
        case .pollingThread:
            let pollHandle = SendableHandle(handle)
            self.pollingThread = PollingThread(name: "producer-poll") {
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
        stopPartitionCountRefresh()
        let handle = SendableHandle(handle), context = context, topics = topics.withLock { Array($0.values) }
        let pollingThread = pollingThread, scheduledPoller = scheduledPoller
        tearDownInBackground(logger: logger) {
            // Its reports must not run into the handle's destruction below.
            pollingThread?.stopAndWait(logger: context.logger)
            scheduledPoller?.close()
            // Held messages fail first, so that the purged messages' reports below release nothing.
            Self.failAllHeld(topics, context: context)
            // Anything still queued (sends racing a shutdown) fails its waiters instead of leaking them.
            rd_kafka_purge(handle.pointer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
            rd_kafka_poll(handle.pointer, 0)
            for topic in topics { rd_kafka_topic_destroy(topic.pointer) }
            rd_kafka_destroy(handle.pointer)
            context.flushReports()
            context.reports.finish()
        }
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
        // When a topic cannot be opened, or the task is cancelled while the queue is full, that
        // message and the ones after it fail unsent; the ones sent before are waited for, so
        // the error comes with every message's outcome settled.
        func failRest(from index: Int, _ error: KafkaError) {
            for _ in index..<messages.count { waiter.enqueueFailed(error) }
        }
        var current: (name: String, topic: ProducerTopic)?
        sending: for (index, message) in messages.enumerated() {
            if current?.name != message.topic {
                do {
                    current = (message.topic, try topicHandle(message.topic))
                } catch {
                    failRest(from: index, error)
                    break sending
                }
            }
            let opaque = Unmanaged.passRetained(waiter as DeliveryWaiter)
            while true {
                let err = enqueue(message, topic: current!.topic, opaque: opaque.toOpaque())
                if err == RD_KAFKA_RESP_ERR_NO_ERROR { break }
                if err == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                    if (try? await Task.sleep(for: .milliseconds(1))) != nil { continue }
                    // A cancelled task's sleep returns at once: it would spin until the queue
                    // has room (a broker outage: minutes). It sends no more instead.
                    opaque.release()
                    failRest(from: index, KafkaError(kind: .delivery, err, context: "queue full for \(message.topic), and the sending task was cancelled"))
                    break sending
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
        _ message: KafkaProducerMessage<Key, Value>, topic: ProducerTopic, opaque: UnsafeMutableRawPointer?
    ) -> rd_kafka_resp_err_t {
        enqueuesInProgress.add(1, ordering: .sequentiallyConsistent)
        defer { enqueuesInProgress.subtract(1, ordering: .sequentiallyConsistent) }
        guard lifecycle.load(ordering: .sequentiallyConsistent) == Lifecycle.running.rawValue else { return RD_KAFKA_RESP_ERR__DESTROY }
        return message.value.withUnsafeKafkaBytes { value in
            guard let key = message.key else { return enqueue(message, value: value, key: nil, topic: topic, opaque: opaque) }
            return key.withUnsafeKafkaBytes { key in enqueue(message, value: value, key: key, topic: topic, opaque: opaque) }
        }
    }

    private func enqueue<Key, Value>(
        _ message: KafkaProducerMessage<Key, Value>, value: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer?,
        topic: ProducerTopic, opaque: UnsafeMutableRawPointer?
    ) -> rd_kafka_resp_err_t {
        guard let gate = topic.gate else {
            return produceMessage(handle, topic.pointer, partition: message.partition ?? -1, value: value, key: key, headers: message.headers, opaque: opaque)
        }
        /// A message the gate lets pass still takes its room while it goes: a held message was
        /// promised that room.
        func ungated() -> rd_kafka_resp_err_t {
            guard gate.room.claim(always: false) else { return RD_KAFKA_RESP_ERR__QUEUE_FULL }
            defer { gate.room.release(1) }
            // RD_KAFKA_PARTITION_UA (-1): librdkafka's partitioner chooses.
            return produceMessage(handle, topic.pointer, partition: message.partition ?? -1, value: value, key: key, headers: message.headers, opaque: opaque)
        }
        guard let opaque else { return ungated() }
        let tagged = DeliveryOpaque.gated(opaque)
        switch gate.admit(partition: message.partition, key: key, hold: { PartitionGate.Held(value: value, key: key, headers: message.headers, opaque: tagged) }) {
        case .ungated:
            return ungated()
        case .held:
            return RD_KAFKA_RESP_ERR_NO_ERROR
        case .full:
            return RD_KAFKA_RESP_ERR__QUEUE_FULL
        case .now(let partition):
            let err = produceMessage(handle, topic.pointer, partition: partition, value: value, key: key, headers: message.headers, opaque: tagged)
            gate.room.release(1)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                // What waited behind it goes now.
                gate.send(gate.finished(partition), partition: partition, context: context)
                context.flushReports()
            }
            return err
        }
    }

    private func topicHandle(_ name: String) throws(KafkaError) -> ProducerTopic {
        try topics.withLock { (topics) throws(KafkaError) -> ProducerTopic in
            if let topic = topics[name] { return topic }
            let gate = gatesPartitioner.map {
                PartitionGate(partitioner: $0, producer: handle, room: queueRoom, maxBytes: queueLimits.bytes)
            }
            var conf: OpaquePointer?
            if let gate {
                conf = rd_kafka_default_topic_conf_dup(handle)
                rd_kafka_topic_conf_set_opaque(conf, Unmanaged.passUnretained(gate).toOpaque())
            }
            guard let pointer = rd_kafka_topic_new(handle, name, conf) else {
                throw KafkaError(kind: .delivery, rd_kafka_last_error(), context: "topic \(name)")
            }
            gate?.topic = pointer
            let topic = ProducerTopic(pointer: pointer, gate: gate)
            topics[name] = topic
            if let gate { startPartitionCountRefresh(topic: pointer, gate: gate) }
            return topic
        }
    }

    /// Fails what the gates still hold and stops gating (a crash, or the handle going away).
    private func failAllHeld() {
        Self.failAllHeld(topics.withLock { Array($0.values) }, context: context)
    }

    private static func failAllHeld(_ topics: [ProducerTopic], context: ProducerContext) {
        let error = KafkaError(kind: .delivery, RD_KAFKA_RESP_ERR__PURGE_QUEUE)
        for gate in topics.compactMap(\.gate) {
            guard let topic = gate.topic else { continue }
            let name = String(cString: rd_kafka_topic_name(topic))
            for (partition, held) in gate.close() {
                for message in held {
                    context.failed(opaque: message.opaque, topicPartition: TopicPartition(topic: name, partition: partition), error: error)
                    message.deallocate()
                }
            }
        }
        context.flushReports()
    }

    private func checkRunning() throws {
        if lifecycle.load(ordering: .acquiring) != Lifecycle.running.rawValue {
            throw KafkaError(kind: .state, code: .destroyed, message: "the producer is shut down", isRetriable: false)
        }
    }

    /// What the gate of a topic did under `KafkaBatching.adaptive`; nil for another
    /// batching or a topic not produced to yet.
    public func gateStatistics(topic: String) -> KafkaGateStatistics? {
        topics.withLock { $0[topic]?.gate?.statistics }
    }

    /// Messages enqueued and not yet acknowledged.
    public var outstandingMessages: Int {
        Int(rd_kafka_outq_len(handle)) + topics.withLock { $0.values.reduce(0) { $0 + ($1.gate?.heldCount ?? 0) } }
    }

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
    ///
    /// A fatal error ends it early, with that error: librdkafka raises one when an idempotent
    /// producer can no longer keep its order (or a transactional one was fenced), and then
    /// fails every later message. Only a new producer writes again, so the service group
    /// ends and the process's supervisor starts a new one, instead of a process that answers
    /// every request with a failure while it looks healthy.
    public func run() async throws {
        let fatal = try? await cancelWhenGracefulShutdown { () async throws -> KafkaError in
            while true {
                if let fatal = self.fatalFailure { return fatal }
                try await Task.sleep(for: Self.fatalCheckInterval)
            }
        }
        await shutdown()
        if let fatal {
            logger.critical("kafka producer failed for good; stopping so that a new one can start", metadata: ["kafka.error": "\(fatal)"])
            throw fatal
        }
    }

    /// How often `run` looks for a fatal error.
    static let fatalCheckInterval: Duration = .milliseconds(250)

    /// The fatal error librdkafka raised for this producer, nil while there is none.
    public var fatalFailure: KafkaError? { KafkaError.fatal(of: handle, kind: .delivery) }

    /// Raises a fatal error as librdkafka would (`rd_kafka_test_fatal_error`), for tests of
    /// what follows one: no real fatal error can be caused on purpose.
    public func raiseFatalErrorForTesting(reason: String) {
        _ = rd_kafka_test_fatal_error(handle, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, reason)
    }

    /// Keeps a gated topic's partition count (`KafkaBatching.adaptive`): asked when the topic
    /// is first used, again after `partitionCountDelay` while the cluster does not answer or
    /// does not know the topic, then every `partitionCountRefresh`, so added partitions are
    /// used. Until the count is known the topic's messages are not gated. The task holds the
    /// producer only while it asks.
    private func startPartitionCountRefresh(topic: OpaquePointer, gate: PartitionGate) {
        let pointer = SendableHandle(topic)
        let task = Task.detached { [weak self] in
            var failures = 0
            while !Task.isCancelled, let known = await self?.refreshPartitionCount(topic: pointer, gate: gate) {
                failures = known ? 0 : failures + 1
                try? await Task.sleep(for: KafkaProducer.partitionCountDelay(failures: failures))
            }
        }
        partitionCountTasks.withLock { $0.append(task) }
    }

    /// Whether the count could be set; nil once the producer stopped.
    private func refreshPartitionCount(topic: SendableHandle, gate: PartitionGate) async -> Bool? {
        guard lifecycle.load(ordering: .acquiring) == Lifecycle.running.rawValue else { return nil }
        let handle = SendableHandle(handle)
        guard let count = await blockingCall({ Self.partitionCount(handle.pointer, topic: topic.pointer) }) else { return false }
        gate.setPartitionCount(count)
        return true
    }

    private func stopPartitionCountRefresh() {
        for task in partitionCountTasks.withLock({ $0 }) { task.cancel() }
    }

    static let partitionCountRefresh: Duration = .seconds(60)

    /// The wait before asking a topic's partition count again after `failures` unanswered
    /// requests in a row: `partitionCountRefresh` once it is known (no failure), else 200 ms
    /// doubling with each failure up to `partitionCountRefresh`. A topic that does not exist
    /// costs the cluster a metadata request a minute, not five a second.
    static func partitionCountDelay(failures: Int) -> Duration {
        guard failures > 0 else { return partitionCountRefresh }
        let doublings = min(failures - 1, 10)  // 200 ms · 2^10 is past the cap
        return min(.milliseconds(200 << doublings), partitionCountRefresh)
    }

    /// The topic's partition count from a metadata request, nil when the cluster does not
    /// answer within 2 s or does not know the topic.
    private static func partitionCount(_ handle: OpaquePointer, topic: OpaquePointer) -> Int? {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        guard rd_kafka_metadata(handle, 0, topic, &metadata, 2_000) == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { return nil }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt > 0, metadata.pointee.topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR,
              metadata.pointee.topics[0].partition_cnt > 0 else { return nil }
        return Int(metadata.pointee.topics[0].partition_cnt)
    }

    /// Stops the way a killed process stops, for crash tests: queued and in-flight messages are
    /// abandoned (their callbacks report a purge error), nothing is flushed. Requests already
    /// on the wire may still be written by the broker, as after a real crash.
    public func simulateCrash() async {
        // Once is enough (a failed generation's end may ask twice).
        guard lifecycle.exchange(Lifecycle.shutDown.rawValue, ordering: .sequentiallyConsistent) != Lifecycle.shutDown.rawValue else { return }
        stopPartitionCountRefresh()
        await enqueuesFinished()
        failAllHeld()
        await purgeEverything(serve: false)
        await stopPolling()
        // Again: the polling thread may have released held messages (a report for their
        // partition came) between the first purge and its stop.
        await purgeEverything(serve: true)  // their callbacks too, so no waiter is left hanging
        context.flushReports()
        context.reports.finish()
    }

    /// Stops accepting messages, waits up to the flush timeout for everything queued to be
    /// acknowledged, and stops the polling thread. Safe to call more than once.
    public func shutdown() async {
        guard lifecycle.compareExchange(
            expected: Lifecycle.running.rawValue, desired: Lifecycle.shuttingDown.rawValue, ordering: .sequentiallyConsistent
        ).exchanged else { return }
        stopPartitionCountRefresh()
        await enqueuesFinished()
        // What the gates hold goes to librdkafka now, and whatever still comes without waiting.
        for gate in topics.withLock({ $0.values.compactMap(\.gate) }) {
            for (partition, held) in gate.drain() { gate.send(held, partition: partition, context: context) }
        }
        let handle = SendableHandle(handle)
        let millis = flushTimeout.milliseconds
        let queued = outstandingMessages
        let err = await blockingCall { rd_kafka_flush(handle.pointer, millis) }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.error("producer flush did not finish", metadata: [
                "kafka.error": "\(KafkaErrorCode(err).name)", "kafka.outstanding": "\(outstandingMessages)",
            ])
            // What is still queued fails now (its callbacks report the purge) instead of never.
            await purgeEverything(serve: true)
        } else if queued > 0 {
            logger.debug("producer flushed", metadata: ["kafka.flushed": "\(queued)"])
        }
        await stopPolling()
        if outstandingMessages > 0 {
            // Released by the polling thread after the flush had found the queue empty, or not
            // acknowledged in time: failed now rather than never reported.
            await purgeEverything(serve: true)
        }
        context.flushReports()
        context.reports.finish()
        lifecycle.store(Lifecycle.shutDown.rawValue, ordering: .releasing)
    }

    /// Fails what is queued and in flight (their callbacks report the purge) and, with `serve`,
    /// runs those callbacks. On a blocking thread: the purge waits, without a limit, for each
    /// broker thread to answer it.
    private func purgeEverything(serve: Bool) async {
        let handle = SendableHandle(handle)
        await blockingCall {
            rd_kafka_purge(handle.pointer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
            if serve { rd_kafka_poll(handle.pointer, 0) }
        }
    }

    /// Waits for the enqueues that started before the producer left `running` (each is a few
    /// microseconds of work; none waits for anything).
    private func enqueuesFinished() async {
        while enqueuesInProgress.load(ordering: .sequentiallyConsistent) > 0 { await Task.yield() }
    }

    /// Stops serving callbacks from the polling thread or the scheduler; whoever calls
    /// `rd_kafka_poll` afterwards (shutdown, deinit) serves what is left.
    private func stopPolling() async {
        // However long the step in progress takes: a report it served after `reports` finished
        // would be lost.
        await pollingThread?.stop(logger: logger)
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
