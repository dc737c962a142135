public import Foundation

/// One 8x8 webhook as it travels on `eightbyeight.inbound.v1`: who sent it, when, what it
/// means (`normalized`) and exactly what 8x8 sent (`raw`). Schema:
/// `schemas/inbound-event.v1.schema.json`.
public struct InboundEvent: Sendable, Hashable, Codable {
    public static let schemaVersion = "eightbyeight.inbound.v1"

    public var schema: String
    /// `x-8x8-event-id`: the same for every retry of one notification.
    public var eventId: String
    /// `x-8x8-retry`: 0 on the first delivery.
    public var retry: Int
    public var tenantId: String?
    public var customerId: String?
    /// The configured endpoint the webhook belongs to; nil for a handover webhook that no
    /// endpoint claims (the worker resolves it by conversation).
    public var endpoint: String?
    public var route: Route
    /// When the ingress received it (milliseconds since 1970).
    public var receivedAt: Int64
    /// `x-8x8-transmission-time` (milliseconds since 1970); changes at each retry.
    public var transmissionTime: Int64?
    /// 8x8's `eventType` as sent (`MESSAGE`, `AGENT_JOINED`, ...).
    public var eventType: String
    public var conversationId: String?
    /// The event's own `timestamp` (milliseconds since 1970).
    public var eventTimestamp: Int64?
    public var signatureVerified: Bool
    public var normalized: NormalizedEvent
    /// The 8x8 body exactly as received.
    public var raw: JSONValue?

    public enum Route: String, Sendable, Hashable, Codable {
        /// `POST /endpoint/{urlToken}`: 8x8 is the bot's channel.
        case endpoint
        /// `POST /handover/eightByEight`: 8x8 is the handover provider.
        case handover
        /// Written by the egress, not by 8x8: a command it gave up on that the conversation's
        /// flow must hear of (a handover 8x8 refused). No signature, no raw body.
        case egress
    }

    public init(
        eventId: String, retry: Int, tenantId: String?, customerId: String?, endpoint: String?, route: Route,
        receivedAt: Int64, transmissionTime: Int64?, eventType: String, conversationId: String?,
        eventTimestamp: Int64?, signatureVerified: Bool, normalized: NormalizedEvent, raw: JSONValue? = nil
    ) {
        self.schema = Self.schemaVersion
        self.eventId = eventId
        self.retry = retry
        self.tenantId = tenantId
        self.customerId = customerId
        self.endpoint = endpoint
        self.route = route
        self.receivedAt = receivedAt
        self.transmissionTime = transmissionTime
        self.eventType = eventType
        self.conversationId = conversationId
        self.eventTimestamp = eventTimestamp
        self.signatureVerified = signatureVerified
        self.normalized = normalized
        self.raw = raw
    }

    /// The Kafka record key: the conversation, so one conversation's events stay in order.
    /// Events without a conversation (unknown types) are keyed by their event id.
    public var recordKey: String { conversationId ?? eventId }

    /// What the egress writes when it gives up on a handover's queue move (`command`, a
    /// `patchConversation`): the conversation's flow learns that no agent is coming. The event
    /// id comes from the command's, so writing it again (a restarted egress) is a duplicate the
    /// worker drops.
    public static func handoverFailed(_ command: OutboundCommand, status: Int?, reason: String, at: Int64) -> InboundEvent {
        var normalized = NormalizedEvent(kind: .handoverFailed)
        normalized.failure = NormalizedEvent.Failure(status: status, reason: reason, causationEventId: command.causationEventId)
        if case .string(let queue)? = command.body["assignment"]?["id"] { normalized.queue = NormalizedEvent.Queue(id: queue, name: nil) }
        return InboundEvent(
            eventId: "handover-failed:\(command.commandId)", retry: 0, tenantId: command.tenantId, customerId: nil,
            endpoint: command.endpoint, route: .egress, receivedAt: at, transmissionTime: nil, eventType: "HANDOVER_FAILED",
            conversationId: command.conversationId, eventTimestamp: at, signatureVerified: false, normalized: normalized)
    }

    /// The record of an event without a raw body (the egress's own events): `raw` left out.
    public var encodedRecord: [UInt8] {
        var json = JSONWriter(capacity: 512)
        writeFields(to: &json)
        json.endObject()
        return json.bytes
    }

    /// The record value, with `rawBody` spliced in verbatim as `raw`: the body was parsed
    /// already, so it is valid JSON, and copying its bytes is cheaper and more faithful than
    /// re-encoding it. Written by hand (the ingress's hot path); `Codable` reads it back.
    public func encodedRecord(rawBody: some Collection<UInt8>) -> [UInt8] {
        // The fields, the normalized event (which repeats the body's text) and the body.
        var json = JSONWriter(capacity: 512 + 2 * rawBody.count)
        writeFields(to: &json)
        json.key("raw")
        // Copied as one block when the bytes are contiguous (they are, from the ingress): a
        // generic element-by-element copy across modules costs a witness call per byte.
        if rawBody.withContiguousStorageIfAvailable({ json.raw(UnsafeRawBufferPointer($0)) }) == nil {
            json.raw(Array(rawBody))
        }
        json.endObject()
        return json.bytes
    }

    /// Opens the record's object and writes every field but `raw`.
    private func writeFields(to json: inout JSONWriter) {
        json.beginObject()
        json.field("schema", schema)
        json.field("eventId", eventId)
        json.field("retry", retry)
        json.field("tenantId", tenantId)
        json.field("customerId", customerId)
        json.field("endpoint", endpoint)
        json.field("route", route.rawValue)
        json.field("receivedAt", receivedAt)
        json.field("transmissionTime", transmissionTime)
        json.field("eventType", eventType)
        json.field("conversationId", conversationId)
        json.field("eventTimestamp", eventTimestamp)
        json.field("signatureVerified", signatureVerified)
        json.key("normalized")
        normalized.write(to: &json)
    }

    /// Reads a record (strict JSON, then field by field), refusing one written under another
    /// schema version.
    public static func decode(_ bytes: some Collection<UInt8>) throws -> InboundEvent {
        let tree: JSONValue
        do {
            // The record nests the webhook body (`raw`) one level below its top.
            tree = try JSONParser.parse(bytes, maxDepth: JSONParser.maxDepth + 1)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: error.description))
        }
        let event = try InboundEvent(record: tree)
        guard event.schema == schemaVersion else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "schema \(event.schema) is not \(schemaVersion)"))
        }
        return event
    }
}

/// What an 8x8 event means, independent of which 8x8 shape (current or legacy) carried it.
/// Only the fields of the event's kind are present.
public struct NormalizedEvent: Sendable, Hashable, Codable {
    public var kind: Kind
    public var text: String?
    public var sender: Participant?
    public var attachments: [Attachment]?
    public var cards: [Card]?
    /// A quick reply or channel button the user tapped.
    public var postback: Postback?
    /// An adaptive card the user submitted.
    public var cardSubmit: CardSubmit?
    /// Who is typing; empty when typing stopped.
    public var typing: [Participant]?
    public var readReceipts: [ReadReceipt]?
    public var state: String?
    public var assignment: Assignment?
    public var user: UserInfo?
    public var channel: String?
    public var msisdn: String?
    public var queue: Queue?
    public var member: Participant?
    /// ACTIVITY's `data.name` (and `data.value` when the kind does not model it).
    public var activity: String?
    public var value: JSONValue?
    /// Why a handover failed (`handoverFailed`).
    public var failure: Failure?

    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        case userMessage, agentMessage, echo, postback, cardSubmit, typing, readReceipt
        case conversationState, queued, memberJoined, memberLeft, transfer, verify, unknown
        /// The egress gave up on a handover's queue move (route `egress`).
        case handoverFailed
    }

    public init(kind: Kind) { self.kind = kind }

    /// Writes the same JSON that `Encodable` would, without its overhead.
    public func write(to json: inout JSONWriter) {
        json.beginObject()
        json.field("kind", kind.rawValue)
        json.field("text", text)
        json.object("sender", sender) { $1.writeMembers(to: &$0) }
        json.array("attachments", attachments) { json, attachment in
            json.element(attachment) { json, attachment in
                json.field("id", attachment.id)
                json.field("type", attachment.type)
                json.field("url", attachment.url)
                json.field("fileName", attachment.fileName)
            }
        }
        json.array("cards", cards) { json, card in
            json.element(card) { json, card in
                json.field("contentType", card.contentType)
                json.field("content", card.content)
            }
        }
        json.object("postback", postback) { json, postback in
            json.field("title", postback.title)
            json.field("payload", postback.payload)
        }
        json.object("cardSubmit", cardSubmit) { json, submit in
            json.field("action", submit.action)
            json.field("data", submit.data)
        }
        json.array("typing", typing, Participant.write)
        json.array("readReceipts", readReceipts) { json, receipt in
            json.element(receipt) { json, receipt in
                json.field("timestamp", receipt.timestamp)
                json.array("users", receipt.users, Participant.write)
            }
        }
        json.field("state", state)
        json.object("assignment", assignment) { json, assignment in
            json.field("type", assignment.type)
            json.field("id", assignment.id)
            json.field("resourceId", assignment.resourceId)
        }
        json.object("user", user) { json, user in
            json.field("name", user.name)
            json.field("userId", user.userId)
            json.field("email", user.email)
            json.field("phone", user.phone)
            json.field("company", user.company)
            json.field("caseId", user.caseId)
            json.field("language", user.language)
            json.field("ipAddress", user.ipAddress)
            json.field("timezoneOffset", user.timezoneOffset)
            json.array("additionalProperties", user.additionalProperties) { json, property in
                json.element(property) { json, property in
                    json.field("key", property.key)
                    json.field("value", property.value)
                    json.field("id", property.id)
                }
            }
        }
        json.field("channel", channel)
        json.field("msisdn", msisdn)
        json.object("queue", queue) { json, queue in
            json.field("id", queue.id)
            json.field("name", queue.name)
        }
        json.object("member", member) { $1.writeMembers(to: &$0) }
        json.field("activity", activity)
        json.field("value", value)
        json.object("failure", failure) { json, failure in
            json.field("status", failure.status)
            json.field("reason", failure.reason)
            json.field("causationEventId", failure.causationEventId)
        }
        json.endObject()
    }

    public struct Participant: Sendable, Hashable, Codable {
        public var id: String?
        public var type: String?
        public var name: String?
        public init(id: String?, type: String?, name: String? = nil) {
            self.id = id
            self.type = type
            self.name = name
        }

        func writeMembers(to json: inout JSONWriter) {
            json.field("id", id)
            json.field("type", type)
            json.field("name", name)
        }

        static func write(_ json: inout JSONWriter, _ participant: Participant) {
            json.element(participant) { $1.writeMembers(to: &$0) }
        }
    }

    public struct Attachment: Sendable, Hashable, Codable {
        public var id: String?
        public var type: String?
        public var url: String?
        public var fileName: String?
        public init(id: String?, type: String?, url: String?, fileName: String?) {
            self.id = id
            self.type = type
            self.url = url
            self.fileName = fileName
        }
    }

    public struct Card: Sendable, Hashable, Codable {
        public var contentType: String?
        public var content: JSONValue?
        public init(contentType: String?, content: JSONValue?) {
            self.contentType = contentType
            self.content = content
        }
    }

    public struct Postback: Sendable, Hashable, Codable {
        public var title: String?
        public var payload: String?
        public init(title: String?, payload: String?) {
            self.title = title
            self.payload = payload
        }
    }

    public struct CardSubmit: Sendable, Hashable, Codable {
        /// `Action.Submit` or `Action.Execute`.
        public var action: String?
        public var data: JSONValue?
        public init(action: String?, data: JSONValue?) {
            self.action = action
            self.data = data
        }
    }

    public struct ReadReceipt: Sendable, Hashable, Codable {
        public var timestamp: Int64?
        public var users: [Participant]
        public init(timestamp: Int64?, users: [Participant]) {
            self.timestamp = timestamp
            self.users = users
        }
    }

    public struct Assignment: Sendable, Hashable, Codable {
        /// `agent`, `queue` or `script`.
        public var type: String?
        public var id: String?
        public var resourceId: String?
        public init(type: String?, id: String?, resourceId: String?) {
            self.type = type
            self.id = id
            self.resourceId = resourceId
        }
    }

    public struct UserInfo: Sendable, Hashable, Codable {
        public var name: String?
        public var userId: String?
        public var email: String?
        public var phone: String?
        public var company: String?
        public var caseId: String?
        public var language: String?
        public var ipAddress: String?
        public var timezoneOffset: Int?
        public var additionalProperties: [Property]?
        public init() {}

        public struct Property: Sendable, Hashable, Codable {
            public var key: String
            public var value: String?
            public var id: String?
            public init(key: String, value: String?, id: String?) {
                self.key = key
                self.value = value
                self.id = id
            }
        }
    }

    public struct Failure: Sendable, Hashable, Codable {
        /// 8x8's last status, when it answered.
        public var status: Int?
        /// The egress's reason for giving up (no user text: a status, a timeout, a policy).
        public var reason: String?
        /// The inbound event whose turn asked for the handover (the command's).
        public var causationEventId: String?
        public init(status: Int?, reason: String?, causationEventId: String? = nil) {
            self.status = status
            self.reason = reason
            self.causationEventId = causationEventId
        }
    }

    public struct Queue: Sendable, Hashable, Codable {
        public var id: String?
        public var name: String?
        public init(id: String?, name: String?) {
            self.id = id
            self.name = name
        }
    }
}
