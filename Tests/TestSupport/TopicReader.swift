public import ChatEvents
import Foundation
public import Kafka
public import Logging
import Synchronization

/// A logger that says nothing below critical, for the services under test.
public let quietLogger: Logger = {
    var logger = Logger(label: "tests")
    logger.logLevel = .critical
    return logger
}()

/// Reads a topic from the beginning in the background.
public final class TopicReader: Sendable {
    private let consumer: KafkaConsumer
    private let task: Task<Void, Never>

    public init(cluster: EmbeddedKafkaCluster, topic: String, partitions: Int32) throws {
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

    public var messages: [KafkaMessage] { store.records.withLock { $0 } }

    public func commands() throws -> [OutboundCommand] {
        try messages.map { try OutboundCommand.decode($0.value) }
    }

    /// Waits until `condition` holds for what was read (a guard of `seconds`, not a timing assertion).
    @discardableResult
    public func wait(_ seconds: Int = 60, _ what: String, until condition: @escaping @Sendable ([KafkaMessage]) -> Bool) async throws -> [KafkaMessage] {
        try await within(seconds, what) { [self] in
            while true {
                let current = messages
                if condition(current) { return current }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    public func close() async {
        await consumer.shutdown()
        await task.value
    }
}
