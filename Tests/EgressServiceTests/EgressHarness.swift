import ChatEvents
import ConnectorConfiguration
import EgressService
import Foundation
import Kafka
import Logging
import ServiceLifecycle
import Simulator
import Testing
@_exported import TestSupport

/// The embedded cluster with the connector's topics, the 8x8 simulator serving the Chat
/// Gateway paths, and a configuration whose endpoint points at it.
struct EgressHarness: Sendable {
    static let partitions: Int32 = 3
    static let credentials = ChatGatewaySimulator.Credentials(apiKey: "egress-key", tenant: "acme")

    let cluster: EmbeddedKafkaCluster
    let config: ConnectorConfig
    let simulator: EightByEightSimulator
    let baseURL: String
    var gateway: ChatGatewaySimulator { simulator.gateway! }

    /// Runs `body` with a harness whose simulator is listening. `egress`: more lines for the
    /// `egress:` section (two-space indented keys).
    static func run<T: Sendable>(
        egress: String = "", kafka: String = "", flow: String? = nil, _ body: (EgressHarness) async throws -> T
    ) async throws -> T {
        let simulator = EightByEightSimulator(signer: try WebhookSigner(kid: "egress-tests"), credentials: credentials)
        return try await withRunningApplication({ simulator.application(logger: quietLogger, onRunning: $0) }) { port in
            let harness = try EgressHarness(simulator: simulator, port: port, egress: egress, kafka: kafka, flow: flow)
            return try await body(harness)
        }
    }

    init(simulator: EightByEightSimulator, port: Int, egress: String, kafka: String, flow: String?) throws {
        self.simulator = simulator
        baseURL = "http://127.0.0.1:\(port)"
        cluster = try EmbeddedKafkaCluster(logger: quietLogger)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        config = try ConnectorConfig.parse("""
            kafka:
              brokers: embedded
              partitions: \(Self.partitions)
            \(kafka)
              properties:
                session.timeout.ms: 6000
                heartbeat.interval.ms: 500
            ingress:
              listen: 127.0.0.1:0
              publishTimeoutMs: 15000
              signature:
                jwkBaseURL: \(baseURL)
                jwkFetchTimeoutMs: 15000
            worker:
              listen: 127.0.0.1:0
            egress:
              listen: 127.0.0.1:0
              \(egress.contains("requestTimeoutMs:") ? "# requestTimeoutMs: set by the test" : "requestTimeoutMs: 30000")
            \(egress.contains("rateLimit:") ? "" : "  rateLimit:\n    requestsPerSecond: 1000\n    burst: 1000")
            \(egress.contains("retry:") ? "" : "  retry:\n    baseBackoffMs: 20\n    maxBackoffMs: 200")
            \(egress)
            endpoints:
              - name: support
                urlToken: support-token-1
                flow: \(flow ?? root.appendingPathComponent("flows/demo.yaml").path)
                eightByEight:
                  baseURL: \(baseURL)
                  apiKey: \(Self.credentials.apiKey)
                  tenant: acme
                  acceptConversationActiveEvent: true
                handover:
                  queueId: "101"
            """)
        for topic in ConnectorTopic.allCases {
            try cluster.createTopic(config.topicName(topic), partitions: Self.partitions)
        }
    }

    /// Starts an egress in a service group of its own.
    func start(logger: Logger = quietLogger, revokeDrain: Duration = .seconds(20), prepare: (Egress) -> Void = { _ in }) -> RunningEgress {
        let egress = Egress(config: config, bootstrapServers: cluster.bootstrapServers, logger: logger, revokeDrain: revokeDrain)
        prepare(egress)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: egress, successTerminationBehavior: .gracefullyShutdownGroup)], logger: quietLogger))
        let task = Task { _ = try? await group.run() }
        return RunningEgress(egress: egress, group: group, task: task)
    }

    func producer() throws -> KafkaProducer {
        var configuration = KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
        configuration.clientID = "test-outbound"
        return try KafkaProducer(configuration: configuration, logger: quietLogger)
    }

    /// Writes commands to the outbound topic keyed by conversation, as the worker does.
    func publish(_ commands: [OutboundCommand], with producer: KafkaProducer) async throws {
        try await producer.sendBatch(commands.map {
            KafkaProducerMessage(topic: config.topicName(.outbound), key: $0.conversationId, value: $0.encodedRecord)
        })
    }

    func reader(_ topic: ConnectorTopic) throws -> TopicReader {
        try TopicReader(cluster: cluster, topic: config.topicName(topic), partitions: Self.partitions)
    }

    /// Checks a test's premise: the `count` commands on the outbound topic are in `partitions`
    /// partitions (conversations picked by `EgressTests.partition(of:)`).
    func expectPartitions(_ partitions: Int, holding count: Int) async throws {
        let outbound = try reader(.outbound)
        let written = try await outbound.wait(30, "the commands on the outbound topic") { $0.count >= count }
        #expect(Set(written.map(\.partition)).count == partitions, "\(written.map { ($0.keyString ?? "", $0.partition) })")
        await outbound.close()
    }

    /// Waits until the simulator accepted commands satisfying `condition`.
    @discardableResult
    func waitForGateway(_ seconds: Int = 60, _ what: String, until condition: @escaping @Sendable ([String]) -> Bool) async throws -> [String] {
        let gateway = self.gateway
        return try await within(seconds, what) {
            while true {
                let accepted = gateway.acceptedCommandIds
                if condition(accepted) { return accepted }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    /// The first request the simulator answered with `status`, once there is one.
    func firstAnswer(status: Int, within seconds: Int = 60) async throws -> ChatGatewaySimulator.Received {
        let gateway = self.gateway
        return try await within(seconds, "an answer \(status)") {
            while true {
                if let answer = gateway.received.first(where: { $0.status == status }) { return answer }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    static func message(_ conversation: String, _ n: Int, text: String? = nil, event: String? = nil) -> OutboundCommand {
        command(conversation, n, .sendMessage, .object(["authorType": .string("bot"), "text": .string(text ?? "message \(n) of \(conversation)")]), event: event)
    }

    static func command(_ conversation: String, _ n: Int, _ action: OutboundCommand.Action, _ body: JSONValue, event: String? = nil) -> OutboundCommand {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let eventId = event ?? "ev-\(conversation)-\(n)"
        return OutboundCommand(
            commandId: OutboundCommand.commandId(eventId: eventId, sequence: 0), conversationId: conversation, endpoint: "support",
            tenantId: "acme", causationEventId: eventId, sequence: 0, createdAt: now, receivedAt: now, action: action, body: body)
    }
}

struct RunningEgress: Sendable {
    let egress: Egress
    let group: ServiceGroup
    let task: Task<Void, Never>

    /// The egress's metrics in Prometheus text.
    var metricsText: String { String(decoding: egress.metrics.render(), as: UTF8.self) }

    /// The metrics once a delivery reached its outcome (the deliveries counter exists).
    func metricsOnceDelivered() async throws -> String {
        try await metrics(containing: "connector_egress_deliveries_total", "the delivery's outcome")
    }

    /// The metrics once they contain `text`.
    func metrics(containing text: String, _ what: String) async throws -> String {
        try await within(60, what) {
            while !metricsText.contains(text) { try await Task.sleep(for: .milliseconds(20)) }
            return metricsText
        }
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        await task.value
    }

    /// Kills it: requests in flight abandoned, no commit, no leaving the group.
    func crash() async {
        await egress.simulateCrash()
        await group.triggerGracefulShutdown()
        await task.value
    }
}

extension Array where Element == String {
    /// How many times each id occurs.
    var counts: [String: Int] { reduce(into: [:]) { $0[$1, default: 0] += 1 } }
}
