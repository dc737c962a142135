public import Hummingbird
import NIOCore

extension BotWorker {
    /// `/health/live`, `/health/ready` (ready while the worker's consumer runs) and `/metrics`,
    /// with the worker as the application's service.
    public func application(
        host: String, port: Int, onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        router.get("/health/live") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "live\n")))
        }
        router.get("/health/ready") { [self] _, _ in
            let ready = isReady
            return Response(
                status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"],
                body: .init(byteBuffer: ByteBuffer(string: ready ? "ready\n" : "not consuming\n")))
        }
        router.get("/metrics") { [metrics] _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "connector-worker"),
            services: [self],
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }
}
