public import ChatEvents
public import ConnectorConfiguration
public import Kafka
public import Logging
import Synchronization

/// What the worker and the egress share: how their group consumer and producer are
/// configured, and how they start over from the committed offsets after a Kafka failure.
public enum ConsumingService {
    /// The group consumer of `group` on `topics`.
    ///
    /// - Eager rebalancing (`roundrobin`): librdkafka 2.0.2 aborts the process when a
    ///   cooperative-sticky consumer is destroyed between joining and its first assignment
    ///   (#4312, fixed in 2.3.0), which a service restarting after a Kafka failure can hit. A
    ///   rebalance therefore moves all of a member's partitions; `kafka.properties` can choose
    ///   cooperative-sticky with a fixed librdkafka.
    /// - A revoke waits `drain` for the partition's work in flight, plus a margin.
    /// - On the embedded broker, a fetch that found the partition empty is answered only when
    ///   its wait expires (real Kafka answers as soon as data comes): a 1 ms wait is what keeps a
    ///   quiet conversation's reply fast.
    public static func consumerConfiguration(
        _ config: ConnectorConfig, bootstrapServers: String, group: ConnectorConsumerGroup, drain: Duration
    ) -> KafkaConsumerConfiguration {
        var configuration = KafkaConsumerConfiguration(
            bootstrapServers: bootstrapServers, groupID: config.groupName(group), subscription: .topics(group.topics.map(config.topicName)))
        configuration.clientID = config.groupName(group)
        configuration.partitionAssignmentStrategy = "roundrobin"
        configuration.revokeTimeout = drain + .seconds(5)
        if config.kafka.isEmbedded { configuration.properties["fetch.wait.max.ms"] = "1" }
        configuration.properties.merge(config.kafka.properties) { _, configured in configured }
        return configuration
    }

    /// The producer beside it (the consumer-only properties left out). A linger of 0 batches
    /// adaptively (`KafkaBatching.adaptive`: no wait while a partition has fewer than 5
    /// messages in flight), a linger above 0 is librdkafka's.
    public static func producerConfiguration(
        _ config: ConnectorConfig, bootstrapServers: String, clientID: String, lingerMilliseconds: Int
    ) -> KafkaProducerConfiguration {
        var configuration = KafkaProducerConfiguration(bootstrapServers: bootstrapServers)
        configuration.clientID = clientID
        configuration.batching = lingerMilliseconds == 0 ? .adaptive : .linger
        configuration.lingerMilliseconds = lingerMilliseconds
        configuration.properties = config.kafka.properties.filter { !$0.key.hasPrefix("session.") && !$0.key.hasPrefix("heartbeat.") }
        return configuration
    }

    /// Runs `generation` again and again until `stopping`: each run is one consumer and producer;
    /// a run that fails is counted, logged and followed by a new one after a growing pause.
    public static func runGenerations(
        name: String, logger: Logger, stopping: @Sendable () -> Bool, restarted: () -> Void, generation: () async throws -> Void
    ) async {
        var backoff = Duration.milliseconds(250)
        while !stopping() {
            do {
                try await generation()
                backoff = .milliseconds(250)
            } catch {
                if stopping() { break }
                restarted()
                logger.error("\(name) restarts from the committed offsets", metadata: ["error": "\(error)"])
                // In steps, so a shutdown meanwhile is not kept waiting for the whole pause.
                let restart = ContinuousClock.now + backoff
                while !stopping(), ContinuousClock.now < restart { try? await Task.sleep(for: .milliseconds(50)) }
                backoff = min(backoff * 2, .seconds(10))
            }
        }
    }
}

extension KafkaError {
    /// Any error as a `KafkaError` (a non-Kafka one as a non-retriable delivery error).
    public static func wrapping(_ error: any Error) -> KafkaError {
        error as? KafkaError ?? KafkaError(kind: .delivery, code: .state, message: "\(error)", isRetriable: false)
    }
}

extension DecodingError {
    /// What is wrong and where, without the record's content.
    public static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context), DecodingError.keyNotFound(_, let context),
             DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        default:
            return "not JSON"
        }
    }
}
