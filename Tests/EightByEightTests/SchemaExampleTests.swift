import ChatEvents
import EightByEight
import Foundation
import Testing

/// `schemas/examples/inbound-event.v1.*.json` are what the ingress writes for the webhook
/// fixtures. This test keeps them honest: each decodes as an `InboundEvent`, and its
/// `normalized` part is what the normalizer makes of its `raw` part today. `.ci/run` checks
/// them against the JSON Schema with Python's jsonschema.
/// `WRITE_SCHEMA_EXAMPLES=1 swift test --filter SchemaExampleTests` rewrites them.
@Suite struct SchemaExampleTests {
    static let folder = Repository.root.appendingPathComponent("schemas/examples")

    static func example(for name: String, body: Data) throws -> [UInt8] {
        let webhook = try JSONDecoder().decode(WebhookEvent.self, from: body)
        let event = InboundEvent(
            eventId: "evt-\(name)", retry: 0, tenantId: "acme", customerId: "customer-1", endpoint: "support",
            route: .endpoint, receivedAt: 1_713_100_000_120, transmissionTime: 1_713_100_000_100,
            eventType: webhook.eventType, conversationId: webhook.conversationId, eventTimestamp: webhook.timestamp,
            signatureVerified: true, normalized: webhook.normalized
        )
        return event.encodedRecord(rawBody: body.filter { $0 != 0x0A })
    }

    @Test func examplesDecodeAndMatchTheNormalizer() throws {
        let fixtures = try Repository.webhookFixtures().filter { !$0.name.contains("verify") }
        if ProcessInfo.processInfo.environment["WRITE_SCHEMA_EXAMPLES"] == "1" {
            try FileManager.default.createDirectory(at: Self.folder, withIntermediateDirectories: true)
            for fixture in fixtures {
                let record = try JSONSerialization.jsonObject(with: Data(try Self.example(for: fixture.name, body: fixture.body)))
                let pretty = try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                try (pretty + Data("\n".utf8)).write(to: Self.folder.appendingPathComponent("inbound-event.v1.\(fixture.name).json"))
            }
        }
        let examples = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path)
            .filter { $0.hasPrefix("inbound-event.v1.") && $0.hasSuffix(".json") && $0 != Self.egressExample }
        #expect(examples.count == fixtures.count, "one example per published webhook fixture")
        for file in examples {
            let data = try Data(contentsOf: Self.folder.appendingPathComponent(file))
            let event = try InboundEvent.decode(Array(data))
            let raw = try JSONEncoder().encode(try #require(event.raw, "\(file) has raw"))
            let normalized = try JSONDecoder().decode(WebhookEvent.self, from: raw).normalized
            #expect(event.normalized == normalized, "\(file) is out of date: WRITE_SCHEMA_EXAMPLES=1 rewrites it")
        }
    }

    /// The one event the egress writes (no webhook behind it, so no raw body).
    static let egressExample = "inbound-event.v1.egress-handover-failed.json"

    @Test func theEgressExampleIsWhatTheEgressWrites() throws {
        let command = OutboundCommand(
            commandId: "evt-agent/1", conversationId: "ID-0", endpoint: "support", tenantId: "acme", causationEventId: "evt-agent",
            sequence: 1, createdAt: 1_713_100_000_200, receivedAt: 1_713_100_000_120, action: .patchConversation,
            body: .object(["assignment": .object(["type": .string("queue"), "id": .string("112")])]))
        let event = InboundEvent.handoverFailed(command, status: 400, reason: "8x8 refuses the call: 8x8 answered 400 (invalid_queue)", at: 1_713_100_003_000)
        let file = Self.folder.appendingPathComponent(Self.egressExample)
        if ProcessInfo.processInfo.environment["WRITE_SCHEMA_EXAMPLES"] == "1" {
            let record = try JSONSerialization.jsonObject(with: Data(event.encodedRecord))
            let pretty = try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            try (pretty + Data("\n".utf8)).write(to: file)
        }
        let example = try InboundEvent.decode(Array(try Data(contentsOf: file)))
        #expect(example == event, "\(Self.egressExample) is out of date: WRITE_SCHEMA_EXAMPLES=1 rewrites it")
        #expect(example.route == .egress && example.raw == nil && example.normalized.queue?.id == "112")
        #expect(try InboundEvent.decode(event.encodedRecord) == event, "the record reads back")
    }

    @Test func theFieldReaderAgreesWithCodable() throws {
        let examples = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path).filter { $0.hasSuffix(".json") }
        for file in examples {
            let data = try Data(contentsOf: Self.folder.appendingPathComponent(file))
            #expect(try InboundEvent.decode(Array(data)) == JSONDecoder().decode(InboundEvent.self, from: data), "\(file)")
        }
    }

    @Test(arguments: [
        #"{"schema":"eightbyeight.inbound.v1","eventId":"e","retry":"0","route":"endpoint","receivedAt":1,"eventType":"MESSAGE","signatureVerified":true,"normalized":{"kind":"userMessage"}}"#,
        #"{"schema":"eightbyeight.inbound.v1","eventId":"e","retry":0,"route":"sideways","receivedAt":1,"eventType":"MESSAGE","signatureVerified":true,"normalized":{"kind":"userMessage"}}"#,
        #"{"schema":"eightbyeight.inbound.v1","eventId":"e","retry":0,"route":"endpoint","receivedAt":1.5,"eventType":"MESSAGE","signatureVerified":true,"normalized":{"kind":"userMessage"}}"#,
        #"{"schema":"eightbyeight.inbound.v1","eventId":"e","retry":0,"route":"endpoint","receivedAt":1,"eventType":"MESSAGE","signatureVerified":true,"normalized":{"kind":"shouting"}}"#,
        #"{"schema":"eightbyeight.inbound.v1","eventId":"e","retry":0,"route":"endpoint","receivedAt":1,"eventType":"MESSAGE","signatureVerified":true}"#,
        #"{"schema":"eightbyeight.inbound.v1","eventId":"e","retry":0,"route":"endpoint","receivedAt":1,"eventType":"MESSAGE","signatureVerified":true,"normalized":{"kind":"userMessage","sender":[]}}"#,
        #"[1,2,3]"#, #"{"schema":"eightbyeight.inbound.v1""#,
    ])
    func malformedRecordsAreRefused(_ record: String) {
        #expect(throws: DecodingError.self) { try InboundEvent.decode(Array(record.utf8)) }
    }

    @Test func aRecordWithAnotherSchemaVersionIsRefused() throws {
        let record = Array(#"{"schema":"eightbyeight.inbound.v2","eventId":"e","retry":0,"route":"endpoint","receivedAt":1,"eventType":"MESSAGE","signatureVerified":true,"normalized":{"kind":"userMessage"}}"#.utf8)
        #expect(throws: (any Error).self) { try InboundEvent.decode(record) }
    }

    @Test func theRecordCarriesTheRawBodyVerbatim() throws {
        let body = Array(#"{"eventType":"MESSAGE","conversationId":"c","data":{"text":"caf\u00e9 \/ ok","n":1.50}}"#.utf8)
        let record = try Self.example(for: "x", body: Data(body))
        let text = String(decoding: record, as: UTF8.self)
        #expect(text.hasSuffix(#","raw":"# + String(decoding: body, as: UTF8.self) + "}"))
        #expect(try InboundEvent.decode(record).raw?["data"]?["text"] == .string("café / ok"))
    }

    @Test func theHandWrittenRecordIsWhatEncodableWouldWrite() throws {
        var fixtures = try Repository.webhookFixtures()
        // Every field at once, with text that needs escaping.
        fixtures.append(("everything", Data(#"{"eventType":"CONVERSATION_UPDATE","conversationId":"c\"1","timestamp":5,"data":{"state":"active","assignment":{"type":"queue","id":"7","resourceId":"r"},"user":{"name":"Zoë \\ \n\t\u0001","userId":"u","email":"e","phone":"p","company":"c","caseId":"k","language":"de","ipaddress":"::1","timezoneOffset":-60,"additionalProperties":[{"key":"a","value":"b","id":"i"}]},"msisdn":"+49","channel":"SMS"}}"#.utf8)))
        for fixture in fixtures {
            let webhook = try JSONDecoder().decode(WebhookEvent.self, from: fixture.body)
            var event = InboundEvent(
                eventId: "e-\u{1F600}", retry: 2, tenantId: "t", customerId: nil, endpoint: "support", route: .handover,
                receivedAt: 10, transmissionTime: nil, eventType: webhook.eventType, conversationId: webhook.conversationId,
                eventTimestamp: webhook.timestamp, signatureVerified: false, normalized: webhook.normalized
            )
            let written = try JSONDecoder().decode(JSONValue.self, from: Data(event.encodedRecord(rawBody: fixture.body)))
            event.raw = try JSONDecoder().decode(JSONValue.self, from: fixture.body)
            let encoded = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(event))
            #expect(written == encoded, "\(fixture.name)")
        }
    }
}

@Suite("Outbound command schema examples")
struct OutboundExampleTests {
    static let folder = Repository.root.appendingPathComponent("schemas/outbound-examples")

    @Test func everyExampleDecodesAndEveryActionHasOne() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path).filter { $0.hasSuffix(".json") }
        var actions = Set<OutboundCommand.Action>()
        for file in files {
            let command = try OutboundCommand.decode(Array(try Data(contentsOf: Self.folder.appendingPathComponent(file))))
            actions.insert(command.action)
            // What the worker writes by hand reads back as the same value.
            #expect(try OutboundCommand.decode(command.encodedRecord) == command)
        }
        #expect(actions == Set(OutboundCommand.Action.allCases))
    }

    @Test func aCommandOfAnotherSchemaVersionIsRefused() throws {
        var command = OutboundCommand(
            commandId: "e/0", conversationId: "c", endpoint: "support", tenantId: nil, causationEventId: "e", sequence: 0,
            createdAt: 1, receivedAt: 1, action: .typing, body: .object(["authorType": .string("bot")]))
        command.schema = "eightbyeight.outbound.v0"
        #expect(throws: DecodingError.self) { try OutboundCommand.decode(command.encodedRecord) }
    }
}

@Suite("Analytics record schema examples")
struct AnalyticsExampleTests {
    @Test func everyExampleDecodesAndTheHandWrittenRecordReadsBack() throws {
        let folder = Repository.root.appendingPathComponent("schemas/analytics-examples")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }
        #expect(files.count >= 2)
        for file in files {
            let record = try AnalyticsRecord.decode(Array(try Data(contentsOf: folder.appendingPathComponent(file))))
            #expect(try AnalyticsRecord.decode(record.encodedRecord) == record, "\(file)")
        }
    }
}

@Suite("Delivery result and dead letter schema examples")
struct DeliveryRecordExampleTests {
    func examples(_ folder: String) throws -> [[UInt8]] {
        let url = Repository.root.appendingPathComponent("schemas/\(folder)")
        let files = try FileManager.default.contentsOfDirectory(atPath: url.path).filter { $0.hasSuffix(".json") }.sorted()
        return try files.map { Array(try Data(contentsOf: url.appendingPathComponent($0))) }
    }

    @Test func everyExampleDecodesAndTheHandWrittenRecordReadsBack() throws {
        let results = try examples("delivery-examples").map { try DeliveryResult.decode($0) }
        #expect(Set(results.map(\.outcome)) == [.attempting, .delivered])
        for result in results { #expect(try DeliveryResult.decode(result.encodedRecord) == result) }
        let letters = try examples("dead-letter-examples").map { try DeadLetter.decode($0) }
        #expect(letters.count == 3 && letters.contains { $0.replayOf != nil } && letters.contains { $0.raw != nil })
        for letter in letters { #expect(try DeadLetter.decode(letter.encodedRecord) == letter) }
    }

    @Test func aMessageFingerprintIgnoresAttachmentIdsAndCountsCards() {
        func command(_ body: JSONValue, _ action: OutboundCommand.Action = .sendMessage) -> OutboundCommand {
            OutboundCommand(commandId: "e/0", conversationId: "c", endpoint: "s", tenantId: nil, causationEventId: "e", sequence: 0,
                            createdAt: 1, receivedAt: 1, action: action, body: body)
        }
        let text = MessageFingerprint(command: command(.object(["authorType": .string("bot"), "text": .string("Hi")])))
        let withCard = MessageFingerprint(command: command(.object(["text": .string("Hi"), "cards": .array([.object([:])])])))
        let attachment = MessageFingerprint(command: command(.object(["url": .string("https://x/y.pdf")]), .sendAttachment))
        #expect(text == MessageFingerprint(text: "Hi", cards: 0, attachments: 0) && text?.digest != withCard?.digest)
        #expect(attachment == MessageFingerprint(text: "", cards: 0, attachments: 1))
        #expect(MessageFingerprint(command: command(.object(["authorType": .string("bot")]), .typing)) == nil)
        #expect(text?.digest == MessageFingerprint(text: "Hi", cards: 0, attachments: 0).digest, "stable")
    }
}
