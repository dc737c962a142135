public import ChatEvents
public import Hummingbird
public import Logging
import Foundation
import NIOCore
public import ServiceLifecycle
import Synchronization

/// The chat console of `connector dev`: a page (`GET /console`) where you chat with the bot as
/// the customer and, after a handover, answer as the agent; it shows the webhooks the
/// simulator sent, the REST calls it received, consumer lag and end-to-end latency.
///
/// The page talks to the simulator over HTTP (`/console/api/...`) and listens to
/// server-sent events (`/console/events`). The simulator plays 8x8: the customer's and the
/// agent's actions become signed webhooks to the bot's URL; the bot's REST calls come back as
/// messages, typing, queueing and the end of the conversation, and a move to a queue is
/// answered with the `QUEUED` webhook 8x8 sends.
public final class SimulatorConsole: Service, Sendable {
    struct State {
        var subscribers: [UUID: AsyncStream<String>.Continuation] = [:]
        var log: [String] = []
        var webhookURL: String?
        var sentAt: [String: ContinuousClock.Instant] = [:]
        var latencies: [Double] = []
        var conversations = 0
        /// Shutting down: no new event stream (a page reconnecting would hold the server up).
        var closed = false
    }

    private let simulator: EightByEightSimulator
    private let sender: WebhookSender
    private let stats: @Sendable () async -> JSONValue
    private let state = Mutex(State())
    static let logLimit = 200

    /// `stats`: lag per group and the like, shown in the live panel (JSON object).
    /// Waits before each retry of a webhook the bot did not take.
    private let retryDelays: [Duration]

    public init(
        simulator: EightByEightSimulator, tenantId: String, logger: Logger, retryDelays: [Duration] = WebhookSender.retryDelays,
        stats: @escaping @Sendable () async -> JSONValue = { .object([:]) }
    ) {
        self.retryDelays = retryDelays
        self.simulator = simulator
        var sender = simulator.webhookSender(logger: logger)
        sender.tenantId = tenantId
        self.sender = sender
        self.stats = stats
        simulator.gateway?.observe { [weak self] received, conversationId in
            self?.gatewayCalled(received, conversationId: conversationId)
        }
    }

    /// Runs until graceful shutdown, then ends the pages' event streams so the HTTP server can
    /// stop (run it after the simulator's application in the same service group).
    public func run() async throws {
        try? await gracefulShutdown()
        let subscribers = state.withLock { state in
            defer { state.subscribers.removeAll() }
            state.closed = true
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.finish() }
    }

    /// Where the webhooks go: the bot's `/endpoint/{urlToken}` at the ingress.
    public func setWebhookURL(_ url: String) { state.withLock { $0.webhookURL = url } }

    public func addRoutes(to router: Router<some RequestContext>) {
        router.get("/console") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: ConsolePage.html)))
        }
        router.get("/console/events") { [self] _, _ in
            let (stream, continuation) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(500))
            let id = UUID()
            let backlog = state.withLock { state -> [String]? in
                guard !state.closed else { return nil }
                state.subscribers[id] = continuation
                return state.log
            }
            // A page reconnects a few seconds after its stream ended; once the console stopped
            // it gets 503, after which a browser stops trying.
            guard let backlog else {
                continuation.finish()
                return Response(status: .serviceUnavailable, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "shutting down\n")))
            }
            // A comment now and then finds out when the page is gone (a write fails).
            let heartbeat = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(15))
                    continuation.yield("")
                }
            }
            continuation.onTermination = { [weak self] _ in
                heartbeat.cancel()
                _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
            }
            for line in backlog { continuation.yield(line) }
            return Response(
                status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    try await writer.write(ByteBuffer(string: ": connected\n\n"))
                    for await event in stream {
                        try await writer.write(ByteBuffer(string: event.isEmpty ? ": ping\n\n" : "data: \(event)\n\n"))
                    }
                    try await writer.finish(nil)
                })
        }
        router.get("/console/api/stats") { [self] _, _ in
            var object = (await stats()).objectValue ?? [:]
            let latencies = state.withLock { $0.latencies }.sorted()
            func percentile(_ p: Double) -> JSONValue {
                latencies.isEmpty ? .null : .number((latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] * 10).rounded() / 10)
            }
            object["latency"] = .object(["count": .number(Double(latencies.count)), "p50": percentile(0.5), "p99": percentile(0.99)])
            return Self.json(.object(object))
        }
        router.post("/console/api/conversations") { [self] request, _ in
            let body = try? JSONParser.parse(Array(buffer: try await request.body.collect(upTo: 65_536)))
            let number = state.withLock { state -> Int in
                state.conversations += 1
                return state.conversations
            }
            let conversation = "console-\(number)-\(UUID().uuidString.prefix(6).lowercased())"
            let name = body?["name"]?.stringValue ?? "Jane Doe"
            try await send("CONVERSATION_UPDATE", conversation, [
                "state": .string("ACTIVE"), "channel": .string("WebChat"),
                "user": .object(["name": .string(name), "userId": .string("user-\(number)"), "email": .string("jane@example.com")]),
            ])
            return Self.json(.object(["conversationId": .string(conversation)]))
        }
        router.post("/console/api/conversations/:id/:action") { [self] request, context in
            let conversation = context.parameters.get("id") ?? ""
            let action = context.parameters.get("action") ?? ""
            let body = (try? JSONParser.parse(Array(buffer: try await request.body.collect(upTo: 65_536)))) ?? .object([:])
            try await act(action, conversation: conversation, body: body)
            return Response(status: .noContent)
        }
    }

    /// The customer's and the agent's actions, as the webhooks 8x8 would send.
    func act(_ action: String, conversation: String, body: JSONValue) async throws {
        let agent = body["agent"]?.stringValue ?? "agent-1"
        switch action {
        case "message":
            try await send("MESSAGE", conversation, [
                "isEcho": .bool(false), "sender": .object(["id": .string("customer"), "type": .string("user")]),
                "text": .string(body["text"]?.stringValue ?? ""),
            ])
        case "postback":
            try await send("ACTIVITY", conversation, [
                "name": .string("quickReply/action"),
                "value": .object(["type": .string("postback"), "data": .object([
                    "title": .string(body["title"]?.stringValue ?? ""), "payload": .string(body["payload"]?.stringValue ?? ""),
                ])]),
            ])
        case "card":
            try await send("ACTIVITY", conversation, [
                "name": .string("adaptiveCard/action"),
                "value": .object(["type": .string("Action.Submit"), "data": body["data"] ?? .object([:])]),
            ])
        case "typing":
            try await send("ACTIVITY", conversation, [
                "name": .string("typing"), "value": .object(["users": .array([.object(["id": .string("customer"), "type": .string("user")])])]),
            ])
        case "agent-join":
            try await send("MEMBERS_CHANGED", conversation, ["memberType": .string("agent"), "change": .string("joined"), "id": .string(agent)])
        case "agent-message":
            let text = body["text"]?.stringValue ?? ""
            try await send("MESSAGE", conversation, [
                "isEcho": .bool(false), "sender": .object(["id": .string(agent), "type": .string("agent")]), "text": .string(text),
            ])
            publish(.object(["type": .string("message"), "conversationId": .string(conversation), "author": .string("agent"), "text": .string(text)]))
        case "agent-transfer":
            try await send("TRANSFER", conversation, ["fromAgentId": .string(agent), "toQueueId": .string(body["queueId"]?.stringValue ?? "102")])
            try await send("MEMBERS_CHANGED", conversation, ["memberType": .string("agent"), "change": .string("left"), "id": .string(agent)])
            publish(.object(["type": .string("queued"), "conversationId": .string(conversation), "queueId": .string(body["queueId"]?.stringValue ?? "102")]))
        case "agent-leave":
            try await send("MEMBERS_CHANGED", conversation, ["memberType": .string("agent"), "change": .string("left"), "id": .string(agent)])
        case "leave":
            try await send("MEMBERS_CHANGED", conversation, ["memberType": .string("user"), "change": .string("left"), "id": .string("customer")])
        default:
            throw HTTPError(.notFound, message: "unknown action \(action)")
        }
    }

    /// Sends a signed webhook to the bot and logs it.
    func send(_ type: String, _ conversation: String, _ data: [String: JSONValue]) async throws {
        guard let url = state.withLock({ $0.webhookURL }) else { throw HTTPError(.serviceUnavailable, message: "the ingress is not running yet") }
        let eventId = UUID().uuidString.lowercased()
        var writer = JSONWriter(capacity: 256)
        writer.value(.object([
            "eventType": .string(type), "conversationId": .string(conversation),
            "timestamp": .number(Double(Int64(Date().timeIntervalSince1970 * 1000))), "data": .object(data),
        ]))
        state.withLock { state in
            state.sentAt[eventId] = .now
            if state.sentAt.count > 10_000 { state.sentAt.removeAll() }
        }
        // The first attempt is answered to the page; one the bot did not take is sent again
        // meanwhile, as 8x8 does, each answer in the log.
        let body = writer.bytes
        let sender = self.sender
        let delays = retryDelays
        let logAnswer: @Sendable (Int, Result<WebhookSender.Result, any Error>) -> Void = { [weak self] retry, outcome in
            let status = switch outcome {
            case .success(let result): String(result.status)
            case .failure(let error): "failed: \(error)"
            }
            self?.publish(.object([
                "type": .string("log"), "direction": .string("webhook"), "conversationId": .string(conversation),
                "line": .string("\(type) → bot: \(status)\(retry > 0 ? " (retry \(retry))" : "")"),
            ]), keep: true)
        }
        let taken = await sender.sendRetrying(body: body, to: url, eventId: eventId, delays: [], answered: logAnswer) != nil
        if !taken, !delays.isEmpty {
            Task { _ = await sender.sendRetrying(body: body, to: url, eventId: eventId, firstRetry: 1, delays: delays, answered: logAnswer) }
        }
    }

    /// What the bot did, as 8x8 saw it.
    func gatewayCalled(_ received: ChatGatewaySimulator.Received, conversationId: String?) {
        let conversation = conversationId ?? ""
        let path = received.path.replacingOccurrences(of: "/chat-gateway/v1/conversations", with: "")
        publish(.object([
            "type": .string("log"), "direction": .string("rest"), "conversationId": .string(conversation),
            "line": .string("\(received.method) \(path.isEmpty ? "/" : path) ← bot: \(received.status == 0 ? "dropped" : String(received.status))"),
        ]), keep: true)
        guard (200..<300).contains(received.status), received.method != "GET" else { return }
        if let commandId = received.headers["x-connector-command-id"], let slash = commandId.lastIndex(of: "/") {
            let eventId = String(commandId[..<slash])
            if let sent = state.withLock({ $0.sentAt.removeValue(forKey: eventId) }) {
                let elapsed = ContinuousClock.now - sent
                let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
                state.withLock { state in
                    state.latencies.append(ms)
                    if state.latencies.count > 200 { state.latencies.removeFirst(state.latencies.count - 200) }
                }
            }
        }
        let json = received.json
        switch path {
        case _ where path.hasSuffix("/messages"):
            publish(.object([
                "type": .string("message"), "conversationId": .string(conversation), "author": .string("bot"),
                "text": json?["text"] ?? .null, "cards": json?["cards"] ?? .array([]), "attachments": json?["attachments"] ?? .array([]),
            ]))
        case _ where path.hasSuffix("/typing") || path.hasSuffix("/thinking"):
            publish(.object(["type": .string("typing"), "conversationId": .string(conversation), "author": .string("bot")]))
        case _ where path.hasSuffix("/participants/user"):
            publish(.object(["type": .string("ended"), "conversationId": .string(conversation)]))
        case _ where path.hasSuffix("/post-agent-assignment"):
            publish(.object(["type": .string("handback"), "conversationId": .string(conversation)]))
        case _ where received.method == "PATCH":
            if let queue = json?["assignment"]?["id"]?.stringValue {
                publish(.object(["type": .string("queued"), "conversationId": .string(conversation), "queueId": .string(queue)]))
                // 8x8 tells the bot that the conversation waits in the queue.
                Task { try? await send("QUEUED", conversation, ["queueId": .string(queue), "queueName": .string("Queue \(queue)")]) }
            }
        default:
            break
        }
    }

    /// Pushes an event to every open page; `keep` adds it to the log a new page replays.
    func publish(_ event: JSONValue, keep: Bool = false) {
        var writer = JSONWriter(capacity: 256)
        writer.value(event)
        let line = String(decoding: writer.bytes, as: UTF8.self)
        let subscribers = state.withLock { state in
            if keep {
                state.log.append(line)
                if state.log.count > Self.logLimit { state.log.removeFirst(state.log.count - Self.logLimit) }
            }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.yield(line) }
    }

    static func json(_ value: JSONValue) -> Response {
        var writer = JSONWriter(capacity: 256)
        writer.value(value)
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: writer.bytes)))
    }
}
