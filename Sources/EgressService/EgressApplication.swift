import ChatEvents
public import Hummingbird
import ServiceSupport

extension Egress {
    /// `/health/live`, `/health/ready` (ready while the egress's consumer runs) and `/metrics`
    /// (with the group's lag), with the egress and its lag monitor as the application's services.
    public func application(
        host: String, port: Int, onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let gauges = LagGauges(registry: metrics.registry)
        let monitor = LagMonitor(
            bootstrapServers: bootstrapServers, properties: config.kafka.properties, group: ConnectorConsumerGroup.egress.rawValue,
            topics: [outboundTopic], interval: .milliseconds(config.kafka.lagIntervalMs), logger: logger, update: gauges.update)
        return healthApplication(
            name: "connector-egress", host: host, port: port, services: [self, monitor], logger: logger,
            isReady: { [self] in isReady }, metrics: { [metrics] in metrics.render() }, onRunning: onRunning)
    }
}
