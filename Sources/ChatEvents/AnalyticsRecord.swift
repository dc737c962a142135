public import Foundation

/// One processed flow input, as `bot.analytics.v1` carries it, masked per the endpoint's
/// data-protection settings. Schema: `schemas/analytics-record.v1.schema.json`.
public struct AnalyticsRecord: Sendable, Hashable, Codable, VersionedRecord {
    public static let schemaVersion = "bot.analytics.v1"

    public var schema: String
    /// The inbound event id: the same input always gives the same record id.
    public var recordId: String
    public var endpoint: String
    public var conversationId: String
    public var tenantId: String?
    /// When the ingress received the input (milliseconds since 1970).
    public var time: Int64
    /// The normalized event kind (`userMessage`, `postback`, ...).
    public var kind: String
    public var userId: String?
    /// The input text, masked unless `maskAnalytics` is off.
    public var text: String
    /// Submitted card values and the like, masked unless `maskAnalytics` is off.
    public var data: JSONValue?
    /// The user's IP address, starred when `maskIPAddress` is on.
    public var ip: String?
    public var intent: String?
    public var intentScore: Double?
    /// The node ids the flow passed.
    public var path: [String]
    /// The turn handed the conversation to an agent, or ran while one had it.
    public var handover: Bool
    /// How long the worker took for the turn (microseconds).
    public var processingMicros: Int64
    public var masked: Bool

    public init(
        recordId: String, endpoint: String, conversationId: String, tenantId: String?, time: Int64, kind: String,
        userId: String?, text: String, data: JSONValue?, ip: String?, intent: String?, intentScore: Double?,
        path: [String], handover: Bool, processingMicros: Int64, masked: Bool
    ) {
        schema = Self.schemaVersion
        self.recordId = recordId
        self.endpoint = endpoint
        self.conversationId = conversationId
        self.tenantId = tenantId
        self.time = time
        self.kind = kind
        self.userId = userId
        self.text = text
        self.data = data
        self.ip = ip
        self.intent = intent
        self.intentScore = intentScore
        self.path = path
        self.handover = handover
        self.processingMicros = processingMicros
        self.masked = masked
    }

    /// The record value, written by hand; `Codable` reads it back.
    public var encodedRecord: [UInt8] {
        var json = JSONWriter(capacity: 320)
        json.beginObject()
        json.field("schema", schema)
        json.field("recordId", recordId)
        json.field("endpoint", endpoint)
        json.field("conversationId", conversationId)
        json.field("tenantId", tenantId)
        json.field("time", time)
        json.field("kind", kind)
        json.field("userId", userId)
        json.field("text", text)
        json.field("data", data)
        json.field("ip", ip)
        json.field("intent", intent)
        if let intentScore { json.key("intentScore"); json.double(intentScore) }
        json.key("path")
        json.beginArray()
        for node in path { json.string(node) }
        json.endArray()
        json.field("handover", handover)
        json.field("processingMicros", processingMicros)
        json.field("masked", masked)
        json.endObject()
        return json.bytes
    }

}
