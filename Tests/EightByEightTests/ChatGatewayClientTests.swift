import AsyncHTTPClient
import ChatEvents
@testable import EightByEight
import Foundation
import Logging
import Simulator
import Synchronization
import Testing

@Suite("Chat Gateway REST client against the simulator")
struct ChatGatewayClientTests {
    static let credentials = ChatGatewaySimulator.Credentials(apiKey: "test-api-key", tenant: "acme")
    /// Generous: the machine running the tests in parallel may be busy; only the timeout check is impatient.
    static let patient: Duration = .seconds(60)

    func withGateway(_ body: (ChatGatewaySimulator, String) async throws -> Void) async throws {
        let simulator = EightByEightSimulator(signer: try WebhookSigner(kid: "k"), credentials: Self.credentials)
        var logger = Logger(label: "gateway-tests")
        logger.logLevel = .critical
        try await withRunningApplication({ simulator.application(logger: logger, onRunning: $0) }) { port in
            try await body(simulator.gateway!, "http://127.0.0.1:\(port)")
        }
    }

    func command(_ action: OutboundCommand.Action, _ body: JSONValue, conversation: String = "CONV 1/ä") -> OutboundCommand {
        OutboundCommand(
            commandId: "e1/0", conversationId: conversation, endpoint: "support", tenantId: "acme", causationEventId: "e1",
            sequence: 0, createdAt: 1, receivedAt: 1, action: action, body: body)
    }

    @Test("every command kind reaches its path with the endpoint's headers and its body")
    func everyCommand() async throws {
        try await withGateway { gateway, base in
            let client = ChatGatewayClient(baseURL: base, apiKey: "test-api-key", tenant: "acme", requestTimeout: Self.patient)
            let bot: JSONValue = .object(["authorType": .string("bot")])
            let cases: [(OutboundCommand.Action, JSONValue, String, String, Int)] = [
                (.sendMessage, .object(["authorType": .string("bot"), "text": .string("Hi")]), "POST", "/messages", 202),
                (.typing, bot, "POST", "/typing", 204),
                (.thinking, .object(["authorType": .string("bot"), "maxThinkingTimeSeconds": .number(5)]), "POST", "/thinking", 204),
                (.patchConversation, .object(["assignment": .object(["type": .string("queue"), "id": .string("101")])]), "PATCH", "", 202),
                (.endConversation, .object(["removed": .bool(true)]), "PATCH", "/participants/user", 204),
                (.postAgentAssignment, .object(["type": .string("webhook"), "id": .string("wh-1"), "configuration": .object([:])]), "POST", "/post-agent-assignment", 201),
            ]
            for (action, body, method, suffix, status) in cases {
                let response = try await client.deliver(command(action, body))
                #expect(response.status == status, "\(action)")
                let received = try #require(gateway.received.last)
                #expect(received.method == method && received.path == "/chat-gateway/v1/conversations/CONV%201%2F%C3%A4" + suffix, "\(action): \(received.path)")
                #expect(received.headers["x-api-key"] == "test-api-key" && received.headers["x-8x8-tenant"] == "acme")
                #expect(received.json == body, "\(action) body")
            }
            let created = try await client.deliver(command(.createConversation, .object([
                "channelId": .string("ch-1"), "user": .object(["name": .string("Jane")]),
            ])))
            #expect(created.status == 202 && created.json?["conversationId"]?.stringValue != nil)
        }
    }

    @Test("an attachment by URL is downloaded, uploaded as multipart and sent with its id")
    func attachment() async throws {
        try await withGateway { gateway, base in
            let client = ChatGatewayClient(baseURL: base, apiKey: "test-api-key", tenant: "acme", requestTimeout: Self.patient)
            let response = try await client.deliver(command(.sendAttachment, .object([
                "authorType": .string("bot"), "url": .string("\(base)/files/invoice.pdf"), "fileName": .string("invoice.pdf"),
            ])))
            #expect(response.status == 202)
            let upload = try #require(gateway.received.first { $0.path.hasSuffix("/attachments") })
            #expect(upload.headers["content-type"]?.hasPrefix("multipart/form-data; boundary=") == true)
            let multipart = String(decoding: upload.body, as: UTF8.self)
            #expect(multipart.contains(#"name="attachment"; filename="invoice.pdf""#) && multipart.contains("simulated content of invoice.pdf"))
            let message = try #require(gateway.received.last)
            #expect(message.json?["attachments"]?.arrayValue?.first?["id"]?.stringValue == "att-1")
        }
    }

    @Test("an attachment's delivery stops between its calls once its caller no longer has the command: nothing is uploaded or sent after that")
    func attachmentStopsWhenTold() async throws {
        try await withGateway { gateway, base in
            let client = ChatGatewayClient(baseURL: base, apiKey: "test-api-key", tenant: "acme", requestTimeout: Self.patient)
            let attachment = command(.sendAttachment, .object(["authorType": .string("bot"), "url": .string("\(base)/files/a.pdf")]))
            func stopped(after calls: Int) async -> ChatGatewayError? {
                let asked = Mutex(0)
                do {
                    _ = try await client.deliver(attachment, proceed: { asked.withLock { $0 += 1; return $0 <= calls } })
                    return nil
                } catch {
                    return error
                }
            }
            guard case .transport(_, reachedServer: false)? = await stopped(after: 0) else { Issue.record("not stopped after the download"); return }
            #expect(gateway.received.isEmpty, "nothing uploaded")
            guard case .transport(_, reachedServer: false)? = await stopped(after: 1) else { Issue.record("not stopped after the upload"); return }
            #expect(gateway.received.map { $0.path.hasSuffix("/attachments") } == [true], "uploaded, no message")
            let delivered = try await client.deliver(attachment)
            #expect(delivered.status == 202)
        }
    }

    @Test("8x8's errors are typed: 401, 403, 400 problem+json, 429 with Retry-After, 500, a delay past the timeout, a body stalled after the head")
    func errors() async throws {
        try await withGateway { gateway, base in
            let text = command(.sendMessage, .object(["authorType": .string("bot"), "text": .string("Hi")]))
            func failure(_ client: ChatGatewayClient, _ command: OutboundCommand) async -> ChatGatewayError? {
                do {
                    _ = try await client.deliver(command)
                    return nil
                } catch {
                    return error
                }
            }
            let wrongKey = await failure(ChatGatewayClient(baseURL: base, apiKey: "nope", tenant: "acme", requestTimeout: Self.patient), text)
            guard case .status(401, let problem?, _)? = wrongKey else { Issue.record("\(String(describing: wrongKey))"); return }
            #expect(problem.code == "access_denied" && problem.referenceId != nil)

            let client = ChatGatewayClient(baseURL: base, apiKey: "test-api-key", tenant: "acme", requestTimeout: Self.patient)
            #expect(await failure(ChatGatewayClient(baseURL: base, apiKey: "test-api-key", tenant: "other", requestTimeout: Self.patient), text)?.statusCode == 403)
            let bad = await failure(client, command(.sendMessage, .object(["authorType": .string("customer"), "text": .string("Hi")])))
            guard case .status(400, let problem?, _)? = bad else { Issue.record("\(String(describing: bad))"); return }
            #expect(problem.code == "invalid_json_object" && problem.message?.contains("authorType") == true)
            #expect(await failure(client, command(.sendMessage, .object(["authorType": .string("bot")])))?.statusCode == 400)

            gateway.inject(.status(429, retryAfter: 7), forPathEndingWith: "/messages")
            guard case .status(429, _, let retryAfter)? = await failure(client, text) else { Issue.record("no 429"); return }
            #expect(retryAfter == .seconds(7))
            gateway.inject(.status(500))
            #expect(await failure(client, text)?.statusCode == 500)
            gateway.inject(.delay(.seconds(3)))
            let impatient = ChatGatewayClient(baseURL: base, apiKey: "test-api-key", tenant: "acme", requestTimeout: .milliseconds(300))
            guard case .timedOut(let timeout)? = await failure(impatient, text) else { Issue.record("no timeout"); return }
            #expect(timeout == .milliseconds(300))
            // The answer's head comes, its body does not: the timeout bounds the whole call.
            gateway.inject(.stallBody(.seconds(300)))
            guard case .timedOut? = await failure(impatient, text) else { Issue.record("a stalled body did not time out"); return }
            let delivered = try await client.deliver(text)
            #expect(delivered.status == 202, "faults are used once")
        }
    }

    @Test("a header value the HTTP client refuses (an API key with a line break) does not put the key into the error")
    func refusedHeaderValue() async throws {
        try await withGateway { _, base in
            let client = ChatGatewayClient(baseURL: base, apiKey: "k-secret-9\n", tenant: "acme", requestTimeout: Self.patient)
            do {
                _ = try await client.deliver(command(.typing, .object(["authorType": .string("bot")])))
                Issue.record("delivered with a broken header")
            } catch {
                #expect(!"\(error)".contains("k-secret-9") && (error as? ChatGatewayError)?.summary.contains("k-secret-9") == false, "\(error)")
            }
        }
    }

    @Test("a connection refused is a transport error that never reached 8x8")
    func refused() async throws {
        let client = ChatGatewayClient(baseURL: "http://127.0.0.1:9", apiKey: "k", tenant: nil, requestTimeout: .seconds(5))
        do {
            _ = try await client.deliver(command(.typing, .object(["authorType": .string("bot")])))
            Issue.record("delivered to a closed port")
        } catch {
            guard case .transport(_, let reached) = error else { Issue.record("\(error)"); return }
            #expect(!reached)
        }
    }

    @Test("a TLS handshake that fails (https to a server that does not speak it, a certificate refused) never reached 8x8; nothing was sent")
    func failedHandshake() async throws {
        try await withGateway { gateway, base in
            let https = base.replacingOccurrences(of: "http://", with: "https://")
            // Without the pool's retries the handshake's failure answers the call at once; with
            // them the call waits for its deadline, and one past its deadline counts as a
            // timeout, which may have reached 8x8. The connect timeout bounds a handshake that
            // hangs instead of failing.
            var configuration = HTTPClient.Configuration()
            configuration.timeout.connect = .seconds(1)
            configuration.connectionPool.retryConnectionEstablishment = false
            let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            defer { _ = http.shutdown() }
            let client = ChatGatewayClient(
                baseURL: https, apiKey: "test-api-key", tenant: "acme", httpClient: http, requestTimeout: .seconds(60))
            do {
                _ = try await client.deliver(command(.sendMessage, .object(["authorType": .string("bot"), "text": .string("Hi")])))
                Issue.record("delivered over a handshake that cannot succeed")
            } catch {
                guard let failure = error as? ChatGatewayError, case .transport(let description, let reached) = failure else {
                    Issue.record("\(error)")
                    return
                }
                #expect(!reached, "\(description)")
            }
            #expect(gateway.acceptedCommandIds.isEmpty)
        }
    }

    @Test("8x8's times are read as milliseconds or ISO 8601; a number out of range is no time rather than a crash")
    func times() {
        #expect(ChatGatewayClient.milliseconds(.number(1_700_000_000_000)) == 1_700_000_000_000)
        #expect(ChatGatewayClient.milliseconds(.string("2026-12-02T00:00:00.250Z")) == 1_796_169_600_250)
        #expect(ChatGatewayClient.milliseconds(.number(1e300)) == nil)
        #expect(ChatGatewayClient.milliseconds(.number(-1e300)) == nil)
    }

    @Test("problems are read leniently: 8x8's shapes and the API gateway's fault")
    func lenientProblems() {
        let object = ChatGatewayError.Problem(body: Array(#"{"message":"Queue ID 112 is invalid.","errors":{"code":"invalid_queue","message":"x"}}"#.utf8))
        #expect(object?.code == "invalid_queue" && object?.message == "Queue ID 112 is invalid.")
        let fault = ChatGatewayError.Problem(body: Array(#"{"fault":{"faultstring":"Invalid access token","detail":{"errorcode":"oauth.v2.InvalidAccessToken"}}}"#.utf8))
        #expect(fault?.code == "oauth.v2.InvalidAccessToken" && fault?.message == "Invalid access token")
        #expect(ChatGatewayError.Problem(body: Array("<html>502</html>".utf8)) == nil)
    }
}
