import Foundation
import Kafka
import Logging

let testLogger: Logger = {
    var logger = Logger(label: "kafka-tests")
    logger.logLevel = .warning
    return logger
}()

struct TestTimeout: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Runs `body`, failing instead of hanging when it does not finish within `seconds`.
/// A guard against a stuck test, not an assertion about speed.
func within<T: Sendable>(
    _ seconds: Int, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw TestTimeout(what: what) }
        return value
    }
}

func makeProducer(
    _ cluster: EmbeddedKafkaCluster, _ configure: (inout KafkaProducerConfiguration) -> Void = { _ in }
) throws -> KafkaProducer {
    var configuration = KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
    configure(&configuration)
    return try KafkaProducer(configuration: configuration, logger: testLogger)
}

func makeConsumer(
    _ cluster: EmbeddedKafkaCluster, group: String, _ subscription: KafkaConsumerConfiguration.Subscription,
    _ configure: (inout KafkaConsumerConfiguration) -> Void = { _ in }
) throws -> KafkaConsumer {
    var configuration = KafkaConsumerConfiguration(
        bootstrapServers: cluster.bootstrapServers, groupID: group, subscription: subscription)
    configure(&configuration)
    return try KafkaConsumer(configuration: configuration, logger: testLogger)
}

/// Every partition of a topic, read from its start.
func allPartitions(_ topic: String, _ count: Int32) -> KafkaConsumerConfiguration.Subscription {
    .partitions(Dictionary(uniqueKeysWithValues: (0..<count).map { (TopicPartition(topic: topic, partition: $0), Int64?.some(0)) }))
}

/// Reads `count` messages, storing each offset after reading it.
func take(_ count: Int, from consumer: KafkaConsumer, seconds: Int = 60) async throws -> [KafkaMessage] {
    try await within(seconds, "\(count) messages") {
        var result: [KafkaMessage] = []
        for await message in consumer.messages {
            result.append(message)
            try consumer.storeOffset(message)
            if result.count == count { break }
        }
        return result
    }
}
