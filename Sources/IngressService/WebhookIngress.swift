public import ChatEvents
public import ConnectorConfiguration
public import EightByEight
public import Kafka
public import Logging
public import ServiceLifecycle
public import Foundation
public import HTTPTypes
public import NIOCore
import NIOFoundationCompat
import Synchronization

/// Thrown by a body reader when the body exceeds the limit it was given.
public struct BodyTooLarge: Error, Sendable {
    public init() {}
}

/// What the ingress answers a webhook, and why (the reason goes into the response body and
/// the log; it never holds user text or a secret).
public struct WebhookOutcome: Sendable, Hashable {
    public var status: Int
    public var reason: String

    static func ok(_ reason: String) -> Self { .init(status: 200, reason: reason) }
    static func badRequest(_ reason: String) -> Self { .init(status: 400, reason: reason) }
    static func unauthorized(_ reason: String) -> Self { .init(status: 401, reason: reason) }
    static func forbidden(_ reason: String) -> Self { .init(status: 403, reason: reason) }
    static func notFound(_ reason: String) -> Self { .init(status: 404, reason: reason) }
    static func tooLarge(_ reason: String) -> Self { .init(status: 413, reason: reason) }
    static func unsupportedMediaType(_ reason: String) -> Self { .init(status: 415, reason: reason) }
    static func unavailable(_ reason: String) -> Self { .init(status: 503, reason: reason) }
}

/// The webhook pipeline, independent of the HTTP server: size, content type, signature,
/// decode, normalize, de-duplicate, publish and await Kafka's acknowledgement. The answer is
/// 2xx only for an event Kafka acknowledged (or acknowledged before, for a retry).
public final class WebhookIngress: Service, Sendable {
    public enum Route: Sendable, Hashable {
        case endpoint(urlToken: String)
        case handover
    }

    let endpointsByToken: [String: ConnectorConfig.EndpointSettings]
    /// Where a handover webhook goes: the endpoint of its tenant, nil for a tenant several
    /// endpoints share (the worker goes by the conversation's session); else the sole endpoint.
    let handoverEndpoint: (tenant: [String: String?], sole: String?)
    /// The 8x8 tenant each endpoint is configured for (`eightByEight.tenant`), by name.
    let tenantOfEndpoint: [String: String]
    /// Every endpoint names its tenant: a handover webhook of another tenant belongs to none.
    let everyEndpointHasTenant: Bool
    let topic: String
    let maxBodyBytes: Int
    /// The largest record the producer sends (librdkafka's `message.max.bytes`, less room
    /// for the key and the request's framing).
    let maxRecordBytes: Int
    let signatureRequired: Bool
    let verifier: SignatureVerifier
    let producer: KafkaProducer
    let publishTimeout: Duration
    /// `ingress.idleTimeoutSeconds`; nil: never.
    let idleTimeout: Duration?
    let recent: RecentEvents
    let sweeper = DeadlineSweeper()
    /// Where waiting requests are resumed: on the event loop they came in on.
    let handoff = LoopHandoff()
    let metrics: IngressMetrics
    let logger: Logger
    /// Bounds the lines a flood of failing webhooks writes.
    let logBudget = LogBudget()
    let now: @Sendable () -> Int64

    public init(
        config: ConnectorConfig, producer: KafkaProducer, keys: any WebhookKeyProvider, metrics: IngressMetrics,
        logger: Logger, now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
    ) {
        var byToken: [String: ConnectorConfig.EndpointSettings] = [:]
        var byTenant: [String: String?] = [:]
        for endpoint in config.endpoints {
            byToken[endpoint.urlToken] = endpoint
            if let tenant = endpoint.eightByEight.tenant { byTenant[tenant] = byTenant[tenant] == nil ? .some(endpoint.name) : .some(nil) }
        }
        endpointsByToken = byToken
        handoverEndpoint = (byTenant, config.endpoints.count == 1 ? config.endpoints[0].name : nil)
        tenantOfEndpoint = Dictionary(config.endpoints.compactMap { endpoint in endpoint.eightByEight.tenant.map { (endpoint.name, $0) } }) { first, _ in first }
        everyEndpointHasTenant = config.endpoints.allSatisfy { $0.eightByEight.tenant != nil }
        topic = config.topicName(.inbound)
        maxBodyBytes = config.ingress.maxBodyBytes
        maxRecordBytes = config.kafka.maxRecordBytes
        signatureRequired = config.ingress.signature.required
        verifier = SignatureVerifier(keys: keys, maxClockSkewSeconds: config.ingress.signature.maxClockSkewSeconds)
        self.producer = producer
        publishTimeout = .milliseconds(config.ingress.publishTimeoutMs)
        idleTimeout = config.ingress.idleTimeoutSeconds > 0 ? .seconds(config.ingress.idleTimeoutSeconds) : nil
        recent = RecentEvents(capacity: config.ingress.dedupeCapacity)
        self.metrics = metrics
        self.logger = logger
        self.now = now
    }

    /// Where a webhook belongs.
    enum Destination {
        /// No endpoint has this url token.
        case unknownToken
        /// The endpoint's name; nil for a handover webhook no endpoint claims.
        case endpoint(String?)

        /// The `endpoint` label of the request metrics.
        var metricLabel: String {
            switch self {
            case .unknownToken: "unknown"
            case .endpoint(let name): name ?? "handover"
            }
        }
    }

    /// Whether a webhook of `tenant` may go to `endpoint` (nil: a handover webhook of a tenant
    /// several endpoints share, or that no endpoint's tenant claims).
    func isForThisConnector(tenant: String, endpoint: String?) -> Bool {
        guard let endpoint else { return handoverEndpoint.tenant[tenant] != nil || !everyEndpointHasTenant }
        return tenantOfEndpoint[endpoint].map { $0 == tenant } ?? true
    }

    func destination(of route: Route, tenant: String?) -> Destination {
        switch route {
        case .endpoint(let token):
            endpointsByToken[token].map { .endpoint($0.name) } ?? .unknownToken
        case .handover:
            if let tenant, let claimed = handoverEndpoint.tenant[tenant] {
                .endpoint(claimed)
            } else {
                .endpoint(handoverEndpoint.sole)
            }
        }
    }

    /// Handles one webhook. A declared `content-length` over the limit is refused before the body
    /// is read; `readBody` collects at most `limit` bytes and throws `BodyTooLarge` when there
    /// are more.
    public func handle(
        route: Route, headers: HTTPFields, readBody: (_ limit: Int) async throws -> ByteBuffer
    ) async -> WebhookOutcome {
        let started = ContinuousClock.now
        let fields = RequestFields(headers)
        let destination = destination(of: route, tenant: fields.webhook.tenantId)
        let outcome = await process(route: route, destination: destination, fields: fields, readBody: readBody)
        metrics.request(endpoint: destination.metricLabel, status: outcome.status, duration: ContinuousClock.now - started)
        return outcome
    }

    private func process(
        route: Route, destination: Destination, fields: RequestFields, readBody: (_ limit: Int) async throws -> ByteBuffer
    ) async -> WebhookOutcome {
        let webhookHeaders = fields.webhook
        guard case .endpoint(let endpoint) = destination else { return .notFound("unknown endpoint") }
        // Metadata is built only for lines that are written: setting it on the logger would
        // cost every request (a StreamLogHandler re-renders its metadata on each change).
        var conversationId: String?
        func context(_ extra: Logger.Metadata = [:]) -> Logger.Metadata {
            var metadata = extra
            metadata["endpoint"] = "\(destination.metricLabel)"
            if let eventId = webhookHeaders.eventId { metadata["event_id"] = "\(LogSafe.text(eventId, maxBytes: 128))" }
            if let conversationId { metadata["conversation_id"] = "\(LogSafe.text(conversationId, maxBytes: 128))" }
            return metadata
        }

        if let declared = fields.contentLength.flatMap({ Int($0) }), declared > maxBodyBytes {
            return .tooLarge("body larger than \(maxBodyBytes) bytes")
        }
        guard Self.isJSON(fields.contentType) else {
            return .unsupportedMediaType("content type must be application/json")
        }
        let body: ByteBuffer
        do {
            body = try await readBody(maxBodyBytes)
        } catch is BodyTooLarge {
            return .tooLarge("body larger than \(maxBodyBytes) bytes")
        } catch {
            return .badRequest("body could not be read")
        }

        // Signature: required by configuration, and checked whenever one is sent.
        var verified = false
        if webhookHeaders.hasSignatureHeaders {
            do {
                _ = try await verifier.verify(body: body.readableBytesView, headers: webhookHeaders, nowMilliseconds: now())
                verified = true
            } catch {
                metrics.signatureFailure(reason: error.reason)
                log("webhook signature rejected", context(["reason": "\(error)"]))
                // A key that cannot be fetched now is 8x8's cue to retry; how the fetch failed
                // (addresses, client errors) stays in the log.
                return error.isTransient ? .unavailable("signing key unavailable, try again later") : .unauthorized(error.description)
            }
        }

        // A signature proves that 8x8 sent the webhook, not for whom: an endpoint configured for
        // a tenant takes only that tenant's webhooks (the tenant id is a signed header).
        if verified, let tenant = webhookHeaders.tenantId, !isForThisConnector(tenant: tenant, endpoint: endpoint) {
            metrics.signatureFailure(reason: "tenant")
            log("webhook of another 8x8 tenant refused", context(["tenant": "\(LogSafe.text(tenant, maxBytes: 64))"]))
            return .forbidden("tenant is not this endpoint's")
        }

        // Without a signature only 8x8's URL check (WEB_HOOK_VERIFY, a few dozen bytes) can be
        // accepted; a larger unsigned body is refused unread rather than parsed for anybody.
        if !verified, signatureRequired, body.readableBytes > Self.maxUnsignedBodyBytes {
            metrics.signatureFailure(reason: "missing_header")
            return .unauthorized("missing header \(WebhookHeaders.signature)")
        }
        let event: WebhookEvent
        do {
            event = try WebhookEvent.decode(body.readableBytesView)
        } catch {
            // An unsigned body is not described further: it may be anybody's.
            return verified || !signatureRequired ? .badRequest("body is not a JSON webhook event: \(Self.describe(error))") : .unauthorized("missing header \(WebhookHeaders.signature)")
        }
        if event.kind == .webHookVerify {
            // 8x8 checks the URL; it is answered and goes no further (spec 4.8).
            // Unsigned, anyone can send it: within the budget like every line a sender causes.
            log("webhook verification answered", context(), level: .info)
            return .ok("verified")
        }
        guard verified || !signatureRequired else {
            metrics.signatureFailure(reason: "missing_header")
            return .unauthorized("missing header \(WebhookHeaders.signature)")
        }

        // Without an event id (or an empty one) the event gets its own and is not de-duplicated;
        // an unsigned webhook's retry count or time that is negative, or too large for the
        // record's readers (JSON numbers are exact to 2^53), is not written down.
        let eventId = webhookHeaders.eventId.flatMap { $0.isEmpty ? nil : $0 } ?? UUID().uuidString
        var inbound = InboundEvent(
            eventId: eventId, retry: Self.recordable(webhookHeaders.retryCount) ?? 0, tenantId: webhookHeaders.tenantId,
            customerId: webhookHeaders.customerId, endpoint: endpoint, route: route == .handover ? .handover : .endpoint,
            receivedAt: now(), transmissionTime: Self.recordable(webhookHeaders.transmissionTimeMilliseconds), eventType: event.eventType,
            conversationId: event.conversationId, eventTimestamp: event.timestamp, signatureVerified: verified,
            normalized: event.normalized
        )
        if inbound.conversationId?.isEmpty == true { inbound.conversationId = nil }
        conversationId = inbound.conversationId

        // The record holds the body and the normalized fields (a message's text twice): one
        // Kafka refuses for its size would get 503 at every retry of 8x8's.
        // `maxRecordBytes` leaves room for a short key; a conversation id of kilobytes (only
        // unsigned webhooks can make one up) counts whole.
        let record = inbound.encodedRecord(rawBody: body.readableBytesView)
        let recordBytes = record.count + max(0, inbound.recordKey.utf8.count - 64)
        guard recordBytes <= maxRecordBytes else {
            log("webhook too large for a Kafka record", context(["bytes": "\(recordBytes)"]))
            return .tooLarge("event too large for a Kafka record (\(recordBytes) bytes)")
        }

        let dedupeKey = RecentEvents.Key(tenant: webhookHeaders.tenantId, route: route, eventId: eventId)
        let pending: PendingPublish
        switch recent.claim(dedupeKey) {
        case .published:
            metrics.duplicates.increment()
            log("duplicate webhook answered without publishing", context(), level: .info)
            return .ok("duplicate")
        case .pending(let shared):
            metrics.duplicates.increment()
            pending = shared
        case .claimed(let claimed):
            pending = claimed
            let recent = self.recent
            let message = KafkaProducerMessage(topic: topic, key: inbound.recordKey, value: record)
            do {
                try producer.send(message) { outcome in
                    recent.finish(dedupeKey, published: (try? outcome.get()) != nil)
                    claimed.complete(outcome)
                }
            } catch {
                let failure = (error as? KafkaError) ?? KafkaError(kind: .delivery, code: .requestTimedOut, message: "\(error)")
                recent.finish(dedupeKey, published: false)
                claimed.complete(.failure(failure))
            }
        }

        switch await pending.wait(deadline: .now + publishTimeout, sweeper: sweeper, home: handoff.current) {
        case .success(let delivery):
            metrics.published.increment()
            logger.debug("webhook published", metadata: context(["partition": "\(delivery.topicPartition.partition)", "offset": "\(delivery.offset)"]))
            return .ok("published")
        case .failure(let error):
            log("webhook not published", context(["error": "\(error)"]))
            return .unavailable("kafka did not acknowledge the event")
        case nil:
            metrics.publishTimeouts.increment()
            log("kafka acknowledgement timed out", context(["timeout": "\(publishTimeout)"]))
            return .unavailable("kafka did not acknowledge the event in time")
        }
    }

    /// A line that every webhook of a flood could write, within `logBudget`; the first line
    /// after some were held back carries their number (`held_back`).
    private func log(_ message: StaticString, _ metadata: @autoclosure () -> Logger.Metadata, level: Logger.Level = .warning) {
        guard logger.logLevel <= level else { return }
        let kind = message.withUTF8Buffer { String(decoding: $0, as: UTF8.self) }
        guard let held = logBudget.admit(kind) else { return }
        var metadata = metadata()
        if held > 0 { metadata["held_back"] = "\(held)" }
        logger.log(level: level, "\(kind)", metadata: metadata)
    }

    /// Expires waits on Kafka acknowledgements (`ingress.publishTimeoutMs`).
    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.sweeper.run() }
    }

    static let maxUnsignedBodyBytes = 1024

    /// The request headers the ingress reads, found in one pass over the fields (a lookup by
    /// name scans them all and joins repeats, once per name). A repeated header counts by its
    /// first value: the signature covers the `x-8x8-*` values, so a second one changes nothing.
    struct RequestFields {
        var webhook = WebhookHeaders()
        var contentLength: String?
        var contentType: String?

        init(_ headers: HTTPFields) {
            for field in headers {
                let name = field.name
                if name == .contentType { contentType = contentType ?? field.value }
                else if name == .contentLength { contentLength = contentLength ?? field.value }
                else { webhook.record(name: name.canonicalName, value: field.value) }
            }
        }
    }

    /// `application/json`, any `+json` type, with or without parameters, in any case.
    static func isJSON(_ contentType: String?) -> Bool {
        guard var contentType else { return false }
        return contentType.withUTF8 { bytes in
            var end = bytes.firstIndex(of: UInt8(ascii: ";")) ?? bytes.count
            while end > 0, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
            var start = 0
            while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
            let type = UnsafeBufferPointer(rebasing: bytes[start..<end])
            func lowercased(_ byte: UInt8) -> UInt8 { (0x41...0x5A).contains(byte) ? byte | 0x20 : byte }
            func hasPrefix(_ prefix: StaticString) -> Bool {
                type.count >= prefix.utf8CodeUnitCount && (0..<prefix.utf8CodeUnitCount).allSatisfy { lowercased(type[$0]) == prefix.utf8Start[$0] }
            }
            func hasSuffix(_ suffix: StaticString) -> Bool {
                let n = suffix.utf8CodeUnitCount
                return type.count >= n && (0..<n).allSatisfy { lowercased(type[type.count - n + $0]) == suffix.utf8Start[$0] }
            }
            if type.count == 16 && hasPrefix("application/json") { return true }
            return hasPrefix("application/") && hasSuffix("+json")
        }
    }

    /// A header's number as the record may hold it: not negative, and below 2^53, where JSON
    /// numbers stop being exact (the worker's reader refuses larger ones).
    static func recordable<Number: BinaryInteger>(_ value: Number?) -> Number? {
        guard let value, value >= 0, JSONInteger.holds(value) else { return nil }
        return value
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as JSONParser.Error: "\(error)"
        case DecodingError.keyNotFound(let key, _): "\(key.stringValue) is missing"
        case DecodingError.typeMismatch(_, let context), DecodingError.dataCorrupted(let context):
            context.codingPath.isEmpty ? "not a JSON object" : "\(context.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type"
        default: "not valid JSON"
        }
    }
}
