public import Foundation
public import ChatEvents

/// One Chat Gateway webhook body (spec section 4): the common envelope and the data of its
/// event type. Current (v1.0) and legacy (v2) shapes decode into the same type; an event type
/// this code does not know is kept as `.unknown` with its name, never rejected.
public struct WebhookEvent: Sendable, Hashable, Codable {
    /// `eventType` exactly as sent.
    public var eventType: String
    public var conversationId: String?
    /// Unix milliseconds.
    public var timestamp: Int64?
    /// `WEB_HOOK_VERIFY` carries it (`Chat Gateway v1.0`, legacy `v2.0`).
    public var notificationVersion: String?
    /// Legacy v2 events carry `messageType` (`SYSTEM`, `AGENT`, ...).
    public var messageType: String?
    public var payload: Payload

    public enum Payload: Sendable, Hashable {
        case conversationUpdate(ConversationUpdate)
        case queued(Queued)
        case membersChanged(MembersChanged)
        case transfer
        case message(Message)
        case activity(Activity)
        case verify
        /// Legacy `AGENT_JOINED` / `AGENT_LEFT`.
        case legacyAgent(LegacyAgent)
        /// Legacy `TEXT`.
        case legacyText(LegacyText)
        case unknown
    }

    public var kind: EventType { EventType(eventType) }

    enum CodingKeys: String, CodingKey {
        case eventType, conversationId, timestamp, notificationVersion, messageType, data
        // Legacy v2 fields sit on the envelope.
        case queueId, queueName, agentId, agentName, message
    }

    public init(eventType: String, conversationId: String?, timestamp: Int64?, notificationVersion: String? = nil, messageType: String? = nil, payload: Payload) {
        self.eventType = eventType
        self.conversationId = conversationId
        self.timestamp = timestamp
        self.notificationVersion = notificationVersion
        self.messageType = messageType
        self.payload = payload
    }

    /// Reads a webhook body: strict JSON, lenient 8x8 fields.
    public static func decode(_ body: some Collection<UInt8>) throws -> WebhookEvent {
        try WebhookEvent(json: JSONParser.parse(body))
    }

    public init(from decoder: any Decoder) throws {
        try self.init(json: JSONValue(from: decoder))
    }

    /// Reads the event from parsed JSON. Only a missing `eventType` (or a body that is not an
    /// object) is an error; any other field of an unexpected type is treated as absent.
    public init(json: JSONValue) throws {
        guard case .object(let c) = json else {
            throw DecodingError.typeMismatch([String: JSONValue].self, .init(codingPath: [], debugDescription: "the body is not a JSON object"))
        }
        guard let eventType = c["eventType"]?.lenientString, !eventType.isEmpty else {
            throw DecodingError.keyNotFound(CodingKeys.eventType, .init(codingPath: [], debugDescription: "the body has no eventType"))
        }
        self.eventType = eventType
        conversationId = c["conversationId"]?.lenientString
        timestamp = c["timestamp"]?.lenientInt64
        notificationVersion = c["notificationVersion"]?.lenientString
        messageType = c["messageType"]?.lenientString
        let data = c["data"]?.objectValue

        switch EventType(eventType) {
        case .conversationUpdate:
            payload = .conversationUpdate(ConversationUpdate(json: data))
        case .queued:
            // v1.0 nests queue fields in `data`; v2 puts them on the envelope.
            payload = .queued(Queued(json: data ?? c))
        case .membersChanged:
            payload = .membersChanged(MembersChanged(json: data))
        case .transfer:
            payload = .transfer
        case .message:
            payload = .message(Message(json: data))
        case .activity:
            payload = .activity(Activity(name: data?["name"]?.lenientString, value: data?["value"]))
        case .webHookVerify:
            payload = .verify
        case .agentJoined, .agentLeft:
            payload = .legacyAgent(LegacyAgent(agentId: c["agentId"]?.lenientString, agentName: c["agentName"]?.lenientString))
        case .text:
            payload = .legacyText(LegacyText(agentId: c["agentId"]?.lenientString, agentName: c["agentName"]?.lenientString, message: c["message"]?.lenientString))
        case .unknown:
            payload = .unknown
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(eventType, forKey: .eventType)
        try c.encodeIfPresent(notificationVersion, forKey: .notificationVersion)
        try c.encodeIfPresent(messageType, forKey: .messageType)
        try c.encodeIfPresent(conversationId, forKey: .conversationId)
        try c.encodeIfPresent(timestamp, forKey: .timestamp)
        switch payload {
        case .conversationUpdate(let data): try c.encode(data, forKey: .data)
        case .queued(let data):
            if messageType != nil {
                try c.encodeIfPresent(data.queueId, forKey: .queueId)
                try c.encodeIfPresent(data.queueName, forKey: .queueName)
            } else {
                try c.encode(data, forKey: .data)
            }
        case .membersChanged(let data): try c.encode(data, forKey: .data)
        case .message(let data): try c.encode(data, forKey: .data)
        case .activity(let data): try c.encode(data, forKey: .data)
        case .legacyAgent(let agent):
            try c.encodeIfPresent(agent.agentId, forKey: .agentId)
            try c.encodeIfPresent(agent.agentName, forKey: .agentName)
        case .legacyText(let text):
            try c.encodeIfPresent(text.agentId, forKey: .agentId)
            try c.encodeIfPresent(text.agentName, forKey: .agentName)
            try c.encodeIfPresent(text.message, forKey: .message)
        case .transfer, .verify, .unknown:
            break
        }
    }
}

/// The event types of Chat Gateway v1.0 and the legacy v2 API.
public enum EventType: Sendable, Hashable {
    case conversationUpdate, queued, membersChanged, transfer, message, activity, webHookVerify
    case agentJoined, agentLeft, text
    case unknown

    public init(_ raw: String) {
        switch raw.uppercased() {
        case "CONVERSATION_UPDATE": self = .conversationUpdate
        case "QUEUED": self = .queued
        case "MEMBERS_CHANGED": self = .membersChanged
        case "TRANSFER": self = .transfer
        case "MESSAGE": self = .message
        case "ACTIVITY": self = .activity
        case "WEB_HOOK_VERIFY", "VERIFY_WEBHOOK": self = .webHookVerify
        case "AGENT_JOINED": self = .agentJoined
        case "AGENT_LEFT": self = .agentLeft
        case "TEXT", "TEXT_MESSAGE": self = .text
        default: self = .unknown
        }
    }
}

// MARK: - Event data
//
// Each type reads itself from parsed JSON leniently (a field of the wrong type is absent) and
// decodes through the same path when used with `Decodable`.

/// Decodable through `init(json:)`, so `JSONDecoder` and the ingress read alike.
protocol JSONObjectReadable: Decodable {
    init(json: [String: JSONValue]?)
}

extension JSONObjectReadable {
    public init(from decoder: any Decoder) throws {
        self.init(json: try JSONValue(from: decoder).objectValue)
    }
}

extension JSONValue {
    /// A string, or a number written as one (8x8 sends ids either way).
    var lenientString: String? {
        switch self {
        case .string(let value): value
        case .number: stringValue
        default: nil
        }
    }

    /// A whole number, or a string holding one, within ±2^53: what a JSON number holds
    /// exactly, and what the inbound record's readers accept.
    var lenientInt64: Int64? {
        let number: Int64? = switch self {
        case .number(let value): value.isFinite && abs(value) < 9.2e18 ? Int64(value) : nil
        case .string(let value): Int64(value.trimmingCharacters(in: .whitespaces))
        default: nil
        }
        guard let number, JSONInteger.holds(number) else { return nil }
        return number
    }

    /// A boolean, or "true"/"false".
    var lenientBool: Bool? {
        switch self {
        case .bool(let value): value
        case .string(let value): value.lowercased() == "true" ? true : value.lowercased() == "false" ? false : nil
        // 1 and 0, as some serializers write flags.
        case .number(let value): value == 1 ? true : value == 0 ? false : nil
        default: nil
        }
    }
}

/// `CONVERSATION_UPDATE`: state, assignment or user information changed.
public struct ConversationUpdate: Sendable, Hashable, Codable, JSONObjectReadable {
    /// `created`, `active` or `idle`; 8x8 sends either case, so compare with `normalizedState`.
    public var state: String?
    public var assignment: Assignment?
    public var user: User?
    public var msisdn: String?
    public var channel: String?

    public init(state: String? = nil, assignment: Assignment? = nil, user: User? = nil, msisdn: String? = nil, channel: String? = nil) {
        self.state = state
        self.assignment = assignment
        self.user = user
        self.msisdn = msisdn
        self.channel = channel
    }

    init(json c: [String: JSONValue]?) {
        state = c?["state"]?.lenientString
        assignment = c?["assignment"]?.objectValue.map { Assignment(json: $0) }
        user = c?["user"]?.objectValue.map { User(json: $0) }
        msisdn = c?["msisdn"]?.lenientString
        channel = c?["channel"]?.lenientString
    }

    public var normalizedState: String? { state?.lowercased() }

    public struct Assignment: Sendable, Hashable, Codable, JSONObjectReadable {
        public var type: String?
        public var id: String?
        public var resourceId: String?
        public init(type: String?, id: String?, resourceId: String? = nil) {
            self.type = type
            self.id = id
            self.resourceId = resourceId
        }
        init(json c: [String: JSONValue]?) {
            type = c?["type"]?.lenientString
            id = c?["id"]?.lenientString
            resourceId = c?["resourceId"]?.lenientString
        }
    }

    public struct User: Sendable, Hashable, Codable, JSONObjectReadable {
        public var name: String?
        public var userId: String?
        public var email: String?
        public var phone: String?
        public var company: String?
        public var caseId: String?
        public var language: String?
        public var ipaddress: String?
        public var timezoneOffset: Int?
        public var additionalProperties: [AdditionalProperty]?

        public init() {}

        init(json c: [String: JSONValue]?) {
            name = c?["name"]?.lenientString
            userId = c?["userId"]?.lenientString
            email = c?["email"]?.lenientString
            phone = c?["phone"]?.lenientString
            company = c?["company"]?.lenientString
            caseId = c?["caseId"]?.lenientString
            language = c?["language"]?.lenientString
            ipaddress = c?["ipaddress"]?.lenientString
            timezoneOffset = c?["timezoneOffset"]?.lenientInt64.map { Int(clamping: $0) }
            // A property without a key is dropped, not the event.
            additionalProperties = c?["additionalProperties"]?.arrayValue?.compactMap { item in
                item.objectValue.flatMap { property in
                    property["key"]?.lenientString.map { AdditionalProperty(key: $0, value: property["value"]?.lenientString, id: property["id"]?.lenientString) }
                }
            }
        }
    }

    public struct AdditionalProperty: Sendable, Hashable, Codable {
        public var key: String
        public var value: String?
        public var id: String?
        public init(key: String, value: String?, id: String? = nil) {
            self.key = key
            self.value = value
            self.id = id
        }
    }
}

/// `QUEUED`: the conversation entered a queue.
public struct Queued: Sendable, Hashable, Codable, JSONObjectReadable {
    public var queueId: String?
    public var queueName: String?
    public init(queueId: String?, queueName: String?) {
        self.queueId = queueId
        self.queueName = queueName
    }
    init(json c: [String: JSONValue]?) {
        queueId = c?["queueId"]?.lenientString
        queueName = c?["queueName"]?.lenientString
    }
}

/// `MEMBERS_CHANGED`: a member other than the bot joined or left.
public struct MembersChanged: Sendable, Hashable, Codable, JSONObjectReadable {
    /// `user` or `agent`.
    public var memberType: String?
    /// `joined` or `left`.
    public var change: String?
    public var id: String?
    public init(memberType: String? = nil, change: String? = nil, id: String? = nil) {
        self.memberType = memberType
        self.change = change
        self.id = id
    }
    init(json c: [String: JSONValue]?) {
        memberType = c?["memberType"]?.lenientString
        change = c?["change"]?.lenientString
        id = c?["id"]?.lenientString
    }
}

/// `MESSAGE`: a participant added a message (text, attachments, cards).
public struct Message: Sendable, Hashable, Codable, JSONObjectReadable {
    /// True when the bot's own message comes back.
    public var isEcho: Bool?
    public var sender: Sender?
    public var text: String?
    public var attachments: [Attachment]?
    public var cards: [Card]?

    public init(isEcho: Bool? = nil, sender: Sender? = nil, text: String? = nil, attachments: [Attachment]? = nil, cards: [Card]? = nil) {
        self.isEcho = isEcho
        self.sender = sender
        self.text = text
        self.attachments = attachments
        self.cards = cards
    }

    init(json c: [String: JSONValue]?) {
        isEcho = c?["isEcho"]?.lenientBool
        sender = c?["sender"]?.objectValue.map { Sender(id: $0["id"]?.lenientString, type: $0["type"]?.lenientString) }
        text = c?["text"]?.lenientString
        // One malformed attachment or card does not lose the message.
        attachments = c?["attachments"]?.arrayValue?.compactMap { $0.objectValue.map { Attachment(json: $0) } }
        cards = c?["cards"]?.arrayValue?.compactMap { $0.objectValue.map { Card(contentType: $0["contentType"]?.lenientString, content: $0["content"]) } }
    }

    public struct Sender: Sendable, Hashable, Codable {
        public var id: String?
        /// `user`, `agent`; one 8x8 sample sends "".
        public var type: String?
        public init(id: String?, type: String?) {
            self.id = id
            self.type = type
        }
    }

    public struct Attachment: Sendable, Hashable, Codable, JSONObjectReadable {
        public var id: String?
        /// `image`, `video`, `audio` or `file`.
        public var type: String?
        public var preSignedUrl: String?
        public var fileName: String?
        public init(id: String?, type: String? = nil, preSignedUrl: String? = nil, fileName: String? = nil) {
            self.id = id
            self.type = type
            self.preSignedUrl = preSignedUrl
            self.fileName = fileName
        }
        init(json c: [String: JSONValue]?) {
            id = c?["id"]?.lenientString
            type = c?["type"]?.lenientString
            preSignedUrl = c?["preSignedUrl"]?.lenientString
            fileName = c?["fileName"]?.lenientString
        }
    }

    public struct Card: Sendable, Hashable, Codable {
        /// e.g. `application/vnd.microsoft.card.adaptive`.
        public var contentType: String?
        public var content: JSONValue?
        public init(contentType: String?, content: JSONValue?) {
            self.contentType = contentType
            self.content = content
        }
    }
}

/// `ACTIVITY`: a non-message action, its subtype in `name`. The value's shape depends on
/// the subtype (and on the channel for CPaaS subtypes), so it is kept as JSON and read
/// through the typed accessors below.
public struct Activity: Sendable, Hashable, Codable {
    public var name: String?
    public var value: JSONValue?

    public init(name: String?, value: JSONValue?) {
        self.name = name
        self.value = value
    }

    public struct Member: Sendable, Hashable {
        public var id: String?
        public var type: String?
    }

    public enum Subtype: Sendable, Hashable {
        case typing, adaptiveCardAction, quickReplyAction, readReceipts, other(String)
    }

    public var subtype: Subtype {
        switch name?.lowercased() {
        case "typing": .typing
        case "adaptivecard/action": .adaptiveCardAction
        case "quickreply/action": .quickReplyAction
        case "read-receipts", "readreceipts", "read-receipt": .readReceipts
        default: .other(name ?? "")
        }
    }

    /// `typing`: who is typing; empty means typing stopped.
    public var typingUsers: [Member] {
        Self.members(value?["users"])
    }

    /// `quickReply/action`: `{type: "postback", data: {title, payload}}`.
    public var quickReply: (title: String?, payload: String?) {
        let data = value?["data"]
        return (data?["title"]?.lenientString, data?["payload"]?.lenientString)
    }

    /// `adaptiveCard/action`: `{type: "Action.Submit" | "Action.Execute", data: {...}}`.
    public var cardAction: (type: String?, data: JSONValue?) {
        (value?["type"]?.lenientString, value?["data"])
    }

    /// `read-receipts`: `[{timestamp, users}]`.
    public var readReceipts: [(timestamp: Int64?, users: [Member])] {
        (value?.arrayValue ?? []).map { receipt in
            (receipt["timestamp"]?.lenientInt64, Self.members(receipt["users"]))
        }
    }

    /// A channel button or list reply (WhatsApp, RCS, Viber `interactive/reply` and the like):
    /// the first object among the value's members carrying an id or title. An id or title of
    /// the value itself counts only for a subtype named as a reply (`…reply…`, `…postback…`,
    /// `…button…`): a delivery status (`message/status` with the message's id) is no answer.
    public var channelReply: (id: String?, title: String?)? {
        guard let object = value?.objectValue else { return nil }
        for key in ["button_reply", "list_reply", "reply", "postback"] {
            if let reply = object[key], reply["id"] != nil || reply["title"] != nil || reply["payload"] != nil {
                return (reply["id"]?.lenientString ?? reply["payload"]?.lenientString, reply["title"]?.lenientString)
            }
        }
        let subtype = name?.lowercased() ?? ""
        guard ["reply", "postback", "button"].contains(where: { subtype.contains($0) }) else { return nil }
        if object["id"] != nil || object["title"] != nil {
            return (object["id"]?.lenientString, object["title"]?.lenientString)
        }
        return nil
    }

    static func members(_ value: JSONValue?) -> [Member] {
        (value?.arrayValue ?? []).map { Member(id: $0["id"]?.lenientString, type: $0["type"]?.lenientString) }
    }
}

/// Legacy v2 `AGENT_JOINED` / `AGENT_LEFT`.
public struct LegacyAgent: Sendable, Hashable {
    public var agentId: String?
    public var agentName: String?
    public init(agentId: String?, agentName: String?) {
        self.agentId = agentId
        self.agentName = agentName
    }
}

/// Legacy v2 `TEXT`: a message, from the agent unless `messageType` says otherwise.
public struct LegacyText: Sendable, Hashable {
    public var agentId: String?
    public var agentName: String?
    public var message: String?
    public init(agentId: String?, agentName: String?, message: String?) {
        self.agentId = agentId
        self.agentName = agentName
        self.message = message
    }
}
