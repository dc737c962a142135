public import AsyncHTTPClient
import ChatEvents
import DataProtection
public import ConnectorConfiguration
import EightByEight
import Foundation
public import Kafka
public import Logging
public import ServiceLifecycle
import ServiceSupport
import Synchronization

/// The egress: consumes `eightbyeight.outbound.v1` in the `connector-egress` group and
/// delivers each command to its endpoint's 8x8 Chat Gateway.
///
/// - Order: one lane per conversation, one command at a time; up to
///   `maxConcurrentConversations` lanes of a partition deliver at once, and `maxInFlight`
///   requests overall. The offset is stored only up to the oldest unfinished command.
/// - Rate: a token bucket per tenant.
/// - Failures: the retry policy of spec 5.5 (`DeliveryPolicy`); what cannot be delivered goes
///   to `eightbyeight.dlq.v1` and its lane goes on with the next command.
/// - Once: before calling 8x8 the egress writes (and waits for) an `attempting` result, after
///   it the final one, both on `eightbyeight.delivery.v1` in the command's partition. A new
///   owner of the partition reads them: finished commands are never sent again, and a command
///   left at `attempting` is checked against 8x8 (the conversation's recent messages, its
///   assignment) before it is sent. The same check settles a request whose connection broke
///   after it was sent. 8x8 has no idempotency key; this is how the egress does without one.
public final class Egress: Service, Sendable {
    public let metrics: EgressMetrics
    let config: ConnectorConfig
    let bootstrapServers: String
    let logger: Logger
    let outboundTopic: String
    let deliveryTopic: String
    /// Where a handover the egress gives up on is reported to the conversation's flow.
    let inboundTopic: String
    let deadLetterTopic: String
    let clients: [String: ChatGatewayClient]
    let httpClient: HTTPClient
    /// Downloads attachments' files (follows redirects, unlike `httpClient`).
    let downloadClient: HTTPClient
    let ownsHTTPClient: Bool
    let policy: DeliveryPolicy
    let limiter: TenantRateLimiter<ContinuousClock>
    let inFlight: AsyncSemaphore
    private let generation = Mutex<EgressGeneration?>(nil)
    private let stopping = Atomic<Bool>(false)
    /// `failFirstSeekForTesting`.
    private let failSeek = Atomic<Bool>(false)
    private let readiness = Atomic<Bool>(false)

    /// How far apart 8x8's clock and ours may be when matching 8x8's messages to ours.
    static let clockTolerance: Int64 = 2_000

    /// `revokeDrain`: how long a revoke waits for the deliveries in progress of the partitions
    /// it takes away (tests shorten it).
    public init(
        config: ConnectorConfig, bootstrapServers: String, logger: Logger, httpClient: HTTPClient? = nil,
        revokeDrain: Duration = .seconds(20)
    ) {
        self.config = config
        self.revokeDrain = revokeDrain
        self.bootstrapServers = bootstrapServers
        // The egress logs ids and statuses, not message bodies; 8x8's error messages may still
        // quote what was sent, so with any endpoint masking its logs, they pass the scanner.
        var serviceLogger = logger
        if config.endpoints.contains(where: { $0.dataProtection?.maskLogging ?? true }) {
            let protection = DataProtectionPolicy()
            serviceLogger.handler = MaskingLogHandler(wrapping: logger.handler) { protection.mask($0) }
        }
        self.logger = serviceLogger
        metrics = EgressMetrics()
        outboundTopic = config.topicName(.outbound)
        deliveryTopic = config.topicName(.delivery)
        inboundTopic = config.topicName(.inbound)
        deadLetterTopic = config.topicName(.deadLetters)
        let settings = config.egress
        if let httpClient {
            self.httpClient = httpClient
            downloadClient = httpClient
            ownsHTTPClient = false
        } else {
            var configuration = HTTPClient.Configuration()
            configuration.timeout = .init(connect: .milliseconds(Int64(settings.connectTimeoutMs)))
            configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: settings.maxInFlight)
            // Attachments' files (a CDN's or storage's address) may redirect; no call to 8x8 may:
            // a followed redirect turns a POST into a GET without its body (a message taken for
            // delivered that was never sent) and takes the API key to wherever it points.
            downloadClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            configuration.redirectConfiguration = .disallow
            self.httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            ownsHTTPClient = true
        }
        var clients: [String: ChatGatewayClient] = [:]
        for endpoint in config.endpoints {
            clients[endpoint.name] = ChatGatewayClient(
                baseURL: endpoint.eightByEight.baseURL, apiKey: endpoint.eightByEight.apiKey.value, tenant: endpoint.eightByEight.tenant,
                httpClient: self.httpClient, downloadClient: downloadClient, requestTimeout: .milliseconds(settings.requestTimeoutMs))
        }
        self.clients = clients
        policy = DeliveryPolicy(
            maxAttempts: settings.retry.maxAttempts, maxAge: .seconds(settings.retry.maxAgeSeconds),
            baseBackoff: .milliseconds(settings.retry.baseBackoffMs), maxBackoff: .milliseconds(settings.retry.maxBackoffMs))
        limiter = TenantRateLimiter(rate: settings.rateLimit.requestsPerSecond, burst: settings.rateLimit.burst, clock: ContinuousClock())
        inFlight = AsyncSemaphore(settings.maxInFlight)
    }

    /// How long a revoke waits for a partition's deliveries in progress.
    let revokeDrain: Duration

    /// Ready while a generation runs (its consumer is in the group).
    public var isReady: Bool { readiness.load(ordering: .acquiring) }

    /// The partitions this egress's consumer owns now (empty between generations).
    public var assignment: Set<TopicPartition> { generation.withLock { $0?.consumer.assignment } ?? [] }
    var stoppingNow: Bool { stopping.load(ordering: .acquiring) }

    // MARK: - Lifecycle

    /// Runs until graceful shutdown (commands in flight finished, offsets committed, group
    /// left) or cancellation (the same, without waiting for commands in flight).
    public func run() async throws {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await ConsumingService.runGenerations(
                    name: "egress", logger: logger, stopping: { self.stoppingNow }, restarted: { metrics.restarts.increment() },
                    generation: runGeneration)
            } onGracefulShutdown: {
                self.stop(drainTimeout: .seconds(10))
            }
        } onCancel: {
            self.stop(drainTimeout: .zero)
        }
        // The last results are flushed before the HTTP client goes.
        await stops.wait()
        if ownsHTTPClient {
            try? await httpClient.shutdown()
            try? await downloadClient.shutdown()
        }
    }

    private let stops = PendingStops()

    private func stop(drainTimeout: Duration) {
        stopping.store(true, ordering: .releasing)
        let current = generation.withLock { $0 }
        stops.start { await current?.stop(drainTimeout: drainTimeout) }
    }

    /// Stops the way a killed process stops (for crash tests): requests in flight are
    /// abandoned, nothing is committed, the group is not left.
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

    /// The next generation's consumer fails its first seek back to commands it dropped, as one
    /// that timed out would (for tests of the restart that follows).
    public func failFirstSeekForTesting() {
        failSeek.store(true, ordering: .relaxed)
    }

    private func runGeneration() async throws {
        var consumerConfig = ConsumingService.consumerConfiguration(
            config, bootstrapServers: bootstrapServers, group: .egress, drain: revokeDrain)
        // Ticks resume the partitions paused for a full read-ahead once their lanes have room.
        consumerConfig.tickInterval = .milliseconds(100)
        let producerConfig = ConsumingService.producerConfiguration(
            config, bootstrapServers: bootstrapServers, clientID: "connector-egress", lingerMilliseconds: 0)
        // The consumer last: one made before a later step failed would be left in the group.
        let producer = try KafkaProducer(configuration: producerConfig, logger: logger)
        let admin = try KafkaAdmin(bootstrapServers: bootstrapServers, properties: config.kafka.properties, logger: logger)
        let consumer = try KafkaConsumer(configuration: consumerConfig, logger: logger)
        if failSeek.exchange(false, ordering: .relaxed) { consumer.failNextSeekForTesting() }
        let current = EgressGeneration(egress: self, consumer: consumer, producer: producer, admin: admin)
        generation.withLock { $0 = current }
        readiness.store(true, ordering: .releasing)
        defer {
            readiness.store(false, ordering: .releasing)
            generation.withLock { $0 = nil }
        }
        if stoppingNow {
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

/// One command in a lane, with where it was read and its partition's ledger.
struct LaneItem: Sendable {
    var command: OutboundCommand
    var partition: Int32
    var source: String
    var ledger: DeliveryLedger
    /// Its lanes' ticket: revoked with the partition.
    var ticket: DeliveryTicket
}

/// One consumer and producer with the lanes and ledgers of the partitions they own.
final class EgressGeneration: @unchecked Sendable {
    unowned let egress: Egress
    let consumer: KafkaConsumer
    let producer: KafkaProducer
    let admin: KafkaAdmin
    let state = GenerationState()
    /// Touched only by the consuming task.
    private var lanes: [Int32: ConversationLanes<LaneItem>] = [:]
    private var ledgers: [Int32: DeliveryLedger] = [:]
    private let laneList = Mutex<[ConversationLanes<LaneItem>]>([])
    private let runners = Mutex<(next: Int, tasks: [Int: Task<Void, Never>])>((0, [:]))

    init(egress: Egress, consumer: KafkaConsumer, producer: KafkaProducer, admin: KafkaAdmin) {
        self.egress = egress
        self.consumer = consumer
        self.producer = producer
        self.admin = admin
    }

    var logger: Logger { egress.logger }
    var isEnded: Bool { state.isEnded }

    func consume() async throws {
        for await event in consumer.events {
            // A failure ends the generation through `finish`, which drops what the producer
            // still has: no record of this generation may land after the next one started.
            // So does a consumer librdkafka failed for good (fenced: another member has its
            // partitions now).
            if state.failure != nil || consumer.fatalFailure != nil { break }
            switch event {
            case .partitionsAssigned(let partitions):
                try await assign(partitions)
            case .partitionsRevoked(let partitions, let lost):
                // Lost: another egress owns them already; a retry of this one after its
                // check could send a command twice.
                // Given up (the consumer stopped waiting for this revoke): its deliveries stopped
                // already, and nothing is left to wait for.
                let givenUp = partitions.contains { consumer.wasGivenUp($0) }
                await drain(partitions, timeout: lost || givenUp ? .zero : egress.revokeDrain)
                let revoked = Set(partitions)
                // Not paused if the partition comes back. Not awaited: the consumer's polling
                // thread runs the resume, and it is waiting for this revoke to be handled.
                let wasPaused = partitions.filter { paused.remove($0.partition) != nil }
                for partition in partitions {
                    dropped[partition.partition] = nil
                    resumingAt[partition.partition] = nil
                }
                if !wasPaused.isEmpty { consumer.requestResume(wasPaused) }
                for partition in partitions {
                    lanes[partition.partition] = nil
                    ledgers[partition.partition] = nil
                }
                laneList.withLock { $0.removeAll { revoked.contains($0.partition) } }
            case .message(let message):
                guard !egress.stoppingNow else { continue }
                await process(message)
            case .tick:
                resumeWhereRoom()
            }
        }
        // A consumer librdkafka failed for good ends its events: the generation fails, and the
        // next one starts with a new consumer.
        if let fatal = consumer.fatalFailure { _ = state.fail(fatal) }
        try await state.finish(producer: producer)
    }

    /// Rebuilds each partition's ledger from the delivery results of its previous owners.
    private func assign(_ partitions: [TopicPartition]) async throws {
        let window = Int64(egress.config.egress.dedupeWindow)
        var restored: [Int32: DeliveryLedger] = [:]
        for partition in partitions { restored[partition.partition] = DeliveryLedger(capacity: max(Int(window), 1_000)) }
        if window > 0 {
            let ranges = try await PartitionReader.ranges(
                partitions.map { TopicPartition(topic: egress.deliveryTopic, partition: $0.partition) }, admin: admin, lastRecords: window)
            let reader = PartitionReader(
                bootstrapServers: egress.bootstrapServers, properties: egress.config.kafka.properties, clientID: "connector-egress-restore",
                logger: logger)
            var unreadable = 0
            let incomplete = try await reader.read(ranges) { message in
                guard let result = try? DeliveryResult.decode(message.value) else {
                    unreadable += 1
                    return
                }
                restored[message.partition]?.restore(result)
            }
            if !incomplete.partitions.isEmpty {
                throw KafkaError(kind: .consumer, code: .timedOut, message: "delivery results of \(incomplete.partitions.map(\.partition).sorted()) not read to the end", isRetriable: true)
            }
            if unreadable > 0 { logger.warning("unreadable delivery results skipped", metadata: ["count": "\(unreadable)"]) }
        }
        for partition in partitions {
            let ledger = restored[partition.partition]!
            ledgers[partition.partition] = ledger
            let lane = makeLanes(partition)
            lanes[partition.partition] = lane
            laneList.withLock { $0.append(lane) }
        }
        logger.info("partitions assigned", metadata: [
            "kafka.partitions": "\(partitions.map(\.partition).sorted())",
            "uncertain": "\(restored.values.reduce(0) { $0 + $1.uncertainCount })",
        ])
    }

    private func makeLanes(_ partition: TopicPartition) -> ConversationLanes<LaneItem> {
        let consumer = self.consumer
        let logger = self.logger
        return ConversationLanes(
            partition: partition, maxRunning: egress.config.egress.maxConcurrentConversations,
            deliver: { [weak self] _, item, finished in
                guard let self else { return false }
                return await self.deliver(item, finished: finished)
            },
            spawn: { [weak self] body in self?.spawn(body) },
            storeOffset: { offset in
                do {
                    try consumer.storeOffsets([partition: offset])
                } catch {
                    logger.debug("offset not stored (partition moved)", metadata: ["kafka.partition": "\(partition)"])
                }
            })
    }

    private func spawn(_ body: @escaping @Sendable () async -> Void) {
        runners.withLock { runners in
            guard !isEnded else { return }
            let id = runners.next
            runners.next += 1
            runners.tasks[id] = Task { [weak self] in
                await body()
                _ = self?.runners.withLock { $0.tasks.removeValue(forKey: id) }
            }
        }
    }

    /// Partitions whose fetching this egress paused for a full read-ahead, and the lowest
    /// offset of each that it was handed after that and dropped (touched only by the consuming
    /// task).
    private var paused: Set<Int32> = []
    private var dropped: [Int32: Int64] = [:]
    /// Resumed from a dropped message: the partition goes on with that message, and messages
    /// of it handed out before the resume took effect (later ones) are dropped again.
    private var resumingAt: [Int32: Int64] = [:]

    /// Resumes the paused partitions whose lanes are down to half their read-ahead, from their
    /// lowest dropped message.
    private func resumeWhereRoom() {
        guard !paused.isEmpty else { return }
        let limit = egress.config.egress.maxBufferedPerPartition
        let roomy = paused.filter { (lanes[$0]?.buffered ?? 0) <= limit / 2 }
        guard !roomy.isEmpty else { return }
        paused.subtract(roomy)
        let topic = egress.outboundTopic
        var from: [TopicPartition: Int64] = [:]
        for partition in roomy {
            if let offset = dropped.removeValue(forKey: partition) {
                from[TopicPartition(topic: topic, partition: partition)] = offset
                resumingAt[partition] = offset
            }
        }
        consumer.requestResume(roomy.map { TopicPartition(topic: topic, partition: $0) }, from: from)
    }

    private func process(_ message: KafkaMessage) async {
        guard let lane = lanes[message.partition], let ledger = ledgers[message.partition] else { return }
        // A full read-ahead pauses its partition's fetching instead of the consume loop, so the
        // other partitions go on (one tenant's throttled or failing conversations would stop
        // every tenant's). This message is taken (one over); the partition's later ones are
        // fetched again once a tick finds room.
        // Not awaited: the consumer's polling thread runs it, and may be waiting for a revoke
        // behind this message. Messages of the partition handed out before the pause took
        // effect are dropped once it is full (and the later ones, to keep the order), and read
        // again from the first of them on resume.
        let limit = egress.config.egress.maxBufferedPerPartition
        if let resume = resumingAt[message.partition] {
            guard message.offset == resume else { return }
            resumingAt[message.partition] = nil
        }
        if let first = dropped[message.partition] {
            dropped[message.partition] = min(first, message.offset)
            return
        }
        if lane.buffered >= limit {
            if paused.contains(message.partition) {
                dropped[message.partition] = message.offset
                return
            }
            consumer.requestPause([message.topicPartition])
            paused.insert(message.partition)
        }
        let source = "\(message.topic)/\(message.partition)/\(message.offset)"
        let command: OutboundCommand
        do {
            command = try OutboundCommand.decode(message.value)
        } catch {
            // A poison record: to the dead-letter topic as it is; the partition goes on.
            let letter = DeadLetter(undecodable: message.value, reason: "undecodable: \(DecodingError.describe(error))", source: source, at: Self.now)
            egress.metrics.deadLetters.increment()
            logger.warning("outbound record dead-lettered", metadata: ["reason": "undecodable", "source": "\(source)"])
            do {
                _ = try await producer.send(KafkaProducerMessage(topic: egress.deadLetterTopic, key: message.key, value: letter.encodedRecord))
                lane.addFinished(offset: message.offset)
            } catch {
                failed(KafkaError.wrapping(error))
            }
            return
        }
        lane.add(offset: message.offset, conversation: command.conversationId, item: LaneItem(
            command: command, partition: message.partition, source: source, ledger: ledger, ticket: lane.ticket))
    }

    // MARK: - Delivery

    static var now: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Whether `item` may no longer be sent: the generation ended or its partition was revoked,
    /// or given up by the consumer before this egress reached the revoke (committed, and maybe
    /// another egress's now).
    private func stopped(_ item: LaneItem) -> Bool {
        isEnded || item.ticket.isRevoked || consumer.wasGivenUp(TopicPartition(topic: egress.outboundTopic, partition: item.partition))
    }

    /// Delivers one command (or finds it finished); calls `finished` once its final result is
    /// durable. Returns false when the generation ended or the partition was revoked first
    /// (nothing more may be sent).
    func deliver(_ item: LaneItem, finished: @escaping @Sendable () -> Void) async -> Bool {
        let command = item.command
        let action = command.action.rawValue
        if item.ledger.isFinished(command.commandId) {
            egress.metrics.delivery(action, outcome: "duplicate")
            finished()
            return true
        }
        guard let client = egress.clients[command.endpoint] else {
            return await deadLetter(item, reason: "endpoint '\(LogSafe.text(command.endpoint, maxBytes: 80))' is not configured", status: nil, errorBody: nil, attempts: 0, firstAttempt: Self.now, finished: finished)
        }
        // A previous owner was calling 8x8 with this command when it stopped. Its last request
        // may still be on its way (a process that dies leaves its request to 8x8 behind): ask
        // 8x8 only once every request it can have sent has ended, a request timeout after this
        // egress took the partition. Only this conversation waits.
        if let (attemptedAt, agentBefore) = item.ledger.takeAttempt(command.commandId) {
            let wait = item.ledger.takenAt + Int64(egress.config.egress.requestTimeoutMs) - Self.now
            if wait > 0 { try? await Task.sleep(for: .milliseconds(wait)) }
            if stopped(item) { return false }
            let repeatable = DeliveryPolicy.isIdempotent(command.action)
            switch await reconcile(command, client: client, since: attemptedAt, ledger: item.ledger, agentBefore: agentBefore) {
            case .delivered:
                egress.metrics.reconciled.increment()
                return await complete(item, outcome: .delivered, status: nil, attempts: 1, error: "found at 8x8 after a restart", finished: finished)
            case .skip:
                return await complete(item, outcome: .skipped, status: nil, attempts: 1, error: "an indicator whose fate a restart left unknown", finished: finished)
            case .unknown where !repeatable, .uncheckable where !repeatable:
                // As after a broken connection: sending it again could send it twice (a second
                // message, a second conversation). A revoked partition's next owner decides.
                if stopped(item) { return false }
                return await deadLetter(
                    item, reason: "a previous owner's request may have reached 8x8, and 8x8 could not tell whether it has it", status: nil,
                    errorBody: nil, attempts: 0, firstAttempt: Self.now, finished: finished)
            case .notDelivered, .unknown, .uncheckable:
                break
            }
        }
        // Who has the conversation before a queue move goes: an agent 8x8 reports after a move
        // that may have taken effect is its outcome only when it is not the one from before.
        // One read, one try: when it fails the move goes as it would have without it.
        var agentBefore: String?
        if command.action == .patchConversation, command.body["assignment"]?["id"] != nil,
           let conversation = await ask(command, tries: 1, proceed: { !self.stopped(item) }, { () throws(ChatGatewayError) in
               try await client.conversation(command.conversationId)
           }) {
            agentBefore = Self.agent(in: conversation)
        }
        let firstAttempt = Self.now
        guard !stopped(item) else { return false }
        var attempting = DeliveryResult(
            command: command, outcome: .attempting, status: nil, attempts: 0, at: firstAttempt, endToEndMillis: nil, error: nil,
            source: item.source)
        attempting.agentBefore = agentBefore
        guard await write(attempting, partition: item.partition) else { return false }
        var random = SystemRandomNumberGenerator()
        var attempt = 0
        // Attempts 8x8 answered 429: they do not count toward maxAttempts.
        var throttled = 0
        while true {
            attempt += 1
            guard await egress.limiter.acquire(tenant: command.tenantId ?? command.endpoint, proceed: { !self.stopped(item) }) else { return false }
            await egress.inFlight.wait()
            guard !stopped(item) else {
                egress.inFlight.signal()
                return false
            }
            let started = ContinuousClock.now
            let attemptStart = Self.now
            let result: Result<ChatGatewayResponse, ChatGatewayError>
            do {
                result = .success(try await client.deliver(command, proceed: { [weak self] in self.map { !$0.stopped(item) } ?? false }))
            } catch {
                result = .failure(error)
            }
            egress.inFlight.signal()
            egress.metrics.requestDuration.recordNanoseconds(Int64((ContinuousClock.now - started) / .nanoseconds(1)))
            if isEnded { return false }
            // A revoked partition still records what its last call did, so its next owner
            // need not ask 8x8.
            var failure: ChatGatewayError
            switch result {
            case .success(let response):
                return await complete(item, outcome: .delivered, status: response.status, attempts: attempt, error: nil, finished: finished)
            case .failure(let error):
                failure = error
            }
            // The request may have taken effect at 8x8 (no answer, or a 500 or 504): ask 8x8
            // before repeating a call that must not be repeated, or giving it up; and before
            // repeating a queue move, which an agent may have accepted meanwhile (moving it
            // again would take the conversation from the agent). A message that
            // timed out (here or at 8x8's gateway) may still be in progress there: 8x8 is asked
            // once it had another request timeout to finish it (only this conversation waits;
            // the calls `reconcile` cannot check are not worth the wait).
            if !DeliveryPolicy.isIdempotent(command.action) || command.action == .patchConversation, failure.mayHaveTakenEffect {
                if let unfinished = failure.mayStillBeRunning(requestTimeout: .milliseconds(egress.config.egress.requestTimeoutMs)),
                   command.action == .sendMessage || command.action == .sendAttachment {
                    try? await Task.sleep(for: unfinished)
                    if stopped(item) { return false }
                }
                switch await reconcile(command, client: client, since: attemptStart, ledger: item.ledger, agentBefore: agentBefore) {
                case .delivered:
                    egress.metrics.reconciled.increment()
                    return await complete(item, outcome: .delivered, status: nil, attempts: attempt, error: "found at 8x8 after \(failure.summary)", finished: finished)
                case .notDelivered:
                    failure = .transport("\(failure.summary), and 8x8 does not have it", reachedServer: false)
                case .unknown, .uncheckable, .skip:
                    break
                }
            }
            let age = Duration.milliseconds(max(0, Self.now.minusSaturating(command.createdAt)))
            let decision = egress.policy.decide(failure, attempt: attempt, throttled: throttled, age: age, action: command.action, using: &random)
            if failure.isThrottled { throttled += 1 }
            switch decision {
            case .retry(let wait):
                egress.metrics.retries.increment()
                logger.debug("delivery retried", metadata: [
                    "commandId": "\(LogSafe.text(command.commandId, maxBytes: 120))", "error": "\(failure.summary)", "waitMs": "\(wait / .milliseconds(1))",
                ])
                try? await Task.sleep(for: wait)
                if stopped(item) { return false }
            case .skip(let reason):
                if stopped(item) { return false }
                return await complete(item, outcome: .skipped, status: failure.statusCode, attempts: attempt, error: "\(reason): \(failure.summary)", finished: finished)
            case .giveUp(let reason):
                // The next owner of a revoked partition, or the next generation after a stop,
                // decides (it asks 8x8 first): a check a stop cut short is no reason to give up.
                if stopped(item) { return false }
                // A queue move's failure would tell the flow no agent is coming (and it goes on):
                // when 8x8 could not be asked above, it is asked once more.
                if command.action == .patchConversation, failure.mayHaveTakenEffect,
                   await reconcile(command, client: client, since: attemptStart, ledger: item.ledger, agentBefore: agentBefore) == .delivered {
                    egress.metrics.reconciled.increment()
                    return await complete(item, outcome: .delivered, status: nil, attempts: attempt, error: "found at 8x8 after \(failure.summary)", finished: finished)
                }
                if stopped(item) { return false }
                var body: String?
                if case .status(_, let problem, _) = failure { body = problem.map { "\($0.code ?? "") \($0.message ?? "")" } }
                // The reason names the status and 8x8's error code; 8x8's message, which may quote
                // what was sent, stays in the error body (`connector replay` prints reasons).
                return await deadLetter(
                    item, reason: "\(reason): \(failure.summary)", status: failure.statusCode, errorBody: body ?? "\(failure)", attempts: attempt,
                    firstAttempt: firstAttempt, finished: finished)
            }
        }
    }

    /// Writes the final result; the command is finished once it is durable.
    private func complete(
        _ item: LaneItem, outcome: DeliveryResult.Outcome, status: Int?, attempts: Int, error: String?,
        finished: @escaping @Sendable () -> Void
    ) async -> Bool {
        let command = item.command
        let now = Self.now
        var endToEnd: Int64?
        if outcome == .delivered, error == nil {
            endToEnd = now.minusSaturating(command.receivedAt)
            egress.metrics.endToEnd.recordMilliseconds(max(0, endToEnd!))
        }
        let result = DeliveryResult(
            command: command, outcome: outcome, status: status, attempts: attempts, at: now, endToEndMillis: endToEnd, error: error,
            source: item.source)
        item.ledger.finish(command.commandId, conversation: command.conversationId, delivered: outcome == .delivered ? result.fingerprint : nil, at: now)
        egress.metrics.delivery(command.action.rawValue, outcome: outcome.rawValue)
        // The lane goes on at once; the offset waits for the acknowledgement.
        send(KafkaProducerMessage(topic: egress.deliveryTopic, partition: item.partition, key: command.conversationId, value: result.encodedRecord)) { ok in
            if ok { finished() }
        }
        return !isEnded
    }

    /// Dead-letters a command, and tells the flow of a handover it gives up on.
    private func deadLetter(
        _ item: LaneItem, reason: String, status: Int?, errorBody: String?, attempts: Int, firstAttempt: Int64,
        finished: @escaping @Sendable () -> Void
    ) async -> Bool {
        let command = item.command
        egress.metrics.deadLetters.increment()
        logger.warning("command dead-lettered", metadata: [
            "commandId": "\(LogSafe.text(command.commandId, maxBytes: 120))", "action": "\(command.action.rawValue)",
            "status": "\(status.map(String.init) ?? "-")", "attempts": "\(attempts)",
        ])
        let letter = DeadLetter(
            command: command, reason: reason, status: status, errorBody: errorBody, attempts: attempts, firstAttemptAt: firstAttempt,
            deadLetteredAt: Self.now, source: item.source)
        // The dead letter is durable before the result that lets the offset move past it.
        let written = await write(
            KafkaProducerMessage(topic: egress.deadLetterTopic, key: command.conversationId, value: letter.encodedRecord))
        guard written else { return false }
        if command.action == .patchConversation {
            // A queue move that never happened: without word, the conversation would wait for an
            // agent for ever, the bot silent. The flow hears of it in the conversation's order.
            let failure = InboundEvent.handoverFailed(command, status: status, reason: reason, at: Self.now)
            do {
                _ = try await producer.send(KafkaProducerMessage(topic: egress.inboundTopic, key: command.conversationId, value: failure.encodedRecord))
            } catch {
                // Refused for good (no write access to the inbound topic, say): a restart would
                // refuse it again, after sending the queue move again, for ever. Counted and logged
                // instead. What may pass later (a partition without a leader) restarts, as any write.
                let error = KafkaError.wrapping(error)
                guard error.isRefusal, !error.isRetriable else {
                    failed(error)
                    return false
                }
                egress.metrics.handoverReportsLost.increment()
                logger.error("a refused handover could not be reported to its flow: Kafka refused the record", metadata: [
                    "commandId": "\(LogSafe.text(command.commandId, maxBytes: 120))", "conversationId": "\(LogSafe.text(command.conversationId, maxBytes: 120))",
                    "topic": "\(egress.inboundTopic)", "kafka.error": "\(error.code.name)",
                ])
            }
        }
        return await complete(item, outcome: .deadLettered, status: status, attempts: attempts, error: reason, finished: finished)
    }

    /// `unknown`: 8x8 could not tell (every read failed, or its answer cannot decide);
    /// `uncheckable`: no read of 8x8 shows whether the call took effect.
    enum Reconciliation { case delivered, notDelivered, skip, unknown, uncheckable }

    /// The agent 8x8 names as the conversation's assignment ("" when it gives no id); nil when
    /// it names none.
    static func agent(in conversation: JSONValue?) -> String? {
        guard let assignment = conversation?["assignment"], assignment["type"]?.stringValue?.lowercased() == "agent" else { return nil }
        return assignment["id"]?.stringValue ?? ""
    }

    /// Whether 8x8 already has what the command asked for, for a command whose request may or
    /// may not have reached 8x8 (sent since `since`, milliseconds since 1970). `agentBefore`:
    /// the agent the conversation had before a queue move was first sent (from the `attempting`
    /// result after a restart); nil when it had none, the read failed, or a previous owner's
    /// result does not say.
    private func reconcile(
        _ command: OutboundCommand, client: ChatGatewayClient, since: Int64, ledger: DeliveryLedger, agentBefore: String? = nil
    ) async -> Reconciliation {
        switch command.action {
        case .sendMessage, .sendAttachment:
            guard let fingerprint = MessageFingerprint(command: command) else { return .uncheckable }
            let threshold = since.minusSaturating(Egress.clockTolerance)
            guard let messages = await ask(command, { () throws(ChatGatewayError) in try await client.recentMessages(conversationId: command.conversationId, count: 50) }) else {
                return .unknown
            }
            let alike = messages.filter { $0.authorType == "bot" && $0.fingerprint == fingerprint }
            // One without a readable time may be an older message with the same text, or this one.
            if alike.contains(where: { $0.createdAt == nil }) { return .unknown }
            let theirs = alike.count { $0.createdAt! >= threshold }
            let ours = ledger.deliveredCount(conversation: command.conversationId, digest: fingerprint.digest, since: threshold)
            return theirs > ours ? .delivered : .notDelivered
        case .patchConversation:
            guard let queue = command.body["assignment"]?["id"]?.stringValue else { return .uncheckable }
            guard let conversation = await ask(command, { () throws(ChatGatewayError) in try await client.conversation(command.conversationId) }) ?? nil else {
                return .unknown
            }
            // An agent's assignment also says the move was made: the conversation came to the
            // agent through the queue (moving it again would take it from the agent). Not the
            // agent it had before the move was sent, though: that is left from an earlier
            // handover, and counting it would leave the customer waiting for nobody.
            if let agent = Self.agent(in: conversation) {
                return agent == agentBefore ? .notDelivered : .delivered
            }
            return conversation["assignment"]?["id"]?.stringValue == queue ? .delivered : .notDelivered
        case .typing, .thinking:
            // A late indicator is worth nothing; sending it twice is worse.
            return .skip
        case .endConversation, .postAgentAssignment, .createConversation:
            return .uncheckable
        }
    }

    /// One read of 8x8's state, under the tenant's rate limit and the bound on requests in
    /// flight like any call, tried up to `tries` times with the retry backoff: for `reconcile`
    /// a 429 or a failed read must not pass for "8x8 does not have it" and cause a resend. Nil
    /// when every try failed (or the generation ended, or `proceed` turned false while it
    /// waited for its turn).
    private func ask<T>(
        _ command: OutboundCommand, tries: Int = 3, proceed: () -> Bool = { true }, _ read: () async throws(ChatGatewayError) -> T
    ) async -> T? {
        var random = SystemRandomNumberGenerator()
        for attempt in 1...tries {
            guard await egress.limiter.acquire(tenant: command.tenantId ?? command.endpoint, proceed: { !self.isEnded && proceed() }) else { return nil }
            await egress.inFlight.wait()
            let wait: Duration
            do {
                let result = try await read()
                egress.inFlight.signal()
                return result
            } catch {
                egress.inFlight.signal()
                // A read that fails leaves the command to wait: 8x8's Retry-After is held to
                // the policy's longest backoff (asking again too early costs one more read).
                if case .status(_, _, let retryAfter?) = error { wait = min(retryAfter, egress.policy.maxBackoff) } else { wait = egress.policy.backoff(attempt, using: &random) }
            }
            if isEnded || attempt == tries { break }
            try? await Task.sleep(for: wait)
        }
        return nil
    }

    // MARK: - Kafka

    /// Sends and waits for the acknowledgement; a failure ends the generation.
    private func write(_ message: KafkaProducerMessage<String, [UInt8]>) async -> Bool {
        do {
            _ = try await producer.send(message)
            return true
        } catch {
            failed(KafkaError.wrapping(error))
            return false
        }
    }

    private func write(_ result: DeliveryResult, partition: Int32) async -> Bool {
        await write(KafkaProducerMessage(topic: egress.deliveryTopic, partition: partition, key: result.conversationId, value: result.encodedRecord))
    }

    /// Sends without waiting; `done(true)` once acknowledged.
    private func send(_ message: KafkaProducerMessage<String, [UInt8]>, done: @escaping @Sendable (Bool) -> Void) {
        do {
            try producer.send(message) { [weak self] result in
                switch result {
                case .success: done(true)
                case .failure(let error):
                    self?.failed(error)
                    done(false)
                }
            }
        } catch {
            failed(KafkaError.wrapping(error))
            done(false)
        }
    }


    private func failed(_ error: KafkaError) {
        guard state.fail(error) else { return }
        logger.error("a write to Kafka failed; the egress restarts from the committed offsets", metadata: ["kafka.error": "\(error)"])
        _ = state.end()  // no more calls to 8x8 from this generation
        closeLanes()
        for task in runners.withLock({ Array($0.tasks.values) }) { task.cancel() }
        Task { await consumer.shutdown() }
    }

    private func closeLanes() {
        for lane in laneList.withLock({ $0 }) { lane.close() }
    }

    // MARK: - Stopping

    /// Hands the partitions over: no command of them starts any more, the deliveries in
    /// progress get until the deadline to finish (a command waiting out a Retry-After may not),
    /// then the lanes are revoked: what is left sends nothing more and stores no offset; the
    /// next owner reads it again and settles an unfinished attempt with 8x8 first.
    private func drain(_ partitions: [TopicPartition], timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        let draining = partitions.compactMap { lanes[$0.partition] }
        for lane in draining { lane.close() }
        for lane in draining {
            // Until the commands started are finished: delivered or given up, and their results
            // acknowledged, so their offsets are stored before the revoke.
            await wait(for: lane, until: deadline) { $0.inProgress }
            lane.revoke()
        }
    }

    /// Waits until `pending` of the lane is 0, the generation failed or ended, or `deadline` passed.
    private func wait(
        for lane: ConversationLanes<LaneItem>, until deadline: ContinuousClock.Instant, _ pending: (ConversationLanes<LaneItem>) -> Int
    ) async {
        while pending(lane) > 0, state.failure == nil, !isEnded, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    /// A graceful stop: the commands read go on being delivered until `drainTimeout`; then no
    /// command starts any more, and the calls to 8x8 under way get one request timeout to
    /// finish (their results written, their offsets stored) before what is left is cancelled.
    /// A call cut off at the wire would leave its command at `attempting`, for the next owner
    /// to hold its conversation a request timeout and ask 8x8 about it.
    func stop(drainTimeout: Duration) async {
        let deadline = ContinuousClock.now + drainTimeout
        let lanes = laneList.withLock { $0 }
        for lane in lanes { await wait(for: lane, until: deadline) { $0.buffered } }
        if drainTimeout > .zero {
            closeLanes()
            let finishBy = ContinuousClock.now + .milliseconds(egress.config.egress.requestTimeoutMs)
            for lane in lanes { await wait(for: lane, until: finishBy) { $0.inProgress } }
        }
        guard state.end() else { return }
        closeLanes()
        for task in runners.withLock({ Array($0.tasks.values) }) { task.cancel() }
        await consumer.shutdown()
        await producer.shutdown()
    }

    /// After a failure or an error: no more calls to 8x8, the consumer leaves the group at once
    /// without waiting for the events nobody will handle (its partitions move now, not after
    /// `max.poll.interval.ms`), and the producer drops what it still has.
    func closeAfterFailure() async {
        consumer.stopTakingEvents()
        if state.end() {
            closeLanes()
            for task in runners.withLock({ Array($0.tasks.values) }) { task.cancel() }
        } else if state.failure == nil {
            return  // a stop or a crash under way ends the generation its own way
        }
        // The producer first: no result of this generation may land after the consumer left.
        await producer.simulateCrash()
        await consumer.shutdown()
    }

    func crash() async {
        guard state.crash() else { return }
        closeLanes()
        for task in runners.withLock({ Array($0.tasks.values) }) { task.cancel() }
        await producer.simulateCrash()
        await consumer.simulateCrash()
    }
}
