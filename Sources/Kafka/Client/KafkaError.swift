import CRdKafka

/// A librdkafka error code (`rd_kafka_resp_err_t`), named as librdkafka names it.
public struct KafkaErrorCode: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }
    init(_ err: rd_kafka_resp_err_t) { self.rawValue = err.rawValue }

    var cValue: rd_kafka_resp_err_t { rd_kafka_resp_err_t(rawValue: rawValue) }

    /// librdkafka's symbolic name, e.g. `NOT_ENOUGH_REPLICAS` or `_MSG_TIMED_OUT`.
    public var name: String { String(cString: rd_kafka_err2name(cValue)) }
    public var description: String { name }

    public static let noError = KafkaErrorCode(RD_KAFKA_RESP_ERR_NO_ERROR)
    public static let unknownTopicOrPartition = KafkaErrorCode(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    public static let leaderNotAvailable = KafkaErrorCode(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
    public static let notLeaderForPartition = KafkaErrorCode(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION)
    public static let requestTimedOut = KafkaErrorCode(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT)
    public static let notEnoughReplicas = KafkaErrorCode(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS)
    public static let notEnoughReplicasAfterAppend = KafkaErrorCode(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND)
    public static let networkException = KafkaErrorCode(RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION)
    public static let topicAlreadyExists = KafkaErrorCode(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
    public static let topicAuthorizationFailed = KafkaErrorCode(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
    public static let invalidRequiredAcks = KafkaErrorCode(RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS)
    public static let messageTimedOut = KafkaErrorCode(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
    public static let timedOut = KafkaErrorCode(RD_KAFKA_RESP_ERR__TIMED_OUT)
    public static let transport = KafkaErrorCode(RD_KAFKA_RESP_ERR__TRANSPORT)
    public static let allBrokersDown = KafkaErrorCode(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
    public static let queueFull = KafkaErrorCode(RD_KAFKA_RESP_ERR__QUEUE_FULL)
    public static let unknownPartition = KafkaErrorCode(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
    public static let unknownTopic = KafkaErrorCode(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
    public static let unsupportedFeature = KafkaErrorCode(RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE)
    public static let state = KafkaErrorCode(RD_KAFKA_RESP_ERR__STATE)
    public static let noOffset = KafkaErrorCode(RD_KAFKA_RESP_ERR__NO_OFFSET)
    public static let invalidArgument = KafkaErrorCode(RD_KAFKA_RESP_ERR__INVALID_ARG)
    public static let fatal = KafkaErrorCode(RD_KAFKA_RESP_ERR__FATAL)
    public static let unknownMemberId = KafkaErrorCode(RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID)
    public static let destroyed = KafkaErrorCode(RD_KAFKA_RESP_ERR__DESTROY)
    /// A message purged from the producer's queue (a close that does not wait, a crash).
    public static let purgeQueue = KafkaErrorCode(RD_KAFKA_RESP_ERR__PURGE_QUEUE)
    /// A message purged while its request was on its way to the broker.
    public static let purgeInflight = KafkaErrorCode(RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)

    /// Codes about the producer's idempotence or transaction state, not the record: the
    /// message that meets one makes librdkafka raise a fatal error for its producer, and is
    /// reported with the code.
    public var breaksTheProducer: Bool { Self.producerState.contains(self) }

    private static let producerState: Set<KafkaErrorCode> = [
        KafkaErrorCode(RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_DUPLICATE_SEQUENCE_NUMBER),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_INVALID_PRODUCER_ID_MAPPING),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_PRODUCER_FENCED),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
    ]

    /// Codes that mean "the same request may succeed later". Kafka marks these retriable in its
    /// protocol; the underscore ones are librdkafka's local equivalents.
    public var isRetriable: Bool { Self.retriable.contains(self) }

    private static let retriable: Set<KafkaErrorCode> = [
        .leaderNotAvailable, .notLeaderForPartition, .requestTimedOut, .notEnoughReplicas,
        .notEnoughReplicasAfterAppend, .networkException, .messageTimedOut, .timedOut,
        .transport, .allBrokersDown, .queueFull, .unknownTopicOrPartition,
        KafkaErrorCode(RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_NOT_COORDINATOR),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE),
        KafkaErrorCode(RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS),
    ]
}

/// An error from the Kafka layer. `code` is librdkafka's; `message` is librdkafka's own text
/// where it gave one, so operators can search for it.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// A configuration property is unknown or has an invalid value.
        case configuration
        /// A message could not be delivered (delivery report or local enqueue failure).
        case delivery
        /// A consumer operation failed (offset store, commit, pause, poll).
        case consumer
        /// An admin request failed or the broker does not support it.
        case admin
        /// A transactional operation failed.
        case transaction
        /// The embedded cluster could not be started or controlled.
        case embeddedCluster
        /// The client was used after it was shut down, or before it was ready.
        case state
        /// An operation did not finish within its bound.
        case timeout
    }

    public var kind: Kind
    public var code: KafkaErrorCode
    public var message: String
    /// The same operation may succeed if tried again.
    public var isRetriable: Bool
    /// The client instance is unusable and must be recreated.
    public var isFatal: Bool

    /// Kafka refused this record (a topic the client may not write or that is missing, a
    /// partition without a leader for `message.timeout.ms`): other records can still go. Not a
    /// refusal: the producer ending (a purge, a destroyed handle), a fatal error or the code
    /// that caused one (an out-of-order sequence number), a full queue.
    public var isRefusal: Bool {
        !isFatal && !code.breaksTheProducer && ![.purgeQueue, .purgeInflight, .fatal, .destroyed, .queueFull].contains(code)
    }

    public init(kind: Kind, code: KafkaErrorCode, message: String, isRetriable: Bool? = nil, isFatal: Bool = false) {
        self.kind = kind
        self.code = code
        self.message = message
        self.isRetriable = isRetriable ?? code.isRetriable
        self.isFatal = isFatal
    }

    init(kind: Kind, _ err: rd_kafka_resp_err_t, context: String? = nil) {
        let text = String(cString: rd_kafka_err2str(err))
        // `_FATAL`: librdkafka refuses everything after its fatal error.
        self.init(
            kind: kind, code: KafkaErrorCode(err), message: context.map { "\($0): \(text)" } ?? text,
            isFatal: err == RD_KAFKA_RESP_ERR__FATAL)
    }

    /// Whether librdkafka raised a fatal error for `handle` (an atomic read).
    static func hasFatal(_ handle: OpaquePointer) -> Bool {
        rd_kafka_fatal_error(handle, nil, 0) != RD_KAFKA_RESP_ERR_NO_ERROR
    }

    /// The fatal error librdkafka raised for `handle`, nil while there is none.
    static func fatal(of handle: OpaquePointer, kind: Kind) -> KafkaError? {
        guard hasFatal(handle) else { return nil }
        var reason = [CChar](repeating: 0, count: 512)
        let err = rd_kafka_fatal_error(handle, &reason, reason.count)
        return KafkaError(kind: kind, code: KafkaErrorCode(err), message: "fatal: \(String(errorBuffer: reason))", isRetriable: false, isFatal: true)
    }

    /// Takes ownership of an `rd_kafka_error_t` and destroys it.
    init(kind: Kind, consuming error: OpaquePointer) {
        defer { rd_kafka_error_destroy(error) }
        self.init(
            kind: kind,
            code: KafkaErrorCode(rd_kafka_error_code(error)),
            message: String(cString: rd_kafka_error_string(error)),
            isRetriable: rd_kafka_error_is_retriable(error) != 0,
            isFatal: rd_kafka_error_is_fatal(error) != 0
        )
        if kind == .transaction, rd_kafka_error_txn_requires_abort(error) != 0 {
            self.requiresAbort = true
        }
    }

    /// For transactional errors: the current transaction must be aborted before going on.
    public var requiresAbort = false

    public var description: String {
        "Kafka \(kind.rawValue) error \(code.name): \(message)"
            + (isRetriable ? " (retriable)" : "") + (isFatal ? " (fatal)" : "")
    }
}
