import BotWorker
import ChatEvents
import ConnectorConfiguration
import FlowEngine
import Foundation
import Kafka
import Logging
import ServiceLifecycle
import Synchronization
@_exported import TestSupport

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// An embedded cluster with the connector's topics and a configuration for one endpoint.
struct WorkerHarness: Sendable {
    static let partitions: Int32 = 3

    let cluster: EmbeddedKafkaCluster
    let config: ConnectorConfig

    /// `jwkBaseURL`: where the ingress fetches signing keys (for pipeline tests with an ingress).
    /// `worker`: more lines for the `worker:` section (two-space indented keys).
    /// `kafkaProperties`: more librdkafka properties (four-space indented).
    /// `moreEndpoints`: more entries of `endpoints:` (two-space indented).
    init(
        flow: String = repositoryRoot.appendingPathComponent("flows/demo.yaml").path, jwkBaseURL: String = "http://127.0.0.1:9",
        worker: String = "", dataProtection: String = "", kafkaProperties: String = "", moreEndpoints: String = ""
    ) throws {
        cluster = try EmbeddedKafkaCluster(logger: quietLogger)
        config = try ConnectorConfig.parse("""
            kafka:
              brokers: embedded
              partitions: \(Self.partitions)
              properties:
                session.timeout.ms: 6000
                heartbeat.interval.ms: 500
            \(kafkaProperties)
            ingress:
              listen: 127.0.0.1:0
              publishTimeoutMs: 15000
              signature:
                jwkBaseURL: \(jwkBaseURL)
                jwkFetchTimeoutMs: 15000
            worker:
              listen: 127.0.0.1:0
            \(worker)
            endpoints:
              - name: support
                urlToken: support-token-1
                flow: \(flow)
                eightByEight:
                  baseURL: http://127.0.0.1:9
                  apiKey: test-key
                  tenant: acme
                  acceptConversationActiveEvent: true
                handover:
                  queueId: "101"
                dataProtection:
            \(dataProtection.contains("maskIPAddress:") ? "" : "      maskIPAddress: true")
            \(dataProtection)
            \(moreEndpoints)
            """)
        for topic in ConnectorTopic.allCases {
            try cluster.createTopic(config.topicName(topic), partitions: Self.partitions)
        }
    }

    func makeWorker(
        logger: Logger = quietLogger, onAcknowledged: (@Sendable (AcknowledgedEvent) -> Void)? = nil, tickInterval: Duration = .seconds(15)
    ) throws -> BotWorker {
        BotWorker(
            config: config, bootstrapServers: cluster.bootstrapServers,
            endpoints: try BotWorker.loadEndpoints(config: config), logger: logger, onAcknowledged: onAcknowledged,
            tickInterval: tickInterval)
    }

    /// Starts a worker in a service group of its own.
    func start(logger: Logger = quietLogger, tickInterval: Duration = .seconds(15)) throws -> RunningWorker {
        let worker = try makeWorker(logger: logger, tickInterval: tickInterval)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: worker, successTerminationBehavior: .gracefullyShutdownGroup)], logger: quietLogger))
        let task = Task { _ = try? await group.run() }
        return RunningWorker(worker: worker, group: group, task: task)
    }

    func producer() throws -> KafkaProducer {
        var configuration = KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
        configuration.clientID = "test-inbound"
        return try KafkaProducer(configuration: configuration, logger: quietLogger)
    }

    /// Writes events to the inbound topic keyed by conversation, as the ingress does.
    func publish(_ events: [InboundEvent], with producer: KafkaProducer) async throws {
        try await producer.sendBatch(events.map {
            KafkaProducerMessage(topic: config.topicName(.inbound), key: $0.recordKey, value: $0.encodedRecord(rawBody: Array("{}".utf8)))
        })
    }

    /// Writes events to one partition of the inbound topic (conversations side by side).
    func publish(_ events: [InboundEvent], partition: Int32, with producer: KafkaProducer) async throws {
        try await producer.sendBatch(events.map {
            KafkaProducerMessage(
                topic: config.topicName(.inbound), partition: partition, key: $0.recordKey, value: $0.encodedRecord(rawBody: Array("{}".utf8)))
        })
    }

    func reader(_ topic: ConnectorTopic) throws -> TopicReader {
        try TopicReader(cluster: cluster, topic: config.topicName(topic), partitions: Self.partitions)
    }
}

struct RunningWorker: Sendable {
    let worker: BotWorker
    let group: ServiceGroup
    let task: Task<Void, Never>

    func stop() async {
        await group.triggerGracefulShutdown()
        await task.value
    }

    /// Kills it: no draining, no commit, no leaving the group.
    func crash() async {
        await worker.simulateCrash()
        await group.triggerGracefulShutdown()
        await task.value
    }
}

