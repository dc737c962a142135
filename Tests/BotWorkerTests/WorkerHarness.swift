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

let quietLogger: Logger = {
    var logger = Logger(label: "worker-tests")
    logger.logLevel = .critical
    return logger
}()

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// An embedded cluster with the connector's topics and a configuration for one endpoint.
struct WorkerHarness: Sendable {
    static let partitions: Int32 = 3

    let cluster: EmbeddedKafkaCluster
    let config: ConnectorConfig

    /// `jwkBaseURL`: where the ingress fetches signing keys (for pipeline tests with an ingress).
    /// `worker`: more lines for the `worker:` section (two-space indented keys).
    init(
        flow: String = repositoryRoot.appendingPathComponent("flows/demo.yaml").path, jwkBaseURL: String = "http://127.0.0.1:9",
        worker: String = "", dataProtection: String = ""
    ) throws {
        cluster = try EmbeddedKafkaCluster(logger: quietLogger)
        config = try ConnectorConfig.parse("""
            kafka:
              brokers: embedded
              partitions: \(Self.partitions)
              properties:
                session.timeout.ms: 6000
                heartbeat.interval.ms: 500
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
                  maskIPAddress: true
            \(dataProtection)
            """)
        for topic in ConnectorTopic.allCases {
            try cluster.createTopic(config.topicName(topic), partitions: Self.partitions)
        }
    }

    func makeWorker(logger: Logger = quietLogger) throws -> BotWorker {
        BotWorker(
            config: config, bootstrapServers: cluster.bootstrapServers,
            endpoints: try BotWorker.loadEndpoints(config: config), logger: logger)
    }

    /// Starts a worker in a service group of its own.
    func start(logger: Logger = quietLogger) throws -> RunningWorker {
        let worker = try makeWorker(logger: logger)
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

/// Reads a topic from the beginning in the background.
final class TopicReader: Sendable {
    private let consumer: KafkaConsumer
    private let task: Task<Void, Never>

    init(cluster: EmbeddedKafkaCluster, topic: String, partitions: Int32) throws {
        var configuration = KafkaConsumerConfiguration(
            bootstrapServers: cluster.bootstrapServers, groupID: "reader-\(UUID().uuidString)",
            subscription: .partitions(Dictionary(uniqueKeysWithValues: (0..<partitions).map {
                (TopicPartition(topic: topic, partition: $0), Int64?.some(0))
            })))
        configuration.clientID = "test-reader"
        configuration.properties["enable.auto.commit"] = "false"
        let consumer = try KafkaConsumer(configuration: configuration, logger: quietLogger)
        self.consumer = consumer
        let store = Store()
        self.store = store
        task = Task {
            for await message in consumer.messages { store.records.withLock { $0.append(message) } }
        }
    }

    private final class Store: Sendable {
        let records = Mutex<[KafkaMessage]>([])
    }

    private let store: Store

    var messages: [KafkaMessage] { store.records.withLock { $0 } }

    func commands() throws -> [OutboundCommand] {
        try messages.map { try OutboundCommand.decode($0.value) }
    }

    /// Waits until `condition` holds for what was read (a guard of `seconds`, not a timing assertion).
    @discardableResult
    func wait(_ seconds: Int = 60, _ what: String, until condition: @escaping @Sendable ([KafkaMessage]) -> Bool) async throws -> [KafkaMessage] {
        try await within(seconds, what) { [self] in
            while true {
                let current = messages
                if condition(current) { return current }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    func close() async {
        await consumer.shutdown()
        await task.value
    }
}
