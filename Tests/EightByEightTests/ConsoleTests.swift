import AsyncHTTPClient
import Hummingbird
import Synchronization
import ChatEvents
import EightByEight
import Foundation
import Logging
import NIOCore
import Simulator
import Testing
import TestSupport

@Suite("The simulator's console: 8x8's side of the bot's calls, as events for the page")
struct ConsoleTests {
    @Test("the bot's typing, messages with quick replies, a move to a queue (answered with QUEUED) and the end reach the page in order")
    func gatewayCallsBecomePageEvents() async throws {
        let credentials = ChatGatewaySimulator.Credentials(apiKey: "console-key", tenant: "acme")
        let simulator = EightByEightSimulator(signer: try WebhookSigner(kid: "console"), credentials: credentials)
        var logger = Logger(label: "console-tests")
        logger.logLevel = .critical
        let console = SimulatorConsole(simulator: simulator, tenantId: "acme", logger: logger)
        try await withRunningApplication({ simulator.application(logger: logger, console: console, onRunning: $0) }) { port in
            let base = "http://127.0.0.1:\(port)"
            console.setWebhookURL(base + "/endpoint/no-bot")  // no bot there: 404, and the log says so
            let page = try await HTTPClient.shared.execute(HTTPClientRequest(url: base + "/console"), timeout: .seconds(30))
            #expect(page.status.code == 200 && page.headers.first(name: "content-type")?.hasPrefix("text/html") == true)

            let events = try await HTTPClient.shared.execute(HTTPClientRequest(url: base + "/console/events"), timeout: .seconds(60))
            #expect(events.headers.first(name: "content-type") == "text/event-stream")
            let client = ChatGatewayClient(baseURL: base, apiKey: "console-key", tenant: "acme", requestTimeout: .seconds(30))
            func command(_ action: OutboundCommand.Action, _ body: JSONValue, _ n: Int) -> OutboundCommand {
                OutboundCommand(commandId: "e\(n)/0", conversationId: "c-1", endpoint: "support", tenantId: "acme", causationEventId: "e\(n)",
                                sequence: 0, createdAt: 1, receivedAt: 1, action: action, body: body)
            }
            _ = try await client.deliver(command(.typing, .object(["authorType": .string("bot")]), 1))
            _ = try await client.deliver(command(.sendMessage, .object([
                "authorType": .string("bot"), "text": .string("Pick one"),
                "cards": .array([.object(["contentType": .string("application/8x8.quick.replies"), "content": .object([
                    "options": .array([.object(["title": .string("Yes"), "data": .object(["postback": .string("yes")])])]),
                ])])]),
            ]), 2))
            _ = try await client.deliver(command(.patchConversation, .object(["assignment": .object(["type": .string("queue"), "id": .string("101")])]), 3))
            _ = try await client.deliver(command(.endConversation, .object(["removed": .bool(true)]), 4))

            // Read the stream until the end arrives: the page's events, in order.
            let received = try await within(30, "the page's events") { () -> [JSONValue] in
                var received: [JSONValue] = []
                var buffer = ""
                var iterator = events.body.makeAsyncIterator()
                while !received.contains(where: { $0["type"]?.stringValue == "ended" }) || !received.contains(where: { ($0["line"]?.stringValue ?? "").hasPrefix("QUEUED") }) {
                    guard let chunk = try await iterator.next() else { break }
                    buffer += String(buffer: chunk)
                    while let end = buffer.range(of: "\n\n") {
                        let frame = String(buffer[..<end.lowerBound])
                        buffer = String(buffer[end.upperBound...])
                        if frame.hasPrefix("data: "), let event = try? JSONParser.parse(Array(frame.dropFirst(6).utf8)) { received.append(event) }
                    }
                }
                return received
            }
            let kinds = received.filter { $0["type"]?.stringValue != "log" }.map { $0["type"]?.stringValue ?? "" }
            #expect(kinds == ["typing", "message", "queued", "ended"])
            let message = try #require(received.first { $0["type"]?.stringValue == "message" })
            #expect(message["author"] == .string("bot") && message["text"] == .string("Pick one"))
            #expect(message["cards"]?.arrayValue?.first?["content"]?["options"]?.arrayValue?.count == 1)
            let log = received.compactMap { $0["line"]?.stringValue }
            #expect(log.contains("POST /c-1/typing ← bot: 204") && log.contains("PATCH /c-1 ← bot: 202"))
            #expect(log.contains("QUEUED → bot: 404"), "8x8 answers a move to a queue with QUEUED: \(log)")
        }
    }

    @Test("once the console stopped, its open event streams end and a page reconnecting gets 503 (a new stream would hold the server's shutdown up)")
    func noEventStreamsAfterTheConsoleStopped() async throws {
        let simulator = EightByEightSimulator(signer: try WebhookSigner(kid: "console"))
        var logger = Logger(label: "console-tests")
        logger.logLevel = .critical
        let console = SimulatorConsole(simulator: simulator, tenantId: "acme", logger: logger)
        try await withRunningApplication({ simulator.application(logger: logger, console: console, onRunning: $0) }) { port in
            let url = "http://127.0.0.1:\(port)/console/events"
            let open = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(60))
            #expect(open.status.code == 200)
            let running = Task { try await console.run() }
            running.cancel()  // as a stop does; the console then closes
            try await running.value
            let rest = try await within(30, "the open stream's end") { try await open.body.collect(upTo: 1 << 20) }
            #expect(String(buffer: rest).hasPrefix(": connected"))
            let again = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
            #expect(again.status.code == 503)
        }
    }

    @Test("a webhook the bot does not take (503, twice) is sent again as 8x8 does: the same event id, x-8x8-retry counting up, a fresh signature; the log shows each answer")
    func webhooksAreRetried() async throws {
        let simulator = EightByEightSimulator(signer: try WebhookSigner(kid: "console"))
        var logger = Logger(label: "console-tests")
        logger.logLevel = .critical
        let console = SimulatorConsole(simulator: simulator, tenantId: "acme", logger: logger, retryDelays: [.milliseconds(50), .milliseconds(50), .milliseconds(50)])
        let seen = Mutex<[(eventId: String, retry: String, signature: String)]>([])
        let router = Router()
        router.post("/bot") { request, _ in
            func header(_ name: String) -> String { request.headers.first { $0.name.canonicalName == name }?.value ?? "" }
            let attempt = (header(WebhookHeaders.eventID), header(WebhookHeaders.retry), header(WebhookHeaders.signature))
            let count = seen.withLock { seen in
                seen.append(attempt)
                return seen.count
            }
            return Response(status: count <= 2 ? .serviceUnavailable : .ok)
        }
        try await withRunningApplication({ reporter in
            Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), onServerRunning: { await reporter($0.localAddress?.port ?? 0) }, logger: logger)
        }) { botPort in
            try await withRunningApplication({ simulator.application(logger: logger, console: console, onRunning: $0) }) { port in
                console.setWebhookURL("http://127.0.0.1:\(botPort)/bot")
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/console/api/conversations/c-1/message")
                request.method = .POST
                request.body = .bytes(ByteBuffer(string: #"{"text":"hello"}"#))
                let answer = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                #expect(answer.status.code == 204, "the page is answered after the first attempt")
                let attempts = try await within(30, "three attempts") { () -> [(eventId: String, retry: String, signature: String)] in
                    while seen.withLock({ $0.count }) < 3 { try await Task.sleep(for: .milliseconds(20)) }
                    return seen.withLock { $0 }
                }
                #expect(attempts.map(\.retry) == ["0", "1", "2"])
                #expect(Set(attempts.map(\.eventId)).count == 1 && Set(attempts.map(\.signature)).count == 3)
                try await Task.sleep(for: .milliseconds(300))
                #expect(seen.withLock { $0.count } == 3, "taken: no more retries")
            }
        }
    }
}
