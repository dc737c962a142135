public import ChatEvents
public import ConnectorConfiguration
public import Kafka
public import Logging
public import Prometheus
public import ServiceLifecycle
import Synchronization

/// The lag gauges of ARCHITECTURE.md, with kafka-lag-exporter's names so existing dashboards
/// and alerts work: `kafka_consumergroup_group_lag{group,topic,partition}`,
/// `kafka_consumergroup_group_max_lag{group}`, `kafka_consumergroup_group_sum_lag{group}`.
///
/// The gauges show the last measurement only: a partition it no longer has loses its gauge, and
/// a group whose lag could not be measured loses all of them (`unmeasured`), so an old value is
/// never shown as the current one (alert on `absent(...)` for a lag nobody measures). A
/// partition that alone could not be measured (its leader's broker is down) loses its gauge,
/// the others keep theirs, max and sum cover them, and
/// `kafka_consumergroup_group_unmeasured_partitions{group}` counts the ones missing (alert on
/// it above 0).
public final class LagGauges: Sendable {
    let registry: PrometheusCollectorRegistry
    /// Per group, the gauges of its last measurement.
    private let shown = Mutex<[String: [Gauge]]>([:])

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    public func update(_ lag: ConsumerGroupLag) {
        var gauges: [Gauge] = []
        for partition in lag.partitions {
            let gauge = registry.makeGauge(
                name: "kafka_consumergroup_group_lag",
                labels: [("group", lag.group), ("topic", partition.topic), ("partition", String(partition.partition))],
                help: "Messages of the partition the group has not committed past (high watermark minus committed offset).")
            gauge.set(Double(partition.lag))
            gauges.append(gauge)
        }
        let max = registry.makeGauge(name: "kafka_consumergroup_group_max_lag", labels: [("group", lag.group)], help: "The group's largest partition lag.")
        max.set(Double(lag.maxLag))
        let sum = registry.makeGauge(name: "kafka_consumergroup_group_sum_lag", labels: [("group", lag.group)], help: "The group's lag over all partitions.")
        sum.set(Double(lag.sumLag))
        let unmeasured = registry.makeGauge(
            name: "kafka_consumergroup_group_unmeasured_partitions", labels: [("group", lag.group)],
            help: "Partitions of the group whose lag the last measurement could not read (max and sum leave them out).")
        unmeasured.set(Double(lag.unmeasured.count))
        gauges += [max, sum, unmeasured]
        let previous = shown.withLock { shown in
            defer { shown[lag.group] = gauges }
            return shown[lag.group] ?? []
        }
        for gauge in previous where !gauges.contains(where: { $0 === gauge }) { registry.unregisterGauge(gauge) }
    }

    /// The group's lag could not be measured: its gauges go.
    public func unmeasured(group: String) {
        for gauge in shown.withLock({ $0.removeValue(forKey: group) ?? [] }) { registry.unregisterGauge(gauge) }
    }
}

/// Measures a consumer group's lag every `interval` (high watermarks and the group's committed
/// offsets, from the brokers) and hands it to `update`, until shutdown. Every replica of a
/// service reports the same group lag; dashboards take the maximum over instances.
public struct LagMonitor: Service, CustomStringConvertible {
    public let bootstrapServers: String
    public let properties: [String: String]
    public let group: String
    public let topics: [String]
    public let interval: Duration
    public let logger: Logger
    public let update: @Sendable (ConsumerGroupLag) -> Void
    /// Called with the group after each measurement that failed.
    public let unmeasured: @Sendable (String) -> Void

    /// What swift-service-lifecycle logs for this service: not its properties, which may hold
    /// SASL and TLS secrets.
    public var description: String { "LagMonitor(\(group))" }

    public init(
        bootstrapServers: String, properties: [String: String], group: String, topics: [String], interval: Duration, logger: Logger,
        update: @escaping @Sendable (ConsumerGroupLag) -> Void, unmeasured: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.bootstrapServers = bootstrapServers
        self.properties = properties
        self.group = group
        self.topics = topics
        self.interval = interval
        self.logger = logger
        self.update = update
        self.unmeasured = unmeasured
    }

    /// The monitor of one of the connector's groups on its topics, feeding the lag gauges on `registry`.
    public init(
        config: ConnectorConfig, bootstrapServers: String, group: ConnectorConsumerGroup, registry: PrometheusCollectorRegistry, logger: Logger
    ) {
        let gauges = LagGauges(registry: registry)
        self.init(
            bootstrapServers: bootstrapServers, properties: config.kafka.properties, group: config.groupName(group),
            topics: group.topics.map(config.topicName), interval: .milliseconds(config.kafka.lagIntervalMs), logger: logger,
            update: gauges.update, unmeasured: gauges.unmeasured)
    }

    public func run() async throws {
        let admin = try KafkaAdmin(bootstrapServers: bootstrapServers, properties: properties, logger: logger)
        await cancelWhenGracefulShutdown {
            var failing = false
            var missing: Set<TopicPartition> = []
            while !Task.isCancelled {
                do {
                    let lag = try await admin.lag(group: group, topics: topics)
                    update(lag)
                    failing = false
                    // Said when the partitions left out change, not at every measurement.
                    let now = Set(lag.unmeasured.map(\.topicPartition))
                    if now != missing, let first = lag.unmeasured.first {
                        logger.warning("consumer lag not measured on some partitions", metadata: [
                            "group": "\(group)", "partitions": "\(lag.unmeasured.map { "\($0.topicPartition)" }.joined(separator: ", "))",
                            "error": "\(first.reason)",
                        ])
                    } else if now.isEmpty, !missing.isEmpty {
                        logger.info("consumer lag measured on every partition again", metadata: ["group": "\(group)"])
                    }
                    missing = now
                } catch {
                    if !failing { logger.warning("consumer lag not measured", metadata: ["group": "\(group)", "error": "\(error)"]) }
                    failing = true
                    unmeasured(group)
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}
