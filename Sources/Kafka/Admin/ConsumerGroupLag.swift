/// Lag of one partition for one group: how many messages the group has not committed past.
public struct PartitionLag: Sendable, Hashable, Codable {
    public var topic: String
    public var partition: Int32
    /// The next offset the group will read; `nil` when the group never committed here.
    public var committedOffset: Int64?
    public var lowWatermark: Int64
    public var highWatermark: Int64
    public var lag: Int64

    /// Lag is the high watermark minus the committed offset. Without a commit, every retained
    /// message is unread: high minus low.
    public init(topic: String, partition: Int32, committedOffset: Int64?, lowWatermark: Int64, highWatermark: Int64) {
        self.topic = topic
        self.partition = partition
        self.committedOffset = committedOffset
        self.lowWatermark = lowWatermark
        self.highWatermark = highWatermark
        if let committedOffset {
            self.lag = max(0, highWatermark - committedOffset)
        } else {
            self.lag = max(0, highWatermark - lowWatermark)
        }
    }

    public var topicPartition: TopicPartition { TopicPartition(topic: topic, partition: partition) }
}

/// A partition whose lag could not be measured, and why (librdkafka's error name and text).
public struct UnmeasuredPartition: Sendable, Hashable, Codable {
    public var topic: String
    public var partition: Int32
    public var reason: String

    public init(topic: String, partition: Int32, reason: String) {
        self.topic = topic
        self.partition = partition
        self.reason = reason
    }

    public var topicPartition: TopicPartition { TopicPartition(topic: topic, partition: partition) }
}

/// Lag of a consumer group over the partitions it consumes: those measured, and those that
/// could not be (`maxLag` and `sumLag` cover the measured ones).
public struct ConsumerGroupLag: Sendable, Hashable, Codable {
    public var group: String
    public var partitions: [PartitionLag]
    public var unmeasured: [UnmeasuredPartition]

    public init(group: String, partitions: [PartitionLag], unmeasured: [UnmeasuredPartition] = []) {
        self.group = group
        self.partitions = partitions.sorted { $0.topicPartition < $1.topicPartition }
        self.unmeasured = unmeasured.sorted { $0.topicPartition < $1.topicPartition }
    }

    public var maxLag: Int64 { partitions.map(\.lag).max() ?? 0 }
    public var sumLag: Int64 { partitions.reduce(0) { $0 + $1.lag } }
}
