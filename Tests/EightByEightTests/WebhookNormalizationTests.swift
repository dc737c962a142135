import ChatEvents
import EightByEight
import Foundation
import Testing

@Suite struct WebhookNormalizationTests {
    /// Every fixture (current and legacy 8x8 shapes) and the kind it must normalize to.
    static let expectedKinds: [String: NormalizedEvent.Kind] = [
        "conversation-update-active": .conversationState,
        "conversation-update-uppercase": .conversationState,
        "queued": .queued,
        "members-changed-joined": .memberJoined,
        "members-changed-left": .memberLeft,
        "transfer": .transfer,
        "message-user": .userMessage,
        "message-agent": .agentMessage,
        "message-echo": .echo,
        "message-empty-sender-type": .userMessage,
        "activity-typing": .typing,
        "activity-typing-stopped": .typing,
        "activity-quick-reply": .postback,
        "activity-adaptive-card": .cardSubmit,
        "activity-read-receipts": .readReceipt,
        "activity-whatsapp-button": .postback,
        "activity-unknown": .unknown,
        "web-hook-verify": .verify,
        "legacy-agent-joined": .memberJoined,
        "legacy-agent-left": .memberLeft,
        "legacy-text": .agentMessage,
        "legacy-queued": .queued,
        "legacy-web-hook-verify": .verify,
        "unknown-event": .unknown,
    ]

    func decode(_ name: String) throws -> WebhookEvent {
        try JSONDecoder().decode(WebhookEvent.self, from: Repository.webhook(name))
    }

    @Test func everyFixtureNormalizesToItsKind() throws {
        let fixtures = try Repository.webhookFixtures()
        #expect(Set(fixtures.map(\.name)) == Set(Self.expectedKinds.keys), "each fixture has an expected kind")
        for fixture in fixtures {
            let event = try JSONDecoder().decode(WebhookEvent.self, from: fixture.body)
            #expect(event.normalized.kind == Self.expectedKinds[fixture.name], "\(fixture.name)")
        }
        // Every kind of spec section 10 is reached by some fixture (handoverFailed is the
        // egress's, never a webhook's).
        #expect(Set(Self.expectedKinds.values) == Set(NormalizedEvent.Kind.allCases).subtracting([.handoverFailed]))
    }

    @Test func conversationUpdateCarriesStateAssignmentAndUser() throws {
        let event = try decode("conversation-update-active").normalized
        #expect(event.state == "active")
        #expect(event.assignment == .init(type: "agent", id: "agent-abc-123", resourceId: "resource-123"))
        #expect(event.user?.userId == "user-456")
        #expect(event.user?.ipAddress == "192.168.1.1")
        #expect(event.user?.timezoneOffset == -300)
        #expect(event.user?.additionalProperties == [.init(key: "department", value: "support", id: nil)])
        #expect(event.channel == "WhatsApp")
        #expect(event.msisdn == "+1234567890")
    }

    @Test func inconsistentTypesAndCaseAreReadLeniently() throws {
        let raw = try decode("conversation-update-uppercase")
        #expect(raw.timestamp == 1_713_100_000_000, "timestamp sent as a string")
        let event = raw.normalized
        #expect(event.state == "active", "state compared case-insensitively")
        #expect(event.assignment?.type == "script")
        #expect(event.assignment?.id == "42", "numeric id read as a string")
        #expect(event.user?.userId == "987654")
        #expect(event.user?.timezoneOffset == 60)
        #expect(event.user?.additionalProperties?.map(\.key) == ["tier"], "a property without key is dropped, not the event")
    }

    @Test func messagesKeepTextAttachmentsCardsAndSender() throws {
        let agent = try decode("message-agent").normalized
        #expect(agent.text == "Hello, how can I help you?")
        #expect(agent.sender == .init(id: "agent-abc-123", type: "agent"))
        #expect(agent.attachments == [.init(id: "att-001", type: "image", url: "https://storage.example.com/attachments/att-001?signature=abc", fileName: "screenshot.png")])
        #expect(agent.cards?.first?.contentType == "application/vnd.microsoft.card.adaptive")
        let user = try decode("message-empty-sender-type").normalized
        #expect(user.sender == .init(id: "user-456", type: nil))
        #expect(user.attachments == [.init(id: "att-2", type: nil, url: nil, fileName: nil)])
    }

    @Test func activitiesCarryTheirValues() throws {
        let typing = try decode("activity-typing").normalized
        #expect(typing.typing == [.init(id: "user-456", type: "user")])
        #expect(try decode("activity-typing-stopped").normalized.typing == [])
        let reply = try decode("activity-quick-reply").normalized
        #expect(reply.postback == .init(title: "Track my order", payload: "TRACK_ORDER"))
        #expect(reply.text == "TRACK_ORDER")
        let card = try decode("activity-adaptive-card").normalized
        #expect(card.cardSubmit == .init(action: "Action.Submit", data: .object(["rating": .string("5"), "comment": .string("great")])))
        let receipts = try decode("activity-read-receipts").normalized
        #expect(receipts.readReceipts == [.init(timestamp: 1_713_100_000_500, users: [.init(id: "user-456", type: "user")])])
        let button = try decode("activity-whatsapp-button").normalized
        #expect(button.postback == .init(title: "Yes", payload: "btn-1"))
        let other = try decode("activity-unknown").normalized
        #expect(other.activity == "location/share")
        #expect(other.value == .object(["lat": .number(1.5), "lon": .number(2.25)]))
    }

    @Test("8x8's own notices (sender type system) and delivery statuses are nobody's answer: unknown, kept with their text and value; a flag sent as 1 counts")
    func systemMessagesAndStatusesAreNotUserInput() throws {
        func normalize(_ json: String) throws -> NormalizedEvent { try JSONDecoder().decode(WebhookEvent.self, from: Data(json.utf8)).normalized }
        let notice = try normalize(#"{"eventType":"MESSAGE","conversationId":"c1","data":{"sender":{"id":"sys","type":"SYSTEM"},"text":"Agent John joined"}}"#)
        #expect(notice.kind == .unknown && notice.text == "Agent John joined" && notice.sender == .init(id: "sys", type: "system"))
        let status = try normalize(#"{"eventType":"ACTIVITY","conversationId":"c1","data":{"name":"message/status","value":{"id":"wamid.X","status":"delivered"}}}"#)
        #expect(status.kind == .unknown && status.activity == "message/status")
        let reply = try normalize(#"{"eventType":"ACTIVITY","conversationId":"c1","data":{"name":"interactive/reply","value":{"id":"btn-2","title":"No"}}}"#)
        #expect(reply.kind == .postback && reply.postback == .init(title: "No", payload: "btn-2"))
        let echo = try normalize(#"{"eventType":"MESSAGE","conversationId":"c1","data":{"isEcho":1,"sender":{"id":"u","type":"user"},"text":"mirrored"}}"#)
        #expect(echo.kind == .echo)
        #expect(try normalize(#"{"eventType":"MESSAGE","conversationId":"c1","data":{"isEcho":0,"sender":{"type":"user"},"text":"hi"}}"#).kind == .userMessage)
    }

    @Test func legacyShapesMapToTheCurrentModel() throws {
        let joined = try decode("legacy-agent-joined").normalized
        #expect(joined.member == .init(id: "agent-7", type: "agent", name: "Alice"))
        let text = try decode("legacy-text").normalized
        #expect(text.text == "Let me check that for you.")
        #expect(text.sender?.id == "agent-7")
        let queued = try decode("legacy-queued").normalized
        #expect(queued.queue == .init(id: "101", name: "Support"))
        let visitor = try JSONDecoder().decode(WebhookEvent.self, from: Data(#"{"eventType":"TEXT","messageType":"VISITOR","conversationId":"c","message":"hi"}"#.utf8))
        #expect(visitor.normalized.kind == .userMessage)
    }

    @Test func unknownEventTypesAreKeptNotRejected() throws {
        let event = try decode("unknown-event")
        #expect(event.eventType == "CONVERSATION_SUMMARY")
        #expect(event.conversationId == "ID-0")
        #expect(event.normalized.kind == .unknown)
    }

    @Test func bodiesThatAreNotEventsAreRejected() {
        for body in [#"[]"#, #"{"conversationId":"x"}"#, #"{"eventType":""}"#, #"{"eventType":"MESSAGE""#, "null", "42"] {
            #expect(throws: (any Error).self, "\(body)") { try JSONDecoder().decode(WebhookEvent.self, from: Data(body.utf8)) }
        }
    }

    @Test func encodingRoundTripsEveryFixture() throws {
        for fixture in try Repository.webhookFixtures() {
            let event = try JSONDecoder().decode(WebhookEvent.self, from: fixture.body)
            let again = try JSONDecoder().decode(WebhookEvent.self, from: JSONEncoder().encode(event))
            #expect(again == event, "\(fixture.name)")
        }
    }
}

@Suite struct LenientDecodableTests {
    @Test func decodableGoesThroughTheLenientReader() throws {
        // Codable's synthesized decoding would reject these types; the lenient reader keeps the rest.
        let update = try JSONDecoder().decode(ConversationUpdate.self, from: Data(#"{"state":5,"assignment":"x","channel":"SMS"}"#.utf8))
        #expect(update.state == "5")
        #expect(update.assignment == nil)
        #expect(update.channel == "SMS")
        let message = try JSONDecoder().decode(Message.self, from: Data(#"{"isEcho":"TRUE","attachments":[1,{"id":2}],"text":["no"]}"#.utf8))
        #expect(message.isEcho == true)
        #expect(message.attachments == [.init(id: "2")])
        #expect(message.text == nil)
    }

    @Test func theFastReaderAndJSONDecoderAgreeOnEveryFixture() throws {
        for fixture in try Repository.webhookFixtures() {
            #expect(try WebhookEvent.decode(fixture.body) == JSONDecoder().decode(WebhookEvent.self, from: fixture.body), "\(fixture.name)")
        }
    }
}
