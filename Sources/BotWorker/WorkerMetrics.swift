public import Prometheus
import CoreMetrics
import Synchronization

/// The worker's metrics on a Prometheus registry of its own.
public final class WorkerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    private let events = Mutex<[String: CoreMetrics.Counter]>([:])
    private let commands = Mutex<[String: CoreMetrics.Counter]>([:])
    private let deadLetters = Mutex<[String: CoreMetrics.Counter]>([:])
    private let droppedAnalytics = Mutex<[String: CoreMetrics.Counter]>([:])
    let turnDuration: CoreMetrics.Timer
    let eventLatency: CoreMetrics.Timer
    let restoredSessions: CoreMetrics.Counter
    /// Sessions given up (expired, or an abandoned handover), each with a tombstone.
    let forgottenSessions: CoreMetrics.Counter
    let restarts: CoreMetrics.Counter
    /// Regular expression searches (flow conditions and questions, custom PII patterns) that
    /// stopped at their CPU budget and counted as no match.
    let regexBudgetExhausted: CoreMetrics.Counter

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
            .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(100),
        ]
        // From the inbound record's timestamp to its records acknowledged: waits in the
        // partition, so up to seconds.
        factory.durationHistogramBuckets["connector_worker_event_latency_seconds"] = [
            .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        ]
        self.factory = factory
        eventLatency = CoreMetrics.Timer(label: "connector_worker_event_latency_seconds", dimensions: [], factory: factory)
        turnDuration = CoreMetrics.Timer(label: "connector_worker_turn_duration_seconds", dimensions: [], factory: factory)
        restoredSessions = CoreMetrics.Counter(label: "connector_worker_sessions_restored_total", dimensions: [], factory: factory)
        forgottenSessions = CoreMetrics.Counter(label: "connector_worker_sessions_forgotten_total", dimensions: [], factory: factory)
        restarts = CoreMetrics.Counter(label: "connector_worker_restarts_total", dimensions: [], factory: factory)
        regexBudgetExhausted = CoreMetrics.Counter(label: "connector_worker_regex_budget_exhausted_total", dimensions: [], factory: factory)
        regexBudgetExhausted.increment(by: 0)
        // At 0 from the start: a counter that appears with its first dead letter shows no
        // increase to Prometheus, and the alert on it would miss that first one.
        for reason in Self.deadLetterReasons { deadLetter(reason: reason, by: 0) }
    }

    /// Why the worker dead-letters an inbound record.
    static let deadLetterReasons = ["undecodable", "unknown-endpoint", "flow-error", "too-large", "no-conversation"]

    private func counter(_ table: borrowing Mutex<[String: CoreMetrics.Counter]>, _ key: String, _ make: () -> CoreMetrics.Counter) -> CoreMetrics.Counter {
        table.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = make()
            counters[key] = counter
            return counter
        }
    }

    func event(kind: String, outcome: String) {
        counter(events, kind + "\u{0}" + outcome) {
            CoreMetrics.Counter(label: "connector_worker_events_total", dimensions: [("kind", kind), ("outcome", outcome)], factory: factory)
        }.increment()
    }

    func command(_ action: String, count: Int = 1) {
        counter(commands, action) {
            CoreMetrics.Counter(label: "connector_worker_commands_total", dimensions: [("action", action)], factory: factory)
        }.increment(by: count)
    }

    func deadLetter(reason: String, by count: Int = 1) {
        counter(deadLetters, reason) {
            CoreMetrics.Counter(label: "connector_worker_dead_letters_total", dimensions: [("reason", reason)], factory: factory)
        }.increment(by: count)
    }

    /// An analytics record Kafka refused, left out (`reason`: librdkafka's error name).
    func analyticsDropped(reason: String) {
        counter(droppedAnalytics, reason) {
            CoreMetrics.Counter(label: "connector_worker_analytics_dropped_total", dimensions: [("reason", reason)], factory: factory)
        }.increment()
    }

    public func render() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}
