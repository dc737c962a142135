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

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard let eventType = c.lenientString(.eventType), !eventType.isEmpty else {
            throw DecodingError.keyNotFound(CodingKeys.eventType, .init(codingPath: [], debugDescription: "the body has no eventType"))
        }
        self.eventType = eventType
        conversationId = c.lenientString(.conversationId)
        timestamp = c.lenientInt64(.timestamp)
        notificationVersion = c.lenientString(.notificationVersion)
        messageType = c.lenientString(.messageType)

        switch EventType(eventType) {
        case .conversationUpdate:
            payload = .conversationUpdate(c.lenient(ConversationUpdate.self, .data) ?? ConversationUpdate())
        case .queued:
            // v1.0 nests queue fields in `data`; v2 puts them on the envelope.
            if let data = c.lenient(Queued.self, .data) {
                payload = .queued(data)
            } else {
                payload = .queued(Queued(queueId: c.lenientString(.queueId), queueName: c.lenientString(.queueName)))
            }
        case .membersChanged:
            payload = .membersChanged(c.lenient(MembersChanged.self, .data) ?? MembersChanged())
        case .transfer:
            payload = .transfer
        case .message:
            payload = .message(c.lenient(Message.self, .data) ?? Message())
        case .activity:
            payload = .activity(c.lenient(Activity.self, .data) ?? Activity(name: nil, value: nil))
        case .webHookVerify:
            payload = .verify
        case .agentJoined, .agentLeft:
            payload = .legacyAgent(LegacyAgent(agentId: c.lenientString(.agentId), agentName: c.lenientString(.agentName)))
        case .text:
            payload = .legacyText(LegacyText(agentId: c.lenientString(.agentId), agentName: c.lenientString(.agentName), message: c.lenientString(.message)))
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

/// `CONVERSATION_UPDATE`: state, assignment or user information changed.
public struct ConversationUpdate: Sendable, Hashable, Codable {
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

    public var normalizedState: String? { state?.lowercased() }

    enum CodingKeys: String, CodingKey { case state, assignment, user, msisdn, channel }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        state = c.lenientString(.state)
        assignment = c.lenient(Assignment.self, .assignment)
        user = c.lenient(User.self, .user)
        msisdn = c.lenientString(.msisdn)
        channel = c.lenientString(.channel)
    }

    public struct Assignment: Sendable, Hashable, Codable {
        public var type: String?
        public var id: String?
        public var resourceId: String?
        public init(type: String?, id: String?, resourceId: String? = nil) {
            self.type = type
            self.id = id
            self.resourceId = resourceId
        }
        enum CodingKeys: String, CodingKey { case type, id, resourceId }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            type = c.lenientString(.type)
            id = c.lenientString(.id)
            resourceId = c.lenientString(.resourceId)
        }
    }

    public struct User: Sendable, Hashable, Codable {
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

        enum CodingKeys: String, CodingKey {
            case name, userId, email, phone, company, caseId, language, ipaddress, timezoneOffset, additionalProperties
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = c.lenientString(.name)
            userId = c.lenientString(.userId)
            email = c.lenientString(.email)
            phone = c.lenientString(.phone)
            company = c.lenientString(.company)
            caseId = c.lenientString(.caseId)
            language = c.lenientString(.language)
            ipaddress = c.lenientString(.ipaddress)
            timezoneOffset = c.lenientInt64(.timezoneOffset).map { Int(clamping: $0) }
            additionalProperties = c.lenient([Lenient<AdditionalProperty>].self, .additionalProperties)?.compactMap(\.value)
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
        enum CodingKeys: String, CodingKey { case key, value, id }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            guard let key = c.lenientString(.key) else {
                throw DecodingError.keyNotFound(CodingKeys.key, .init(codingPath: c.codingPath, debugDescription: "property without key"))
            }
            self.key = key
            value = c.lenientString(.value)
            id = c.lenientString(.id)
        }
    }
}

/// `QUEUED`: the conversation entered a queue.
public struct Queued: Sendable, Hashable, Codable {
    public var queueId: String?
    public var queueName: String?
    public init(queueId: String?, queueName: String?) {
        self.queueId = queueId
        self.queueName = queueName
    }
    enum CodingKeys: String, CodingKey { case queueId, queueName }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        queueId = c.lenientString(.queueId)
        queueName = c.lenientString(.queueName)
    }
}

/// `MEMBERS_CHANGED`: a member other than the bot joined or left.
public struct MembersChanged: Sendable, Hashable, Codable {
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
    enum CodingKeys: String, CodingKey { case memberType, change, id }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        memberType = c.lenientString(.memberType)
        change = c.lenientString(.change)
        id = c.lenientString(.id)
    }
}

/// `MESSAGE`: a participant added a message (text, attachments, cards).
public struct Message: Sendable, Hashable, Codable {
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

    enum CodingKeys: String, CodingKey { case isEcho, sender, text, attachments, cards }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        isEcho = c.lenientBool(.isEcho)
        sender = c.lenient(Sender.self, .sender)
        text = c.lenientString(.text)
        attachments = c.lenient([Lenient<Attachment>].self, .attachments)?.compactMap(\.value)
        cards = c.lenient([Lenient<Card>].self, .cards)?.compactMap(\.value)
    }

    public struct Sender: Sendable, Hashable, Codable {
        public var id: String?
        /// `user`, `agent`; one 8x8 sample sends "".
        public var type: String?
        public init(id: String?, type: String?) {
            self.id = id
            self.type = type
        }
        enum CodingKeys: String, CodingKey { case id, type }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = c.lenientString(.id)
            type = c.lenientString(.type)
        }
    }

    public struct Attachment: Sendable, Hashable, Codable {
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
        enum CodingKeys: String, CodingKey { case id, type, preSignedUrl, fileName }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = c.lenientString(.id)
            type = c.lenientString(.type)
            preSignedUrl = c.lenientString(.preSignedUrl)
            fileName = c.lenientString(.fileName)
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
        enum CodingKeys: String, CodingKey { case contentType, content }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            contentType = c.lenientString(.contentType)
            content = c.lenient(JSONValue.self, .content)
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

    enum CodingKeys: String, CodingKey { case name, value }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = c.lenientString(.name)
        value = c.lenient(JSONValue.self, .value)
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
        return (data?["title"]?.stringValue, data?["payload"]?.stringValue)
    }

    /// `adaptiveCard/action`: `{type: "Action.Submit" | "Action.Execute", data: {...}}`.
    public var cardAction: (type: String?, data: JSONValue?) {
        (value?["type"]?.stringValue, value?["data"])
    }

    /// `read-receipts`: `[{timestamp, users}]`.
    public var readReceipts: [(timestamp: Int64?, users: [Member])] {
        (value?.arrayValue ?? []).map { receipt in
            (receipt["timestamp"]?.stringValue.flatMap { Int64($0) }, Self.members(receipt["users"]))
        }
    }

    /// A channel button or list reply (WhatsApp, RCS, Viber `interactive/reply` and the like):
    /// the first object among the value's members carrying an id or title.
    public var channelReply: (id: String?, title: String?)? {
        guard let object = value?.objectValue else { return nil }
        for key in ["button_reply", "list_reply", "reply", "postback"] {
            if let reply = object[key], reply["id"] != nil || reply["title"] != nil || reply["payload"] != nil {
                return (reply["id"]?.stringValue ?? reply["payload"]?.stringValue, reply["title"]?.stringValue)
            }
        }
        if object["id"] != nil || object["title"] != nil {
            return (object["id"]?.stringValue, object["title"]?.stringValue)
        }
        return nil
    }

    static func members(_ value: JSONValue?) -> [Member] {
        (value?.arrayValue ?? []).map { Member(id: $0["id"]?.stringValue, type: $0["type"]?.stringValue) }
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

/// Decodes an element of a list, or nothing: one malformed attachment does not lose the
/// message.
struct Lenient<T: Decodable & Sendable>: Decodable, Sendable {
    let value: T?
    init(from decoder: any Decoder) throws {
        value = try? T(from: decoder)
    }
}
