/// Consumer settings. Offsets are stored only when the caller says a message is finished
/// (`storeOffset`), and stored offsets are committed periodically and on revoke and close:
/// at-least-once by default.
public struct KafkaConsumerConfiguration: Sendable {
    public enum Subscription: Sendable {
        /// Join the consumer group and let it assign partitions of these topics.
        case topics([String])
        /// Read exactly these partitions from the given offsets (no group rebalancing).
        /// An offset of `nil` starts at the committed offset or per `autoOffsetReset`.
        case partitions([TopicPartition: Int64?])
    }

    public var bootstrapServers: String
    public var groupID: String
    public var subscription: Subscription
    public var clientID: String = "connector"
    /// Where to start when the group has no committed offset: `earliest` or `latest`.
    public var autoOffsetReset: String = "earliest"
    public var sessionTimeoutMilliseconds: Int = 10_000
    public var heartbeatIntervalMilliseconds: Int = 1_000
    public var autoCommitIntervalMilliseconds: Int = 1_000
    /// `read_committed` hides aborted transactional messages.
    public var isolationLevel: String = "read_committed"
    /// Incremental (cooperative) rebalancing: partitions that stay with a consumer keep flowing
    /// during a rebalance, and revoked ones are committed while the group is stable.
    public var partitionAssignmentStrategy: String = "cooperative-sticky"
    /// Messages buffered ahead of the caller before the polling thread waits.
    public var maxBufferedMessages: Int = 10_000
    /// How long a revoke waits for the caller to finish the messages before it.
    public var revokeTimeout: Duration = .seconds(10)
    /// How long a close may take before the handle is abandoned (librdkafka 2.0.2 can block in
    /// close after a lost partition).
    public var closeTimeout: Duration = .seconds(15)
    /// When set, `events` yields `.tick` about this often, in order with the messages (time for
    /// work that must happen without new messages too). Nil: no ticks.
    public var tickInterval: Duration?
    /// Passed to librdkafka as is; these win over the typed fields.
    public var properties: [String: String] = [:]

    public init(bootstrapServers: String, groupID: String, subscription: Subscription) {
        self.bootstrapServers = bootstrapServers
        self.groupID = groupID
        self.subscription = subscription
    }

    var librdkafkaProperties: [String: String] {
        var result: [String: String] = [
            "bootstrap.servers": bootstrapServers,
            "group.id": groupID,
            "client.id": clientID,
            "enable.auto.commit": "true",
            "enable.auto.offset.store": "false",
            "auto.commit.interval.ms": String(autoCommitIntervalMilliseconds),
            "auto.offset.reset": autoOffsetReset,
            "session.timeout.ms": String(sessionTimeoutMilliseconds),
            "heartbeat.interval.ms": String(heartbeatIntervalMilliseconds),
            "isolation.level": isolationLevel,
            "partition.assignment.strategy": partitionAssignmentStrategy,
            "enable.partition.eof": "false",
        ]
        result.merge(properties) { _, override in override }
        return result
    }
}
