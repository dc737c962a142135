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
/// 2. latency at a fixed rate: events written at `--rate` per second for `--duration` seconds;
///    for each event, the time from handing it to the producer until its first command is
///    read back from the outbound topic (an upper bound of inbound append to outbound append).
///
/// `swift build -c release --product WorkerBenchmark && .build/release/WorkerBenchmark`
@main
struct WorkerBenchmark {
    static func main() async throws {
        // As `connector` does (ConnectorCommand.main); CONNECTOR_NIO_EXECUTOR=0 compares without.
        print("tasks run on \(EventLoopExecutor.install()); memory from \(MemoryAllocator.description)")
        try await run()
    }

    /// Off the main actor, as in `connector`.
    nonisolated static func run() async throws {
        var arguments = CommandLine.arguments.dropFirst().makeIterator()
        var events = 30_000
        var rate = 1_000
        var duration = 20
        var fetchWait: Int?
        var lingerMs = 1
        while let argument = arguments.next() {
            switch argument {
            case "--events": events = Int(arguments.next() ?? "") ?? events
            case "--rate": rate = Int(arguments.next() ?? "") ?? rate
            case "--duration": duration = Int(arguments.next() ?? "") ?? duration
            case "--fetch-wait": fetchWait = Int(arguments.next() ?? "")
            case "--linger-ms": lingerMs = Int(arguments.next() ?? "") ?? lingerMs
            default:
                print("usage: WorkerBenchmark [--events N] [--rate R] [--duration S] [--fetch-wait MS] [--linger-ms MS]")
                return
            }
        }
        var logger = Logger(label: "worker-benchmark")
        logger.logLevel = .error
        let cluster = try EmbeddedKafkaCluster(logger: logger)
        let flow = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("flows/demo.yaml").path
        let config = try ConnectorConfig.parse("""
            kafka:
              brokers: embedded
              partitions: 6
              properties:
                auto.commit.interval.ms: 100
            \(fetchWait.map { "    fetch.wait.max.ms: \($0)" } ?? "")
            worker:
              lingerMs: \(lingerMs)
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
            endpoints: try BotWorker.loadEndpoints(config: config), logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: worker)], logger: logger))
        let workerTask = Task { try await group.run() }

        var producerConfig = KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
        // Stands in for the ingress, batching as it does by default.
        producerConfig.batching = .adaptive
        print("inbound events batched adaptively (the ingress's default); worker.lingerMs \(lingerMs)")
        let producer = try KafkaProducer(configuration: producerConfig, logger: logger)
        let admin = try KafkaAdmin(bootstrapServers: cluster.bootstrapServers, logger: logger)
        let inbound = config.topicName(.inbound)
        let demo = DemoTraffic()

        func waitForLagZero(_ expectedEnd: Int64) async throws {
            while true {
                let lag = try await admin.lag(group: ConnectorConsumerGroup.worker.rawValue, topics: [inbound])
                let committed = lag.partitions.reduce(Int64(0)) { $0 + ($1.committedOffset ?? 0) }
                if committed >= expectedEnd { return }
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        // Warm-up: the group join and the first sessions restore.
        var written: Int64 = 0
        try await producer.sendBatch(demo.next(200).map { message(inbound, $0) })
        written += 200
        try await waitForLagZero(written)

        // 1. Throughput: write the backlog (in slices, so the embedded broker's retention never
        // drops unread records) while the worker drains it.
        let clock = ContinuousClock()
        let started = clock.now
        var remaining = events
        while remaining > 0 {
            let slice = min(remaining, 2_000)
            try await producer.sendBatch(demo.next(slice).map { message(inbound, $0) })
            written += Int64(slice)
            remaining -= slice
            // Keep at most ~10,000 events ahead of the worker.
            while true {
                let lag = try await admin.lag(group: ConnectorConsumerGroup.worker.rawValue, topics: [inbound])
                let committed = lag.partitions.reduce(Int64(0)) { $0 + ($1.committedOffset ?? 0) }
                if written - committed < 10_000 { break }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        try await waitForLagZero(written)
        let elapsed = clock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(String(format: "throughput: %d events in %.2f s = %.0f events/s (demo flow, 6 partitions, one worker)", events, seconds, Double(events) / seconds))

        // 2. Latency at a fixed rate.
        let sentAt = Mutex<[String: ContinuousClock.Instant]>([:])
        let latencies = Mutex<[Duration]>([])
        var readerConfig = KafkaConsumerConfiguration(
            bootstrapServers: cluster.bootstrapServers, groupID: "benchmark-reader",
            subscription: .topics([config.topicName(.outbound)]))
        readerConfig.autoOffsetReset = "latest"
        readerConfig.properties["fetch.wait.max.ms"] = String(fetchWait ?? 1)
        let reader = try KafkaConsumer(configuration: readerConfig, logger: logger)
        let readerTask = Task {
            var seen = Set<String>()
            for await message in reader.messages {
                let now = clock.now
                guard let command = try? OutboundCommand.decode(message.value), seen.insert(command.causationEventId).inserted,
                      let sent = sentAt.withLock({ $0[command.causationEventId] }) else { continue }
                latencies.withLock { $0.append(now - sent) }
            }
        }
        // Let the reader join and settle at the end of the topic.
        while reader.assignment.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        try await Task.sleep(for: .seconds(2))

        let total = rate * duration
        let interval = Duration.seconds(1) / rate
        let start = clock.now
        var sentEvents: [(event: InboundEvent, answered: Bool)] = []
        for index in 0..<total {
            let due = start + interval * index
            if due > clock.now { try await clock.sleep(until: due) }
            let (event, answered) = demo.nextWithExpectation()
            sentAt.withLock { $0[event.eventId] = clock.now }
            try producer.send(message(inbound, event)) { _ in }
            sentEvents.append((event, answered))
        }
        let expected = sentEvents.filter(\.answered).count
        let deadline = clock.now + .seconds(30)
        while latencies.withLock({ $0.count }) < expected && clock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let sorted = latencies.withLock { $0 }.sorted()
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return .nan }
            let value = sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
            return Double(value.components.attoseconds) / 1e15 + Double(value.components.seconds) * 1000
        }
        print(String(
            format: "latency at %d events/s for %d s: %d of %d answered events measured; p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms",
            rate, duration, sorted.count, expected, percentile(0.5), percentile(0.9), percentile(0.99), percentile(1.0)))

        await reader.shutdown()
        readerTask.cancel()
        await producer.shutdown()
        await group.triggerGracefulShutdown()
        _ = try? await workerTask.value
    }

    static func message(_ topic: String, _ event: InboundEvent) -> KafkaProducerMessage<String, [UInt8]> {
        KafkaProducerMessage(topic: topic, key: event.recordKey, value: event.encodedRecord(rawBody: DemoTraffic.rawBody))
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
