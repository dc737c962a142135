import Foundation
import Kafka
import Logging
@_exported import TestSupport

let testLogger: Logger = {
    var logger = Logger(label: "kafka-tests")
    logger.logLevel = .warning
    return logger
}()


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
