import BotWorker
import ChatEvents
import ConnectorConfiguration
import Foundation
import IngressService
import Kafka
import Logging
import MemoryAllocator
import ServiceLifecycle
import Synchronization

/// Measures one bot worker with the demo flow on the embedded cluster:
///
/// 1. throughput: a backlog of demo conversations is written to the inbound topic while the
///    worker consumes; the rate is events processed (group lag back to zero) per second;
/// 2. latency at a fixed rate, on a fresh cluster and worker: events written at `--rate` per
///    second for `--duration` seconds; for each event, the time from handing it to the
///    producer until the worker's records for it (commands, analytics) are acknowledged by
///    the broker: inbound append to outbound append, plus the inbound producer's own hop.
///
/// The latency phase gets a cluster of its own because the embedded (mock) broker keeps each
/// partition's log as a list that it searches from the oldest record on every fetch, so its
/// cost per event grows with what earlier phases wrote; `--same-cluster` measures after the
/// throughput phase instead. `--read-back` also measures, as sessions 2 to 14 did, until a
/// reader in this process gets the event's first command back from the outbound topic.
///
/// `swift build -c release --product WorkerBenchmark && .build/release/WorkerBenchmark`
@main
struct WorkerBenchmark {
    static func main() async throws {
        // As `connector` does (ConnectorCommand.main); CONNECTOR_NIO_EXECUTOR=0 compares without.
        print("tasks run on \(EventLoopExecutor.install()); memory from \(MemoryAllocator.description)")
        try await run()
    }

    struct Options {
        var events = 30_000
        var rate = 1_000
        var duration = 20
        var fetchWait: Int?
        /// `worker.lingerMs`; the configuration's default when not given.
        var lingerMs: Int?
        var sameCluster = false
        var readBack = false
    }

    /// Off the main actor, as in `connector`.
    nonisolated static func run() async throws {
        var arguments = CommandLine.arguments.dropFirst().makeIterator()
        var options = Options()
        while let argument = arguments.next() {
            switch argument {
            case "--events": options.events = Int(arguments.next() ?? "") ?? options.events
            case "--rate": options.rate = Int(arguments.next() ?? "") ?? options.rate
            case "--duration": options.duration = Int(arguments.next() ?? "") ?? options.duration
            case "--fetch-wait": options.fetchWait = Int(arguments.next() ?? "")
            case "--linger-ms": options.lingerMs = Int(arguments.next() ?? "")
            case "--same-cluster": options.sameCluster = true
            case "--read-back": options.readBack = true
            default:
                print("usage: WorkerBenchmark [--events N] [--rate R] [--duration S] [--fetch-wait MS] [--linger-ms MS] [--same-cluster] [--read-back]")
                return
            }
        }
        var bench: Bench? = try await Bench(options: options)
        print("inbound events batched adaptively (the ingress's default); worker.lingerMs \(bench!.config.worker.lingerMs)")
        if options.events > 0 {
            try await bench!.throughput(events: options.events)
            if !options.sameCluster {
                await bench!.stop()
                bench = nil  // the old cluster and its clients go before the new one starts
                bench = try await Bench(options: options)
            }
        }
        try await bench!.latency()
        await bench!.stop()
    }

    static func message(_ topic: String, _ event: InboundEvent) -> KafkaProducerMessage<String, [UInt8]> {
        KafkaProducerMessage(topic: topic, key: event.recordKey, value: event.encodedRecord(rawBody: DemoTraffic.rawBody))
    }
}

/// When each measured event was sent, and how long until it was acknowledged (or read back).
final class Acknowledgements: Sendable {
    private struct State {
        var sentAt: [String: ContinuousClock.Instant] = [:]
        var acknowledged: [Duration] = []
        var readBack: [Duration] = []
        var seen = Set<String>()
        var acknowledgedIds = Set<String>()
    }
    private let state = Mutex(State())

    func sent(_ eventId: String) { state.withLock { $0.sentAt[eventId] = .now } }

    func acknowledged(_ eventId: String) {
        let now = ContinuousClock.now
        state.withLock { state in
            if let sent = state.sentAt[eventId], state.acknowledgedIds.insert(eventId).inserted { state.acknowledged.append(now - sent) }
        }
    }

    func readBack(_ eventId: String) {
        let now = ContinuousClock.now
        state.withLock { state in
            if state.seen.insert(eventId).inserted, let sent = state.sentAt[eventId] { state.readBack.append(now - sent) }
        }
    }

    var counts: (acknowledged: Int, readBack: Int) { state.withLock { ($0.acknowledged.count, $0.readBack.count) } }
    var results: (acknowledged: [Duration], readBack: [Duration]) { state.withLock { ($0.acknowledged, $0.readBack) } }
}

/// One embedded cluster with the worker running on it and a producer standing in for the
/// ingress.
struct Bench {
    let options: Options
    let demo = DemoTraffic()
    let acknowledged = Acknowledgements()
    let config: ConnectorConfig
    let group: ServiceGroup
    let workerTask: Task<Void, any Error>
    let producer: KafkaProducer
    let admin: KafkaAdmin
    let inbound: String
    let logger: Logger
    var written: Int64 = 0
    let clock = ContinuousClock()
    /// Last, so that it goes after the clients of it (stored properties go in order).
    let cluster: EmbeddedKafkaCluster

    typealias Options = WorkerBenchmark.Options

    init(options: Options) async throws {
        self.options = options
        var logger = Logger(label: "worker-benchmark")
        logger.logLevel = .error
        self.logger = logger
        cluster = try EmbeddedKafkaCluster(logger: logger)
        let flow = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("flows/demo.yaml").path
        config = try ConnectorConfig.parse("""
            kafka:
              brokers: embedded
              partitions: 6
              properties:
                auto.commit.interval.ms: 100
            \(options.fetchWait.map { "    fetch.wait.max.ms: \($0)" } ?? "")
            \(options.lingerMs.map { "worker: { lingerMs: \($0) }" } ?? "")
            endpoints:
              - name: support
                urlToken: benchmark-token
                flow: \(flow)
                eightByEight: { baseURL: "http://127.0.0.1:9", apiKey: k, tenant: acme }
                handover: { queueId: "101" }
            """)
        for topic in ConnectorTopic.allCases { try cluster.createTopic(config.topicName(topic), partitions: 6) }

        let worker = BotWorker(
            config: config, bootstrapServers: cluster.bootstrapServers,
            endpoints: try BotWorker.loadEndpoints(config: config), logger: logger,
            onAcknowledged: { [acknowledged] in acknowledged.acknowledged($0.eventId) })
        let group = ServiceGroup(configuration: .init(services: [.init(service: worker)], logger: logger))
        self.group = group
        workerTask = Task { try await group.run() }

        var producerConfig = KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
        // Stands in for the ingress, batching as it does by default.
        producerConfig.batching = .adaptive
        producer = try KafkaProducer(configuration: producerConfig, logger: logger)
        admin = try KafkaAdmin(bootstrapServers: cluster.bootstrapServers, logger: logger)
        inbound = config.topicName(.inbound)

        // Warm-up: the group join and the first sessions restore.
        try await producer.sendBatch(demo.next(200).map { WorkerBenchmark.message(inbound, $0) })
        written += 200
        try await waitForCommitted(written)
    }

    func committed() async throws -> Int64 {
        let lag = try await admin.lag(group: ConnectorConsumerGroup.worker.rawValue, topics: [inbound])
        return lag.partitions.reduce(Int64(0)) { $0 + ($1.committedOffset ?? 0) }
    }

    func waitForCommitted(_ expectedEnd: Int64) async throws {
        while try await committed() < expectedEnd { try await Task.sleep(for: .milliseconds(20)) }
    }

    /// 1. Throughput: write the backlog (in slices, so the embedded broker's retention never
    /// drops unread records) while the worker drains it.
    mutating func throughput(events: Int) async throws {
        let started = clock.now
        var remaining = events
        while remaining > 0 {
            let slice = min(remaining, 2_000)
            try await producer.sendBatch(demo.next(slice).map { WorkerBenchmark.message(inbound, $0) })
            written += Int64(slice)
            remaining -= slice
            // Keep at most ~10,000 events ahead of the worker.
            while try await written - committed() >= 10_000 { try await Task.sleep(for: .milliseconds(10)) }
        }
        try await waitForCommitted(written)
        let seconds = (clock.now - started) / .seconds(1)
        print(String(format: "throughput: %d events in %.2f s = %.0f events/s (demo flow, 6 partitions, one worker)", events, seconds, Double(events) / seconds))
    }

    /// 2. Latency at a fixed rate.
    func latency() async throws {
        var reader: KafkaConsumer?
        var readerTask: Task<Void, Never>?
        if options.readBack {
            var readerConfig = KafkaConsumerConfiguration(
                bootstrapServers: cluster.bootstrapServers, groupID: "benchmark-reader",
                subscription: .topics([config.topicName(.outbound)]))
            readerConfig.autoOffsetReset = "latest"
            readerConfig.properties["fetch.wait.max.ms"] = String(options.fetchWait ?? 1)
            let consumer = try KafkaConsumer(configuration: readerConfig, logger: logger)
            readerTask = Task { [acknowledged] in
                for await message in consumer.messages {
                    guard let command = try? OutboundCommand.decode(message.value) else { continue }
                    acknowledged.readBack(command.causationEventId)
                }
            }
            // Let the reader join and settle at the end of the topic.
            while consumer.assignment.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
            reader = consumer
        }
        try await Task.sleep(for: .seconds(2))

        let total = options.rate * options.duration
        let interval = Duration.seconds(1) / options.rate
        let start = clock.now
        var expected = 0
        for index in 0..<total {
            let due = start + interval * index
            if due > clock.now { try await clock.sleep(until: due) }
            let (event, answered) = demo.nextWithExpectation()
            acknowledged.sent(event.eventId)
            try producer.send(WorkerBenchmark.message(inbound, event)) { _ in }
            if answered { expected += 1 }
        }
        let deadline = clock.now + .seconds(30)
        while clock.now < deadline {
            let counts = acknowledged.counts
            if counts.acknowledged >= expected && (!options.readBack || counts.readBack >= expected) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let results = acknowledged.results
        func report(_ what: String, _ latencies: [Duration]) {
            let sorted = latencies.sorted()
            func percentile(_ p: Double) -> Double {
                guard !sorted.isEmpty else { return .nan }
                return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] / .milliseconds(1)
            }
            print(String(
                format: "%@ at %d events/s for %d s: %d of %d answered events; p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms",
                what, options.rate, options.duration, sorted.count, expected,
                percentile(0.5), percentile(0.9), percentile(0.99), percentile(1.0)))
        }
        let where_ = options.sameCluster && options.events > 0 ? " (after the throughput phase)" : ""
        report("latency to outbound acknowledged" + where_, results.acknowledged)
        if options.readBack { report("latency to read back" + where_, results.readBack) }
        await reader?.shutdown()
        readerTask?.cancel()
    }

    func stop() async {
        await producer.shutdown()
        await group.triggerGracefulShutdown()
        _ = try? await workerTask.value
    }
}


/// Demo conversations, interleaved: each conversation says hello, asks for the balance, gives
/// an email address (first a wrong one), and says bye; then a new conversation starts.
final class DemoTraffic: @unchecked Sendable {
    static let script: [(text: String, answered: Bool)] = [
        ("hello", true), ("what is my balance", true), ("update my email", true),
        ("jane(at)example", true), ("jane@example.com", true), ("bye", true),
    ]
    static let rawBody = Array(#"{"eventType":"MESSAGE","conversationId":"bench","timestamp":1713100000000,"data":{"isEcho":false,"sender":{"id":"user-1","type":"user"},"text":"hello"}}"#.utf8)
    private let concurrent = 500
    private var positions: [Int]
    private var generations: [Int]
    private var cursor = 0
    private var counter = 0

    init() {
        positions = Array(repeating: 0, count: concurrent)
        generations = Array(repeating: 0, count: concurrent)
    }

    func next(_ count: Int) -> [InboundEvent] { (0..<count).map { _ in nextWithExpectation().0 } }

    func nextWithExpectation() -> (InboundEvent, Bool) {
        let slot = cursor
        cursor = (cursor + 1) % concurrent
        let step = Self.script[positions[slot]]
        let conversation = "bench-\(slot)-\(generations[slot])"
        positions[slot] += 1
        if positions[slot] == Self.script.count {
            positions[slot] = 0
            generations[slot] += 1
        }
        counter += 1
        var normalized = NormalizedEvent(kind: .userMessage)
        normalized.text = step.text
        normalized.sender = .init(id: "user-1", type: "user")
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let event = InboundEvent(
            eventId: "bench-\(counter)", retry: 0, tenantId: "acme", customerId: "c", endpoint: "support", route: .endpoint,
            receivedAt: now, transmissionTime: now, eventType: "MESSAGE", conversationId: conversation, eventTimestamp: now,
            signatureVerified: true, normalized: normalized)
        return (event, step.answered)
    }
}
