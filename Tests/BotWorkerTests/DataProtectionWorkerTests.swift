import BotWorker
import ChatEvents
import Foundation
import Kafka
import Logging
import Testing

@Suite("Data protection in the worker", .serialized)
struct DataProtectionWorkerTests {
    /// Runs a short conversation with these settings and returns the analytics records, the
    /// commands and the log.
    func run(
        _ settings: String, messages: [String] = ["<b>what is my balance</b>", "mail me at jane@example.com"], records: Int? = nil,
        userId: String = "crm-4471"
    ) async throws -> (analytics: [AnalyticsRecord], commands: [OutboundCommand], log: String) {
        let harness = try WorkerHarness(dataProtection: settings)
        let analytics = try harness.reader(.analytics)
        let outbound = try harness.reader(.outbound)
        let capture = LogCapture()
        let worker = try harness.start(logger: capture.logger)
        let producer = try harness.producer()
        var chat = EventFactory(conversation: "conv-dp")
        var user = NormalizedEvent.UserInfo()
        user.userId = userId
        user.ipAddress = "203.0.113.9"
        try await harness.publish([
            chat.make(.conversationState, eventType: "CONVERSATION_UPDATE") {
                $0.state = "active"
                $0.user = user
            },
        ] + messages.map { chat.user($0) }, with: producer)
        // The active event greets (acceptConversationActiveEvent: 2 commands), each message gets an answer.
        try await outbound.wait(60, "the replies") { $0.count >= 2 + messages.count }
        // One record per processed input, the active event included.
        try await analytics.wait(60, "the analytics records") { $0.count >= (records ?? messages.count + 1) }
        try await Task.sleep(for: .milliseconds(300))
        let records = try analytics.messages.map { try AnalyticsRecord.decode($0.value) }
        let commands = try outbound.commands()
        await worker.stop()
        await analytics.close()
        await outbound.close()
        try await producer.shutdown()
        return (records, commands, capture.text)
    }

    @Test("defaults: analytics masked, IP not kept, HTML kept unless sanitized, no user data in the log")
    func defaults() async throws {
        let (analytics, _, log) = try await run("")
        #expect(analytics.count == 3, "one record per processed input")
        let html = try #require(analytics.first { $0.recordId == "conv-dp-e2" })
        #expect(html.text == "<b>what is my balance</b>")
        let message = try #require(analytics.first { $0.recordId == "conv-dp-e3" })
        #expect(message.text == "mail me at <EMAIL>")
        #expect(message.masked && message.userId == "crm-4471" && message.ip == nil, "with maskIPAddress the address is not even kept")
        #expect(message.kind == "userMessage" && !message.path.isEmpty && message.processingMicros > 0 && !message.handover)
        #expect(log.contains("turn"), "the worker logged its turns")
        for secret in ["jane@example.com", "crm-4471", "what is my balance", "203.0.113.9"] {
            #expect(!log.contains(secret), "\(secret) reached the log")
        }
    }

    @Test("a user id that is personal data (a channel's phone number or e-mail address) is masked in analytics; in fields mode too; not with maskAnalytics off")
    func personalUserIds() async throws {
        let email = try await run("", messages: ["hello"], userId: "jane.doe@example.com")
        #expect(!email.analytics.isEmpty && email.analytics.allSatisfy { $0.userId == "<EMAIL>" }, "\(email.analytics.map(\.userId))")
        let phone = try await run("      mode: fields", messages: ["hello"], userId: "+1 415 555 0132")
        #expect(!phone.analytics.isEmpty && phone.analytics.allSatisfy { $0.userId != "+1 415 555 0132" && $0.userId?.contains("555") == false },
                "\(phone.analytics.map(\.userId))")
        let open = try await run("      maskAnalytics: false", messages: ["hello"], userId: "jane.doe@example.com")
        #expect(!open.analytics.isEmpty && open.analytics.allSatisfy { $0.userId == "jane.doe@example.com" })
    }

    @Test("maskAnalytics and maskIPAddress off, sanitizeInput on, maskLogging off")
    func everythingOpen() async throws {
        let (analytics, commands, log) = try await run("""
                  maskAnalytics: false
                  maskIPAddress: false
                  maskLogging: false
                  sanitizeInput: true
            """)
        let html = try #require(analytics.first { $0.recordId == "conv-dp-e2" })
        #expect(html.text == "what is my balance" && html.intent == "balance")
        #expect(commands.contains { $0.body["text"]?.stringValue == "Your balance is 1,234.56 EUR." })
        let message = try #require(analytics.first { $0.recordId == "conv-dp-e3" })
        #expect(message.text == "mail me at jane@example.com")
        #expect(!message.masked && message.ip == "203.0.113.9")
        #expect(log.contains("jane@example.com"), "with maskLogging off the turn's text is logged as is")
    }

    @Test("fields mode stars whole fields; collectAnalytics off writes no records")
    func fieldsAndNoAnalytics() async throws {
        let fields = try await run("      mode: fields")
        let message = try #require(fields.analytics.first { $0.recordId == "conv-dp-e3" })
        #expect(message.text == String(repeating: "*", count: "mail me at jane@example.com".count))
        let none = try await run("      collectAnalytics: false", records: 0)
        #expect(none.analytics.isEmpty)
        #expect(none.commands.count >= 4)
    }

    @Test("configured entities, the hash operator and a custom recognizer shape the records; each record names its endpoint, conversation and time; a handover is flagged")
    func configuredEntitiesAndHandover() async throws {
        let (analytics, commands, _) = try await run("""
                  entities: [EMAIL, MEMBER_NUMBER]
                  operator: hash
                  hashKey: analytics-test-key-0123456789
                  customRecognizers:
                    - { type: MEMBER_NUMBER, pattern: "[0-9]{10}", validator: luhn, contextWords: [member] }
            """, messages: [
                "member 1234567897, card 4111 1111 1111 1111, mail jane@example.com",
                "what is my balance",
                "write to JANE@example.com",
                "agent please",
            ])
        #expect(analytics.count == 5)
        for record in analytics {
            #expect(record.endpoint == "support" && record.conversationId == "conv-dp" && record.time > 0)
        }
        let first = try #require(analytics.first { $0.recordId == "conv-dp-e2" })
        let pseudonyms = first.text.matches(of: /<(MEMBER_NUMBER|EMAIL):[0-9a-f]{16}>/).map { String($0.output.0) }
        #expect(pseudonyms.count == 2, "\(first.text)")
        #expect(first.text.contains("card 4111 1111 1111 1111"), "CREDIT_CARD is not among the configured entities")
        #expect(!first.text.contains("1234567897") && !first.text.contains("jane@example.com"))
        let again = try #require(analytics.first { $0.recordId == "conv-dp-e4" })
        #expect(again.text == "write to \(pseudonyms.last ?? "")", "one pseudonym per address, however it is written")
        let balance = try #require(analytics.first { $0.recordId == "conv-dp-e3" })
        #expect(balance.intent == "balance" && (balance.intentScore ?? 0) > 0.5 && !balance.handover)
        let handover = try #require(analytics.first { $0.recordId == "conv-dp-e5" })
        #expect(handover.handover && handover.path.contains("handover"))
        #expect(commands.contains { $0.action == .patchConversation })
    }
}
