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

    /// How long 8x8 waits before each retry of a webhook the bot did not take (the schedule
    /// is not published; spec 11.1: a few retries, growing apart).
    public static let retryDelays: [Duration] = [1, 2, 4, 8, 16].map { .seconds($0) }

    /// Sends again what the bot did not take (a non-2xx answer or none), as 8x8 does (spec
    /// 3.4): the same event id, `x-8x8-retry` counting up from `firstRetry`, a fresh
    /// transmission time and signature, after each of `delays`. `answered` hears every
    /// attempt. The last answer, or nil when none was 2xx.
    public func sendRetrying(
        body: [UInt8], to url: String, eventId: String, firstRetry: Int = 0, delays: [Duration] = Self.retryDelays,
        client: HTTPClient = .shared, answered: @Sendable (_ retry: Int, _ outcome: Swift.Result<Result, any Error>) -> Void = { _, _ in }
    ) async -> Result? {
        for retry in firstRetry...max(firstRetry, delays.count) {
            if retry > 0, !delays.isEmpty {
                try? await Task.sleep(for: delays[min(retry, delays.count) - 1])
                if Task.isCancelled { return nil }
            }
            let outcome: Swift.Result<Result, any Error>
            do {
                outcome = .success(try await send(body: body, to: url, eventId: eventId, retry: retry, client: client))
            } catch {
                outcome = .failure(error)
            }
            answered(retry, outcome)
            if case .success(let result) = outcome, (200..<300).contains(result.status) { return result }
        }
        return nil
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
