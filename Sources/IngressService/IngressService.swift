public import AsyncHTTPClient
public import ConnectorConfiguration
public import EightByEight
public import Hummingbird
public import Kafka
public import Logging
public import ServiceLifecycle
import ChatEvents
import Foundation
import NIOCore
import NIOPosix

/// The ingress service: 8x8's webhooks in, normalized events on `eightbyeight.inbound.v1`.
/// An HTTP application (Hummingbird) with the Kafka producer and the readiness probe as its
/// services, so they share one lifecycle: on shutdown the server stops accepting first, then
/// the producer flushes what was accepted.
public struct IngressService: Sendable {
    public let ingress: WebhookIngress
    public let producer: KafkaProducer
    public let readiness: KafkaReadiness
    public let metrics: IngressMetrics
    let logger: Logger

    public init(ingress: WebhookIngress, producer: KafkaProducer, readiness: KafkaReadiness, metrics: IngressMetrics, logger: Logger) {
        self.ingress = ingress
        self.producer = producer
        self.readiness = readiness
        self.metrics = metrics
        self.logger = logger
    }

    /// Builds the service from the configuration: producer, admin client for readiness, and
    /// the JWK cache (unless `keys` is given).
    public static func make(
        config: ConnectorConfig, bootstrapServers: String, keys: (any WebhookKeyProvider)? = nil,
        httpClient: HTTPClient = .shared, logger: Logger
    ) throws -> IngressService {
        var producerConfig = KafkaProducerConfiguration(bootstrapServers: bootstrapServers)
        producerConfig.clientID = "connector-ingress"
        // 8x8 waits for the acknowledgement, so an event waits for no linger: it goes at once
        // unless its partition already has 5 in flight, and then with the others that came
        // meanwhile when an acknowledgement comes (`ingress.lingerMs` 0, the default; a value
        // above 0 is librdkafka's linger instead). `kafka.properties` wins.
        producerConfig.batching = config.ingress.lingerMs == 0 ? .adaptive : .linger
        producerConfig.lingerMilliseconds = config.ingress.lingerMs
        producerConfig.properties = config.kafka.properties
        // Delivery reports are served on an event loop of the HTTP server's group: no polling
        // thread to wake for each batch of acknowledgements.
        let reportLoop = MultiThreadedEventLoopGroup.singleton.next()
        producerConfig.callbacks = .scheduled { reportLoop.execute($0) }
        let producer = try KafkaProducer(configuration: producerConfig, logger: logger)
        let admin = try KafkaAdmin(
            bootstrapServers: bootstrapServers, properties: config.kafka.properties,
            requestTimeout: .seconds(2), logger: logger
        )
        let signature = config.ingress.signature
        let keys = keys ?? JWKCache(
            baseURL: signature.jwkBaseURL, httpClient: httpClient, ttl: .seconds(signature.jwkCacheTTLSeconds),
            fetchTimeout: .milliseconds(signature.jwkFetchTimeoutMs), logger: logger
        )
        let metrics = IngressMetrics()
        let ingress = WebhookIngress(config: config, producer: producer, keys: keys, metrics: metrics, logger: logger)
        return IngressService(
            ingress: ingress, producer: producer, readiness: KafkaReadiness(admin: admin, logger: logger),
            metrics: metrics, logger: logger
        )
    }

    /// The routes of ARCHITECTURE.md ("HTTP").
    public func addRoutes(to router: Router<some RequestContext>) {
        let ingress = self.ingress
        // Each configured token has a route of its own: the router matches it as a constant,
        // which costs less per webhook than capturing and looking up a parameter. Tokens
        // nobody configured fall through to the parameter route and its 404.
        for token in ingress.endpointsByToken.keys.sorted() where token.utf8.allSatisfy({ Self.isPathSafe($0) }) {
            router.post(RouterPath("/endpoint/\(token)")) { request, _ in
                await Self.answer(ingress: ingress, route: .endpoint(urlToken: token), request: request)
            }
        }
        router.post("/endpoint/:urlToken") { request, context in
            let token = context.parameters.get("urlToken") ?? ""
            return await Self.answer(ingress: ingress, route: .endpoint(urlToken: token), request: request)
        }
        router.post("/handover/eightByEight") { request, _ in
            await Self.answer(ingress: ingress, route: .handover, request: request)
        }
        router.get("/health/live") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "live\n")))
        }
        let readiness = self.readiness
        router.get("/health/ready") { _, _ in
            let ready = readiness.isReady
            return Response(
                status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"],
                body: .init(byteBuffer: ByteBuffer(string: ready ? "ready\n" : "kafka unreachable\n"))
            )
        }
        let metrics = self.metrics
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: metrics.render()))
            )
        }
    }

    /// ASCII letters, digits, '-' and '_': a path component the router takes literally.
    static func isPathSafe(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "_"): true
        default: false
        }
    }

    static func answer(ingress: WebhookIngress, route: WebhookIngress.Route, request: Request) async -> Response {
        let outcome = await ingress.handle(route: route, headers: request.headers) { limit in
            do {
                return try await request.body.collect(upTo: limit)
            } catch is NIOTooManyBytesError {
                throw BodyTooLarge()
            }
        }
        if outcome.status == 200 { return Response(status: .ok) }
        var json = JSONWriter(capacity: 64 + outcome.reason.utf8.count)
        json.beginObject()
        json.field("status", outcome.status)
        json.field("error", outcome.reason)
        json.endObject()
        return Response(
            status: .init(code: outcome.status), headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: json.bytes))
        )
    }

    /// The HTTP application with the producer and readiness probe as its services.
    public func application(
        host: String, port: Int, extraRoutes: (Router<BasicRequestContext>) -> Void = { _ in },
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        addRoutes(to: router)
        extraRoutes(router)
        // A connection silent past the idle timeout is closed, also in the middle of a request,
        // so connections opened and left (or a body that stops coming) cannot pile up.
        let idleTimeout = ingress.idleTimeout.map { TimeAmount.nanoseconds(Int64($0 / .nanoseconds(1))) }
        return Application(
            router: router,
            server: .http1(configuration: .init(idleTimeout: idleTimeout)),
            configuration: .init(address: .hostname(host, port: port), serverName: "connector-ingress"),
            services: [producer, readiness, ingress],
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }
}
