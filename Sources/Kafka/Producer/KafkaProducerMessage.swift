/// A topic and partition.
public struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (a: Self, b: Self) -> Bool {
        (a.topic, a.partition) < (b.topic, b.partition)
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// A message to produce. Without an explicit partition, the partitioner picks one from the key
/// (murmur2, like Kafka's Java client), so the same key always lands in the same partition.
public struct KafkaProducerMessage<Key: KafkaBytes, Value: KafkaBytes>: Sendable {
    public var topic: String
    public var partition: Int32?
    public var key: Key?
    public var value: Value
    public var headers: [KafkaHeader]

    public init(topic: String, partition: Int32? = nil, key: Key?, value: Value, headers: [KafkaHeader] = []) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }
}

extension KafkaProducerMessage where Key == [UInt8] {
    /// A message without a key.
    public init(topic: String, partition: Int32? = nil, value: Value, headers: [KafkaHeader] = []) {
        self.init(topic: topic, partition: partition, key: nil, value: value, headers: headers)
    }
}

/// Where a produced message was written.
public struct KafkaDeliveryReport: Sendable, Hashable {
    /// The id `sendDetached` returned for the message.
    public var id: UInt64
    public var topicPartition: TopicPartition
    public var offset: Int64
    /// `nil` when the message was written and acknowledged.
    public var error: KafkaError?

    public static func == (a: Self, b: Self) -> Bool {
        a.id == b.id && a.topicPartition == b.topicPartition && a.offset == b.offset
            && a.error?.code == b.error?.code
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(id)
        hasher.combine(topicPartition)
        hasher.combine(offset)
    }
}

/// The acknowledged position of a message sent with `send`.
public struct KafkaDelivery: Sendable, Hashable {
    public var topicPartition: TopicPartition
    public var offset: Int64

    public init(topicPartition: TopicPartition, offset: Int64) {
        self.topicPartition = topicPartition
        self.offset = offset
    }
}
