public import ChatEvents
public import ConnectorConfiguration
public import EightByEight
public import Kafka
public import Logging
public import Foundation
public import HTTPTypes
public import NIOCore
import NIOFoundationCompat
import Synchronization

/// What the ingress answers a webhook, and why (the reason goes into the response body and
/// the log; it never holds user text or a secret).
public struct WebhookOutcome: Sendable, Hashable {
    public var status: Int
    public var reason: String

    static func ok(_ reason: String) -> Self { .init(status: 200, reason: reason) }
    static func badRequest(_ reason: String) -> Self { .init(status: 400, reason: reason) }
    static func unauthorized(_ reason: String) -> Self { .init(status: 401, reason: reason) }
    static func notFound(_ reason: String) -> Self { .init(status: 404, reason: reason) }
    static func tooLarge(_ reason: String) -> Self { .init(status: 413, reason: reason) }
    static func unsupportedMediaType(_ reason: String) -> Self { .init(status: 415, reason: reason) }
    static func unavailable(_ reason: String) -> Self { .init(status: 503, reason: reason) }
}

/// The webhook pipeline, independent of the HTTP server: size, content type, signature,
/// decode, normalize, de-duplicate, publish and await Kafka's acknowledgement. The answer is
/// 2xx only for an event Kafka acknowledged (or acknowledged before, for a retry).
public final class WebhookIngress: Sendable {
    public enum Route: Sendable, Hashable {
        case endpoint(urlToken: String)
        case handover
    }

    let endpointsByToken: [String: ConnectorConfig.EndpointSettings]
    let handoverEndpoint: (tenant: [String: String], sole: String?)
    let topic: String
    let maxBodyBytes: Int
    let signatureRequired: Bool
    let verifier: SignatureVerifier
    let producer: KafkaProducer
    let publishTimeout: Duration
    let recent: RecentEvents<KafkaDelivery>
    let metrics: IngressMetrics
    let logger: Logger
    let now: @Sendable () -> Int64

    public init(
        config: ConnectorConfig, producer: KafkaProducer, keys: any WebhookKeyProvider, metrics: IngressMetrics,
        logger: Logger, now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
    ) {
        var byToken: [String: ConnectorConfig.EndpointSettings] = [:]
        var byTenant: [String: String] = [:]
        for endpoint in config.endpoints {
            byToken[endpoint.urlToken] = endpoint
            if let tenant = endpoint.eightByEight.tenant, byTenant[tenant] == nil { byTenant[tenant] = endpoint.name }
        }
        endpointsByToken = byToken
        handoverEndpoint = (byTenant, config.endpoints.count == 1 ? config.endpoints[0].name : nil)
        topic = config.topicName(.inbound)
        maxBodyBytes = config.ingress.maxBodyBytes
        signatureRequired = config.ingress.signature.required
        verifier = SignatureVerifier(keys: keys, maxClockSkewSeconds: config.ingress.signature.maxClockSkewSeconds)
        self.producer = producer
        publishTimeout = .milliseconds(config.ingress.publishTimeoutMs)
        recent = RecentEvents(capacity: config.ingress.dedupeCapacity)
        self.metrics = metrics
        self.logger = logger
        self.now = now
    }

    /// The endpoint a route belongs to; nil when the url token is unknown.
    func endpointName(for route: Route, tenant: String?) -> String?? {
        switch route {
        case .endpoint(let token):
            guard let endpoint = endpointsByToken[token] else { return nil }
            return .some(endpoint.name)
        case .handover:
            if let tenant, let name = handoverEndpoint.tenant[tenant] { return .some(name) }
            return .some(handoverEndpoint.sole)
        }
    }

    /// Handles one webhook. `contentLength` is the declared length, checked before the body is
    /// read; `readBody` collects at most `limit` bytes and throws when there are more.
    public func handle(
        route: Route, headers: HTTPFields, readBody: (_ limit: Int) async throws -> ByteBuffer
    ) async -> WebhookOutcome {
        let started = ContinuousClock.now
        let lookup = { (name: String) in HTTPField.Name(name).flatMap { headers[$0] } }
        let webhookHeaders = WebhookHeaders(lookup: lookup)
        let resolved = endpointName(for: route, tenant: webhookHeaders.tenantId)
        let outcome = await process(route: route, endpoint: resolved, headers: headers, webhookHeaders: webhookHeaders, readBody: readBody)
        let label = resolved.flatMap { $0 } ?? (resolved == nil ? "unknown" : "handover")
        metrics.request(endpoint: label, status: outcome.status, duration: ContinuousClock.now - started)
        return outcome
    }

    private func process(
        route: Route, endpoint: String??, headers: HTTPFields, webhookHeaders: WebhookHeaders,
        readBody: (_ limit: Int) async throws -> ByteBuffer
    ) async -> WebhookOutcome {
        guard let endpoint else { return .notFound("unknown endpoint") }
        var log = logger
        log[metadataKey: "endpoint"] = "\(endpoint ?? "handover")"
        if let eventId = webhookHeaders.eventId { log[metadataKey: "event_id"] = "\(eventId.prefix(64))" }

        if let declared = headers[.contentLength].flatMap({ Int($0) }), declared > maxBodyBytes {
            return .tooLarge("body larger than \(maxBodyBytes) bytes")
        }
        guard Self.isJSON(headers[.contentType]) else {
            return .unsupportedMediaType("content type must be application/json")
        }
        let body: ByteBuffer
        do {
            body = try await readBody(maxBodyBytes)
        } catch {
            return .tooLarge("body larger than \(maxBodyBytes) bytes")
        }

        // Signature: required by configuration, and checked whenever one is sent.
        var verified = false
        if webhookHeaders.hasSignatureHeaders {
            do {
                _ = try await verifier.verify(body: body.readableBytesView, headers: webhookHeaders, nowMilliseconds: now())
                verified = true
            } catch {
                metrics.signatureFailure(reason: error.reason)
                log.warning("webhook signature rejected", metadata: ["reason": "\(error)"])
                return error.isTransient ? .unavailable(error.description) : .unauthorized(error.description)
            }
        }

        let event: WebhookEvent
        do {
            event = try JSONDecoder().decode(WebhookEvent.self, from: body)
        } catch {
            // An unsigned body is not described further: it may be anybody's.
            return verified || !signatureRequired ? .badRequest("body is not a JSON webhook event: \(Self.describe(error))") : .unauthorized("missing header \(WebhookHeaders.signature)")
        }
        if event.kind == .webHookVerify {
            // 8x8 checks the URL; it is answered and goes no further (spec 4.8).
            log.info("webhook verification answered")
            return .ok("verified")
        }
        guard verified || !signatureRequired else {
            metrics.signatureFailure(reason: "missing_header")
            return .unauthorized("missing header \(WebhookHeaders.signature)")
        }

        let eventId = webhookHeaders.eventId ?? UUID().uuidString
        var inbound = InboundEvent(
            eventId: eventId, retry: webhookHeaders.retryCount ?? 0, tenantId: webhookHeaders.tenantId,
            customerId: webhookHeaders.customerId, endpoint: endpoint, route: route == .handover ? .handover : .endpoint,
            receivedAt: now(), transmissionTime: webhookHeaders.transmissionTimeMilliseconds, eventType: event.eventType,
            conversationId: event.conversationId, eventTimestamp: event.timestamp, signatureVerified: verified,
            normalized: event.normalized
        )
        if inbound.conversationId?.isEmpty == true { inbound.conversationId = nil }
        if let conversation = inbound.conversationId { log[metadataKey: "conversation_id"] = "\(conversation.prefix(128))" }

        let record: [UInt8]
        do {
            record = try inbound.encodedRecord(rawBody: body.readableBytesView)
        } catch {
            return .badRequest("event cannot be encoded: \(error)")
        }
        let message = KafkaProducerMessage(topic: topic, key: inbound.recordKey, value: record)
        let producer = self.producer
        let dedupeKey = (webhookHeaders.tenantId ?? "") + "\u{0}" + eventId
        let task: Task<KafkaDelivery, any Error>
        switch recent.claim(dedupeKey, publish: { try await producer.send(message) }) {
        case .published:
            metrics.duplicates.increment()
            log.info("duplicate webhook answered without publishing")
            return .ok("duplicate")
        case .pending(let pending):
            metrics.duplicates.increment()
            task = pending
        case .claimed(let claimed):
            task = claimed
        }

        switch await Self.value(of: task, within: publishTimeout) {
        case .success(let delivery):
            metrics.published.increment()
            log.debug("webhook published", metadata: ["partition": "\(delivery.topicPartition.partition)", "offset": "\(delivery.offset)"])
            return .ok("published")
        case .failure(let error):
            log.warning("webhook not published", metadata: ["error": "\(error)"])
            return .unavailable("kafka did not acknowledge the event")
        case nil:
            metrics.publishTimeouts.increment()
            log.warning("kafka acknowledgement timed out", metadata: ["timeout": "\(publishTimeout)"])
            return .unavailable("kafka did not acknowledge the event in time")
        }
    }

    /// Waits for a task's value for at most `timeout`; the task itself goes on (its late
    /// result still marks the event as published). A task group would not do: it waits for
    /// its children, and awaiting another task's value does not end on cancellation.
    static func value<T: Sendable>(of task: Task<T, any Error>, within timeout: Duration) async -> Result<T, any Error>? {
        let first = FirstResult<Result<T, any Error>?>()
        return await withCheckedContinuation { continuation in
            first.wait(with: continuation)
            let timer = Task {
                try? await Task.sleep(for: timeout)
                first.resume(nil)
            }
            Task {
                let result = await task.result
                timer.cancel()
                first.resume(result)
            }
        }
    }

    /// `application/json`, any `+json` type, with or without parameters, in any case.
    static func isJSON(_ contentType: String?) -> Bool {
        guard let contentType else { return false }
        let type = contentType.split(separator: ";", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        return type == "application/json" || (type.hasPrefix("application/") && type.hasSuffix("+json"))
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "\(key.stringValue) is missing"
        case DecodingError.typeMismatch(_, let context), DecodingError.dataCorrupted(let context):
            context.codingPath.isEmpty ? "not a JSON object" : "\(context.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type"
        default: "not valid JSON"
        }
    }
}

/// A continuation resumed by whichever of several racers comes first.
final class FirstResult<T: Sendable>: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<T, Never>?, done: Bool)>((nil, false))

    func wait(with continuation: CheckedContinuation<T, Never>) {
        state.withLock { $0.continuation = continuation }
    }

    func resume(_ value: T) {
        let continuation: CheckedContinuation<T, Never>? = state.withLock { state in
            guard !state.done, let continuation = state.continuation else { return nil }
            state.done = true
            state.continuation = nil
            return continuation
        }
        continuation?.resume(returning: value)
    }
}
