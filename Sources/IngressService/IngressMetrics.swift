public import Prometheus
import CoreMetrics
import Synchronization

/// The ingress's metrics (ARCHITECTURE.md, "Metrics"), created through swift-metrics on a
/// Prometheus registry of the service's own, so `/metrics` shows exactly this service.
public final class IngressMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    private let requests = Mutex<[RequestKey: CoreMetrics.Counter]>([:])
    private let signatureFailures = Mutex<[String: CoreMetrics.Counter]>([:])
    let duration: CoreMetrics.Timer
    let duplicates: CoreMetrics.Counter
    let published: CoreMetrics.Counter
    let publishTimeouts: CoreMetrics.Counter

    struct RequestKey: Hashable {
        var endpoint: String
        var status: Int
    }

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        ]
        self.factory = factory
        duration = CoreMetrics.Timer(label: "connector_ingress_request_duration_seconds", dimensions: [], factory: factory)
        duplicates = CoreMetrics.Counter(label: "connector_ingress_duplicates_total", dimensions: [], factory: factory)
        published = CoreMetrics.Counter(label: "connector_ingress_published_total", dimensions: [], factory: factory)
        publishTimeouts = CoreMetrics.Counter(label: "connector_ingress_publish_timeouts_total", dimensions: [], factory: factory)
    }

    func request(endpoint: String, status: Int, duration: Duration) {
        let key = RequestKey(endpoint: endpoint, status: status)
        let counter = requests.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = CoreMetrics.Counter(
                label: "connector_ingress_requests_total",
                dimensions: [("endpoint", endpoint), ("status", String(status))], factory: factory
            )
            counters[key] = counter
            return counter
        }
        counter.increment()
        self.duration.recordNanoseconds(Int64(duration / .nanoseconds(1)))
    }

    func signatureFailure(reason: String) {
        let counter = signatureFailures.withLock { counters in
            if let counter = counters[reason] { return counter }
            let counter = CoreMetrics.Counter(
                label: "connector_ingress_signature_failures_total", dimensions: [("reason", reason)], factory: factory
            )
            counters[reason] = counter
            return counter
        }
        counter.increment()
    }

    /// The Prometheus text exposition.
    public func render() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}
