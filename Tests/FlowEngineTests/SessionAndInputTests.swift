import ChatEvents
import Foundation
import Testing
@testable import FlowEngine

@Suite("Session records and input fields")
struct SessionAndInputTests {
    @Test("a session record reads back as the same session")
    func sessionRoundTrip() throws {
        var session = SessionState(conversationId: "c-1", endpoint: "support", tenantId: "acme", now: 1_700_000_000_000)
        session.executionCount = 4
        session.context = ["email": .string("jane@example.com"), "order": .object(["n": .number(3), "ok": .bool(true), "tags": .array([.string("a"), .null])])]
        session.profile = ["name": .string("Jané \"J\" Doe\n")]
        session.ipAddress = "10.0.0.1"
        let position = FlowPosition(flow: "flows/demo.yaml", node: "ask", stack: [.init(flow: "main.yaml", node: "back"), .init(flow: "x.yaml", node: nil)])
        session.waiting = WaitingQuestion(position: position, attempts: 2)
        session.handover = HandoverState(phase: .queued, queueId: "101", agentId: nil, transferring: true, resume: position, requestedByBot: true, node: position)
        session.activationHandled = true
        for id in 0..<70 { session.markProcessed("evt-\(id)") }
        #expect(session.processedEventIds.count == SessionState.processedEventCapacity)
        #expect(session.processedEventIds.first == "evt-6")
        #expect(try SessionState.decode(session.encoded()) == session)

        let empty = SessionState(conversationId: "c-2", endpoint: "support", tenantId: nil, now: 1)
        #expect(try SessionState.decode(empty.encoded()) == empty)
    }

    @Test("a session record of another schema version is refused")
    func otherSchema() throws {
        var session = SessionState(conversationId: "c", endpoint: "e", tenantId: nil, now: 1)
        session.schema = "bot.sessions.v0"
        #expect(throws: DecodingError.self) { try SessionState.decode(session.encoded()) }
    }

    @Test("currentTime matches the Gregorian calendar in UTC", arguments: [
        Int64(0), 951_782_400_123, 1_709_164_799_999, 1_700_000_000_000, -86_400_001, 4_102_444_800_000, 1_234,
    ])
    func currentTime(_ millis: Int64) throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = try #require(TimeZone(identifier: "UTC"))
        let date = Date(timeIntervalSince1970: Double(millis) / 1000)
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let value = TurnInput.currentTime(millis)
        #expect(value["year"] == .number(Double(parts.year!)))
        #expect(value["month"] == .number(Double(parts.month!)))
        #expect(value["day"] == .number(Double(parts.day!)))
        #expect(value["hour"] == .number(Double(parts.hour!)))
        #expect(value["minute"] == .number(Double(parts.minute!)))
        #expect(value["second"] == .number(Double(parts.second!)))
        #expect(value["weekday"] == .number(Double(parts.weekday!)))
        #expect(value["milliseconds"] == .number(Double((millis % 1000 + 1000) % 1000)))
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        #expect(value["ISODate"]?.stringValue == formatter.string(from: date))
    }
}
