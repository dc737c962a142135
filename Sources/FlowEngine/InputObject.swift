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
        var data: [String: JSONValue] = ["request": Self.request(event.raw, maskIP: maskIP)]
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
        // A flow reads at most this much of a message: a pasted document costs every regex,
        // intent and slot scan it passes, and stored as an answer it would weigh on every
        // session record.
        if text.unicodeScalars.count > Self.maxTextScalars {
            text = String(String.UnicodeScalarView(text.unicodeScalars.prefix(Self.maxTextScalars)))
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

    /// 8x8's body as the flow sees it (`input.data.request`): with `maskIP`, the user's address
    /// in it (a CONVERSATION_UPDATE's `data.user.ipaddress`) is starred, as Cognigy's Mask IP
    /// Address does in the Input object; `input.ip` is null then.
    static func request(_ raw: JSONValue?, maskIP: Bool) -> JSONValue {
        guard let raw else { return .null }
        guard maskIP, case .object(var body) = raw, case .object(var data)? = body["data"], case .object(var user)? = data["user"],
              let address = user["ipaddress"], address != .null else { return raw }
        user["ipaddress"] = .string(String(repeating: "*", count: address.stringValue?.count ?? 8))
        data["user"] = .object(user)
        body["data"] = .object(data)
        return .object(body)
    }

    /// How much of a message's text a flow sees (`input.text`), in Unicode scalars.
    public static let maxTextScalars = 16_384

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

    /// `input.handover`: `status` (`completed` or `error`) and, for an error, Cognigy's
    /// `error: {reason, message}` with 8x8's `status` when it answered.
    mutating func setHandoverStatus(_ status: String, failure: NormalizedEvent.Failure? = nil) {
        handoverStatus = status
        var handover: [String: JSONValue] = ["status": .string(status)]
        if let failure {
            var error: [String: JSONValue] = ["reason": .string("error"), "message": .string(failure.reason ?? "")]
            if let code = failure.status { error["status"] = .number(Double(code)) }
            handover["error"] = .object(error)
        }
        object["handover"] = .object(handover)
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

    /// `input.currentTime` in UTC, computed from the epoch (the proleptic Gregorian calendar,
    /// Howard Hinnant's days-to-civil) rather than through Foundation's Calendar, which costs
    /// more than the rest of the turn.
    static func currentTime(_ now: Int64) -> JSONValue {
        let milliseconds = Int((now % 1000 + 1000) % 1000)
        let seconds = (now - Int64(milliseconds)) / 1000
        let days = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
        let secondOfDay = Int(seconds - Int64(days) * 86_400)
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        let weekday = ((days % 7 + 11) % 7) + 1  // 1 = Sunday; 1970-01-01 was a Thursday (5)
        let (hour, minute, second) = (secondOfDay / 3600, secondOfDay / 60 % 60, secondOfDay % 60)
        let weekdays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
        }
        let iso = "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2)).\(pad(milliseconds, 3))Z"
        return .object([
            "year": .number(Double(year)), "month": .number(Double(month)), "day": .number(Double(day)),
            "hour": .number(Double(hour)), "minute": .number(Double(minute)), "second": .number(Double(second)),
            "milliseconds": .number(Double(milliseconds)), "weekday": .number(Double(weekday)),
            "dayOfWeek": .string(weekdays[weekday - 1]), "ISODate": .string(iso), "plain": .string(iso),
            "timezoneOffset": .number(0),
        ])
    }
}
