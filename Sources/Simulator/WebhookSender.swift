public import AsyncHTTPClient
public import Logging
public import EightByEight
public import Foundation
import NIOCore
import NIOHTTP1

/// Sends webhooks to a bot's URL exactly as 8x8's Chat Gateway does: POST, JSON body, the
/// `x-8x8-*` headers and a fresh signature (the transmission time changes at each retry).
public struct WebhookSender: Sendable {
    public let signer: WebhookSigner
    public let logger: Logger
    public var tenantId = "simulated-tenant"
    public var customerId = "simulated-customer"

    public init(signer: WebhookSigner, logger: Logger) {
        self.signer = signer
        self.logger = logger
    }

    public struct Result: Sendable {
        public var status: Int
        public var body: String
    }

    /// Encodes and sends an event model.
    public func send(_ event: WebhookEvent, to url: String, eventId: String = UUID().uuidString, retry: Int = 0, client: HTTPClient = .shared) async throws -> Result {
        let body = try JSONEncoder().encode(event)
        return try await send(body: Array(body), to: url, eventId: eventId, retry: retry, client: client)
    }

    /// Sends raw body bytes, signed.
    public func send(body: [UInt8], to url: String, eventId: String = UUID().uuidString, retry: Int = 0, client: HTTPClient = .shared) async throws -> Result {
        let headers = try signer.signedHeaders(body: body, tenantId: tenantId, customerId: customerId, eventId: eventId, retry: retry)
        return try await post(body: body, headers: headers, to: url, client: client)
    }

    /// Posts a body with exactly these headers (tests tamper with them).
    public func post(body: [UInt8], headers: [(String, String)], to url: String, client: HTTPClient = .shared) async throws -> Result {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers = HTTPHeaders(headers)
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await client.execute(request, timeout: .seconds(30))
        let answer = try await response.body.collect(upTo: 1 << 20)
        return Result(status: Int(response.status.code), body: String(buffer: answer))
    }
}
