import CRdKafka
public import Logging

/// A Kafka protocol request type, for fault injection.
public struct KafkaAPIKey: Hashable, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    public static let produce = KafkaAPIKey(rawValue: 0)
    public static let fetch = KafkaAPIKey(rawValue: 1)
    public static let listOffsets = KafkaAPIKey(rawValue: 2)
    public static let metadata = KafkaAPIKey(rawValue: 3)
    public static let offsetCommit = KafkaAPIKey(rawValue: 8)
    public static let offsetFetch = KafkaAPIKey(rawValue: 9)
    public static let findCoordinator = KafkaAPIKey(rawValue: 10)
    public static let joinGroup = KafkaAPIKey(rawValue: 11)
    public static let heartbeat = KafkaAPIKey(rawValue: 12)
    public static let syncGroup = KafkaAPIKey(rawValue: 14)
    public static let initProducerID = KafkaAPIKey(rawValue: 22)
}

/// An in-process Kafka cluster: librdkafka's mock cluster, which speaks the Kafka protocol on
/// real TCP ports (it picks them itself) and supports consumer groups, offset commits,
/// idempotent and transactional producers, and fault injection.
///
/// Limits of the 2.0.2 mock: no CreateTopics or ListGroups requests (create topics here), no
/// compaction, offsets committed inside a transaction are dropped, and each partition keeps only
/// its newest 5 MiB or 100,000 message sets.
public final class EmbeddedKafkaCluster: Sendable {
    private let host: SendableHandle
    private let cluster: SendableHandle
    private let context: RdKafkaHandleContext
    public let brokerCount: Int
    /// `host:port,host:port` of the brokers.
    public let bootstrapServers: String

    public convenience init(brokers: Int = 1, logger: Logger = Logger(label: "kafka.embedded")) throws(KafkaError) {
        try self.init(brokers: brokers, logger: logger, hostProperties: [:])
    }

    /// `hostProperties` go to the handle that hosts the mock (tests: its debug logging).
    init(brokers: Int, logger: Logger, hostProperties: [String: String]) throws(KafkaError) {
        guard brokers >= 1 else {
            throw KafkaError(kind: .embeddedCluster, code: .invalidArgument, message: "a cluster needs at least one broker", isRetriable: false)
        }
        let context = RdKafkaHandleContext(logger: logger)
        // Warnings and errors only: the host handle itself never connects anywhere.
        let rk = try makeRdKafkaHandle(
            RD_KAFKA_PRODUCER, properties: ["client.id": "embedded-cluster", "log_level": "4"].merging(hostProperties) { $1 }, context: context,
            errorKind: .embeddedCluster)
        guard let cluster = rd_kafka_mock_cluster_new(rk, Int32(brokers)) else {
            rd_kafka_destroy(rk)
            throw KafkaError(kind: .embeddedCluster, code: .fatal, message: "could not start the mock cluster", isRetriable: false)
        }
        self.host = SendableHandle(rk)
        self.cluster = SendableHandle(cluster)
        self.context = context
        self.brokerCount = brokers
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    /// The destroy waits for the mock's thread without a limit, so it runs on a blocking thread
    /// (`tearDownInBackground`), not on the caller's: a cooperative thread or an event loop.
    deinit {
        let cluster = cluster, host = host, context = context
        tearDownInBackground(logger: context.logger) {
            rd_kafka_mock_cluster_destroy(cluster.pointer)
            rd_kafka_destroy(host.pointer)
            withExtendedLifetime(context) {}  // the host handle's callbacks use it
        }
    }

    /// Broker ids are 1 through `brokerCount`.
    public var brokerIDs: ClosedRange<Int32> { 1...Int32(brokerCount) }

    public func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws(KafkaError) {
        try check(rd_kafka_mock_topic_create(cluster.pointer, name, partitions, min(replicationFactor, Int32(brokerCount))),
                  "create topic \(name)")
    }

    /// Takes a broker off the network: its connections are closed and new ones refused.
    public func setBrokerDown(_ broker: Int32) throws(KafkaError) {
        try check(rd_kafka_mock_broker_set_down(cluster.pointer, broker), "broker \(broker) down")
    }

    public func setBrokerUp(_ broker: Int32) throws(KafkaError) {
        try check(rd_kafka_mock_broker_set_up(cluster.pointer, broker), "broker \(broker) up")
    }

    /// Delays every response of a broker.
    public func setRoundTripTime(broker: Int32, _ rtt: Duration) throws(KafkaError) {
        try check(rd_kafka_mock_broker_set_rtt(cluster.pointer, broker, rtt.milliseconds), "broker \(broker) rtt")
    }

    /// Moves a partition's leadership to another broker.
    public func setPartitionLeader(topic: String, partition: Int32, broker: Int32) throws(KafkaError) {
        try check(rd_kafka_mock_partition_set_leader(cluster.pointer, topic, partition, broker), "leader of \(topic)[\(partition)]")
    }

    /// The next requests of this type, on any broker, fail with these errors, one each, in order.
    public func pushRequestErrors(_ api: KafkaAPIKey, _ errors: [KafkaErrorCode]) {
        var codes = errors.map(\.cValue)
        rd_kafka_mock_push_request_errors_array(cluster.pointer, api.rawValue, codes.count, &codes)
    }

    /// The next request of this type on one broker fails with `error` after `rtt`.
    public func pushRequestError(broker: Int32, _ api: KafkaAPIKey, _ error: KafkaErrorCode, rtt: Duration = .zero) throws(KafkaError) {
        try check(swift_rdk_mock_broker_push_request_error(cluster.pointer, broker, api.rawValue, error.cValue, rtt.milliseconds),
                  "push error on broker \(broker)")
    }

    /// How many of the errors pushed for one broker and request type are still to come.
    public func pendingRequestErrors(broker: Int32, _ api: KafkaAPIKey) throws(KafkaError) -> Int {
        var count = 0
        try check(rd_kafka_mock_broker_error_stack_cnt(cluster.pointer, broker, api.rawValue, &count), "error stack of broker \(broker)")
        return count
    }

    public func clearRequestErrors(_ api: KafkaAPIKey) {
        rd_kafka_mock_clear_request_errors(cluster.pointer, api.rawValue)
    }

    /// Every request for this topic fails with `error` until set back to `.noError`.
    public func setTopicError(_ topic: String, _ error: KafkaErrorCode) {
        rd_kafka_mock_topic_set_error(cluster.pointer, topic, error.cValue)
    }

    private func check(_ err: rd_kafka_resp_err_t, _ what: String) throws(KafkaError) {
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(kind: .embeddedCluster, err, context: what)
        }
    }
}
