import ChatEvents
public import Hummingbird
import ServiceSupport

extension Egress {
    /// `/health/live`, `/health/ready` (ready while the egress's consumer runs) and `/metrics`
    /// (with the group's lag), with the egress and its lag monitor as the application's services.
    public func application(
        host: String, port: Int, onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let monitor = LagMonitor(config: config, bootstrapServers: bootstrapServers, group: .egress, registry: metrics.registry, logger: logger)
        return healthApplication(
            name: "connector-egress", host: host, port: port, services: [self, monitor], logger: logger,
            isReady: { [self] in isReady }, metrics: { [metrics] in metrics.render() }, onRunning: onRunning)
    }
}
