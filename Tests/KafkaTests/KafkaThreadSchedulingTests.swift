import Kafka
import Testing
import TestSupport

/// `KafkaThreadScheduling`: librdkafka's threads get the policy `CONNECTOR_KAFKA_THREADS`
/// names, batch scheduling on Linux unless told otherwise.
@Suite struct KafkaThreadSchedulingTests {
    @Test func theEnvironmentChoosesThePolicy() {
        #expect(KafkaThreadScheduling.policy(environment: [:]) == .default)
        #expect(KafkaThreadScheduling.policy(environment: ["CONNECTOR_KAFKA_THREADS": "normal"]) == .normal)
        #expect(KafkaThreadScheduling.policy(environment: ["CONNECTOR_KAFKA_THREADS": "BATCH"]) == .batch)
        #expect(KafkaThreadScheduling.policy(environment: ["CONNECTOR_KAFKA_THREADS": "fast"]) == .default, "an unknown value keeps the default")
        #if os(Linux)
        #expect(KafkaThreadScheduling.default == .batch)
        #endif
        #expect(KafkaThreadScheduling.batch.description == "librdkafka's threads batch-scheduled")
    }

    /// Every thread librdkafka started in this process, the embedded broker's included, has
    /// the process's policy: `SCHED_BATCH` (3) for `batch`, the default (0) for `normal`.
    @Test func librdkafkasThreadsGetTheProcessPolicy() async throws {
        #if os(Linux)
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("thread-policy", partitions: 2)
        let producer = try makeProducer(cluster)
        try await producer.send(KafkaProducerMessage(topic: "thread-policy", key: "k", value: "v"))

        let threads = threadPolicies().filter { $0.name.hasPrefix("rdk:") }
        #expect(threads.contains { $0.name.hasPrefix("rdk:broker") }, "\(threads)")
        #expect(threads.contains { $0.name == "rdk:main" }, "\(threads)")
        #expect(threads.contains { $0.name == "rdk:mock" }, "the embedded broker's thread: \(threads)")
        let expected = KafkaThreadScheduling.current == .batch ? 3 : 0
        #expect(threads.allSatisfy { $0.policy == expected }, "\(threads)")
        // The threads that are not librdkafka's keep the default policy.
        #expect(threadPolicies().filter { !$0.name.hasPrefix("rdk:") }.allSatisfy { $0.policy == 0 })
        #endif
    }
}
