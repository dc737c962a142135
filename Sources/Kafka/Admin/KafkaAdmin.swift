import CRdKafka
public import Logging
import Synchronization

/// A topic to create.
public struct KafkaTopicSpecification: Sendable, Hashable {
    public var name: String
    public var partitions: Int32
    public var replicationFactor: Int32
    /// Topic configuration, e.g. `cleanup.policy: compact`.
    public var config: [String: String]

    public init(name: String, partitions: Int32, replicationFactor: Int32 = 1, config: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.config = config
    }
}

public struct KafkaTopicMetadata: Sendable, Hashable {
    public var name: String
    public var partitions: [Int32]
}

/// What happened to one topic of a `createTopics` call.
public enum KafkaTopicCreation: Sendable, Hashable {
    case created
    case alreadyExists
    case failed(code: KafkaErrorCode, message: String)
}

/// Topic and consumer-group administration, and lag computed from committed offsets and
/// watermarks. Blocking librdkafka calls run off the cooperative thread pool.
public final class KafkaAdmin: Sendable {
    private let handle: SendableHandle
    private let context: RdKafkaHandleContext
    public let requestTimeout: Duration
    /// Serves the handle's callbacks. librdkafka queues an error event on the handle for every
    /// failed connection and "all brokers down", whatever it is used for: unserved, a long
    /// outage piles them up (and their error lines never reach the log) in a service that
    /// keeps its admin client for its lifetime.
    private let poller: PollingThread
    /// The properties every handle of this client is made with.
    private let properties: [String: String]
    /// Per consumer group, a consumer handle that reads the group's committed offsets (never
    /// subscribed, so never a member). librdkafka's Admin API request for them
    /// (ListConsumerGroupOffsets) trips an assertion in its coordinator request when the
    /// connection drops meanwhile (`rd_kafka_enq_once_del_source_return: eonce->refcnt > 0`,
    /// librdkafka 2.0.2 to at least 2.15, upstream pull request 5397): a broker restarting under
    /// a lag measurement can abort the whole process (it did once in this project's test suite).
    /// The consumer's own offset fetch has no such path.
    private let groupReaders: GroupReaders

    /// A consumer handle of one group, destroyed when the last user lets it go.
    private final class GroupReader: Sendable {
        let handle: SendableHandle
        /// The handle's callbacks use it.
        let context: RdKafkaHandleContext

        init(_ handle: OpaquePointer, context: RdKafkaHandleContext) {
            self.handle = SendableHandle(handle)
            self.context = context
        }

        deinit {
            let handle = handle, context = context
            tearDownInBackground(logger: context.logger) {
                rd_kafka_destroy(handle.pointer)
                withExtendedLifetime(context) {}  // the handle's callbacks use it
            }
        }
    }

    /// The most recently used readers, at most `limit` (`connector lag` may ask every group of
    /// a cluster; each handle has threads and connections of its own).
    private final class GroupReaders: Sendable {
        static let limit = 8
        /// Least recently used first.
        let readers = Mutex<[(group: String, reader: GroupReader)]>([])
    }

    public init(
        bootstrapServers: String, properties: [String: String] = [:], requestTimeout: Duration = .seconds(10),
        logger: Logger
    ) throws(KafkaError) {
        var all = ["bootstrap.servers": bootstrapServers, "client.id": "connector-admin"]
        all.merge(properties) { _, override in override }
        let context = RdKafkaHandleContext(logger: logger)
        let rk = try makeRdKafkaHandle(RD_KAFKA_PRODUCER, properties: all, context: context)
        let handle = SendableHandle(rk)
        self.handle = handle
        self.context = context
        self.requestTimeout = requestTimeout
        self.properties = all
        let readers = GroupReaders()
        self.groupReaders = readers
        self.poller = PollingThread(name: "admin-poll") {
            rd_kafka_poll(handle.pointer, 500)
            for reader in readers.readers.withLock({ $0.map { $0.reader } }) { rd_kafka_poll(reader.handle.pointer, 0) }
        }
    }

    deinit {
        let handle = handle, context = context, poller = poller, groupReaders = groupReaders
        tearDownInBackground(logger: context.logger) {
            // Its callbacks must not run into the handles' destruction.
            poller.requestStop()
            rd_kafka_yield(handle.pointer)  // ends the poll in progress
            poller.stopAndWait(logger: context.logger)
            groupReaders.readers.withLock { $0.removeAll() }  // each destroyed on a blocking thread once no call uses it
            rd_kafka_destroy(handle.pointer)
            withExtendedLifetime(context) {}  // the handle's callbacks use it
        }
    }

    /// The consumer handle that reads `group`'s committed offsets. One pushed out of the most
    /// recently used is destroyed on a blocking thread once no call uses it (`GroupReader`).
    private func groupReader(_ group: String) throws(KafkaError) -> GroupReader {
        try groupReaders.readers.withLock { (readers) throws(KafkaError) -> GroupReader in
            if let index = readers.firstIndex(where: { $0.group == group }) {
                let used = readers.remove(at: index)
                readers.append(used)
                return used.reader
            }
            var properties = self.properties
            // Offsets committed in a transaction count once it commits: without `require_stable`
            // (which read_committed asks for), an open transaction is no reason to wait.
            properties.merge(["group.id": group, "enable.auto.commit": "false", "isolation.level": "read_uncommitted"]) { $1 }
            let reader = GroupReader(try makeRdKafkaHandle(RD_KAFKA_CONSUMER, properties: properties, context: context), context: context)
            readers.append((group, reader))
            if readers.count > GroupReaders.limit { readers.removeFirst() }
            return reader
        }
    }

    /// How many groups' consumer handles are kept.
    var groupReaderCount: Int { groupReaders.readers.withLock { $0.count } }

    /// Callbacks queued on the handle and not yet served (librdkafka's out queue, which also
    /// counts them).
    var queuedCallbacks: Int { Int(rd_kafka_outq_len(handle.pointer)) }

    // MARK: Topics

    /// Creates topics; an existing topic is reported as `.alreadyExists`, not as an error.
    /// - Throws: `KafkaError` (kind `.admin` or `.timeout`) when the request as a whole failed,
    ///   for example on a broker without CreateTopics (the embedded one, where librdkafka waits
    ///   for a usable controller until the request timeout).
    public func createTopics(_ topics: [KafkaTopicSpecification]) async throws -> [String: KafkaTopicCreation] {
        let rk = handle
        let timeout = requestTimeout.milliseconds
        return try await blockingCall { () throws(KafkaError) -> [String: KafkaTopicCreation] in
            var errstr = [CChar](repeating: 0, count: 512)
            var newTopics: [OpaquePointer?] = []
            defer { for t in newTopics { rd_kafka_NewTopic_destroy(t) } }
            for topic in topics {
                guard let newTopic = rd_kafka_NewTopic_new(topic.name, topic.partitions, topic.replicationFactor, &errstr, errstr.count) else {
                    throw KafkaError(kind: .admin, code: .invalidArgument, message: String(errorBuffer: errstr), isRetriable: false)
                }
                newTopics.append(newTopic)
                for (key, value) in topic.config.sorted(by: { $0.key < $1.key }) {
                    let err = rd_kafka_NewTopic_set_config(newTopic, key, value)
                    if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(kind: .admin, err, context: "\(topic.name) \(key)") }
                }
            }
            let options = try Self.options(rk.pointer, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout: timeout)
            defer { rd_kafka_AdminOptions_destroy(options) }
            let queue = rd_kafka_queue_new(rk.pointer)
            defer { rd_kafka_queue_destroy(queue) }
            rd_kafka_CreateTopics(rk.pointer, &newTopics, newTopics.count, options, queue)
            let event = try Self.waitForResult(queue, timeout: timeout)
            defer { rd_kafka_event_destroy(event) }
            guard let result = rd_kafka_event_CreateTopics_result(event) else {
                throw KafkaError(kind: .admin, code: .fatal, message: "unexpected admin result", isRetriable: false)
            }
            var count = 0
            guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return [:] }
            var outcome: [String: KafkaTopicCreation] = [:]
            for i in 0..<count {
                let topicResult = results[i]
                let name = String(cString: rd_kafka_topic_result_name(topicResult))
                let err = rd_kafka_topic_result_error(topicResult)
                switch err {
                case RD_KAFKA_RESP_ERR_NO_ERROR: outcome[name] = .created
                case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS: outcome[name] = .alreadyExists
                default:
                    let message = rd_kafka_topic_result_error_string(topicResult).map { String(cString: $0) }
                        ?? String(cString: rd_kafka_err2str(err))
                    outcome[name] = .failed(code: KafkaErrorCode(err), message: message)
                }
            }
            return outcome
        }
    }

    /// Topics (without Kafka's internal `__` topics) and their partitions.
    public func listTopics() async throws -> [KafkaTopicMetadata] {
        let rk = handle
        let timeout = requestTimeout.milliseconds
        return try await blockingCall { () throws(KafkaError) -> [KafkaTopicMetadata] in
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let err = rd_kafka_metadata(rk.pointer, 1, nil, &metadata, timeout)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
                throw KafkaError(kind: .admin, err, context: "metadata")
            }
            defer { rd_kafka_metadata_destroy(metadata) }
            var topics: [KafkaTopicMetadata] = []
            for i in 0..<Int(metadata.pointee.topic_cnt) {
                let topic = metadata.pointee.topics[i]
                let name = String(cString: topic.topic)
                guard !name.hasPrefix("__"), topic.err == RD_KAFKA_RESP_ERR_NO_ERROR else { continue }
                let partitions = (0..<Int(topic.partition_cnt)).map { topic.partitions[$0].id }.sorted()
                topics.append(KafkaTopicMetadata(name: name, partitions: partitions))
            }
            return topics.sorted { $0.name < $1.name }
        }
    }

    // MARK: Offsets

    /// The low and high watermark (next offset to be written) of a partition.
    public func watermarks(_ partition: TopicPartition) async throws -> (low: Int64, high: Int64) {
        let rk = handle
        let timeout = requestTimeout.milliseconds
        return try await blockingCall { () throws(KafkaError) -> (low: Int64, high: Int64) in
            var low: Int64 = 0
            var high: Int64 = 0
            let err = rd_kafka_query_watermark_offsets(rk.pointer, partition.topic, partition.partition, &low, &high, timeout)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError(kind: .admin, err, context: "watermarks of \(partition)")
            }
            return (low, high)
        }
    }

    /// Committed offsets of a group for these partitions; partitions without a commit are absent.
    /// - Throws: the first partition's error when the offset of any could not be read.
    public func committedOffsets(group: String, partitions: [TopicPartition]) async throws -> [TopicPartition: Int64] {
        let read = try await readCommittedOffsets(group: group, partitions: partitions)
        if let (partition, error) = read.failed.min(by: { $0.key < $1.key }) {
            throw KafkaError(kind: .admin, code: error.code, message: "committed offset of group \(group) on \(partition): \(error.message)")
        }
        return read.offsets
    }

    /// Committed offsets of a group for these partitions, and the partitions whose offset the
    /// coordinator could not give with its error; a partition without a commit is in neither.
    /// - Throws: when the request as a whole failed.
    public func readCommittedOffsets(
        group: String, partitions: [TopicPartition]
    ) async throws -> (offsets: [TopicPartition: Int64], failed: [TopicPartition: KafkaError]) {
        guard !partitions.isEmpty else { return ([:], [:]) }
        let reader = try groupReader(group)
        let timeout = requestTimeout.milliseconds
        return try await blockingCall { () throws(KafkaError) -> (offsets: [TopicPartition: Int64], failed: [TopicPartition: KafkaError]) in
            let list = TopicPartitionList(partitions)
            let err = rd_kafka_committed(reader.handle.pointer, list.pointer, timeout)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError(kind: .admin, err, context: "committed offsets of group \(group)")
            }
            var offsets: [TopicPartition: Int64] = [:]
            var failed: [TopicPartition: KafkaError] = [:]
            for entry in list.entries {
                if entry.error != RD_KAFKA_RESP_ERR_NO_ERROR {
                    failed[entry.partition] = KafkaError(kind: .admin, entry.error)
                } else if entry.offset >= 0 {
                    offsets[entry.partition] = entry.offset
                }
            }
            return (offsets, failed)
        }
    }

    /// Consumer groups the cluster knows.
    /// - Throws: `KafkaError` when the brokers do not support listing groups (the embedded one).
    public func listConsumerGroups() async throws -> [String] {
        let rk = handle
        let timeout = requestTimeout.milliseconds
        return try await blockingCall { () throws(KafkaError) -> [String] in
            let options = try Self.options(rk.pointer, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS, timeout: timeout)
            defer { rd_kafka_AdminOptions_destroy(options) }
            let queue = rd_kafka_queue_new(rk.pointer)
            defer { rd_kafka_queue_destroy(queue) }
            rd_kafka_ListConsumerGroups(rk.pointer, options, queue)
            let event = try Self.waitForResult(queue, timeout: timeout)
            defer { rd_kafka_event_destroy(event) }
            guard let result = rd_kafka_event_ListConsumerGroups_result(event) else {
                throw KafkaError(kind: .admin, code: .fatal, message: "unexpected admin result", isRetriable: false)
            }
            var validCount = 0
            var errorCount = 0
            let valid = rd_kafka_ListConsumerGroups_result_valid(result, &validCount)
            let errors = rd_kafka_ListConsumerGroups_result_errors(result, &errorCount)
            if validCount == 0, errorCount > 0, let errors, let first = errors[0] {
                throw KafkaError(kind: .admin, code: KafkaErrorCode(rd_kafka_error_code(first)),
                                 message: String(cString: rd_kafka_error_string(first)), isRetriable: false)
            }
            guard let valid else { return [] }
            return (0..<validCount).map { String(cString: rd_kafka_ConsumerGroupListing_group_id(valid[$0])) }.sorted()
        }
    }

    /// Lag of `group`: for each partition of `topics` (every topic when `nil`), the high
    /// watermark minus the committed offset. With `topics == nil` only partitions the group has
    /// committed on are reported.
    ///
    /// A partition whose committed offset or watermarks could not be read (its leader is down,
    /// the coordinator gave an error for it) is in `unmeasured` with the reason; the others are
    /// measured all the same, so one broker's outage does not hide the whole group's lag. The
    /// watermarks are read `watermarkConcurrency` partitions at a time: a partition that waits
    /// for its leader costs one request timeout, not one per partition after it.
    /// - Throws: when the topics, or the group's offsets as a whole, could not be read, or when
    ///   no partition could be measured.
    public func lag(group: String, topics: [String]? = nil) async throws -> ConsumerGroupLag {
        let metadata = try await listTopics()
        let selected = topics.map { names in metadata.filter { names.contains($0.name) } } ?? metadata
        if let topics {
            let missing = Set(topics).subtracting(selected.map(\.name))
            if !missing.isEmpty {
                throw KafkaError(kind: .admin, code: .unknownTopic, message: "unknown topics: \(missing.sorted().joined(separator: ", "))", isRetriable: false)
            }
        }
        let partitions = selected.flatMap { topic in topic.partitions.map { TopicPartition(topic: topic.name, partition: $0) } }
        let committed = try await readCommittedOffsets(group: group, partitions: partitions)
        var failed = committed.failed
        let measuring = partitions.filter { committed.failed[$0] == nil && (topics != nil || committed.offsets[$0] != nil) }
        var lags: [PartitionLag] = []
        for (partition, marks) in await watermarks(of: measuring) {
            switch marks {
            case .success(let (low, high)):
                lags.append(PartitionLag(topic: partition.topic, partition: partition.partition,
                                         committedOffset: committed.offsets[partition], lowWatermark: low, highWatermark: high))
            case .failure(let error):
                failed[partition] = error
            }
        }
        if lags.isEmpty, let (partition, error) = failed.min(by: { $0.key < $1.key }) {
            throw KafkaError(kind: .admin, code: error.code, message: "no partition of group \(group) measured; \(partition): \(error.message)")
        }
        return ConsumerGroupLag(group: group, partitions: lags, unmeasured: failed.map {
            UnmeasuredPartition(topic: $0.key.topic, partition: $0.key.partition, reason: "\($0.value.code.name): \($0.value.message)")
        })
    }

    /// How many partitions' watermarks `lag` reads at a time.
    static let watermarkConcurrency = 8

    /// The watermarks of each partition, read a few at a time.
    private func watermarks(of partitions: [TopicPartition]) async -> [(TopicPartition, Result<(low: Int64, high: Int64), KafkaError>)] {
        await withTaskGroup(of: (TopicPartition, Result<(low: Int64, high: Int64), KafkaError>).self) { group in
            var results: [(TopicPartition, Result<(low: Int64, high: Int64), KafkaError>)] = []
            results.reserveCapacity(partitions.count)
            var next = partitions.makeIterator()
            func start() -> Bool {
                guard let partition = next.next() else { return false }
                group.addTask {
                    do { return (partition, .success(try await self.watermarks(partition))) } catch let error as KafkaError {
                        return (partition, .failure(error))
                    } catch {
                        return (partition, .failure(KafkaError(kind: .admin, code: .fatal, message: "\(error)")))
                    }
                }
                return true
            }
            for _ in 0..<Self.watermarkConcurrency where !start() { break }
            while let result = await group.next() {
                results.append(result)
                _ = start()
            }
            return results
        }
    }

    // MARK: Plumbing

    private static func options(_ rk: OpaquePointer, _ op: rd_kafka_admin_op_t, timeout: Int32) throws(KafkaError) -> OpaquePointer {
        guard let options = rd_kafka_AdminOptions_new(rk, op) else {
            throw KafkaError(kind: .admin, code: .invalidArgument, message: "admin options", isRetriable: false)
        }
        var errstr = [CChar](repeating: 0, count: 512)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeout, &errstr, errstr.count)
        return options
    }

    /// Waits (on the calling Dispatch thread) for the result event of an admin request.
    private static func waitForResult(_ queue: OpaquePointer?, timeout: Int32) throws(KafkaError) -> OpaquePointer {
        guard let event = rd_kafka_queue_poll(queue, timeout + 1000) else {
            throw KafkaError(kind: .timeout, code: .timedOut, message: "no admin result within \(timeout) ms")
        }
        let err = rd_kafka_event_error(event)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            let message = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(err))
            rd_kafka_event_destroy(event)
            throw KafkaError(kind: .admin, code: KafkaErrorCode(err), message: message)
        }
        return event
    }
}
