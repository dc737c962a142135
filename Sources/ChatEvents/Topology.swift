/// The topics the services talk through. Names are fixed contracts (ARCHITECTURE.md); a
/// deployment may put a prefix in front of all of them (`kafka.topicPrefix`).
public enum ConnectorTopic: String, CaseIterable, Sendable, Codable {
    /// Normalized 8x8 webhook events, keyed by conversation id.
    case inbound = "eightbyeight.inbound.v1"
    /// Commands for the 8x8 REST API, keyed by conversation id.
    case outbound = "eightbyeight.outbound.v1"
    /// One delivery result per command.
    case delivery = "eightbyeight.delivery.v1"
    /// Commands that could not be delivered, with the reason.
    case deadLetters = "eightbyeight.dlq.v1"
    /// Inbound records the worker could not process (undecodable, unknown schema version,
    /// flow error), with the reason; kept apart from `deadLetters`, which `connector replay`
    /// re-publishes as commands.
    case inboundDeadLetters = "eightbyeight.inbound.dlq.v1"
    /// Session state per conversation; co-partitioned with `inbound`.
    case sessions = "bot.sessions.v1"
    /// Masked analytics records.
    case analytics = "bot.analytics.v1"

    public func name(prefix: String = "") -> String { prefix + rawValue }

    /// Topic configuration a real cluster should get. Sessions keep only the latest state per
    /// conversation; everything else is retained for a week so lag can be replayed.
    public var config: [String: String] {
        switch self {
        case .sessions: ["cleanup.policy": "compact"]
        case .deadLetters, .inboundDeadLetters: ["retention.ms": String(30 * 24 * 3600 * 1000)]
        default: ["retention.ms": String(7 * 24 * 3600 * 1000)]
        }
    }
}

/// The consumer groups of the services, one per role, so each role scales on its own.
public enum ConnectorConsumerGroup: String, CaseIterable, Sendable, Codable {
    case worker = "connector-worker"
    case egress = "connector-egress"

    /// The topics each group reads.
    public var topics: [ConnectorTopic] {
        switch self {
        case .worker: [.inbound]
        case .egress: [.outbound]
        }
    }
}
