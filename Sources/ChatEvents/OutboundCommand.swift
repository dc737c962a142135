public import Foundation

/// One call the egress makes to the 8x8 Chat Gateway for a conversation, as it travels on
/// `eightbyeight.outbound.v1`. Schema: `schemas/outbound-command.v1.schema.json`.
///
/// `commandId` is derived from the inbound event that caused the command and the command's
/// position among that event's outputs, so processing the same event again yields the same ids
/// and the egress can drop what it already delivered.
public struct OutboundCommand: Sendable, Hashable, Codable, VersionedRecord {
    public static let schemaVersion = "eightbyeight.outbound.v1"

    public var schema: String
    public var commandId: String
    public var conversationId: String
    public var endpoint: String
    public var tenantId: String?
    /// The inbound event this command answers.
    public var causationEventId: String
    /// Position among the commands of that event, from 0.
    public var sequence: Int
    /// When the worker created it (milliseconds since 1970).
    public var createdAt: Int64
    /// When the ingress received the webhook that caused it, for end-to-end latency.
    public var receivedAt: Int64
    public var action: Action
    /// The request body for 8x8 (`sendMessage`: a SendConversationMessagePayload with
    /// `authorType: bot`; `patchConversation`: `{assignment}`; and so on).
    public var body: JSONValue

    /// What the egress does with the body.
    public enum Action: String, Sendable, Hashable, Codable, CaseIterable {
        /// `POST /conversations/{id}/messages`
        case sendMessage
        /// Downloads `body.url`, uploads it (`POST /conversations/{id}/attachments`), then
        /// sends a message with the attachment id and `body.text`.
        case sendAttachment
        /// `POST /conversations/{id}/typing`
        case typing
        /// `POST /conversations/{id}/thinking`
        case thinking
        /// `PATCH /conversations/{id}` (handover: move to a queue)
        case patchConversation
        /// `PATCH /conversations/{id}/participants/user` with `removed: true`
        case endConversation
        /// `POST /conversations/{id}/post-agent-assignment` (hand back to the bot)
        case postAgentAssignment
        /// `POST /conversations`
        case createConversation
    }

    public init(
        commandId: String, conversationId: String, endpoint: String, tenantId: String?, causationEventId: String,
        sequence: Int, createdAt: Int64, receivedAt: Int64, action: Action, body: JSONValue
    ) {
        self.schema = Self.schemaVersion
        self.commandId = commandId
        self.conversationId = conversationId
        self.endpoint = endpoint
        self.tenantId = tenantId
        self.causationEventId = causationEventId
        self.sequence = sequence
        self.createdAt = createdAt
        self.receivedAt = receivedAt
        self.action = action
        self.body = body
    }

    /// The id of the `sequence`th command caused by event `eventId`.
    public static func commandId(eventId: String, sequence: Int) -> String { "\(eventId)/\(sequence)" }

    /// The record value, written by hand (the worker's hot path); `Codable` reads it back.
    public var encodedRecord: [UInt8] {
        var json = JSONWriter(capacity: 320)
        json.beginObject()
        json.field("schema", schema)
        json.field("commandId", commandId)
        json.field("conversationId", conversationId)
        json.field("endpoint", endpoint)
        json.field("tenantId", tenantId)
        json.field("causationEventId", causationEventId)
        json.field("sequence", sequence)
        json.field("createdAt", createdAt)
        json.field("receivedAt", receivedAt)
        json.field("action", action.rawValue)
        json.field("body", body)
        json.endObject()
        return json.bytes
    }

}
