import ChatEvents
public import Hummingbird
import ServiceSupport

extension BotWorker {
    /// `/health/live`, `/health/ready` (ready while the worker's consumer runs) and `/metrics`
    /// (with the group's lag), with the worker and its lag monitor as the application's services.
    public func application(
        host: String, port: Int, onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let monitor = LagMonitor(config: config, bootstrapServers: bootstrapServers, group: .worker, registry: metrics.registry, logger: logger)
        return healthApplication(
            name: "connector-worker", host: host, port: port, services: [self, monitor], logger: logger,
            isReady: { [self] in isReady }, metrics: { [metrics] in metrics.render() }, onRunning: onRunning)
    }
}
