public import Prometheus
import CoreMetrics
import Synchronization

/// The egress's metrics on a Prometheus registry of its own.
public final class EgressMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    private let deliveries = Mutex<[String: CoreMetrics.Counter]>([:])
    let retries: CoreMetrics.Counter
    let deadLetters: CoreMetrics.Counter
    let endToEnd: CoreMetrics.Timer
    let requestDuration: CoreMetrics.Timer
    let restarts: CoreMetrics.Counter
    let reconciled: CoreMetrics.Counter
    /// Refused handovers Kafka would not let the egress report to their flows.
    let handoverReportsLost: CoreMetrics.Counter

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        ]
        self.factory = factory
        retries = CoreMetrics.Counter(label: "connector_egress_retries_total", dimensions: [], factory: factory)
        deadLetters = CoreMetrics.Counter(label: "connector_dlq_records_total", dimensions: [], factory: factory)
        endToEnd = CoreMetrics.Timer(label: "connector_end_to_end_seconds", dimensions: [], factory: factory)
        requestDuration = CoreMetrics.Timer(label: "connector_egress_request_duration_seconds", dimensions: [], factory: factory)
        restarts = CoreMetrics.Counter(label: "connector_egress_restarts_total", dimensions: [], factory: factory)
        reconciled = CoreMetrics.Counter(label: "connector_egress_reconciled_total", dimensions: [], factory: factory)
        handoverReportsLost = CoreMetrics.Counter(label: "connector_egress_handover_reports_lost_total", dimensions: [], factory: factory)
    }

    /// `outcome`: delivered, deadLettered, skipped, duplicate.
    func delivery(_ command: String, outcome: String) {
        let key = command + "\u{0}" + outcome
        deliveries.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = CoreMetrics.Counter(
                label: "connector_egress_deliveries_total", dimensions: [("command", command), ("outcome", outcome)], factory: factory)
            counters[key] = counter
            return counter
        }.increment()
    }

    public func render() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}
