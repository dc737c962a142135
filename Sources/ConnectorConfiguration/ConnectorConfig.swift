public import Foundation
import Yams

/// A value that must never be printed: its description is redacted.
public struct Secret: Sendable, Hashable, Decodable, CustomStringConvertible, CustomDebugStringConvertible {
    public let value: String
    public init(_ value: String) { self.value = value }
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        // No value (`apiKey:`, or `${KEY:-}` with KEY unset) is an empty secret, which startup
        // refuses: YAML would read it as the text "~".
        value = container.decodeNil() ? "" : try container.decode(String.self)
    }
    public var isEmpty: Bool { value.isEmpty }
    public var description: String { value.isEmpty ? "<empty>" : "<redacted>" }
    public var debugDescription: String { description }
}

/// The connector's configuration file (ARCHITECTURE.md, "Configuration").
public struct ConnectorConfig: Sendable, Decodable {
    public var kafka: KafkaSettings
    public var ingress: IngressSettings
    public var worker: WorkerSettings
    public var egress: EgressSettings
    public var endpoints: [EndpointSettings]

    public struct KafkaSettings: Sendable, Decodable {
        /// `embedded` runs the in-process cluster; anything else is a bootstrap list.
        public var brokers: String = "embedded"
        public var partitions: Int = 6
        public var replicationFactor: Int = 1
        public var topicPrefix: String = ""
        /// In front of the consumer groups and the worker's transactional id. Empty by default:
        /// a deployment that already ran keeps its groups' committed offsets. Deployments that
        /// share a cluster each set their own.
        public var groupPrefix: String = ""
        /// Passed to librdkafka as is (TLS/SASL: security.protocol, sasl.*). Values may be secrets.
        public var properties: [String: String] = [:]
        /// How often each consuming service measures its group's lag for `/metrics`.
        public var lagIntervalMs: Int = 5_000

        public var isEmbedded: Bool { brokers == "embedded" }

        /// The largest record the services write: librdkafka's `message.max.bytes` (1,000,000
        /// unless set), less room for the key, headers and the request's framing.
        public var maxRecordBytes: Int { (properties["message.max.bytes"].flatMap { Int($0) } ?? 1_000_000) - 1_024 }

        enum CodingKeys: String, CodingKey, CaseIterable { case brokers, partitions, replicationFactor, topicPrefix, groupPrefix, properties, lagIntervalMs }

        public init() {}

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            brokers = try c.decodeIfPresent(String.self, forKey: .brokers) ?? brokers
            partitions = try c.decodeIfPresent(Int.self, forKey: .partitions) ?? partitions
            replicationFactor = try c.decodeIfPresent(Int.self, forKey: .replicationFactor) ?? replicationFactor
            topicPrefix = try c.decodeIfPresent(String.self, forKey: .topicPrefix) ?? topicPrefix
            groupPrefix = try c.decodeIfPresent(String.self, forKey: .groupPrefix) ?? groupPrefix
            // A property without a value is left to librdkafka's default.
            properties = try c.decodeIfPresent([String: ScalarString].self, forKey: .properties)?.mapValues(\.value).filter { !$0.value.isEmpty } ?? [:]
            lagIntervalMs = try c.decodeIfPresent(Int.self, forKey: .lagIntervalMs) ?? lagIntervalMs
        }
    }

    public struct IngressSettings: Sendable, Decodable {
        public var listen: String = "0.0.0.0:8080"
        public var maxBodyBytes: Int = 1_048_576
        public var signature: SignatureSettings = SignatureSettings()
        /// How long a webhook waits for Kafka's acknowledgement before the answer is 503.
        public var publishTimeoutMs: Int = 5_000
        /// How many recent event ids are remembered to answer 8x8's retries without publishing twice.
        public var dedupeCapacity: Int = 100_000
        /// How inbound events are batched into produce requests. 0, the default, waits for
        /// nothing: an event goes to Kafka at once while its partition has fewer than 5 events in
        /// flight, and beyond that the events collect until an acknowledgement comes
        /// (`KafkaBatching.adaptive`). A value above 0 is librdkafka's own `linger.ms` instead:
        /// every event waits that long for others (BENCHMARKS.md, "Ingress: session 13").
        public var lingerMs: Int = 0
        /// How long a connection may stay silent, between requests or inside one (a request
        /// whose headers or body stop coming), before the ingress closes it; 0: never. Longer
        /// than a load balancer's idle timeout in front of it (often 60 s).
        public var idleTimeoutSeconds: Int = 75

        enum CodingKeys: String, CodingKey, CaseIterable { case listen, maxBodyBytes, signature, publishTimeoutMs, dedupeCapacity, lingerMs, idleTimeoutSeconds }

        public init() {}

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            listen = try c.decodeIfPresent(String.self, forKey: .listen) ?? listen
            maxBodyBytes = try c.decodeIfPresent(Int.self, forKey: .maxBodyBytes) ?? maxBodyBytes
            signature = try c.decodeIfPresent(SignatureSettings.self, forKey: .signature) ?? signature
            publishTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .publishTimeoutMs) ?? publishTimeoutMs
            dedupeCapacity = try c.decodeIfPresent(Int.self, forKey: .dedupeCapacity) ?? dedupeCapacity
            lingerMs = try c.decodeIfPresent(Int.self, forKey: .lingerMs) ?? lingerMs
            idleTimeoutSeconds = try c.decodeIfPresent(Int.self, forKey: .idleTimeoutSeconds) ?? idleTimeoutSeconds
        }

        /// `listen` split into host and port.
        public var listenAddress: (host: String, port: Int)? { hostPort(listen) }
    }

    public struct WorkerSettings: Sendable, Decodable {
        /// Where `/health/*` and `/metrics` are served.
        public var listen: String = "0.0.0.0:8081"
        /// Events of one partition processed ahead of their Kafka acknowledgements.
        public var maxInFlightPerPartition: Int = 1_000
        /// How commands, session records and analytics are batched into produce requests: 0 (the
        /// default) waits for nothing, a record goes to Kafka at once while its partition has
        /// fewer than 5 in flight, beyond that records collect until an acknowledgement
        /// (`KafkaBatching.adaptive`, as the ingress and the egress do); above 0 librdkafka's
        /// `linger.ms`, every record waits that long (BENCHMARKS.md, "Worker: session 15").
        /// With `transactional`, 0 is librdkafka's linger of 0: a transactional producer does
        /// not batch adaptively.
        public var lingerMs: Int = 0
        /// Consume-process-produce in Kafka transactions: commands, sessions and the consumed
        /// offsets commit atomically. For real Kafka; the embedded broker accepts transactions
        /// but drops the offsets sent in them (the session's processed events still prevent
        /// repeats there).
        public var transactional: Bool = false
        /// The producer's transactional.id in transactional mode; unique per worker replica and
        /// stable across its restarts. Default: `connector-worker-` and the host name.
        public var transactionalId: String?

        enum CodingKeys: String, CodingKey, CaseIterable { case listen, maxInFlightPerPartition, lingerMs, transactional, transactionalId }

        public init() {}

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            listen = try c.decodeIfPresent(String.self, forKey: .listen) ?? listen
            maxInFlightPerPartition = try c.decodeIfPresent(Int.self, forKey: .maxInFlightPerPartition) ?? maxInFlightPerPartition
            lingerMs = try c.decodeIfPresent(Int.self, forKey: .lingerMs) ?? lingerMs
            transactional = try c.decodeIfPresent(Bool.self, forKey: .transactional) ?? transactional
            transactionalId = try c.decodeIfPresent(String.self, forKey: .transactionalId)
        }

        public var listenAddress: (host: String, port: Int)? { hostPort(listen) }
    }

    /// The egress: how fast, how concurrently and how persistently it delivers to 8x8.
    public struct EgressSettings: Sendable, Decodable {
        public var listen: String = "0.0.0.0:8082"
        /// Requests to 8x8 in flight at once, over all partitions.
        public var maxInFlight: Int = 64
        /// Conversations of one partition delivering at once (each strictly in order).
        public var maxConcurrentConversations: Int = 32
        /// Commands read ahead per partition before the consumer waits.
        public var maxBufferedPerPartition: Int = 2_000
        public var requestTimeoutMs: Int = 10_000
        public var connectTimeoutMs: Int = 3_000
        /// Per tenant (spec 5.5 recommends 5 requests per second while 8x8 publishes no limit).
        public var rateLimit: RateLimitSettings = RateLimitSettings()
        public var retry: RetrySettings = RetrySettings()
        /// How many delivery results per partition a new owner reads to know what is finished.
        public var dedupeWindow: Int = 100_000

        enum CodingKeys: String, CodingKey, CaseIterable {
            case listen, maxInFlight, maxConcurrentConversations, maxBufferedPerPartition, requestTimeoutMs, connectTimeoutMs
            case rateLimit, retry, dedupeWindow
        }

        public init() {}

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            listen = try c.decodeIfPresent(String.self, forKey: .listen) ?? listen
            maxInFlight = try c.decodeIfPresent(Int.self, forKey: .maxInFlight) ?? maxInFlight
            maxConcurrentConversations = try c.decodeIfPresent(Int.self, forKey: .maxConcurrentConversations) ?? maxConcurrentConversations
            maxBufferedPerPartition = try c.decodeIfPresent(Int.self, forKey: .maxBufferedPerPartition) ?? maxBufferedPerPartition
            requestTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .requestTimeoutMs) ?? requestTimeoutMs
            connectTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .connectTimeoutMs) ?? connectTimeoutMs
            rateLimit = try c.decodeIfPresent(RateLimitSettings.self, forKey: .rateLimit) ?? rateLimit
            retry = try c.decodeIfPresent(RetrySettings.self, forKey: .retry) ?? retry
            dedupeWindow = try c.decodeIfPresent(Int.self, forKey: .dedupeWindow) ?? dedupeWindow
        }

        public var listenAddress: (host: String, port: Int)? { hostPort(listen) }
    }

    public struct RateLimitSettings: Sendable, Decodable {
        public var requestsPerSecond: Double = 5
        public var burst: Double = 10

        enum CodingKeys: String, CodingKey, CaseIterable { case requestsPerSecond, burst }

        public init() {}

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            requestsPerSecond = try c.decodeIfPresent(Double.self, forKey: .requestsPerSecond) ?? requestsPerSecond
            burst = try c.decodeIfPresent(Double.self, forKey: .burst) ?? burst
        }
    }

    public struct RetrySettings: Sendable, Decodable {
        public var maxAttempts: Int = 5
        public var maxAgeSeconds: Int = 300
        public var baseBackoffMs: Int = 500
        public var maxBackoffMs: Int = 8_000

        enum CodingKeys: String, CodingKey, CaseIterable { case maxAttempts, maxAgeSeconds, baseBackoffMs, maxBackoffMs }

        public init() {}

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            maxAttempts = try c.decodeIfPresent(Int.self, forKey: .maxAttempts) ?? maxAttempts
            maxAgeSeconds = try c.decodeIfPresent(Int.self, forKey: .maxAgeSeconds) ?? maxAgeSeconds
            baseBackoffMs = try c.decodeIfPresent(Int.self, forKey: .baseBackoffMs) ?? baseBackoffMs
            maxBackoffMs = try c.decodeIfPresent(Int.self, forKey: .maxBackoffMs) ?? maxBackoffMs
        }
    }

    public struct SignatureSettings: Sendable, Decodable {
        public var required: Bool = true
        public var jwkBaseURL: String = "https://api.8x8.com"
        public var maxClockSkewSeconds: Int = 300
        /// How long a fetched signing key is trusted before it is fetched again.
        public var jwkCacheTTLSeconds: Int = 86_400
        /// The longest a JWK fetch may take; a slower JWK endpoint makes the webhook a 503.
        public var jwkFetchTimeoutMs: Int = 2_000

        enum CodingKeys: String, CodingKey, CaseIterable { case required, jwkBaseURL, maxClockSkewSeconds, jwkCacheTTLSeconds, jwkFetchTimeoutMs }

        public init() {}

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            required = try c.decodeIfPresent(Bool.self, forKey: .required) ?? required
            jwkBaseURL = try c.decodeIfPresent(String.self, forKey: .jwkBaseURL) ?? jwkBaseURL
            maxClockSkewSeconds = try c.decodeIfPresent(Int.self, forKey: .maxClockSkewSeconds) ?? maxClockSkewSeconds
            jwkCacheTTLSeconds = try c.decodeIfPresent(Int.self, forKey: .jwkCacheTTLSeconds) ?? jwkCacheTTLSeconds
            jwkFetchTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .jwkFetchTimeoutMs) ?? jwkFetchTimeoutMs
        }
    }

    public struct EndpointSettings: Sendable, Decodable {
        public var name: String
        public var urlToken: String
        public var flow: String
        public var eightByEight: EightByEightSettings
        public var dataProtection: DataProtectionSettings?
        public var session: SessionSettings?
        public var handover: HandoverSettings?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case name, urlToken, flow, eightByEight, dataProtection, session, handover
        }
    }

    public struct EightByEightSettings: Sendable, Decodable {
        public var baseURL: String
        public var apiKey: Secret
        public var tenant: String?
        public var acceptConversationActiveEvent: Bool?

        enum CodingKeys: String, CodingKey, CaseIterable { case baseURL, apiKey, tenant, acceptConversationActiveEvent }
    }

    public struct DataProtectionSettings: Sendable, Decodable {
        public var maskLogging: Bool?
        public var maskAnalytics: Bool?
        public var maskIPAddress: Bool?
        public var collectAnalytics: Bool?
        /// Remove HTML from user text before the flow.
        public var sanitizeInput: Bool?
        /// `entities` (find personal data in texts) or `fields` (star whole fields, as Cognigy).
        public var mode: String?
        /// Entity types to look for (default: all built-in ones and the custom recognizers).
        public var entities: [String]?
        /// `mask`, `replace` (default) or `hash`.
        public var `operator`: String?
        public var maskCharacter: String?
        public var keepLast: Int?
        /// The key of the `hash` operator (HMAC-SHA256), per endpoint.
        public var hashKey: Secret?
        public var customRecognizers: [CustomRecognizerSettings]?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case maskLogging, maskAnalytics, maskIPAddress, collectAnalytics, sanitizeInput, mode, entities
            case `operator`, maskCharacter, keepLast, hashKey, customRecognizers
        }
    }

    public struct CustomRecognizerSettings: Sendable, Decodable {
        public var type: String
        public var pattern: String
        /// `none`, `luhn` or `mod97`.
        public var validator: String?
        public var contextWords: [String]?
    }

    public struct SessionSettings: Sendable, Decodable {
        public var ttlMinutes: Int?
    }

    public struct HandoverSettings: Sendable, Decodable {
        /// The 8x8 queue a handover node without its own `queueId` moves the conversation to.
        public var queueId: String?
        /// The 8x8 webhook id for post-agent-assignment (hand back to the bot after the agent);
        /// without it the bot takes the conversation back when it sees the agent leave.
        public var webhookId: String?
        /// post-agent-assignment: the conversation ends this long after the handback.
        public var maxTotalMinutes: Int?
        /// post-agent-assignment: the conversation ends when the user is silent this long.
        public var userTimeoutInMinutes: Int?

        enum CodingKeys: String, CodingKey, CaseIterable { case queueId, webhookId, maxTotalMinutes, userTimeoutInMinutes }
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case kafka, ingress, worker, egress, endpoints }

    public init(
        kafka: KafkaSettings = KafkaSettings(), ingress: IngressSettings = IngressSettings(),
        worker: WorkerSettings = WorkerSettings(), egress: EgressSettings = EgressSettings(), endpoints: [EndpointSettings] = []
    ) {
        self.kafka = kafka
        self.ingress = ingress
        self.worker = worker
        self.egress = egress
        self.endpoints = endpoints
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kafka = try c.decodeIfPresent(KafkaSettings.self, forKey: .kafka) ?? KafkaSettings()
        ingress = try c.decodeIfPresent(IngressSettings.self, forKey: .ingress) ?? IngressSettings()
        worker = try c.decodeIfPresent(WorkerSettings.self, forKey: .worker) ?? WorkerSettings()
        egress = try c.decodeIfPresent(EgressSettings.self, forKey: .egress) ?? EgressSettings()
        endpoints = try c.decodeIfPresent([EndpointSettings].self, forKey: .endpoints) ?? []
    }
}

/// `host:port` (IPv6 hosts in brackets) split into host and port.
func hostPort(_ listen: String) -> (host: String, port: Int)? {
    guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
          (0...65_535).contains(port) else { return nil }
    var host = String(listen[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return (host.isEmpty ? "0.0.0.0" : host, port)
}

/// A YAML scalar (string, number or boolean) read as the string librdkafka expects.
struct ScalarString: Decodable {
    let value: String
    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        // No value (`${PASSWORD:-}` with PASSWORD unset, which YAML reads as "~") is an empty
        // one. (YAML's null check would also take a quoted "null", a value librdkafka may get.)
        if let string = try? c.decode(String.self) { value = string == "~" ? "" : string }
        else if let int = try? c.decode(Int.self) { value = String(int) }
        else if let bool = try? c.decode(Bool.self) { value = bool ? "true" : "false" }
        else if let double = try? c.decode(Double.self) { value = String(double) }
        else { throw DecodingError.typeMismatch(String.self, .init(codingPath: c.codingPath, debugDescription: "expected a string, number or boolean")) }
    }
}
