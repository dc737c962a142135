/// Producer settings. Typed fields cover what the connector relies on; anything else goes through
/// `properties`, which is passed to librdkafka as is (TLS and SASL settings, for example).
public struct KafkaProducerConfiguration: Sendable {
    public var bootstrapServers: String
    public var clientID: String = "connector"
    /// Idempotent production: retries never duplicate or reorder messages within a partition.
    public var idempotence: Bool = true
    /// `all` waits for every in-sync replica; required with idempotence.
    public var acks: String = "all"
    /// How long librdkafka waits to batch messages. Latency matters more than batch size here.
    /// Not used with `batching` `.adaptive`, which sets librdkafka's linger to 0.
    public var lingerMilliseconds: Int = 2
    /// How messages are grouped into produce requests.
    public var batching: KafkaBatching = .linger
    /// How long a message may take to be acknowledged, retries included, before it fails.
    public var messageTimeoutMilliseconds: Int = 30_000
    /// Java-compatible key hashing, so services written in other languages co-partition with us.
    public var partitioner: String = "murmur2_random"
    /// Enables the transactional API (`initTransactions`, `beginTransaction`, ...).
    public var transactionalID: String?
    /// How long a graceful shutdown waits for queued messages to be delivered.
    public var flushTimeout: Duration = .seconds(30)
    /// Passed to librdkafka as is; these win over the typed fields.
    public var properties: [String: String] = [:]
    /// Where delivery reports (and librdkafka's error and statistics callbacks) are served.
    public var callbacks: KafkaCallbackExecution = .pollingThread

    public init(bootstrapServers: String) {
        self.bootstrapServers = bootstrapServers
    }

    var librdkafkaProperties: [String: String] {
        var result: [String: String] = [
            "bootstrap.servers": bootstrapServers,
            "client.id": clientID,
            "enable.idempotence": idempotence ? "true" : "false",
            "acks": acks,
            "linger.ms": batching == .adaptive ? "0" : String(lingerMilliseconds),
            "message.timeout.ms": String(messageTimeoutMilliseconds),
            "partitioner": partitioner,
        ]
        if let transactionalID { result["transactional.id"] = transactionalID }
        result.merge(properties) { _, override in override }
        return result
    }

    /// The partitioner librdkafka uses: `partitioner`, unless `properties` name another
    /// (`consistent_random`, librdkafka's own default, when neither does).
    var partitionerName: String { librdkafkaProperties["partitioner"] ?? "consistent_random" }

    /// The partition, of `partitionCount`, that a message keyed `key` goes to under this
    /// configuration's partitioner (a `partitioner` in `properties` wins), computed by
    /// librdkafka's own function. Nil when the partitioner is not key-based, or for an empty
    /// key under a `_random` partitioner (the default), which picks a partition at random for it.
    public func partition(ofKey key: String, partitionCount: Int32) -> Int32? {
        let name = partitionerName
        guard partitionCount > 0, !key.isEmpty || !name.hasSuffix("_random"), let partitioner = PartitionGate.partitioner(named: name)
        else { return nil }
        // An empty key reaches librdkafka as no key at all, as in `enqueue`.
        return Array(key.utf8).withUnsafeBytes { partitioner(nil, $0.isEmpty ? nil : $0.baseAddress, $0.count, partitionCount, nil, nil) }
    }
}

/// Where a producer serves librdkafka's callbacks.
public enum KafkaCallbackExecution: Sendable {
    /// A thread of the producer's own polls librdkafka.
    case pollingThread
    /// Whenever reports arrive on an empty queue, librdkafka's thread hands a poll to `schedule`,
    /// which runs it soon elsewhere, for example on an event loop (`{ loop.execute($0) }`). No
    /// thread of its own: one thread wake-up fewer per batch of reports, and callers waiting on an
    /// event loop are resumed from that loop. The poll never blocks.
    case scheduled(@Sendable (_ poll: @escaping @Sendable () -> Void) -> Void)
}
