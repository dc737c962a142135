public import ChatEvents
public import Hummingbird
import Foundation
import NIOCore
import Synchronization

/// The Chat Gateway REST paths the egress uses, checked as 8x8's OpenAPI file defines them:
/// `x-api-key` (401 without the right one), `X-8x8-Tenant` (403 for another tenant), bodies
/// (400 problem+json for a wrong one). Everything received is recorded; faults can be queued.
public final class ChatGatewaySimulator: Sendable {
    public struct Credentials: Sendable {
        public var apiKey: String
        public var tenant: String?
        public init(apiKey: String, tenant: String?) {
            self.apiKey = apiKey
            self.tenant = tenant
        }
    }

    /// One request as the simulator saw it.
    public struct Received: Sendable {
        public var method: String
        public var path: String
        /// Header names in lower case.
        public var headers: [String: String]
        public var body: [UInt8]
        public var status: Int
        /// The connection was closed instead of answering.
        public var dropped = false
        /// When the simulator answered.
        public var at = ContinuousClock.now
        public var json: JSONValue? { try? JSONParser.parse(body) }
    }

    /// A scripted misbehavior for the next matching request.
    public enum Fault: Sendable {
        case status(Int, retryAfter: Int? = nil)
        /// The request takes effect, and the answer is an error status all the same (a server
        /// failing after it wrote, a gateway timing out while 8x8 went on).
        case statusAfterProcessing(Int)
        /// A 301 to `location` (an http base URL redirected to https, a moved API).
        case redirect(to: String)
        case delay(Duration)
        /// The connection is closed instead of an answer; with `afterProcessing` the request
        /// took effect first (the client cannot tell which).
        case drop(afterProcessing: Bool)
        /// The request takes effect and the answer's head is sent, then its body is held back
        /// for the duration (a connection gone half-open after the head).
        case stallBody(Duration)
    }

    /// A message as the simulator keeps it, listed by `GET .../messages`.
    public struct Message: Sendable {
        public var id: String
        public var authorType: String
        public var text: String?
        public var cards: [JSONValue]
        public var attachments: [JSONValue]
        public var createdAt: Int64
        public var commandId: String?
    }

    struct State {
        var received: [Received] = []
        var faults: [(pathSuffix: String, method: String?, fault: Fault)] = []
        var conversations: [String: (type: String, id: String)] = [:]  // id -> assignment
        var messages: [String: [Message]] = [:]
        var attachments = 0
        var listsTimes = true
        var onBotMessage: (@Sendable (_ conversationId: String, _ message: Message) -> Void)?
        var observers: [@Sendable (_ request: Received, _ conversationId: String?) -> Void] = []
    }

    private let state = Mutex(State())
    public let credentials: Credentials

    public init(credentials: Credentials) {
        self.credentials = credentials
    }

    public var received: [Received] { state.withLock { $0.received } }

    /// Whether `GET .../messages` gives each message its `createdAt` (optional in 8x8's
    /// `MessageResult`).
    public var listsMessageTimes: Bool {
        get { state.withLock { $0.listsTimes } }
        set { state.withLock { $0.listsTimes = newValue } }
    }

    /// The command ids of the calls 8x8 accepted, in order (an attachment upload does not
    /// count: its message does). A command delivered twice appears twice.
    public var acceptedCommandIds: [String] {
        state.withLock { state in
            state.received.compactMap { received in
                guard (200..<300).contains(received.status), received.method != "GET", !received.path.hasSuffix("/attachments") else { return nil }
                return received.headers["x-connector-command-id"]
            }
        }
    }

    /// An agent accepts the conversation: 8x8 then reports it assigned to the agent, no longer
    /// to the queue it came through.
    public func assignAgent(_ conversationId: String, agentId: String) {
        state.withLock { $0.conversations[conversationId] = ("agent", agentId) }
    }

    /// The conversation's assignment as `GET` reports it.
    public func assignment(of conversationId: String) -> (type: String, id: String)? {
        state.withLock { $0.conversations[conversationId] }
    }

    /// The messages of a conversation, oldest first.
    public func messages(of conversationId: String) -> [Message] { state.withLock { $0.messages[conversationId] ?? [] } }

    /// Called after every request with what was received and the conversation it named.
    public func observe(_ handler: @escaping @Sendable (_ request: Received, _ conversationId: String?) -> Void) {
        state.withLock { $0.observers.append(handler) }
    }

    /// Called for each bot message 8x8 accepted (the simulator sends its echo webhook).
    public func onBotMessage(_ handler: @escaping @Sendable (_ conversationId: String, _ message: Message) -> Void) {
        state.withLock { $0.onBotMessage = handler }
    }

    /// The next request whose path ends with `pathSuffix` ("" for any), and whose method is
    /// `method` when one is given, gets `fault`.
    public func inject(_ fault: Fault, forPathEndingWith pathSuffix: String = "", method: String? = nil) {
        state.withLock { $0.faults.append((pathSuffix, method, fault)) }
    }

    public func addRoutes(to router: Router<some RequestContext>) {
        let base = "/chat-gateway/v1/conversations"
        router.post(RouterPath(base)) { request, _ in try await self.handle(request, kind: .create, id: nil) }
        router.get("\(base)/:id") { request, context in try await self.handle(request, kind: .get, id: context.parameters.get("id")) }
        router.patch("\(base)/:id") { request, context in try await self.handle(request, kind: .patch, id: context.parameters.get("id")) }
        router.post("\(base)/:id/messages") { request, context in try await self.handle(request, kind: .message, id: context.parameters.get("id")) }
        router.get("\(base)/:id/messages") { request, context in try await self.handle(request, kind: .listMessages, id: context.parameters.get("id")) }
        router.post("\(base)/:id/typing") { request, context in try await self.handle(request, kind: .typing, id: context.parameters.get("id")) }
        router.post("\(base)/:id/thinking") { request, context in try await self.handle(request, kind: .thinking, id: context.parameters.get("id")) }
        router.patch("\(base)/:id/participants/user") { request, context in try await self.handle(request, kind: .endUser, id: context.parameters.get("id")) }
        router.post("\(base)/:id/post-agent-assignment") { request, context in try await self.handle(request, kind: .postAgent, id: context.parameters.get("id")) }
        router.post("\(base)/:id/attachments") { request, context in try await self.handle(request, kind: .attachment, id: context.parameters.get("id")) }
    }

    enum Kind { case create, get, patch, message, listMessages, typing, thinking, endUser, postAgent, attachment }

    func handle(_ request: Request, kind: Kind, id: String?) async throws -> Response {
        let body = Array(buffer: try await request.body.collect(upTo: 16 << 20))
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        let path = request.uri.path
        let fault = state.withLock { state -> Fault? in
            guard let index = state.faults.firstIndex(where: {
                ($0.pathSuffix.isEmpty || path.hasSuffix($0.pathSuffix)) && ($0.method == nil || $0.method == request.method.rawValue)
            }) else { return nil }
            return state.faults.remove(at: index).fault
        }
        var response: Response
        switch fault {
        case .delay(let delay)?:
            try await Task.sleep(for: delay)
            response = answer(kind: kind, id: id, headers: headers, body: body)
        case .status(let status, let retryAfter)?:
            response = Self.problem(status: status, message: "Simulated failure", code: status == 429 ? "too_many_requests" : "internal_error")
            if let retryAfter { response.headers[.retryAfter] = String(retryAfter) }
        case .redirect(let location)?:
            response = Response(status: .movedPermanently, headers: [.location: location])
        case .statusAfterProcessing(let status)?:
            _ = answer(kind: kind, id: id, headers: headers, body: body)
            response = Self.problem(status: status, message: "Simulated failure after processing", code: "internal_error")
        case .drop(let afterProcessing)?:
            let processed = afterProcessing ? answer(kind: kind, id: id, headers: headers, body: body) : nil
            // Recorded with status 0 unless it took effect: the client never sees an answer.
            record(request, path, headers, body, status: processed.map { Int($0.status.code) } ?? 0, dropped: true, conversationId: id)
            return Response(status: .ok, body: ResponseBody { _ in throw DroppedConnection() })
        case .stallBody(let stall)?:
            let processed = answer(kind: kind, id: id, headers: headers, body: body)
            // Chunked, so that even an empty answer has a body still to come.
            var head = processed.headers
            head[.contentLength] = nil
            response = Response(status: processed.status, headers: head, body: ResponseBody { writer in
                try await Task.sleep(for: stall)
                try await processed.body.write(writer)
            })
        case nil:
            response = answer(kind: kind, id: id, headers: headers, body: body)
        }
        record(request, path, headers, body, status: Int(response.status.code), conversationId: id)
        return response
    }

    struct DroppedConnection: Error {}

    private func record(_ request: Request, _ path: String, _ headers: [String: String], _ body: [UInt8], status: Int, dropped: Bool = false, conversationId: String? = nil) {
        let received = Received(method: request.method.rawValue, path: path, headers: headers, body: body, status: status, dropped: dropped)
        let observers = state.withLock { state in
            state.received.append(received)
            return state.observers
        }
        for observer in observers { observer(received, conversationId) }
    }

    func answer(kind: Kind, id: String?, headers: [String: String], body: [UInt8]) -> Response {
        guard headers["x-api-key"] == credentials.apiKey else {
            return Self.json(#"{"message":"Access Denied","errors":[{"message":"Access Denied","code":"access_denied"}],"referenceId":"\#(UUID().uuidString)"}"#, status: .unauthorized, problem: true)
        }
        if let tenant = credentials.tenant, let sent = headers["X-8x8-Tenant"] ?? headers["x-8x8-tenant"], sent != tenant {
            return Self.problem(status: 403, message: "Tenant \(sent) does not match the API key", code: "forbidden")
        }
        let json: JSONValue?
        if kind == .attachment || kind == .get || kind == .listMessages {
            json = nil
        } else {
            guard let parsed = try? JSONParser.parse(body) else {
                return Self.problem(status: 400, message: "Malformed JSON request", code: "invalid_json_object")
            }
            json = parsed
        }
        switch kind {
        case .message:
            if let problem = Self.checkMessage(json!) { return Self.problem(status: 400, message: problem, code: "invalid_json_object") }
            let conversation = id ?? ""
            let (message, onBotMessage) = state.withLock { state in
                let list = state.messages[conversation, default: []]
                let message = Message(
                    id: "msg-\(list.count + 1)", authorType: json?["authorType"]?.stringValue ?? "user", text: json?["text"]?.stringValue,
                    cards: json?["cards"]?.arrayValue ?? [], attachments: json?["attachments"]?.arrayValue ?? [],
                    createdAt: Int64(Date().timeIntervalSince1970 * 1000), commandId: headers["x-connector-command-id"])
                state.messages[conversation, default: []].append(message)
                return (message, state.onBotMessage)
            }
            if message.authorType == "bot" { onBotMessage?(conversation, message) }
            return Response(status: .accepted)
        case .listMessages:
            let (messages, listsTimes) = state.withLock { ($0.messages[id ?? ""] ?? [], $0.listsTimes) }
            var writer = JSONWriter(capacity: 256)
            writer.beginObject()
            writer.key("_embedded")
            writer.beginObject()
            writer.key("messages")
            writer.beginArray()
            for message in messages.reversed().prefix(100) {
                writer.beginObject()
                writer.field("id", message.id)
                writer.field("text", message.text)
                if listsTimes {
                    writer.field("createdAt", ISO8601DateFormatter.string(
                        from: Date(timeIntervalSince1970: Double(message.createdAt) / 1000), timeZone: .gmt,
                        formatOptions: [.withInternetDateTime, .withFractionalSeconds]))
                }
                writer.key("author")
                writer.beginObject()
                writer.field("type", message.authorType)
                writer.endObject()
                writer.field("attachments", JSONValue.array(message.attachments))
                writer.field("cards", JSONValue.array(message.cards))
                writer.endObject()
            }
            writer.endArray()
            writer.endObject()
            writer.endObject()
            return Self.json(String(decoding: writer.bytes, as: UTF8.self), status: .ok)
        case .typing, .thinking:
            guard let author = json?["authorType"]?.stringValue, ["bot", "user"].contains(author) else {
                return Self.problem(status: 400, message: "Invalid authorType=\(json?["authorType"]?.stringValue ?? ""), has to be one of user, bot", code: "invalid_json_object")
            }
            if kind == .thinking, let seconds = json?["maxThinkingTimeSeconds"], !(1...600).contains(Int(seconds.stringValue ?? "") ?? 0) {
                return Self.problem(status: 400, message: "maxThinkingTimeSeconds must be 1 to 600", code: "invalid_parameter")
            }
            return Response(status: .noContent)
        case .patch:
            guard let assignment = json?["assignment"], assignment["type"]?.stringValue != nil, let queue = assignment["id"]?.stringValue else {
                guard json?["user"] != nil else { return Self.problem(status: 400, message: "assignment or user is required", code: "invalid_json_object") }
                return Self.json(#"{"id":"\#(id ?? "")","state":"active"}"#, status: .accepted)
            }
            state.withLock { $0.conversations[id ?? ""] = ("queue", queue) }
            return Self.json(#"{"id":"\#(id ?? "")","state":"active","assignment":{"type":"queue","id":"\#(queue)"}}"#, status: .accepted)
        case .endUser:
            guard json?["removed"] == .bool(true) else { return Self.problem(status: 400, message: "removed must be true", code: "invalid_json_object") }
            return Response(status: .noContent)
        case .postAgent:
            guard json?["type"]?.stringValue == "webhook", json?["id"]?.stringValue != nil else {
                return Self.problem(status: 400, message: "type webhook and id are required", code: "invalid_json_object")
            }
            return Response(status: .created)
        case .create:
            guard json?["channelId"]?.stringValue != nil, json?["user"]?.objectValue != nil else {
                return Self.problem(status: 400, message: "channelId and user are required", code: "invalid_json_object")
            }
            let conversation = "CONV-\(UUID().uuidString.prefix(8))"
            return Self.json(#"{"conversationId":"\#(conversation)","createdAt":"2026-01-01T00:00:00Z"}"#, status: .accepted)
        case .attachment:
            let contentType = headers["Content-Type"] ?? headers["content-type"] ?? ""
            guard contentType.hasPrefix("multipart/form-data"), String(decoding: body, as: UTF8.self).contains("name=\"attachment\"") else {
                return Self.problem(status: 400, message: "multipart/form-data with an attachment part is required", code: "invalid_json_object")
            }
            let number = state.withLock { state -> Int in
                state.attachments += 1
                return state.attachments
            }
            return Self.json(#"{"id":"att-\#(number)","filename":"upload","sizeInBytes":\#(body.count),"createdAt":"2026-01-01T00:00:00Z"}"#, status: .ok)
        case .get:
            let assignment = state.withLock { $0.conversations[id ?? ""] }
            return Self.json(#"{"id":"\#(id ?? "")","state":"active"\#(assignment.map { #","assignment":{"type":"\#($0.type)","id":"\#($0.id)"}"# } ?? "")}"#, status: .ok)
        }
    }

    static let cardTypes: Set<String> = [
        "application/vnd.microsoft.card.adaptive", "application/8x8.quick.replies", "Interactive", "Location", "Template",
        "Suggestions", "Buttons", "Carousel",
    ]

    /// SendConversationMessagePayload: authorType bot|user, text xor externalProvider, cards
    /// of known content types with content, attachments by id; something to send.
    static func checkMessage(_ json: JSONValue) -> String? {
        guard let object = json.objectValue else { return "the body must be an object" }
        let author = object["authorType"]?.stringValue ?? "user"
        guard ["bot", "user"].contains(author) else { return "Invalid authorType=\(author), has to be one of user, bot, agent" }
        if object["text"] != nil, object["externalProvider"] != nil { return "text and externalProvider are mutually exclusive" }
        if let text = object["text"], text.stringValue == nil { return "text must be a string" }
        for card in object["cards"]?.arrayValue ?? [] {
            guard let type = card["contentType"]?.stringValue, cardTypes.contains(type) else { return "unknown card contentType" }
            guard card["content"]?.objectValue != nil else { return "a card needs content" }
        }
        for attachment in object["attachments"]?.arrayValue ?? [] where attachment["id"]?.stringValue == nil {
            return "an attachment needs an id"
        }
        let hasContent = (object["text"]?.stringValue.map { !$0.isEmpty } ?? false) || !(object["cards"]?.arrayValue?.isEmpty ?? true)
            || !(object["attachments"]?.arrayValue?.isEmpty ?? true) || object["externalProvider"] != nil
        return hasContent ? nil : "the message has no text, cards, attachments or externalProvider"
    }

    static func problem(status: Int, message: String, code: String) -> Response {
        var writer = JSONWriter(capacity: 160)
        writer.beginObject()
        writer.field("message", message)
        writer.key("errors")
        writer.beginArray()
        writer.beginObject()
        writer.field("code", code)
        writer.field("message", message)
        writer.endObject()
        writer.endArray()
        writer.field("referenceId", UUID().uuidString)
        writer.endObject()
        return json(String(decoding: writer.bytes, as: UTF8.self), status: HTTPResponse.Status(code: status), problem: true)
    }

    static func json(_ text: String, status: HTTPResponse.Status, problem: Bool = false) -> Response {
        Response(
            status: status, headers: [.contentType: problem ? "application/problem+json" : "application/hal+json"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
