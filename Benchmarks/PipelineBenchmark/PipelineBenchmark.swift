import AsyncHTTPClient
import BotWorker
import ChatEvents
import ConnectorConfiguration
import EgressService
import Foundation
import Hummingbird
import IngressService
import Kafka
import Logging
import MemoryAllocator
import ServiceLifecycle
import Simulator
import Synchronization

/// The whole pipeline in one process: signed webhooks from the 8x8 simulator into the
/// ingress, the worker with the demo flow, the egress delivering to the simulator's Chat
/// Gateway paths, all on the embedded cluster.
///
/// 1. latency at a fixed rate: webhooks (user messages of 500 interleaved demo conversations)
///    at `--rate` per second for `--duration` seconds; for each, the time from sending it until
///    the simulator accepted its first command (answering 202). Bodies are signed before the
///    run, so the load generator spends no RSA time during it.
/// 2. throughput: `--burst` webhooks sent with 64 in flight; commands accepted by the simulator
///    per second, from the first webhook to the last command.
///
/// `swift build -c release --product PipelineBenchmark && .build/release/PipelineBenchmark`
@main
struct PipelineBenchmark {
    static func main() async throws {
        var arguments = CommandLine.arguments.dropFirst().makeIterator()
        var rate = 500
        var duration = 20
        var burst = 6_000
        var workerLinger: Int?
        while let argument = arguments.next() {
            switch argument {
            case "--rate": rate = Int(arguments.next() ?? "") ?? rate
            case "--duration": duration = Int(arguments.next() ?? "") ?? duration
            case "--burst": burst = Int(arguments.next() ?? "") ?? burst
            case "--worker-linger-ms": workerLinger = Int(arguments.next() ?? "")
            default:
                print("usage: PipelineBenchmark [--rate R] [--duration S] [--burst N] [--worker-linger-ms MS]")
                return
            }
        }
        print("memory from \(MemoryAllocator.description)")  // as in `connector`
        try await measure(rate: rate, duration: duration, burst: burst, workerLinger: workerLinger)
    }

    nonisolated static func measure(rate: Int, duration: Int, burst: Int, workerLinger: Int?) async throws {
        var logger = Logger(label: "pipeline-benchmark")
        logger.logLevel = .error
        let simulator = EightByEightSimulator(
            signer: try WebhookSigner(kid: "bench"), credentials: .init(apiKey: "bench-key", tenant: "acme"))
        try await withRunningApplication({ simulator.application(logger: logger, onRunning: $0) }) { simulatorPort in
            let base = "http://127.0.0.1:\(simulatorPort)"
            let flow = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("flows/demo.yaml").path
            let config = try ConnectorConfig.parse("""
                kafka:
                  brokers: embedded
                  partitions: 6
                  properties:
                    auto.commit.interval.ms: 100
                ingress:
                  listen: 127.0.0.1:0
                  signature:
                    jwkBaseURL: \(base)
                \(workerLinger.map { "worker: { lingerMs: \($0) }" } ?? "")
                egress:
                  listen: 127.0.0.1:0
                  maxInFlight: 256
                  maxConcurrentConversations: 64
                  rateLimit: { requestsPerSecond: 100000, burst: 100000 }
                endpoints:
                  - name: support
                    urlToken: bench-token
                    flow: \(flow)
                    eightByEight: { baseURL: "\(base)", apiKey: bench-key, tenant: acme }
                    handover: { queueId: "101" }
                """)
            let cluster = try EmbeddedKafkaCluster(logger: logger)
            for topic in ConnectorTopic.allCases { try cluster.createTopic(config.topicName(topic), partitions: 6) }
            let worker = BotWorker(
                config: config, bootstrapServers: cluster.bootstrapServers, endpoints: try BotWorker.loadEndpoints(config: config),
                logger: logger)
            let egress = Egress(config: config, bootstrapServers: cluster.bootstrapServers, logger: logger)
            let group = ServiceGroup(configuration: .init(services: [.init(service: worker), .init(service: egress)], logger: logger))
            let servicesTask = Task { try await group.run() }
            let ingress = try IngressService.make(config: config, bootstrapServers: cluster.bootstrapServers, logger: logger)
            try await withRunningApplication({ ingress.application(host: "127.0.0.1", port: 0, onRunning: $0) }) { port in
                let url = "http://127.0.0.1:\(port)/endpoint/bench-token"
                try await run(simulator: simulator, url: url, rate: rate, duration: duration, burst: burst)
            }
            try await egressAlone(simulator: simulator, cluster: cluster, topic: config.topicName(.outbound), logger: logger)
            await group.triggerGracefulShutdown()
            _ = try? await servicesTask.value
        }
    }

    struct Webhook: Sendable {
        var eventId: String
        var body: [UInt8]
        var headers: [(String, String)]
    }

    static func run(simulator: EightByEightSimulator, url: String, rate: Int, duration: Int, burst: Int) async throws {
        let gateway = simulator.gateway!
        let sender = simulator.webhookSender()
        let traffic = DemoWebhooks(signer: simulator.signer)
        let clock = ContinuousClock()

        func accepted(_ ids: Set<String>) -> Int { gateway.acceptedCommandIds.count { ids.contains($0) } }

        // Warm-up: group joins, first key fetch, connections.
        let warmUp = try traffic.next(200)
        try await send(warmUp, sender: sender, url: url, concurrency: 16)
        let warmIds = Set(warmUp.map { "\($0.eventId)/0" })
        while accepted(warmIds) < warmUp.count { try await Task.sleep(for: .milliseconds(50)) }

        // 1. Latency at a fixed rate.
        let total = rate * duration
        let webhooks = try traffic.next(total)
        let sentAt = Mutex<[String: ContinuousClock.Instant]>([:])
        let interval = Duration.seconds(1) / rate
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, webhook) in webhooks.enumerated() {
                let due = start + interval * index
                if due > clock.now { try await clock.sleep(until: due) }
                sentAt.withLock { $0[webhook.eventId + "/0"] = clock.now }
                group.addTask { _ = try await sender.post(body: webhook.body, headers: webhook.headers, to: url) }
            }
            try await group.waitForAll()
        }
        let firstCommands = Set(webhooks.map { "\($0.eventId)/0" })
        let deadline = clock.now + .seconds(60)
        while accepted(firstCommands) < webhooks.count, clock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let sent = sentAt.withLock { $0 }
        var latencies: [Duration] = []
        for received in gateway.received where (200..<300).contains(received.status) {
            guard let id = received.headers["x-connector-command-id"], let at = sent[id] else { continue }
            latencies.append(received.at - at)
        }
        latencies.sort()
        func percentile(_ p: Double) -> Double {
            guard !latencies.isEmpty else { return .nan }
            let value = latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]
            return Double(value.components.attoseconds) / 1e15 + Double(value.components.seconds) * 1000
        }
        print(String(
            format: "end to end at %d webhooks/s for %d s: %d of %d measured; p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms",
            rate, duration, latencies.count, webhooks.count, percentile(0.5), percentile(0.9), percentile(0.99), percentile(1.0)))

        // 2. Throughput.
        let before = gateway.acceptedCommandIds.count
        let burstWebhooks = try traffic.next(burst)
        let expected = burstWebhooks.count * 10 / 6  // the demo script: 10 commands per 6 messages
        let burstStart = clock.now
        try await send(burstWebhooks, sender: sender, url: url, concurrency: 64)
        let sendSeconds = seconds(clock.now - burstStart)
        let burstDeadline = clock.now + .seconds(120)
        while gateway.acceptedCommandIds.count - before < expected, clock.now < burstDeadline { try await Task.sleep(for: .milliseconds(20)) }
        let delivered = gateway.acceptedCommandIds.count - before
        let elapsed = seconds(clock.now - burstStart)
        print(String(
            format: "throughput: %d webhooks sent in %.2f s; %d commands accepted by the simulator in %.2f s = %.0f commands/s",
            burstWebhooks.count, sendSeconds, delivered, elapsed, Double(delivered) / elapsed))
    }

    /// 3. The egress alone: a backlog of 20,000 message commands of 1,000 conversations written
    /// to the outbound topic at once; commands accepted by the simulator per second.
    static func egressAlone(simulator: EightByEightSimulator, cluster: EmbeddedKafkaCluster, topic: String, logger: Logger) async throws {
        let gateway = simulator.gateway!
        let before = gateway.acceptedCommandIds.count
        var producerConfig = KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
        producerConfig.lingerMilliseconds = 5
        let producer = try KafkaProducer(configuration: producerConfig, logger: logger)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let commands = (0..<20_000).map { n in
            OutboundCommand(
                commandId: "backlog-\(n)/0", conversationId: "backlog-\(n % 1_000)", endpoint: "support", tenantId: "acme",
                causationEventId: "backlog-\(n)", sequence: 0, createdAt: now, receivedAt: now, action: .sendMessage,
                body: .object(["authorType": .string("bot"), "text": .string("Message \(n / 1_000) of this conversation.")]))
        }
        let clock = ContinuousClock()
        let start = clock.now
        try await producer.sendBatch(commands.map { KafkaProducerMessage(topic: topic, key: $0.conversationId, value: $0.encodedRecord) })
        let deadline = clock.now + .seconds(120)
        while gateway.acceptedCommandIds.count - before < commands.count, clock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let elapsed = seconds(clock.now - start)
        let delivered = gateway.acceptedCommandIds.count - before
        print(String(format: "egress alone: %d commands accepted by the simulator in %.2f s = %.0f commands/s", delivered, elapsed, Double(delivered) / elapsed))
        await producer.shutdown()
    }

    static func send(_ webhooks: [Webhook], sender: WebhookSender, url: String, concurrency: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            while next < min(concurrency, webhooks.count) {
                let webhook = webhooks[next]
                group.addTask { _ = try await sender.post(body: webhook.body, headers: webhook.headers, to: url) }
                next += 1
            }
            while try await group.next() != nil {
                guard next < webhooks.count else { continue }
                let webhook = webhooks[next]
                group.addTask { _ = try await sender.post(body: webhook.body, headers: webhook.headers, to: url) }
                next += 1
            }
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// Signed 8x8 MESSAGE webhooks of 500 interleaved demo conversations: hello, balance, update
/// the email, a wrong and a right address, bye; then a new conversation in the slot.
final class DemoWebhooks: @unchecked Sendable {
    static let script = ["hello", "what is my balance", "update my email", "jane(at)example", "jane@example.com", "bye"]
    let signer: WebhookSigner
    private let concurrent = 500
    private var positions: [Int]
    private var generations: [Int]
    private var cursor = 0
    private var counter = 0

    init(signer: WebhookSigner) {
        self.signer = signer
        positions = Array(repeating: 0, count: concurrent)
        generations = Array(repeating: 0, count: concurrent)
    }

    func next(_ count: Int) throws -> [PipelineBenchmark.Webhook] {
        try (0..<count).map { _ in
            let slot = cursor
            cursor = (cursor + 1) % concurrent
            let text = Self.script[positions[slot]]
            let conversation = "bench-\(slot)-\(generations[slot])"
            positions[slot] += 1
            if positions[slot] == Self.script.count {
                positions[slot] = 0
                generations[slot] += 1
            }
            counter += 1
            let eventId = "bench-\(counter)"
            let body = Array(#"{"eventType":"MESSAGE","conversationId":"\#(conversation)","timestamp":1713100000000,"data":{"isEcho":false,"sender":{"id":"user-1","type":"user"},"text":"\#(text)"}}"#.utf8)
            let headers = try signer.signedHeaders(body: body, tenantId: "acme", customerId: "c", eventId: eventId, retry: 0)
            return PipelineBenchmark.Webhook(eventId: eventId, body: body, headers: headers)
        }
    }
}
