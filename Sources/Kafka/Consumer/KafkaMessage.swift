/// A consumed record.
public struct KafkaMessage: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    /// Empty for a null value too; `valueIsNull` tells them apart.
    public var value: [UInt8]
    /// A null value: a tombstone, which deletes the key in a compacted topic.
    public var valueIsNull: Bool
    public var headers: [KafkaHeader]
    /// Milliseconds since the epoch (create or log-append time), when the broker provided one.
    public var timestamp: Int64?

    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8],
        headers: [KafkaHeader] = [], timestamp: Int64? = nil, valueIsNull: Bool = false
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.valueIsNull = valueIsNull
        self.headers = headers
        self.timestamp = timestamp
    }

    public var topicPartition: TopicPartition { TopicPartition(topic: topic, partition: partition) }
    public var keyString: String? { key.map { String(decoding: $0, as: UTF8.self) } }
    public var valueString: String { String(decoding: value, as: UTF8.self) }
}

/// What a consumer hands its caller, in order: partitions assigned before any of their messages,
/// partitions revoked after the last of their messages.
public enum KafkaConsumerEvent: Sendable, Hashable {
    case message(KafkaMessage)
    /// These partitions now belong to this consumer; their messages follow.
    case partitionsAssigned([TopicPartition])
    /// These partitions were taken away. When the caller asks for the event after this one, it
    /// has finished every earlier message and whatever it does on the revoke (drain in-flight
    /// work, store final offsets); the consumer then commits the stored offsets and lets the
    /// group move the partitions. `lost`: the group gave them to another member already (this
    /// one missed its heartbeats, or was fenced): nothing is committed, and work still in
    /// progress on them races the new owner's, so it should stop at once rather than finish.
    case partitionsRevoked([TopicPartition], lost: Bool)
    /// Time passed (`KafkaConsumerConfiguration.tickInterval`): every event before it was
    /// handed out. Comes only when ticks are configured.
    case tick
}
