public import ChatEvents
import Foundation

/// The Input object a flow sees each turn (Cognigy's `input`), as JSON for templates and
/// conditions.
public struct TurnInput: Sendable {
    public var text: String
    public var kind: NormalizedEvent.Kind
    public var intent: IntentMatcher.Score?
    public var slots: [String: JSONValue]
    /// `input.handover.status` when the turn resumes after a handover.
    public var handoverStatus: String?
    var object: [String: JSONValue]

    /// Builds the input for `event` in `session`.
    public init(event: InboundEvent, session: SessionState, maskIP: Bool, now: Int64) {
        let normalized = event.normalized
        var data: [String: JSONValue] = ["request": event.raw ?? .null]
        switch normalized.kind {
        case .postback:
            text = normalized.postback?.payload ?? normalized.postback?.title ?? ""
        case .cardSubmit:
            let submitted = normalized.cardSubmit?.data?.objectValue ?? [:]
            for (key, value) in submitted where key != "request" { data[key] = value }
            text = submitted["payload"]?.stringValue ?? ""
        case .userMessage:
            text = normalized.text ?? ""
            if let attachments = normalized.attachments, !attachments.isEmpty {
                data["attachments"] = .array(attachments.map { attachment in
                    var file: [String: JSONValue] = [:]
                    if let name = attachment.fileName { file["name"] = .string(name) }
                    if let url = attachment.url { file["url"] = .string(url) }
                    if let type = attachment.type { file["type"] = .string(type) }
                    if let id = attachment.id { file["id"] = .string(id) }
                    return .object(file)
                })
            }
        default:
            text = ""
        }
        kind = normalized.kind
        slots = AnswerValidation.slots(in: text)
        let conversation = event.conversationId ?? session.conversationId
        object = [
            "text": .string(text),
            "data": .object(data),
            "userId": session.profile["userId"] ?? .string(conversation),
            "sessionId": .string(conversation),
            "conversationId": .string(conversation),
            "inputId": .string(event.eventId),
            "channel": .string("eightByEight"),
            "endpointType": .string("eightByEight"),
            "endpoint": .string(session.endpoint),
            "kind": .string(normalized.kind.rawValue),
            "eventType": .string(event.eventType),
            "execution": .number(Double(session.executionCount)),
            "language": session.profile["language"] ?? .null,
            "ip": maskIP ? .null : (session.ipAddress.map(JSONValue.string) ?? .null),
            "user": .object(session.profile),
            "currentTime": Self.currentTime(now),
            "slots": .object(slots),
            "intent": .null,
            "intentScore": .null,
        ]
    }

    mutating func setIntent(_ score: IntentMatcher.Score?, ranking: [IntentMatcher.Score]) {
        intent = score
        object["intent"] = score.map { .string($0.intent) } ?? .null
        object["intentScore"] = score.map { .number(($0.score * 1000).rounded() / 1000) } ?? .null
        if !ranking.isEmpty {
            object["intentRanking"] = .array(ranking.prefix(3).map {
                .object(["intent": .string($0.intent), "score": .number(($0.score * 1000).rounded() / 1000)])
            })
        }
    }

    mutating func setHandoverStatus(_ status: String) {
        handoverStatus = status
        object["handover"] = .object(["status": .string(status)])
    }

    mutating func setExecution(_ count: Int) {
        object["execution"] = .number(Double(count))
    }

    public var json: JSONValue { .object(object) }

    public subscript(path: [String]) -> JSONValue? {
        guard let first = path.first else { return json }
        var value = object[first]
        for key in path.dropFirst() { value = value?[key] }
        return value
    }

    static func currentTime(_ now: Int64) -> JSONValue {
        let date = Date(timeIntervalSince1970: Double(now) / 1000)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .nanosecond, .weekday], from: date)
        let weekdays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        let weekday = parts.weekday ?? 1
        let milliseconds = (parts.nanosecond ?? 0) / 1_000_000
        let iso = String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0,
            parts.hour ?? 0, parts.minute ?? 0, parts.second ?? 0, milliseconds)
        return .object([
            "year": .number(Double(parts.year ?? 0)), "month": .number(Double(parts.month ?? 0)),
            "day": .number(Double(parts.day ?? 0)), "hour": .number(Double(parts.hour ?? 0)),
            "minute": .number(Double(parts.minute ?? 0)), "second": .number(Double(parts.second ?? 0)),
            "milliseconds": .number(Double(milliseconds)), "weekday": .number(Double(weekday)),
            "dayOfWeek": .string(weekdays[(weekday - 1) % 7]), "ISODate": .string(iso), "plain": .string(iso),
            "timezoneOffset": .number(0),
        ])
    }
}
