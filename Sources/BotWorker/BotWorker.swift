import ChatEvents
public import ConnectorConfiguration
public import DataProtection
public import FlowEngine
public import Kafka
public import Logging
public import ServiceLifecycle
import Foundation
import ServiceSupport
import Synchronization

/// The bot worker: consumes `eightbyeight.inbound.v1` in the `connector-worker` group, runs
/// each event through its endpoint's conversation engine with the conversation's session,
/// and publishes the resulting commands to `eightbyeight.outbound.v1` and the new session to
/// `bot.sessions.v1` (same partition number as the inbound record).
///
/// Effectively once: command ids come from the event id and the output's position; the
/// session lists the events it has processed; a session record is written only after its
/// event's commands are acknowledged; the inbound offset is stored only after the session is.
/// A worker killed at any instant therefore re-processes at most the events after its last
/// commit, skips those its sessions already hold, and repeats commands only under the same ids.
///
/// When Kafka fails a write, the worker drops its consumer and producer and starts over from
/// the committed offsets (a "generation"), which is the same recovery as a crash.
public final class BotWorker: Service, Sendable {
    public struct Endpoint: Sendable {
        public var settings: ConnectorConfig.EndpointSettings
        public var engine: ConversationEngine
        public var protection: DataProtectionPolicy
    }

    public let endpoints: [String: Endpoint]
    public let metrics: WorkerMetrics
    let config: ConnectorConfig
    let bootstrapServers: String
    let logger: Logger
    let inboundTopic: String
    let outboundTopic: String
    let sessionsTopic: String
    let deadLetterTopic: String
    let analyticsTopic: String
    /// The largest record the worker writes (`kafka.maxRecordBytes`).
    let maxRecordBytes: Int
    /// Per endpoint, the logger its turns log through: with `maskLogging`, behind a
    /// `MaskingLogHandler`.
    private let endpointLoggers: [String: Logger]
    private let generation = Mutex<Generation?>(nil)
    private let stopping = Atomic<Bool>(false)
    private let readiness = Atomic<Bool>(false)
    let tickInterval: Duration
    /// Time on this host for partitions without events (tests move it forward).
    let clock = MonotonicClock()
    /// Told of each event whose records Kafka acknowledged, on the producer's thread.
    let acknowledgementObserver: (@Sendable (AcknowledgedEvent) -> Void)?

    /// `onAcknowledged` (for benchmarks and tests) is called, on the producer's polling thread,
    /// for each event whose records (commands, analytics) were all acknowledged: the "outbound
    /// append" of `connector_worker_event_latency_seconds`. Keep it short. Events without
    /// records and dead-lettered ones are not reported, nor any in transactional mode (its
    /// records count only when the transaction commits). An event processed again after a
    /// restart is reported again.
    ///
    /// `tickInterval` is how often the consumer ticks, so that partitions without new events
    /// look for expired sessions too (see `Generation.forgetInQuietPartitions`).
    public init(
        config: ConnectorConfig, bootstrapServers: String, endpoints: [String: Endpoint], logger: Logger,
        onAcknowledged: (@Sendable (AcknowledgedEvent) -> Void)? = nil, tickInterval: Duration = .seconds(15)
    ) {
        self.config = config
        self.tickInterval = tickInterval
        self.acknowledgementObserver = onAcknowledged
        self.bootstrapServers = bootstrapServers
        self.endpoints = endpoints
        // With any endpoint masking its logs, everything the worker logs goes through the
        // masking handler too (Kafka errors, dead letters, restarts), not only the turns.
        var serviceLogger = logger
        if endpoints.values.contains(where: { $0.protection.maskLogging }) {
            let protection = DataProtectionPolicy()
            serviceLogger.handler = MaskingLogHandler(wrapping: logger.handler) { protection.mask($0) }
        }
        self.logger = serviceLogger
        self.metrics = WorkerMetrics()
        inboundTopic = config.topicName(.inbound)
        outboundTopic = config.topicName(.outbound)
        sessionsTopic = config.topicName(.sessions)
        deadLetterTopic = config.topicName(.inboundDeadLetters)
        analyticsTopic = config.topicName(.analytics)
        maxRecordBytes = config.kafka.maxRecordBytes
        endpointLoggers = endpoints.mapValues { endpoint in
            var endpointLogger = logger  // the handler as given: each endpoint masks with its own policy
            endpointLogger[metadataKey: "endpoint"] = "\(endpoint.settings.name)"
            if endpoint.protection.maskLogging {
                let protection = endpoint.protection
                endpointLogger.handler = MaskingLogHandler(wrapping: endpointLogger.handler) { protection.mask($0) }
            }
            return endpointLogger
        }
    }

    func logger(for endpoint: Endpoint) -> Logger { endpointLoggers[endpoint.settings.name] ?? logger }

    /// Bounds the lines a refused analytics topic writes (one per event otherwise).
    private let logBudget = LogBudget()

    /// Whether an analytics record Kafka refused is left out (counted and logged) while its
    /// turn goes on. Analytics is optional: a refusal (a topic this worker may not write or
    /// that is missing, a partition without a leader for `message.timeout.ms`) would otherwise
    /// restart the worker at every try. A purge (the producer closed or crashed) is no
    /// refusal: it still fails the pipeline, as does a fatal error, which fails the replies
    /// too (the caller also checks its producer and pipeline: when the replies failed as
    /// well, the event is processed again, its analytics record with it). Not in
    /// transactional mode, where a refused record aborts the transaction it is in.
    func leavesOutAnalytics(after error: KafkaError) -> Bool {
        // A full queue at the end of a generation is no refusal either.
        guard error.isRefusal else { return false }
        metrics.analyticsDropped(reason: error.code.name)
        if let held = logBudget.admit("analytics") {
            logger.warning("analytics record left out: Kafka refused it", metadata: [
                "kafka.error": "\(error)", "topic": "\(analyticsTopic)", "held_back": "\(held)",
            ])
        }
        return true
    }

    /// Reads every endpoint's flow (paths relative to `baseDirectory` when not found as given)
    /// and checks what the flows need from the configuration.
    public static func loadEndpoints(config: ConnectorConfig, baseDirectory: String? = nil) throws -> [String: Endpoint] {
        var result: [String: Endpoint] = [:]
        for settings in config.endpoints {
            var path = settings.flow
            if !path.hasPrefix("/"), !FileManager.default.fileExists(atPath: path), let baseDirectory {
                path = (baseDirectory as NSString).appendingPathComponent(path)
            }
            let library: FlowLibrary
            do {
                library = try FlowLibrary.load(path: path)
            } catch {
                throw WorkerConfigurationError("endpoint '\(settings.name)': flow \(settings.flow) has problems:\n\(error)")
            }
            if settings.handover?.queueId == nil {
                for flow in library.flows.values {
                    for id in flow.order {
                        if case .handover(let handover) = flow.nodes[id]!.kind, handover.queueId == nil {
                            throw WorkerConfigurationError(
                                "endpoint '\(settings.name)': handover node '\(id)' of \(flow.source) has no queueId and the endpoint has no handover.queueId")
                        }
                    }
                }
            }
            let protection: DataProtectionPolicy
            do {
                let settings = settings.dataProtection
                protection = try DataProtectionPolicy(
                    maskLogging: settings?.maskLogging, maskAnalytics: settings?.maskAnalytics, maskIPAddress: settings?.maskIPAddress,
                    collectAnalytics: settings?.collectAnalytics, sanitizeInput: settings?.sanitizeInput, mode: settings?.mode,
                    entities: settings?.entities, operator: settings?.operator, maskCharacter: settings?.maskCharacter,
                    keepLast: settings?.keepLast, hashKey: settings?.hashKey?.value,
                    custom: (settings?.customRecognizers ?? []).map { ($0.type, $0.pattern, $0.validator, $0.contextWords) })
            } catch {
                throw WorkerConfigurationError("endpoint '\(settings.name)': dataProtection: \(error)")
            }
            let policy = EndpointPolicy(
                name: settings.name,
                acceptConversationActiveEvent: settings.eightByEight.acceptConversationActiveEvent ?? false,
                sessionTTLMinutes: settings.session?.ttlMinutes ?? 30,
                maskIPAddress: protection.maskIPAddress)
            result[settings.name] = Endpoint(
                settings: settings, engine: ConversationEngine(policy: policy, library: library), protection: protection)
        }
        return result
    }

    /// How long a revoke waits for a partition's in-flight events before giving them up.
    static let revokeDrain = Duration.seconds(25)

    /// Ready while a generation runs (its consumer is in the group).
    public var isReady: Bool { readiness.load(ordering: .acquiring) }

    /// The partitions this worker's consumer owns now (empty between generations).
    public var assignment: Set<TopicPartition> { generation.withLock { $0?.consumer.assignment } ?? [] }

    // MARK: - Lifecycle

    /// Runs until graceful shutdown (in-flight events finished, offsets committed, group left)
    /// or cancellation (the same, without waiting for in-flight events).
    public func run() async throws {
        try await withTaskCancellationHandler {
            try await runUntilStopped()
        } onCancel: {
            self.stopping.store(true, ordering: .releasing)
            let current = self.generation.withLock { $0 }
            self.stops.start { await current?.stop(drainTimeout: .zero) }
        }
        await stops.wait()
    }

    private let stops = PendingStops()

    private func runUntilStopped() async throws {
        await withGracefulShutdownHandler {
            await ConsumingService.runGenerations(
                name: "worker", logger: logger, stopping: { self.stopping.load(ordering: .acquiring) },
                restarted: { metrics.restarts.increment() }, generation: runGeneration)
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .releasing)
            let current = self.generation.withLock { $0 }
            self.stops.start { await current?.stop(drainTimeout: .seconds(10)) }
        }
    }

    /// Stops the way a killed process stops (for crash tests): no draining, no commit, no
    /// leaving the group; in-flight writes are abandoned.
    public func simulateCrash() async {
        stopping.store(true, ordering: .releasing)
        let current = generation.withLock { $0 }
        await current?.crash()
    }

    /// Raises a fatal error on the running generation's consumer, as librdkafka would (for
    /// tests of the restart that follows).
    public func raiseFatalConsumerErrorForTesting() {
        generation.withLock { $0 }?.consumer.raiseFatalErrorForTesting(reason: "test")
    }

    private func runGeneration() async throws {
        var consumerConfig = ConsumingService.consumerConfiguration(
            config, bootstrapServers: bootstrapServers, group: .worker, drain: Self.revokeDrain)
        consumerConfig.tickInterval = tickInterval
        var producerConfig = ConsumingService.producerConfiguration(
            config, bootstrapServers: bootstrapServers, clientID: "connector-worker", lingerMilliseconds: config.worker.lingerMs)
        if config.worker.transactional {
            producerConfig.transactionalID = config.worker.transactionalId
                ?? "\(config.kafka.groupPrefix)connector-worker-\(ProcessInfo.processInfo.hostName)"
        }
        // The consumer last: one made before a later step failed would be left in the group.
        let producer = try KafkaProducer(configuration: producerConfig, logger: logger)
        if config.worker.transactional { try await producer.initTransactions() }
        let admin = try KafkaAdmin(bootstrapServers: bootstrapServers, properties: config.kafka.properties, logger: logger)
        let consumer = try KafkaConsumer(configuration: consumerConfig, logger: logger)
        let current = Generation(worker: self, consumer: consumer, producer: producer, admin: admin)
        generation.withLock { $0 = current }
        readiness.store(true, ordering: .releasing)
        defer {
            readiness.store(false, ordering: .releasing)
            generation.withLock { $0 = nil }
        }
        if stopping.load(ordering: .acquiring) {
            await current.stop(drainTimeout: .zero)
            return
        }
        do {
            try await current.consume()
        } catch {
            await current.closeAfterFailure()
            throw error
        }
    }
}

public struct WorkerConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// One consumer and producer with the sessions and pipelines of the partitions they own.
final class Generation: @unchecked Sendable {
    unowned let worker: BotWorker
    let consumer: KafkaConsumer
    let producer: KafkaProducer
    let admin: KafkaAdmin
    let state = GenerationState()
    /// Touched only by the consuming task.
    private var sessions: [Int32: [String: SessionState]] = [:]
    private var pipelines: [Int32: PartitionPipeline] = [:]
    /// Partitions being revoked whose messages are dropped until the revoke arrives.
    private var handingOver: Set<Int32> = []

    init(worker: BotWorker, consumer: KafkaConsumer, producer: KafkaProducer, admin: KafkaAdmin) {
        self.worker = worker
        self.consumer = consumer
        self.producer = producer
        self.admin = admin
    }

    var logger: Logger { worker.logger }

    func consume() async throws {
        var events = consumer.events.makeAsyncIterator()
        while let event = await events.next() {
            // A failure ends the generation through `finish`, which drops what the producer
            // still has: no record of this generation may land after the next one started.
            // So does a consumer librdkafka failed for good (fenced: another member has its
            // partitions now).
            if state.failure != nil || consumer.fatalFailure != nil { break }
            switch event {
            case .partitionsAssigned(let partitions):
                handingOver.subtract(partitions.map(\.partition))
                try await assign(partitions)
            case .partitionsRevoked(let partitions, let lost):
                handingOver.subtract(partitions.map(\.partition))
                if transactional {
                    try await commitTransaction()
                } else {
                    // Lost: another member owns them already and may have restored their
                    // sessions; a write of this one still in flight would land after its own.
                    // It ends the generation (the producer drops what it has) instead of waiting.
                    await drain(partitions, timeout: lost ? .zero : BotWorker.revokeDrain)
                }
                for partition in partitions {
                    sessions[partition.partition] = nil
                    pipelines[partition.partition] = nil
                    forgetting[partition.partition] = nil
                    clocks[partition.partition] = nil
                    clockSetAt[partition.partition] = nil
                    nextOffsets[partition.partition] = nil
                    quietCheckDue[partition.partition] = nil
                    quietChecks.forget(partition.partition)
                }
                let revoked = Set(partitions)
                pipelineList.withLock { $0.removeAll { revoked.contains($0.partition) } }
            case .tick:
                // A tick ends a fetched batch like its last message would have.
                if transactional, worker.stoppingNow || !events.hasBufferedEvents { try await commitTransaction() }
                guard !worker.stoppingNow else { continue }
                try await forgetInQuietPartitions()
            case .message(let message):
                guard !worker.stoppingNow else {
                    try await commitTransaction()
                    continue
                }
                // Once one message of a partition being revoked was dropped, so are the
                // others handed out before the revoke: none may finish past it.
                if handingOver.contains(message.partition) { continue }
                if forgetting[message.partition]?.committedBelow == nil {
                    // The first record after the assignment is where the group's committed offset was.
                    forgetting[message.partition]?.committedBelow = message.offset
                }
                nextOffsets[message.partition] = message.offset + 1
                if transactional {
                    try processInTransaction(message)
                    try await forgetExpiredSessionsIfDue(partition: message.partition)
                    // Commit what was handed over in one go: a transaction per fetched batch.
                    if !events.hasBufferedEvents || transaction.count >= Self.maxTransactionSize { try await commitTransaction() }
                } else {
                    await process(message)
                    try await forgetExpiredSessionsIfDue(partition: message.partition)
                }
            }
        }
        // A consumer librdkafka failed for good ends its events: the generation fails, and the
        // next one starts with a new consumer.
        if let fatal = consumer.fatalFailure { _ = state.fail(fatal) }
        try await state.finish(producer: producer)
    }

    private func assign(_ partitions: [TopicPartition]) async throws {
        let numbers = partitions.map(\.partition)
        let restorer = SessionRestorer(
            bootstrapServers: worker.bootstrapServers, properties: worker.config.kafka.properties,
            sessionsTopic: worker.sessionsTopic, admin: admin, transactional: transactional, logger: logger)
        let (restored, incomplete) = try await restorer.restore(partitions: numbers)
        for partition in partitions {
            // Time is the events' time (when the ingress received them), as in the engine: the
            // partition's clock is its newest session's last activity.
            let all = restored[partition.partition] ?? [:]
            let now = worker.plausibleClock(all.values.map(\.lastActivity).max() ?? 0)
            clocks[partition.partition] = now
            clockSetAt[partition.partition] = worker.clock.milliseconds()
            nextOffsets[partition.partition] = nil
            sessions[partition.partition] = all
            // The events behind the restored sessions are below the inbound high watermark of
            // now; a session is forgotten only once they are committed (see `Forgetting`).
            let (_, high) = try await admin.watermarks(TopicPartition(topic: worker.inboundTopic, partition: partition.partition))
            forgetting[partition.partition] = Forgetting(
                lastOffsets: all.mapValues { _ in high - 1 },
                untrusted: incomplete.contains(partition.partition) ? Set(all.keys) : [])
            worker.metrics.restoredSessions.increment(by: all.values.count(where: { !worker.isForgettable($0, now: now) }))
            let pipeline = makePipeline(partition)
            pipelines[partition.partition] = pipeline
            pipelineList.withLock { $0.append(pipeline) }
        }
        logger.info("sessions restored", metadata: [
            "kafka.partitions": "\(numbers.sorted())", "sessions": "\(restored.values.reduce(0) { $0 + $1.count })",
        ])
    }

    private func makePipeline(_ partition: TopicPartition) -> PartitionPipeline {
        let producer = self.producer
        let consumer = self.consumer
        let topic = worker.sessionsTopic
        let logger = self.logger
        return PartitionPipeline(
            partition: partition,
            sendSession: { key, value, done in
                try producer.send(
                    KafkaProducerMessage(topic: topic, partition: partition.partition, key: key, value: value), onDelivery: done)
            },
            storeOffset: { offset in
                do {
                    try consumer.storeOffsets([partition: offset])
                    return true
                } catch {
                    logger.debug("offset not stored (partition moved)", metadata: ["kafka.partition": "\(partition)"])
                    return false
                }
            },
            onFailure: { [weak self] error in self?.failed(error) },
            onAcknowledged: { [metrics = worker.metrics, observer = worker.acknowledgementObserver] event in
                observer?(event)  // first: whoever sees the metric may expect the observer to have run
                if let sent = event.inboundTimestamp {
                    let now = Int64(Date().timeIntervalSince1970 * 1000)
                    metrics.eventLatency.recordMilliseconds(max(0, now.minusSaturating(sent)))  // clocks of two hosts; a record's own time
                }
            })
    }

    private func failed(_ error: KafkaError) {
        let stopping = state.isEnded
        guard state.fail(error) else { return }
        if stopping {
            // After a stop began (a session record's late retry refused by the producer it shut
            // down, say): recorded, so the generation's end drops what the producer still has,
            // but not reported, since no restart follows a stop.
            logger.debug("a write to Kafka failed while stopping", metadata: ["kafka.error": "\(error)"])
            return
        }
        logger.error("a write to Kafka failed; the worker restarts from the committed offsets", metadata: ["kafka.error": "\(error)"])
        // Ends `consume` (its loop sees the end of the events and rethrows the failure). The
        // stored offsets cover finished events only, so committing them on the way out is safe.
        // The producer first, as in `closeAfterFailure`: the other partitions' pipelines go on
        // writing session records until it stops, and one landing after the consumer left (its
        // partition restored by the next owner meanwhile) would take back that owner's newer state.
        Task { [producer, consumer] in
            await producer.simulateCrash()
            await consumer.shutdown()
        }
    }

    /// Waits until the partitions' in-flight events are finished (or failed). What is still in
    /// flight at the deadline is given up: its pipeline fails, so no late session record can
    /// follow the partition to its next owner.
    private func drain(_ partitions: [TopicPartition], timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        for partition in partitions {
            guard let pipeline = pipelines[partition.partition] else { continue }
            while pipeline.inFlight > 0, pipeline.failure == nil, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(1))
            }
            if pipeline.inFlight > 0 {
                pipeline.fail(KafkaError(kind: .delivery, code: .timedOut, message: "revoked with writes in flight", isRetriable: true))
            }
        }
    }

    func stop(drainTimeout: Duration) async {
        guard state.end() else { return }
        let deadline = ContinuousClock.now + drainTimeout
        for pipeline in pipelinesSnapshot() {
            while pipeline.inFlight > 0, pipeline.failure == nil, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(1))
            }
            // Given up (as a revoke's drain gives up): no session record of it follows. Not a
            // failure of the generation, whose end would drop what the flush below is for. (A
            // transaction holds its records back until the revoke commits it.)
            if !transactional, pipeline.inFlight > 0 {
                pipeline.fail(KafkaError(kind: .delivery, code: .timedOut, message: "stopped with writes in flight", isRetriable: true), report: false)
            }
        }
        if transactional {
            // The revoke on the way out commits the open transaction: the producer outlives it.
            await consumer.shutdown()
            await producer.shutdown()
        } else {
            // What was sent lands (and its events' offsets are stored) before the group hands
            // the partitions on: flushed after the consumer left, a session record could land
            // after the next owner restored the partition, taking back its newer state.
            await producer.shutdown()
            await consumer.shutdown()
        }
    }

    func crash() async {
        guard state.crash() else { return }
        await producer.simulateCrash()
        await consumer.simulateCrash()
    }

    /// After a failure or an error: the consumer leaves the group at once, without waiting for
    /// the events nobody will handle (its partitions go to the next generation or member now,
    /// not after `max.poll.interval.ms`), and the producer drops what it still has.
    func closeAfterFailure() async {
        consumer.stopTakingEvents()
        // A stop or a crash under way ends the generation its own way.
        guard state.end() || state.failure != nil else { return }
        // The producer first: no record of this generation may land after the consumer left
        // and another member restored its partitions.
        await producer.simulateCrash()
        await consumer.shutdown()
    }

    private let pipelineList = Mutex<[PartitionPipeline]>([])
    private func pipelinesSnapshot() -> [PartitionPipeline] { pipelineList.withLock { $0 } }

    // MARK: - Processing

    /// What one inbound record leads to.
    private enum Step {
        /// Nothing to write (a handover event of an unknown conversation).
        case skip
        case deadLetter(reason: String, detail: String)
        /// The event's records, encoded: its commands (with their action), the analytics record
        /// and the conversation's session.
        /// `deadLetter`: the event is also dead-lettered (its flow failed after the handover it
        /// ended; the session records the end all the same).
        case emit(
            key: String, eventId: String, commands: [(record: [UInt8], action: String)], session: [UInt8]?, analytics: [UInt8]?,
            deadLetter: (reason: String, detail: String)? = nil)
    }

    /// Decodes, routes and runs one record through its endpoint's engine, updating the
    /// in-memory session; counts the regular expression searches that ran out of their CPU
    /// budget meanwhile.
    private func evaluate(_ message: KafkaMessage) -> Step {
        let tally = RegexBudget.Tally()
        let step = RegexBudget.$tally.withValue(tally) { evaluateEvent(message) }
        if tally.exhausted > 0 { worker.metrics.regexBudgetExhausted.increment(by: tally.exhausted) }
        return step
    }

    private func evaluateEvent(_ message: KafkaMessage) -> Step {
        let started = ContinuousClock.now
        var event: InboundEvent
        do {
            event = try InboundEvent.decode(message.value)
        } catch {
            return .deadLetter(reason: "undecodable", detail: DecodingError.describe(error))
        }
        let key = event.recordKey
        let existing = sessions[message.partition]?[key]
        // A handover webhook names its tenant's endpoint (or none): a conversation's session
        // knows better which endpoint it talks through. A channel's webhook names its own.
        let sessionEndpoint = existing.flatMap { worker.endpoints[$0.endpoint] != nil ? $0.endpoint : nil }
        let named = event.route == .handover ? sessionEndpoint ?? event.endpoint : event.endpoint ?? existing?.endpoint
        guard let endpointName = named ?? worker.soleEndpoint else {
            worker.metrics.event(kind: event.normalized.kind.rawValue, outcome: "unroutable")
            logger.debug("handover event for a conversation without session", metadata: ["event.id": "\(LogSafe.text(event.eventId, maxBytes: 80))"])
            return .skip
        }
        guard let endpoint = worker.endpoints[endpointName] else {
            return .deadLetter(reason: "unknown-endpoint", detail: "endpoint '\(LogSafe.text(endpointName, maxBytes: 80))' is not configured")
        }
        if endpoint.protection.sanitizeInput, let text = event.normalized.text {
            event.normalized.text = HTMLSanitizer.strip(text)
        }
        let result: TurnResult
        let commands: [OutboundCommand]
        do {
            result = try endpoint.engine.handle(event, session: existing, now: event.receivedAt)
            commands = try worker.commands(for: result.outputs, event: event, endpoint: endpoint.settings)
        } catch {
            return .deadLetter(reason: "flow-error", detail: "\(error)")
        }
        // 8x8 names the conversation of every event a flow answers; the replies to one without
        // (an unsigned or malformed webhook) have nowhere to go: /conversations/<its event id>
        // would only draw 404s.
        if event.conversationId == nil, !commands.isEmpty {
            return .deadLetter(reason: "no-conversation", detail: "the event names no conversation, so its replies have nowhere to go")
        }
        // A record Kafka refuses for its size would fail every retry of the event and stop the
        // partition: such an event is dead-lettered, and its conversation keeps the session it had.
        let commandRecords = commands.map { (record: $0.encodedRecord, action: $0.action.rawValue) }
        let sessionRecord = result.session?.encoded()
        let largest = max(commandRecords.map(\.record.count).max() ?? 0, sessionRecord?.count ?? 0)
        guard largest <= worker.maxRecordBytes else {
            return .deadLetter(
                reason: "too-large",
                detail: "a record of this event would be \(largest) bytes, over the \(worker.maxRecordBytes) Kafka takes (message.max.bytes)")
        }
        worker.metrics.event(kind: event.normalized.kind.rawValue, outcome: result.outcome.rawValue)
        if let session = result.session {
            sessions[message.partition, default: [:]][key] = session
            forgetting[message.partition]?.untrusted.remove(key)
        }
        if sessions[message.partition]?[key] != nil {
            // Written or confirmed (a duplicate) by this record.
            forgetting[message.partition]?.lastOffsets[key] = message.offset
        }
        clocks[message.partition] = max(clocks[message.partition] ?? 0, worker.plausibleClock(event.receivedAt))
        clockSetAt[message.partition] = worker.clock.milliseconds()
        let elapsed = ContinuousClock.now - started
        worker.metrics.turnDuration.recordNanoseconds(Int64(elapsed / .nanoseconds(1)))
        let session = result.session ?? existing
        let userId = session?.profile["userId"]?.stringValue ?? key
        let text = Self.inputText(event)
        let endpointLogger = worker.logger(for: endpoint)
        MaskingLogHandler.$turnValues.withValue([userId, text]) {
            endpointLogger.debug("turn", metadata: [
            "conversationId": "\(LogSafe.text(key, maxBytes: 80))", "eventId": "\(LogSafe.text(event.eventId, maxBytes: 80))",
            "outcome": "\(result.outcome.rawValue)", "userId": "\(userId)", "text": "\(text)",
            "intent": "\(result.intent?.intent ?? "-")", "path": "\(result.path.joined(separator: ">"))",
            ])
        }
        var analytics: [UInt8]?
        let protection = endpoint.protection
        if protection.collectAnalytics, result.outcome == .executed {
            let data = event.normalized.cardSubmit?.data
            // The text as far as the flow saw it, masked as it is cut (a finding the cut goes
            // through is still recognized), scanned only a margin past the cut: a message of
            // half a megabyte cost seconds of scanning for a text cut to 16,384 scalars.
            analytics = AnalyticsRecord(
                recordId: event.eventId, endpoint: endpoint.settings.name, conversationId: key, tenantId: event.tenantId,
                time: event.receivedAt, kind: event.normalized.kind.rawValue, userId: protection.analyticsUserId(userId),
                text: protection.analyticsText(text, keep: TurnInput.maxTextScalars),
                data: data.map { protection.analyticsData($0, keep: TurnInput.maxTextScalars) },
                ip: protection.maskIP(session?.ipAddress), intent: result.intent?.intent,
                intentScore: result.intent.map { ($0.score * 1000).rounded() / 1000 }, path: result.path,
                handover: session?.handover != nil || result.outputs.contains { if case .handover = $0 { true } else { false } },
                processingMicros: Int64(elapsed / .microseconds(1)), masked: protection.maskAnalytics).encodedRecord
            if let size = analytics?.count, size > worker.maxRecordBytes {
                // Card data can still be large; the turn goes on without its analytics record.
                logger.warning("analytics record left out: too large for Kafka", metadata: [
                    "eventId": "\(LogSafe.text(event.eventId, maxBytes: 80))", "bytes": "\(size)", "limit": "\(worker.maxRecordBytes)",
                ])
                analytics = nil
            }
        }
        return .emit(
            key: key, eventId: event.eventId, commands: commandRecords, session: sessionRecord, analytics: analytics,
            deadLetter: result.flowError.map { (reason: "flow-error", detail: "after the handover ended: \($0)") })
    }

    /// The text the flow saw for this event (a postback's payload, a card's `payload` value).
    static func inputText(_ event: InboundEvent) -> String {
        switch event.normalized.kind {
        case .postback: event.normalized.postback?.payload ?? event.normalized.postback?.title ?? ""
        case .cardSubmit: event.normalized.cardSubmit?.data?["payload"]?.stringValue ?? ""
        case .userMessage: event.normalized.text ?? ""
        default: ""
        }
    }

    private func process(_ message: KafkaMessage) async {
        guard let pipeline = pipelines[message.partition] else { return }
        while pipeline.inFlight >= worker.config.worker.maxInFlightPerPartition, pipeline.failure == nil, state.failure == nil {
            if state.isEnded { return }
            if consumer.isBeingRevoked(message.topicPartition) {
                // The revoke waits behind this message: drop it and the partition's later ones
                // (the next owner reads them again).
                handingOver.insert(message.partition)
                return
            }
            try? await Task.sleep(for: .microseconds(200))
        }
        switch evaluate(message) {
        case .skip:
            pipeline.add(offset: message.offset, commands: 0, session: nil)
        case .deadLetter(let reason, let detail):
            guard pipeline.add(offset: message.offset, commands: 1, session: nil) else { return }
            _ = await sendDeadLetter(message, reason: reason, detail: detail, pipeline: pipeline)
        case .emit(let key, let eventId, let commands, let session, let analytics, let deadLetter):
            guard pipeline.add(
                offset: message.offset, commands: commands.count + (analytics == nil ? 0 : 1) + (deadLetter == nil ? 0 : 1),
                session: session.map { (key, $0) },
                event: AcknowledgedEvent(eventId: eventId, inboundTimestamp: message.timestamp)) else { return }
            let offset = message.offset
            if let deadLetter, !(await sendDeadLetter(message, reason: deadLetter.reason, detail: deadLetter.detail, pipeline: pipeline)) {
                return
            }
            var records = commands.map { (KafkaProducerMessage(topic: worker.outboundTopic, key: key, value: $0.record), $0.action) }
            if let analytics {
                records.append((KafkaProducerMessage(topic: worker.analyticsTopic, key: key, value: analytics), "analytics"))
            }
            // A refused analytics record is left out while the event's other records stand
            // (see `leavesOutAnalytics`), whether librdkafka refused it at once or after its retries.
            let leaveOut: @Sendable (KafkaError) -> Bool = { [worker, producer] error in
                pipeline.failure == nil && producer.fatalFailure == nil && worker.leavesOutAnalytics(after: error)
            }
            for (record, action) in records {
                let isAnalytics = action == "analytics"
                do {
                    try await sendWaitingForRoom(record) { result in
                        if isAnalytics, case .failure(let error) = result, leaveOut(error) {
                            pipeline.commandDone(offset: offset)
                        } else {
                            pipeline.commandDone(offset: offset, result)
                        }
                    }
                } catch {
                    let failure = KafkaError.wrapping(error)
                    if isAnalytics, leaveOut(failure) {
                        pipeline.commandDone(offset: offset)
                        continue
                    }
                    pipeline.fail(failure)
                    return
                }
                if !isAnalytics { worker.metrics.command(action) }
            }
        }
    }

    /// Writes the record's dead letter, counted as one of its pipeline's records; false (and
    /// the pipeline failed) when it could not be sent.
    private func sendDeadLetter(_ message: KafkaMessage, reason: String, detail: String, pipeline: PartitionPipeline) async -> Bool {
        do {
            try await sendWaitingForRoom(deadLetterRecord(message, reason: reason, detail: detail)) { pipeline.commandDone(offset: message.offset, $0) }
            return true
        } catch {
            pipeline.fail(KafkaError.wrapping(error))
            return false
        }
    }

    // MARK: - Forgetting

    /// Per partition, the newest event time seen (milliseconds since 1970).
    private var clocks: [Int32: Int64] = [:]
    /// Per partition, when (`BotWorker.clock`) its clock was last set by an event or the assignment.
    private var clockSetAt: [Int32: Int64] = [:]
    /// Per partition, the inbound offset after the last record handed to this generation.
    private var nextOffsets: [Int32: Int64] = [:]
    /// Per partition, when (`BotWorker.clock`) a quiet partition found behind is checked again.
    private var quietCheckDue: [Int32: Int64] = [:]
    /// The quiet partitions' checks, which ask Kafka off the consuming task.
    private let quietChecks = QuietChecks()
    private var forgetting: [Int32: Forgetting] = [:]

    /// What forgetting a partition's sessions safely needs to know.
    struct Forgetting {
        /// Per conversation, the inbound offset of the newest record that wrote or confirmed
        /// its session (for a restored session: the inbound high watermark at assignment - 1).
        var lastOffsets: [String: Int64]
        /// Restored sessions this worker has not written since, of a partition whose restore
        /// ended before the high watermark (transactional mode): a newer record may be unread,
        /// so they leave memory without a tombstone.
        var untrusted: Set<String>
        /// Inbound offsets below this are committed: from the first record after the
        /// assignment, raised by the commits forgetting makes.
        var committedBelow: Int64?
        /// The event time of the last look.
        var lastLook: Int64?
    }

    /// Forgets, once a minute of the partition's event time (the clock the engine's TTL uses),
    /// the sessions `BotWorker.isForgettable` gives up, and writes their tombstones: memory
    /// holds only live conversations, and a compacted sessions topic drops the others' state
    /// and the personal data in it instead of keeping every conversation's last session for
    /// ever. A session is forgotten only when
    /// - its record is not on its way (so no record of it can follow its tombstone), and
    /// - the inbound records that wrote it are committed (so no crash can deliver one of them
    ///   again to a worker that no longer has the session). Without transactions that may
    ///   take a commit of the stored offsets; in a transaction, the offsets and the tombstones
    ///   commit together.
    private func forgetExpiredSessionsIfDue(partition: Int32) async throws {
        let now = clocks[partition] ?? 0
        guard var facts = forgetting[partition], let states = sessions[partition] else { return }
        if let last = facts.lastLook, now - last < 60_000 { return }
        facts.lastLook = now
        forgetting[partition] = facts
        let writing = pipelines[partition]?.sessionKeysInFlight() ?? []
        var candidates: [(key: String, offset: Int64)] = []
        for (key, state) in states where worker.isForgettable(state, now: now) && !writing.contains(key) {
            candidates.append((key, facts.lastOffsets[key] ?? .max))
        }
        guard !candidates.isEmpty else { return }
        var committed = facts.committedBelow ?? 0
        if !transactional, candidates.contains(where: { $0.offset >= committed }),
           let stored = pipelines[partition]?.storedNext, stored > committed,
           await commitStoredOffsets(within: .seconds(5)) {
            committed = stored
            forgetting[partition]?.committedBelow = stored
            // The commit took time: a partition that is leaving meanwhile is its next owner's to forget.
            guard isStillOurs(partition) else { return }
        }
        let forgotten = transactional ? candidates.map(\.key) : candidates.filter { $0.offset < committed }.map(\.key)
        var tombstones: [String] = []
        for key in forgotten {
            sessions[partition]?[key] = nil
            forgetting[partition]?.lastOffsets[key] = nil
            if forgetting[partition]?.untrusted.remove(key) == nil { tombstones.append(key) }
        }
        worker.metrics.forgottenSessions.increment(by: forgotten.count)
        try await writeTombstones(tombstones, partition: partition)
    }

    /// Lets partitions without new events forget too (on a consumer tick): a partition that
    /// had none for a minute and has processed every inbound record there is lets its clock
    /// run on with this host's (the time since its last event, on a monotonic clock, so no
    /// two hosts' clocks are compared). Without this, the last sessions of a partition that
    /// went quiet (a night, a small contact center) would stay in memory and in the sessions
    /// topic, with their personal data, until its next event.
    ///
    /// The checks ask Kafka off the consuming task (a slow cluster would hold every partition's
    /// events for their request timeouts, and a revoke behind them): a tick starts a
    /// partition's check and a later tick uses its answer if no record came meanwhile. A
    /// partition whose check failed or found it behind is asked again a minute later, not at
    /// every tick, and one that is being revoked meanwhile is left to its revoke.
    private func forgetInQuietPartitions() async throws {
        let now = worker.clock.milliseconds()
        for (partition, states) in sessions where !states.isEmpty && isStillOurs(partition) {
            guard let clock = clocks[partition], let setAt = clockSetAt[partition], now - setAt >= 60_000,
                  now >= quietCheckDue[partition] ?? 0 else { continue }
            let later = clock + (now - setAt)
            guard states.values.contains(where: { worker.isForgettable($0, now: later) }) else { continue }
            let next = nextOffsets[partition]
            switch quietChecks.take(partition, checking: next) {
            case .running:
                continue
            case nil:
                let (admin, group, logger) = (self.admin, consumer.groupID, self.logger)
                let inbound = TopicPartition(topic: worker.inboundTopic, partition: partition)
                quietChecks.start(partition, checking: next) {
                    await Self.position(of: inbound, next: next, group: group, admin: admin, logger: logger)
                }
                continue
            case .found(.behind), .found(.unknown):
                quietCheckDue[partition] = now + 60_000
                continue
            case .found(.caughtUp(let committed)):
                if let committed {
                    let known = forgetting[partition]?.committedBelow ?? 0
                    forgetting[partition]?.committedBelow = max(known, committed)
                }
            }
            clocks[partition] = later
            clockSetAt[partition] = now
            try await forgetExpiredSessionsIfDue(partition: partition)
        }
    }

    /// Assigned to this generation, not being revoked or handed over, and no stop under way.
    private func isStillOurs(_ partition: Int32) -> Bool {
        sessions[partition] != nil && !handingOver.contains(partition) && !worker.stoppingNow
            && !consumer.isBeingRevoked(TopicPartition(topic: worker.inboundTopic, partition: partition))
    }

    /// Whether every inbound record of `inbound` was handed to this generation: `next`, the
    /// offset after the last one handed (the group's committed one when none came since the
    /// assignment), is the high watermark. Unknown when Kafka cannot tell: a partition whose
    /// records cannot be fetched now may hold the very events that would keep its sessions.
    private static func position(
        of inbound: TopicPartition, next: Int64?, group: String, admin: KafkaAdmin, logger: Logger
    ) async -> QuietChecks.Position {
        do {
            let (_, high) = try await admin.watermarks(inbound)
            if let next { return next >= high ? .caughtUp(committed: nil) : .behind }
            guard let committed = try await admin.committedOffsets(group: group, partitions: [inbound])[inbound],
                  committed >= high else { return .behind }
            return .caughtUp(committed: committed)
        } catch {
            logger.debug("inbound position unknown; quiet partition keeps its sessions", metadata: [
                "kafka.partition": "\(inbound.partition)", "kafka.error": "\(error)",
            ])
            return .unknown
        }
    }

    /// Commits the stored offsets; false when that failed or took longer than `limit` (a
    /// synchronous commit waits for the group's coordinator, and the consuming task must go
    /// on handling events meanwhile: the commit is then left to finish on its own).
    private func commitStoredOffsets(within limit: Duration) async -> Bool {
        final class Outcome: Sendable { let value = Mutex<Bool?>(nil) }
        let outcome = Outcome()
        let consumer = self.consumer
        let logger = self.logger
        Task {
            do {
                try await consumer.commit()
                outcome.value.withLock { $0 = true }
            } catch {
                logger.debug("offsets not committed; expired sessions wait", metadata: ["kafka.error": "\(error)"])
                outcome.value.withLock { $0 = false }
            }
        }
        let deadline = ContinuousClock.now + limit
        while outcome.value.withLock({ $0 }) == nil, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        return outcome.value.withLock { $0 } ?? false
    }

    /// Writes a null record for each key to the sessions topic's `partition`. Without
    /// transactions the partition's pipeline counts them in flight (a revoke waits for them)
    /// and a failed one restarts the generation; in transactional mode they go in
    /// transactions of at most `maxTransactionSize`. A lost tombstone costs little: the
    /// session is expired for whoever restores it next, who forgets it again.
    private func writeTombstones(_ keys: [String], partition: Int32) async throws {
        guard !keys.isEmpty else { return }
        logger.debug("sessions forgotten", metadata: ["kafka.partition": "\(partition)", "sessions": "\(keys.count)"])
        if transactional {
            for chunk in stride(from: 0, to: keys.count, by: Self.maxTransactionSize).map({ keys[$0..<min($0 + Self.maxTransactionSize, keys.count)] }) {
                if !transaction.open {
                    try producer.beginTransaction()
                    transaction = (true, [:], 0)
                }
                for key in chunk {
                    try await sendTombstone(key, partition: partition) { [weak self] result in
                        if case .failure(let error) = result { self?.failed(error) }
                    }
                }
                try await commitTransaction()
            }
            return
        }
        guard let pipeline = pipelines[partition] else { return }
        for key in keys {
            pipeline.sideWriteStarted()
            do {
                try await sendTombstone(key, partition: partition) { pipeline.sideWriteDone($0) }
            } catch {
                pipeline.sideWriteNotSent()
                // As a failed session record: the pipeline fails and the generation starts over.
                if !state.isEnded { pipeline.fail(KafkaError.wrapping(error)) }
                return
            }
        }
    }

    private func sendTombstone(
        _ key: String, partition: Int32, onDelivery: @escaping @Sendable (Result<KafkaDelivery, KafkaError>) -> Void
    ) async throws {
        try await sendWaitingForRoom(
            KafkaProducerMessage(topic: worker.sessionsTopic, partition: partition, key: key, value: [UInt8]?.none), onDelivery: onDelivery)
    }

    /// Hands `message` to the producer, waiting while librdkafka's queue is full (the
    /// acknowledgements make room); throws any other refusal, and a full queue once the
    /// generation ended.
    private func sendWaitingForRoom<Key, Value>(
        _ message: KafkaProducerMessage<Key, Value>, onDelivery: @escaping @Sendable (Result<KafkaDelivery, KafkaError>) -> Void
    ) async throws {
        while true {
            do {
                try producer.send(message, onDelivery: onDelivery)
                return
            } catch let error as KafkaError where error.code == .queueFull && !state.isEnded && state.failure == nil {
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
    }

    // MARK: - Transactional mode

    static let maxTransactionSize = 500
    private var transactional: Bool { worker.config.worker.transactional }
    private var transaction: (open: Bool, offsets: [TopicPartition: Int64], count: Int) = (false, [:], 0)

    /// Writes the record's commands, session and dead letter inside the open transaction
    /// (opening one if needed); they become visible with the offsets at commit.
    private func processInTransaction(_ message: KafkaMessage) throws {
        if !transaction.open {
            try producer.beginTransaction()
            transaction = (true, [:], 0)
        }
        let onDelivery: @Sendable (Result<KafkaDelivery, KafkaError>) -> Void = { [weak self] result in
            if case .failure(let error) = result { self?.failed(error) }
        }
        switch evaluate(message) {
        case .skip:
            break
        case .deadLetter(let reason, let detail):
            try producer.send(deadLetterRecord(message, reason: reason, detail: detail), onDelivery: onDelivery)
        case .emit(let key, _, let commands, let session, let analytics, let deadLetter):
            if let deadLetter {
                try producer.send(deadLetterRecord(message, reason: deadLetter.reason, detail: deadLetter.detail), onDelivery: onDelivery)
            }
            for command in commands {
                try producer.send(KafkaProducerMessage(topic: worker.outboundTopic, key: key, value: command.record), onDelivery: onDelivery)
                worker.metrics.command(command.action)
            }
            if let analytics {
                try producer.send(KafkaProducerMessage(topic: worker.analyticsTopic, key: key, value: analytics), onDelivery: onDelivery)
            }
            if let session {
                try producer.send(
                    KafkaProducerMessage(topic: worker.sessionsTopic, partition: message.partition, key: key, value: session),
                    onDelivery: onDelivery)
            }
        }
        transaction.offsets[message.topicPartition] = message.offset + 1
        transaction.count += 1
    }

    /// Commits the open transaction with the consumed offsets; on failure aborts it and throws
    /// (the generation restarts from the committed offsets).
    private func commitTransaction() async throws {
        guard transactional, transaction.open else { return }
        do {
            // A transaction of tombstones only (written at assignment) has no offsets.
            if !transaction.offsets.isEmpty {
                try await producer.sendOffsetsToTransaction(transaction.offsets, consumer: consumer)
            }
            try await producer.commitTransaction()
            transaction = (false, [:], 0)
        } catch {
            transaction = (false, [:], 0)
            try? await producer.abortTransaction()
            throw error
        }
    }

    /// The record as it is, for the dead-letter topic, with the reason in headers (the
    /// partition goes on); counted and logged.
    private func deadLetterRecord(_ message: KafkaMessage, reason: String, detail: String) -> KafkaProducerMessage<[UInt8], [UInt8]> {
        let detail = LogSafe.text(detail, maxBytes: 512)
        worker.metrics.deadLetter(reason: reason)
        logger.warning("inbound record dead-lettered", metadata: [
            "reason": "\(reason)", "detail": "\(detail)", "kafka.partition": "\(message.partition)", "kafka.offset": "\(message.offset)",
        ])
        var headers = [
            KafkaHeader(key: "x-dead-letter-reason", value: Array(reason.utf8)),
            KafkaHeader(key: "x-dead-letter-detail", value: Array(detail.utf8)),
            KafkaHeader(key: "x-dead-letter-source", value: Array("\(message.topic)/\(message.partition)/\(message.offset)".utf8)),
            KafkaHeader(key: "x-dead-letter-time", value: Array(String(Int64(Date().timeIntervalSince1970 * 1000)).utf8)),
        ]
        // A record written under a larger message.max.bytes than this worker's: its copy would
        // be refused, so the dead letter points at it in the inbound topic instead.
        guard message.value.count + (message.key?.count ?? 0) <= worker.maxRecordBytes else {
            headers.append(KafkaHeader(key: "x-dead-letter-omitted-bytes", value: Array(String(message.value.count).utf8)))
            return KafkaProducerMessage(topic: worker.deadLetterTopic, key: message.key, value: [], headers: headers)
        }
        return KafkaProducerMessage(topic: worker.deadLetterTopic, key: message.key, value: message.value, headers: headers)
    }
}

extension BotWorker {
    var stoppingNow: Bool { stopping.load(ordering: .acquiring) }

    /// An expired session without a handover (kept ten minutes past its TTL, so a late
    /// re-delivery still finds its processed events).
    func isForgettable(_ session: SessionState, now: Int64) -> Bool {
        let idle = now - session.lastActivity
        // A handover ends with an event (idle, closed, the agent or the user leaving); one whose
        // end never came is given up after a week without the user writing.
        if session.handover != nil { return idle > Self.abandonedHandoverMillis }
        // An endpoint this worker does not know was renamed or removed, or is new and this
        // worker's configuration older (a rolling deploy): its sessions are kept as long as an
        // abandoned handover, not forever with their profiles, and not by a TTL it cannot know.
        guard let endpoint = endpoints[session.endpoint] else { return idle > Self.abandonedHandoverMillis }
        let ttl = endpoint.engine.policy.sessionTTLMinutes
        guard ttl > 0 else { return false }
        return idle > Int64(ttl + 10) * 60_000
    }

    /// How long a session in handover is kept without the user writing (event time).
    static let abandonedHandoverMillis: Int64 = 7 * 24 * 3_600_000

    /// An event time (set by an ingress's clock) no further ahead of this host's clock than 5
    /// minutes: one ingress with a clock far ahead must not expire a partition's sessions.
    func plausibleClock(_ eventTime: Int64) -> Int64 {
        min(eventTime, Int64(Date().timeIntervalSince1970 * 1000) + 300_000)
    }

    /// With one endpoint, handover-route events of unknown conversations belong to it.
    var soleEndpoint: String? { endpoints.count == 1 ? endpoints.keys.first : nil }

    /// The outbound commands for a turn's outputs.
    func commands(for outputs: [BotOutput], event: InboundEvent, endpoint: ConnectorConfig.EndpointSettings) throws -> [OutboundCommand] {
        let conversation = event.recordKey
        let created = Int64(Date().timeIntervalSince1970 * 1000)
        var result: [OutboundCommand] = []
        func add(_ action: OutboundCommand.Action, _ body: JSONValue) {
            result.append(OutboundCommand(
                commandId: OutboundCommand.commandId(eventId: event.eventId, sequence: result.count), conversationId: conversation,
                endpoint: endpoint.name, tenantId: endpoint.eightByEight.tenant ?? event.tenantId, causationEventId: event.eventId,
                sequence: result.count, createdAt: created, receivedAt: event.receivedAt, action: action, body: body))
        }
        for output in outputs {
            switch output {
            case .message(let body): add(.sendMessage, body)
            case .attachment(let url, let fileName):
                var body: [String: JSONValue] = ["authorType": .string("bot"), "url": .string(url)]
                if let fileName { body["fileName"] = .string(fileName) }
                add(.sendAttachment, .object(body))
            case .typing: add(.typing, .object(["authorType": .string("bot")]))
            case .thinking(let seconds):
                add(.thinking, .object(["authorType": .string("bot"), "maxThinkingTimeSeconds": .number(Double(seconds))]))
            case .handover(let queueId):
                guard let queue = queueId ?? endpoint.handover?.queueId else {
                    throw FlowRuntimeError(message: "handover without a queue id")
                }
                add(.patchConversation, .object(["assignment": .object(["type": .string("queue"), "id": .string(queue)])]))
            case .handback:
                guard let webhookId = endpoint.handover?.webhookId else { continue }
                var configuration: [String: JSONValue] = ["notifyChannelWebhookIfExists": .string("false")]
                if let minutes = endpoint.handover?.maxTotalMinutes { configuration["maxTotalMinutes"] = .number(Double(minutes)) }
                if let minutes = endpoint.handover?.userTimeoutInMinutes { configuration["userTimeoutInMinutes"] = .number(Double(minutes)) }
                add(.postAgentAssignment, .object(["type": .string("webhook"), "id": .string(webhookId), "configuration": .object(configuration)]))
            case .endConversation(let displayMessage):
                var body: [String: JSONValue] = ["removed": .bool(true)]
                if let displayMessage { body["displayMessage"] = .string(displayMessage) }
                add(.endConversation, .object(body))
            }
        }
        return result
    }
}

/// Milliseconds on this host's monotonic clock (no jumps when the wall clock is set), which a
/// test can move forward.
final class MonotonicClock: Sendable {
    private let start = ContinuousClock.now
    private let advanced = Atomic<Int64>(0)

    func milliseconds() -> Int64 {
        Self.milliseconds(ContinuousClock.now - start) + advanced.load(ordering: .relaxed)
    }

    /// For tests: as if `duration` had passed.
    func advance(by duration: Duration) {
        advanced.add(Self.milliseconds(duration), ordering: .relaxed)
    }

    private static func milliseconds(_ duration: Duration) -> Int64 { Int64(duration / .milliseconds(1)) }
}
