import CRdKafka
public import Logging
public import ServiceLifecycle
import Synchronization

/// Callback state of a consumer handle. Everything but `assignment`, `buffer` and `requests`
/// is touched only on the polling thread.
final class ConsumerContext: RdKafkaHandleContext, @unchecked Sendable {
    let buffer: ConsumerEventBuffer
    let revokeTimeout: Duration
    let assignment = Mutex<Set<TopicPartition>>([])
    /// Partitions whose revoke waits for the caller's acknowledgement.
    let revoking = Mutex<Set<TopicPartition>>([])
    /// Work that must run on the polling thread between polls (pause, resume); closed by the
    /// thread's last run, after which no request is taken (one taken later would wait for ever).
    let requests = Mutex<(items: [@Sendable (OpaquePointer) -> Void], closed: Bool)>(([], false))
    let closing = Atomic<Bool>(false)
    /// `simulateCrash`: stop without closing (no final commit, no leaving the group).
    let crashing = Atomic<Bool>(false)
    /// The group assigned partitions at least once (see `KafkaConsumer.deinit`).
    let everAssigned = Atomic<Bool>(false)
    /// A failure of this consumer's own, after which it would skip messages (see `seek`).
    let ownFailure = Mutex<KafkaError?>(nil)
    /// `KafkaConsumer.failNextSeekForTesting`.
    let failNextSeek = Atomic<Bool>(false)
    var pending: [KafkaConsumerEvent] = []
    var topicNames: [OpaquePointer: String] = [:]
    /// Since when `pending` waits for room in the full buffer.
    private var heldSince: ContinuousClock.Instant?
    /// Partitions paused because the buffer stayed full (not the caller's `pause`).
    private var heldBack: Set<TopicPartition> = []
    /// Partitions the caller paused.
    var pausedByCaller: Set<TopicPartition> = []
    /// How long polled events may wait for room before fetching pauses.
    static let holdBackAfter = Duration.seconds(1)
    /// `KafkaConsumerConfiguration.tickInterval`, and when the next tick is due.
    let tickInterval: Duration?
    private var nextTick: ContinuousClock.Instant?

    init(logger: Logger, buffer: ConsumerEventBuffer, revokeTimeout: Duration, tickInterval: Duration?) {
        self.buffer = buffer
        self.revokeTimeout = revokeTimeout
        self.tickInterval = tickInterval
        super.init(logger: logger)
    }

    /// Queues a `.tick` behind the messages polled so far when one is due.
    func tickIfDue() {
        guard let tickInterval else { return }
        let now = ContinuousClock.now
        guard let due = nextTick else {
            nextTick = now + tickInterval
            return
        }
        guard now >= due else { return }
        pending.append(.tick)
        nextTick = now + tickInterval
    }

    /// Hands what was polled to the buffer whether or not it has room: before a rebalance
    /// event (which must follow them) and on close. What was polled is at most a few hundred
    /// events, and the polling thread never stops polling for them.
    func flushPending() {
        guard !pending.isEmpty else { return }
        var batch: [KafkaConsumerEvent] = []
        batch.reserveCapacity(pending.count)
        swap(&batch, &pending)
        buffer.append(batch)
    }

    /// Whether polled events wait for room in the buffer.
    var isHeld: Bool { heldSince != nil }

    /// Hands what was polled to the buffer without waiting for room. Backpressure without
    /// blocking the polling thread: events the full buffer cannot take wait here, and after
    /// `holdBackAfter` fetching pauses while the thread goes on polling, so rebalances are
    /// served and the member stays in the group however long the caller is busy (a thread
    /// blocked until the caller takes more would let `max.poll.interval.ms` pass, and the group
    /// would hand its partitions to another member while the caller still works on them).
    /// Fetching resumes once the buffer took everything and the caller took half of it;
    /// librdkafka resumes a partition after the last message it returned, so nothing is skipped.
    func flushOrHoldBack(_ rk: OpaquePointer) {
        if !pending.isEmpty, buffer.tryAppend(pending) { pending.removeAll(keepingCapacity: true) }
        guard !pending.isEmpty else {
            heldSince = nil
            // Fetching resumes once the caller took half the buffer: resuming at the first free
            // place would pause again at once, and each pause throws librdkafka's prefetch away.
            guard !heldBack.isEmpty, buffer.count < buffer.resumeBelow else { return }
            let resume = heldBack.subtracting(pausedByCaller)
            heldBack = []
            if !resume.isEmpty {
                let list = TopicPartitionList(Array(resume))
                rd_kafka_resume_partitions(rk, list.pointer)
                logger.debug("fetching resumed", metadata: ["kafka.partitions": "\(resume.sorted())"])
            }
            return
        }
        let now = ContinuousClock.now
        guard let since = heldSince else {
            heldSince = now
            return
        }
        guard now - since >= Self.holdBackAfter else { return }
        let pause = assignment.withLock { $0 }.subtracting(heldBack).subtracting(pausedByCaller)
        guard !pause.isEmpty else { return }
        let list = TopicPartitionList(Array(pause))
        rd_kafka_pause_partitions(rk, list.pointer)
        heldBack.formUnion(pause)
        logger.debug("fetching paused: the caller has not taken the buffered events", metadata: ["kafka.partitions": "\(pause.sorted())"])
    }

    func isHeldBack(_ partition: TopicPartition) -> Bool { heldBack.contains(partition) }

    /// Partitions leaving the assignment are resumed first when held back: librdkafka keeps a
    /// pause across a rebalance, and a partition that came back later would never fetch.
    func releaseHeldBack(_ rk: OpaquePointer, _ partitions: some Sequence<TopicPartition>) {
        let release = heldBack.intersection(partitions)
        guard !release.isEmpty else { return }
        heldBack.subtract(release)
        let list = TopicPartitionList(Array(release))
        rd_kafka_resume_partitions(rk, list.pointer)
    }

    /// Moves the fetch positions of assigned partitions back to the messages a pause dropped,
    /// or a caller dropped while they were paused. One that does not happen (the seek timed out,
    /// or failed for an assigned partition) would let fetching go on after them, and the
    /// caller, finding later messages, would commit past them: the consumer fails for good
    /// instead, its events end without what was buffered, and the caller starts over from
    /// the committed offsets. Partitions no longer assigned are another member's to read.
    func seek(_ rk: OpaquePointer, to offsets: [TopicPartition: Int64]) throws {
        let list = TopicPartitionList(offsets)
        var failure: KafkaError?
        if failNextSeek.exchange(false, ordering: .relaxed) {
            failure = KafkaError(kind: .consumer, RD_KAFKA_RESP_ERR__TIMED_OUT, context: "seek (for testing)")
        } else if let error = rd_kafka_seek_partitions(rk, list.pointer, 5000) {
            failure = KafkaError(kind: .consumer, consuming: error)
        } else {
            let assigned = assignment.withLock { $0 }
            if let failed = list.entries.first(where: { $0.error != RD_KAFKA_RESP_ERR_NO_ERROR && assigned.contains($0.partition) }) {
                failure = KafkaError(kind: .consumer, failed.error, context: "seek \(failed.partition.topic)/\(failed.partition.partition)")
            }
        }
        guard let failure else { return }
        ownFailure.withLock { if $0 == nil { $0 = failure } }
        logger.critical("kafka consumer could not move back to messages it dropped; its events end", metadata: ["kafka.error": "\(failure)"])
        endEventsForGood()
        throw failure
    }

    /// After a failure for good: the events end without what was polled or buffered.
    private func endEventsForGood() {
        pending = []
        buffer.abandon()
        buffer.finish()
    }

    /// Converts and destroys a message returned by `rd_kafka_consumer_poll`.
    func take(_ pointer: UnsafeMutablePointer<rd_kafka_message_t>) {
        defer { rd_kafka_message_destroy(pointer) }
        let m = pointer.pointee
        if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF { return }
            if m.err == RD_KAFKA_RESP_ERR__FATAL {
                // librdkafka failed this consumer for good (a static member fenced by another
                // with its `group.instance.id`, say): it fetches nothing more. Its events end,
                // and the caller, finding `fatalFailure`, starts over with a new consumer
                // instead of waiting for ever.
                logger.critical("kafka consumer failed for good; its events end", metadata: [
                    "kafka.message": "\(rd_kafka_message_errstr(pointer).map { String(cString: $0) } ?? "")",
                ])
                // What was polled is not handed over: a fenced member's partitions are another
                // member's already, and both would process them.
                endEventsForGood()
                return
            }
            let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
            logger.warning("consumer error", metadata: [
                "kafka.error": "\(KafkaErrorCode(m.err).name)",
                "kafka.topic": "\(topic)", "kafka.partition": "\(m.partition)",
                "kafka.message": "\(String(cString: rd_kafka_err2str(m.err)))",
            ])
            return
        }
        let topic: String
        if let rkt = m.rkt, let cached = topicNames[rkt] {
            topic = cached
        } else {
            topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
            if let rkt = m.rkt { topicNames[rkt] = topic }
        }
        let value = m.payload.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: m.len)) } ?? []
        let key = m.key.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: m.key_len)) }
        var headers: [KafkaHeader] = []
        var hdrs: OpaquePointer?
        if rd_kafka_message_headers(pointer, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs {
            var index = 0
            var name: UnsafePointer<CChar>?
            var valuePointer: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(hdrs, index, &name, &valuePointer, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                headers.append(KafkaHeader(
                    key: name.map { String(cString: $0) } ?? "",
                    value: valuePointer.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: size)) }))
                index += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(pointer, &timestampType)
        pending.append(.message(KafkaMessage(
            topic: topic, partition: m.partition, offset: m.offset, key: key, value: value, headers: headers,
            timestamp: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp, valueIsNull: m.payload == nil)))
    }

    func rebalance(_ rk: OpaquePointer, _ err: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        let partitions = TopicPartitionList.entries(list).map(\.partition)
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        if err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
            // The revoke is visible before anything waits for room in the buffer: a caller held
            // up by its own read-ahead sees it and gives the partitions up instead of waiting.
            // Their polled messages are dropped (their offsets were not stored).
            revoking.withLock { $0.formUnion(partitions) }
            let revoked = Set(partitions)
            pending.removeAll { event in
                if case .message(let message) = event { return revoked.contains(message.topicPartition) }
                return false
            }
            buffer.purge(revoked)
        }
        flushPending()
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            if cooperative {
                if let error = rd_kafka_incremental_assign(rk, list) {
                    logger.error("incremental assign failed: \(KafkaError(kind: .consumer, consuming: error))")
                }
            } else {
                let err = rd_kafka_assign(rk, list)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    logger.error("assign failed: \(KafkaError(kind: .consumer, err))")
                }
            }
            assignment.withLock { $0.formUnion(partitions) }
            everAssigned.store(true, ordering: .releasing)
            logger.info("partitions assigned", metadata: ["kafka.partitions": "\(partitions.sorted())"])
            buffer.append([.partitionsAssigned(partitions)])

        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            let fatal = KafkaError.hasFatal(rk)
            let lost = fatal || rd_kafka_assignment_lost(rk) != 0
            defer { revoking.withLock { $0.subtract(partitions) } }
            buffer.purge(Set(partitions))
            if fatal {
                // The events ended with the fatal error; nothing is committed (it would fail).
                logger.debug("partitions revoked after a fatal error", metadata: ["kafka.partitions": "\(partitions.sorted())"])
            } else if closing.load(ordering: .acquiring) {
                buffer.appendRevoke(partitions, lost: lost)
            } else if !buffer.appendRevokeAndWait(partitions, lost: lost, timeout: revokeTimeout) {
                logger.warning("revoke not acknowledged in time; committing what was stored", metadata: [
                    "kafka.partitions": "\(partitions.sorted())",
                ])
            }
            if !lost {
                // Commit what the caller finished so the next owner starts right after it.
                let err = rd_kafka_commit(rk, nil, 0)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
                    logger.warning("commit on revoke failed", metadata: ["kafka.error": "\(KafkaErrorCode(err).name)"])
                }
            }
            releaseHeldBack(rk, partitions)
            if cooperative {
                if let error = rd_kafka_incremental_unassign(rk, list) {
                    logger.error("incremental unassign failed: \(KafkaError(kind: .consumer, consuming: error))")
                }
            } else {
                rd_kafka_assign(rk, nil)
            }
            assignment.withLock { $0.subtract(partitions) }
            logger.info(lost ? "partitions lost" : "partitions revoked", metadata: ["kafka.partitions": "\(partitions.sorted())"])

        default:
            logger.error("rebalance error", metadata: ["kafka.error": "\(KafkaErrorCode(err).name)"])
            releaseHeldBack(rk, assignment.withLock { $0 })
            rd_kafka_assign(rk, nil)
            assignment.withLock { $0.removeAll() }
        }
    }

    /// Runs the queued requests; `last`: the polling thread ends, and takes no more.
    func runRequests(_ rk: OpaquePointer, last: Bool = false) {
        let work = requests.withLock { requests -> [@Sendable (OpaquePointer) -> Void] in
            defer { requests.items.removeAll() }
            if last { requests.closed = true }
            return requests.items
        }
        for item in work { item(rk) }
    }

    /// Queues a request for the polling thread; false once it took its last ones.
    func addRequest(_ request: @escaping @Sendable (OpaquePointer) -> Void) -> Bool {
        requests.withLock { requests in
            guard !requests.closed else { return false }
            requests.items.append(request)
            return true
        }
    }
}

/// A Kafka consumer over librdkafka, run as a `Service`.
///
/// Iterate `events` (or `messages`, which skips rebalance events) from one task. Call
/// `storeOffset` when a message is finished: only stored offsets are committed (periodically,
/// on revoke and on close), so a message the caller did not finish is delivered again.
public final class KafkaConsumer: Service, @unchecked Sendable {
    private let handle: OpaquePointer
    private let context: ConsumerContext
    private let pollingThread: PollingThread
    private let closed = Atomic<Bool>(false)
    /// Joined a group (as opposed to a fixed assignment).
    private let subscribes: Bool

    /// The group coordinator gave this consumer a member id: from then on librdkafka 2.0.2
    /// must not destroy it before its first assignment (#4312).
    private var joinedGroup: Bool {
        guard let id = rd_kafka_memberid(handle) else { return false }
        defer { rd_kafka_mem_free(handle, id) }
        return id.pointee != 0
    }
    private let closeTimeout: Duration
    private let logger: Logger
    public let groupID: String

    public init(configuration: KafkaConsumerConfiguration, logger: Logger) throws(KafkaError) {
        let buffer = ConsumerEventBuffer(capacity: configuration.maxBufferedMessages)
        let context = ConsumerContext(
            logger: logger, buffer: buffer, revokeTimeout: configuration.revokeTimeout, tickInterval: configuration.tickInterval)
        let subscribes: Bool
        if case .topics = configuration.subscription { subscribes = true } else { subscribes = false }
        let handle = try makeRdKafkaHandle(RD_KAFKA_CONSUMER, properties: configuration.librdkafkaProperties, context: context) { conf in
            guard subscribes else { return }
            rd_kafka_conf_set_rebalance_cb(conf) { rk, err, list, opaque in
                guard let rk, let list, let opaque else { return }
                Unmanaged<ConsumerContext>.fromOpaque(opaque).takeUnretainedValue().rebalance(rk, err, list)
            }
        }
        rd_kafka_poll_set_consumer(handle)

        switch configuration.subscription {
        case .topics(let topics):
            let list = TopicPartitionList(topics.map { TopicPartition(topic: $0, partition: -1) })
            let err = rd_kafka_subscribe(handle, list.pointer)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                rd_kafka_destroy(handle)
                throw KafkaError(kind: .consumer, err, context: "subscribe to \(topics)")
            }
        case .partitions(let partitions):
            let list = TopicPartitionList(partitions.mapValues { $0 ?? Int64(RD_KAFKA_OFFSET_STORED) })
            let err = rd_kafka_assign(handle, list.pointer)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                rd_kafka_destroy(handle)
                throw KafkaError(kind: .consumer, err, context: "assign \(partitions.keys.sorted())")
            }
            context.assignment.withLock { $0 = Set(partitions.keys) }
            buffer.append([.partitionsAssigned(partitions.keys.sorted())])
        }

        self.handle = handle
        self.context = context
        self.logger = logger
        self.subscribes = subscribes
        self.groupID = configuration.groupID
        self.closeTimeout = configuration.closeTimeout
        let pollHandle = SendableHandle(handle)
        self.pollingThread = PollingThread(name: "consumer-poll", step: {
            let rk = pollHandle.pointer
            context.runRequests(rk)
            if context.isHeld {
                // The buffer is full: wait for the caller to take (briefly, to serve requests and
                // rebalances), then poll without waiting, which keeps the member in the group.
                context.buffer.waitForRoom(timeout: .milliseconds(100))
                if let message = rd_kafka_consumer_poll(rk, 0) { context.take(message) }
                context.tickIfDue()
                context.flushOrHoldBack(rk)
                return
            }
            guard let first = rd_kafka_consumer_poll(rk, 100) else {
                context.tickIfDue()
                context.flushOrHoldBack(rk)
                return
            }
            context.take(first)
            // Drain what is already fetched without waiting, then hand it over in one batch.
            while context.pending.count < 512, let next = rd_kafka_consumer_poll(rk, 0) {
                context.take(next)
            }
            context.tickIfDue()
            context.flushOrHoldBack(rk)
        }, onExit: {
            if context.crashing.load(ordering: .acquiring) {
                // Pauses and resumes still queued answer their callers (the handle is alive).
                context.runRequests(pollHandle.pointer, last: true)
                context.buffer.finish()
                return
            }
            // Close on the thread that polled: it serves the final revoke and leaves the group.
            context.closing.store(true, ordering: .releasing)
            context.runRequests(pollHandle.pointer, last: true)
            // A consumer with a fatal error cannot leave its group: its close would only fail.
            let fatal = KafkaError.hasFatal(pollHandle.pointer)
            let err = fatal ? RD_KAFKA_RESP_ERR_NO_ERROR : rd_kafka_consumer_close(pollHandle.pointer)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                context.logger.warning("consumer close", metadata: ["kafka.error": "\(KafkaErrorCode(err).name)"])
            }
            context.flushPending()
            context.buffer.finish()
        })
    }

    deinit {
        if !closed.load(ordering: .acquiring) {
            pollingThread.requestStop()
            context.buffer.finish()
            // The handle is leaked on purpose: destroying it while the polling thread may still
            // be closing would be a use-after-free. `shutdown()` is the orderly path. librdkafka's
            // threads live on and call back into the context (logging): it is kept too.
            _ = Unmanaged.passRetained(context)
            return
        }
        // librdkafka before 2.3.0 aborts the process when a group consumer using the
        // cooperative-sticky assignor is destroyed after joining but before its first assignment
        // (librdkafka issue #4312: the assignor's state is still NULL). Such a handle, already
        // closed, is leaked instead: a small leak on a rare path beats an abort.
        if subscribes, !context.everAssigned.load(ordering: .acquiring), joinedGroup {
            logger.debug("consumer handle left undestroyed: it joined but never got an assignment (librdkafka #4312)")
            // librdkafka's threads live on and call back into the context (logging): keep it.
            _ = Unmanaged.passRetained(context)
            return
        }
        // A consumer with a fatal error cannot close (librdkafka 2.0's main thread spins for
        // ever in the close `rd_kafka_destroy` would start).
        let handle = SendableHandle(handle), context = context
        tearDownInBackground(logger: logger) {
            if context.crashing.load(ordering: .acquiring) || KafkaError.hasFatal(handle.pointer) {
                rd_kafka_destroy_flags(handle.pointer, Int32(RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE))
            } else {
                rd_kafka_destroy(handle.pointer)
            }
            withExtendedLifetime(context) {}  // the handle's callbacks use it
        }
    }

    /// Every message and rebalance event, in order. Iterate from a single task, with a single iterator.
    public var events: KafkaConsumerEvents { KafkaConsumerEvents(buffer: context.buffer) }

    /// Only the messages, skipping rebalance events.
    public var messages: KafkaConsumerMessages { KafkaConsumerMessages(buffer: context.buffer) }

    /// The partitions currently assigned to this consumer.
    public var assignment: Set<TopicPartition> { context.assignment.withLock { $0 } }

    /// The fatal error librdkafka raised for this consumer, nil while there is none (an atomic
    /// read). Its events end when one is raised, without what was buffered; a caller stops at
    /// the first event it finds this set (the batch it took may hold more) and, once its
    /// events ended, checks it to tell a failure from a close.
    public var fatalFailure: KafkaError? { KafkaError.fatal(of: handle, kind: .consumer) ?? context.ownFailure.withLock { $0 } }

    /// The next seek back to dropped messages (of a pause, or a resume `from` offsets) fails
    /// as one that timed out would, for tests of what follows.
    public func failNextSeekForTesting() {
        context.failNextSeek.store(true, ordering: .relaxed)
    }

    /// Raises a fatal error as librdkafka would (`rd_kafka_test_fatal_error`), for tests of
    /// what follows one.
    public func raiseFatalErrorForTesting(reason: String) {
        _ = rd_kafka_test_fatal_error(handle, RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID, reason)
    }

    /// Whether `partition` is being revoked: its revoke event is on its way to the caller,
    /// and messages of it not yet handed out were dropped. A caller held up on a message of it
    /// (waiting for room) may drop the message: the partition's next owner reads it again.
    public func isBeingRevoked(_ partition: TopicPartition) -> Bool {
        context.revoking.withLock { $0.contains(partition) } || context.buffer.isGivenUp(partition)
    }

    /// Whether `partition`'s revoke timed out before the caller reached it: it was committed and
    /// given up (another member may own it now), and nothing more of it may be done or sent.
    public func wasGivenUp(_ partition: TopicPartition) -> Bool { context.buffer.isGivenUp(partition) }

    /// Marks `message` finished: its offset + 1 is committed with the next commit.
    /// - Throws: `KafkaError` with code `_STATE` when the partition is no longer assigned.
    public func storeOffset(_ message: KafkaMessage) throws {
        try storeOffsets([message.topicPartition: message.offset + 1])
    }

    /// Stores the next offsets to read for these partitions.
    public func storeOffsets(_ offsets: [TopicPartition: Int64]) throws {
        let list = TopicPartitionList(offsets)
        let err = rd_kafka_offsets_store(handle, list.pointer)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            let failed = list.entries.first { $0.error != RD_KAFKA_RESP_ERR_NO_ERROR }
            throw KafkaError(kind: .consumer, failed?.error ?? err, context: "store offset \(failed.map { "\($0.partition)" } ?? "")")
        }
    }

    /// Commits the stored offsets now and waits for the broker's answer.
    public func commit() async throws {
        let handle = SendableHandle(handle)
        try await blockingCall { () throws(KafkaError) in
            let err = rd_kafka_commit(handle.pointer, nil, 0)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
                throw KafkaError(kind: .consumer, err, context: "commit")
            }
        }
    }

    /// The next offset this consumer hands over for each partition, past the transaction
    /// markers and aborted records it skipped; absent where none is known yet. Messages up to
    /// it may still wait in the buffer for the caller.
    public func positions(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        let list = TopicPartitionList(partitions)
        guard rd_kafka_position(handle, list.pointer) == RD_KAFKA_RESP_ERR_NO_ERROR else { return [:] }
        var result: [TopicPartition: Int64] = [:]
        for entry in list.entries where entry.error == RD_KAFKA_RESP_ERR_NO_ERROR && entry.offset >= 0 {
            result[entry.partition] = entry.offset
        }
        return result
    }

    /// Stops fetching these partitions. Messages of them that were buffered but not yet handed
    /// out are dropped and fetched again after `resume`, so nothing is skipped.
    public func pause(_ partitions: [TopicPartition]) async throws {
        try await onPollingThread(Self.pausing(partitions, context))
    }

    /// `pause` without waiting for the polling thread, which runs requests in the order they
    /// came: for a caller the polling thread may be waiting for (a revoke's acknowledgement).
    /// A failure is logged.
    public func requestPause(_ partitions: [TopicPartition]) { enqueue(Self.pausing(partitions, context), what: "pause") }

    /// `resume` without waiting for the polling thread (see `requestPause`); `from`: where
    /// partitions go on fetching, for a caller that dropped messages it was handed while they
    /// were paused (the lowest dropped offset).
    public func requestResume(_ partitions: [TopicPartition], from offsets: [TopicPartition: Int64] = [:]) {
        enqueue(Self.resuming(partitions, context, from: offsets), what: "resume")
    }

    private static func pausing(_ partitions: [TopicPartition], _ context: ConsumerContext) -> @Sendable (OpaquePointer) throws -> Void {
        { rk in
            let list = TopicPartitionList(partitions)
            let err = rd_kafka_pause_partitions(rk, list.pointer)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(kind: .consumer, err, context: "pause") }
            context.pausedByCaller.formUnion(partitions)
            let paused = Set(partitions)
            var rewind = context.buffer.purge(paused)
            // Polled events waiting for room in the buffer go the same way.
            context.pending.removeAll { event in
                guard case .message(let message) = event, paused.contains(message.topicPartition) else { return false }
                rewind[message.topicPartition] = min(rewind[message.topicPartition] ?? .max, message.offset)
                return true
            }
            if !rewind.isEmpty { try context.seek(rk, to: rewind) }
        }
    }

    /// Resumes fetching paused partitions.
    public func resume(_ partitions: [TopicPartition]) async throws {
        try await onPollingThread(Self.resuming(partitions, context))
    }

    private static func resuming(
        _ partitions: [TopicPartition], _ context: ConsumerContext, from offsets: [TopicPartition: Int64] = [:]
    ) -> @Sendable (OpaquePointer) throws -> Void {
        { rk in
            if !offsets.isEmpty { try context.seek(rk, to: offsets) }
            context.pausedByCaller.subtract(partitions)
            // Held back for a full buffer, they resume with the others once it has room.
            let list = TopicPartitionList(partitions.filter { !context.isHeldBack($0) })
            let err = rd_kafka_resume_partitions(rk, list.pointer)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(kind: .consumer, err, context: "resume") }
        }
    }

    private func enqueue(_ body: @escaping @Sendable (OpaquePointer) throws -> Void, what: String) {
        guard !pollingThread.isStopping else { return }
        let logger = self.logger
        _ = context.addRequest { rk in
            do { try body(rk) } catch { logger.warning("consumer \(what) failed", metadata: ["kafka.error": "\(error)"]) }
        }
    }

    private func onPollingThread(_ body: @escaping @Sendable (OpaquePointer) throws -> Void) async throws {
        let closed = KafkaError(kind: .state, code: .destroyed, message: "the consumer is closed", isRetriable: false)
        if pollingThread.isStopping { throw closed }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let queued = context.addRequest { rk in
                do {
                    try body(rk)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            if !queued { continuation.resume(throwing: closed) }
        }
    }

    /// The group metadata a transactional producer needs for `sendOffsetsToTransaction`.
    func groupMetadata() throws -> SendableHandle {
        guard let metadata = rd_kafka_consumer_group_metadata(handle) else {
            throw KafkaError(kind: .transaction, code: .state, message: "consumer has no group metadata", isRetriable: false)
        }
        return SendableHandle(metadata)
    }

    /// Runs until graceful shutdown (or cancellation), then closes: commits stored offsets and
    /// leaves the group so its partitions move at once.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Stops the way a killed process stops, for crash tests: polling ends, nothing is
    /// committed beyond what the periodic auto-commit already sent, and the group is not left,
    /// so the partitions move only when the group's session timeout expires.
    public func simulateCrash() async {
        // Before its first assignment a consumer has nothing a crash could lose, and librdkafka
        // 2.0.2 can neither destroy it without closing (#4312) nor be left running (it would
        // stay in the group): it leaves the group as on shutdown.
        if subscribes, !context.everAssigned.load(ordering: .acquiring), joinedGroup { return await shutdown() }
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        context.crashing.store(true, ordering: .releasing)
        if !(await pollingThread.stop(timeout: closeTimeout)) {
            closed.store(false, ordering: .releasing)
        }
        context.buffer.finish()
    }

    /// The caller takes no more events (its work ended by an error): buffered and later events
    /// are dropped, and neither a full buffer nor a revoke waits for the caller, so a
    /// `shutdown()` after it leaves the group at once (committing the offsets stored so far).
    public func stopTakingEvents() {
        context.buffer.abandon()
    }

    /// Commits stored offsets, leaves the group and ends `events`. Safe to call more than once.
    public func shutdown() async {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        // The polling thread runs any queued pause/resume requests before it closes.
        if !(await pollingThread.stop(timeout: closeTimeout)) {
            logger.error("consumer close did not finish in time; abandoning the handle", metadata: ["kafka.group": "\(groupID)"])
            closed.store(false, ordering: .releasing)  // deinit must not destroy a handle still in use
        }
        context.buffer.finish()
    }
}

/// The events of a `KafkaConsumer`.
public struct KafkaConsumerEvents: AsyncSequence, Sendable {
    public typealias Element = KafkaConsumerEvent
    let buffer: ConsumerEventBuffer

    public struct AsyncIterator: AsyncIteratorProtocol {
        var cursor: ConsumerEventCursor
        public mutating func next() async -> KafkaConsumerEvent? { await cursor.next() }
        /// More events are ready: the next `next()` will not wait.
        public var hasBufferedEvents: Bool { cursor.hasBufferedEvents }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(cursor: ConsumerEventCursor(buffer: buffer)) }
}

/// The messages of a `KafkaConsumer`, without rebalance events.
public struct KafkaConsumerMessages: AsyncSequence, Sendable {
    public typealias Element = KafkaMessage
    let buffer: ConsumerEventBuffer

    public struct AsyncIterator: AsyncIteratorProtocol {
        var cursor: ConsumerEventCursor
        public mutating func next() async -> KafkaMessage? {
            while let event = await cursor.next() {
                if case .message(let message) = event { return message }
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(cursor: ConsumerEventCursor(buffer: buffer)) }
}
