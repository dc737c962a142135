public import Hummingbird
import NIOCore
public import Logging
public import ServiceLifecycle

/// The HTTP side of a consuming service: `/health/live`, `/health/ready` (200 while `isReady`)
/// and `/metrics` (Prometheus text), running `services` (the service itself, its lag monitor)
/// beside the server.
public func healthApplication(
    name: String, host: String, port: Int, services: [any Service], logger: Logger,
    isReady: @escaping @Sendable () -> Bool, metrics: @escaping @Sendable () -> [UInt8],
    onRunning: @escaping @Sendable (Int) async -> Void
) -> some ApplicationProtocol {
    let router = Router()
    router.get("/health/live") { _, _ in
        Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "live\n")))
    }
    router.get("/health/ready") { _, _ in
        let ready = isReady()
        return Response(
            status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"],
            body: .init(byteBuffer: ByteBuffer(string: ready ? "ready\n" : "not consuming\n")))
    }
    router.get("/metrics") { _, _ in
        Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: metrics())))
    }
    return Application(
        router: router,
        configuration: .init(address: .hostname(host, port: port), serverName: name),
        services: services,
        onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
        logger: logger)
}
