public import Hummingbird
public import Logging
import ChatEvents
import Foundation
import NIOCore
import Synchronization

/// A local stand-in for 8x8's Chat Gateway. It grows with the services that talk to it; for
/// now it serves the signing keys at 8x8's JWK path and can be told to misbehave there.
public final class EightByEightSimulator: Sendable {
    public let signer: WebhookSigner
    private let state = Mutex(State())

    struct State {
        var extraKeys: [String: [String: String]] = [:]
        var jwkBehavior: JWKBehavior = .normal
        var jwkRequests = 0
    }

    /// How the JWK endpoint answers.
    public enum JWKBehavior: Sendable, Hashable {
        case normal
        /// Answers after the delay (to test fetch timeouts).
        case slow(Duration)
        /// Answers with this status and no key.
        case failing(status: Int)
        /// The gateway path answers this status (an API gateway that does not route it); the
        /// legacy path (`/vcc/us/chat/v2/jwk/{kid}/public`) serves the keys. Otherwise the
        /// legacy path is not served.
        case legacyPathOnly(gatewayStatus: Int)
    }

    /// The Chat Gateway REST paths, when the simulator stands in for 8x8's API too.
    public let gateway: ChatGatewaySimulator?

    public init(signer: WebhookSigner, credentials: ChatGatewaySimulator.Credentials? = nil) {
        self.signer = signer
        self.gateway = credentials.map(ChatGatewaySimulator.init(credentials:))
    }

    public convenience init() throws {
        try self.init(signer: WebhookSigner())
    }

    public var jwkBehavior: JWKBehavior {
        get { state.withLock { $0.jwkBehavior } }
        set { state.withLock { $0.jwkBehavior = newValue } }
    }

    /// How many JWK requests arrived (to check caching and coalescing).
    public var jwkRequestCount: Int { state.withLock { $0.jwkRequests } }

    /// Serves another key beside the signer's (rotation).
    public func addKey(_ signer: WebhookSigner) {
        state.withLock { $0.extraKeys[signer.kid] = signer.publicJWK }
    }

    /// A webhook sender that signs with this simulator's key.
    public func webhookSender(logger: Logger = Logger(label: "simulator.webhooks")) -> WebhookSender {
        WebhookSender(signer: signer, logger: logger)
    }

    /// Sends, for each bot message the gateway accepts, the echo `MESSAGE` webhook (`isEcho`
    /// true) to `url`, as 8x8 does: signed for the gateway's tenant.
    public func sendEchoes(to url: String, logger: Logger = Logger(label: "simulator.echo")) {
        let sender = {
            var sender = webhookSender(logger: logger)
            if let tenant = gateway?.credentials.tenant { sender.tenantId = tenant }
            return sender
        }()
        gateway?.onBotMessage { conversationId, message in
            var data: [String: JSONValue] = [
                "isEcho": .bool(true), "sender": .object(["id": .string("bot"), "type": .string("bot")]),
                "attachments": .array(message.attachments), "cards": .array(message.cards),
            ]
            if let text = message.text { data["text"] = .string(text) }
            let event: JSONValue = .object([
                "eventType": .string("MESSAGE"), "conversationId": .string(conversationId),
                "timestamp": .number(Double(message.createdAt)), "data": .object(data),
            ])
            var writer = JSONWriter(capacity: 256)
            writer.value(event)
            let body = writer.bytes
            Task {
                // Retried as 8x8 retries any webhook the bot did not take.
                let eventId = UUID().uuidString
                if await sender.sendRetrying(body: body, to: url, eventId: eventId) == nil {
                    logger.debug("echo webhook not delivered", metadata: ["event_id": "\(eventId)"])
                }
            }
        }
    }

    public func addRoutes(to router: Router<some RequestContext>) {
        router.get("/chat-gateway/v1/jwk/:kid/public") { _, context in
            try await self.jwk(kid: context.parameters.require("kid"))
        }
        router.get("/vcc/us/chat/v2/jwk/:kid/public") { _, context in
            guard case .legacyPathOnly = self.jwkBehavior else { throw HTTPError(.notFound) }
            return try await self.jwk(kid: context.parameters.require("kid"), legacyPath: true)
        }
        // Files the bot may send as attachments (a stand-in for any HTTPS URL).
        router.get("/files/:name") { _, context in
            let name = context.parameters.get("name") ?? "file"
            return Response(
                status: .ok, headers: [.contentType: "application/octet-stream"],
                body: .init(byteBuffer: ByteBuffer(string: "simulated content of \(name)\n")))
        }
        gateway?.addRoutes(to: router)
    }

    func jwk(kid: String, legacyPath: Bool = false) async throws -> Response {
        let (behavior, jwk) = state.withLock { state in
            state.jwkRequests += 1
            return (state.jwkBehavior, kid == signer.kid ? signer.publicJWK : state.extraKeys[kid])
        }
        switch behavior {
        case .normal: break
        case .slow(let delay): try await Task.sleep(for: delay)
        case .failing(let status):
            return Self.json(#"{"status":\#(status),"title":"Simulated failure"}"#, status: HTTPResponse.Status(code: status))
        case .legacyPathOnly(let status):
            if !legacyPath { return Self.json(#"{"message":"Forbidden"}"#, status: HTTPResponse.Status(code: status)) }
        }
        guard let jwk else {
            return Self.json(#"{"status":404,"title":"Not Found","detail":"no such key"}"#, status: .notFound)
        }
        let body = try JSONSerialization.data(withJSONObject: jwk, options: [.sortedKeys])
        return Self.json(String(decoding: body, as: UTF8.self), status: .ok)
    }

    static func json(_ text: String, status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// The simulator as an HTTP application on `host:port` (port 0 picks a free port, reported
    /// through `onRunning`).
    public func application(
        host: String = "127.0.0.1", port: Int = 0, logger: Logger = Logger(label: "simulator"), console: SimulatorConsole? = nil,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        addRoutes(to: router)
        console?.addRoutes(to: router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "8x8-simulator"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }
}
