import AsyncHTTPClient
import ChatEvents
import EgressService
import ConnectorConfiguration
import Foundation
import Kafka
import Prometheus
import ServiceSupport
import Simulator
import Testing
import TestSupport

@Suite("Consumer lag: gauges, connector lag and its status", .serialized)
struct LagTests {
    static let binary = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/connector")

    @Test("the services' consumers join the groups of their deployment's kafka.groupPrefix")
    func groupsFollowThePrefix() throws {
        let config = try ConnectorConfig.parse("kafka:\n  topicPrefix: staging.\n  groupPrefix: staging.\n")
        let worker = ConsumingService.consumerConfiguration(config, bootstrapServers: "127.0.0.1:1", group: .worker, drain: .seconds(1))
        let egress = ConsumingService.consumerConfiguration(config, bootstrapServers: "127.0.0.1:1", group: .egress, drain: .seconds(1))
        #expect(worker.groupID == "staging.connector-worker" && egress.groupID == "staging.connector-egress")
        guard case .topics(let topics) = worker.subscription else { Issue.record("a group subscription"); return }
        #expect(topics == ["staging.eightbyeight.inbound.v1"])
    }

    @Test("the lag monitor's description, which the service group logs, holds no Kafka secret")
    func lagMonitorHidesSecrets() throws {
        var config = try ConnectorConfig.parse("kafka:\n  brokers: broker:9093\n")
        config.kafka.properties = ["sasl.password": "s3cret-pw", "ssl.key.password": "key-pw"]
        let monitor = LagMonitor(config: config, bootstrapServers: "broker:9093", group: .egress, registry: .init(), logger: quietLogger)
        #expect(monitor.properties["sasl.password"] == "s3cret-pw", "it still uses them")
        let described = "\(monitor)"
        #expect(!described.contains("s3cret-pw") && !described.contains("key-pw"), "\(described)")
    }

    @Test("the lag gauges show the last measurement only: a partition it no longer has loses its gauge, a failed one all of the group's")
    func gaugesShowTheLastMeasurementOnly() {
        let registry = PrometheusCollectorRegistry()
        let gauges = LagGauges(registry: registry)
        func rendered() -> String {
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return String(decoding: buffer, as: UTF8.self)
        }
        func lag(_ group: String, _ lags: [Int64]) -> ConsumerGroupLag {
            ConsumerGroupLag(group: group, partitions: lags.enumerated().map {
                PartitionLag(topic: "t", partition: Int32($0.offset), committedOffset: 10, lowWatermark: 0, highWatermark: 10 + $0.element)
            })
        }
        gauges.update(lag("a", [1, 2, 3]))
        gauges.update(lag("b", [4]))
        #expect(rendered().contains(#"kafka_consumergroup_group_lag{group="a",topic="t",partition="2"} 3"#))
        gauges.update(lag("a", [5, 6]))
        var text = rendered()
        #expect(!text.contains(#"group="a",topic="t",partition="2""#), "\(text)")
        #expect(text.contains(#"kafka_consumergroup_group_lag{group="a",topic="t",partition="1"} 6"#))
        #expect(text.contains(#"kafka_consumergroup_group_sum_lag{group="a"} 11"#))
        gauges.unmeasured(group: "a")
        text = rendered()
        #expect(!text.contains(#"group="a""#), "\(text)")
        #expect(text.contains(#"kafka_consumergroup_group_max_lag{group="b"} 4"#), "the other group's stay")
    }

    /// The registry's text once it satisfies `condition` (read every 50 ms, for up to 60 s).
    static func text(
        of registry: PrometheusCollectorRegistry, once condition: @escaping @Sendable (String) -> Bool, _ what: String
    ) async throws -> String {
        try await within(60, what) {
            while true {
                var buffer: [UInt8] = []
                registry.emit(into: &buffer)
                let text = String(decoding: buffer, as: UTF8.self)
                if condition(text) { return text }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    @Test("the lag monitor takes its group's gauges away while its lag cannot be measured, and shows them again after")
    func monitorShowsNoLagItCannotMeasure() async throws {
        let cluster = try EmbeddedKafkaCluster(logger: quietLogger)
        try cluster.createTopic("measured", partitions: 2)
        let registry = PrometheusCollectorRegistry()
        let gauges = LagGauges(registry: registry)
        let monitor = LagMonitor(
            bootstrapServers: cluster.bootstrapServers, properties: [:], group: "g", topics: ["measured"], interval: .milliseconds(100),
            logger: quietLogger, update: gauges.update, unmeasured: gauges.unmeasured)
        let running = Task { try await monitor.run() }
        defer { running.cancel() }
        func shows(_ shown: Bool) async throws {
            _ = try await Self.text(of: registry, once: { $0.contains(#"kafka_consumergroup_group_sum_lag{group="g"} 0"#) == shown },
                                    shown ? "the gauges" : "the gauges gone")
        }
        try await shows(true)
        // The brokers answer for the topic with an error: the measurement fails ("unknown topics").
        cluster.setTopicError("measured", .unknownTopicOrPartition)
        try await shows(false)
        cluster.setTopicError("measured", .noError)
        try await shows(true)
    }

    @Test("a partition the monitor cannot measure loses its gauge and is counted; the group's other gauges stay")
    func monitorShowsThePartitionsItCanMeasure() async throws {
        let cluster = try EmbeddedKafkaCluster(logger: quietLogger)
        try cluster.createTopic("partly", partitions: 3)
        let registry = PrometheusCollectorRegistry()
        let gauges = LagGauges(registry: registry)
        let log = LogCapture()
        let monitor = LagMonitor(
            bootstrapServers: cluster.bootstrapServers, properties: [:], group: "g", topics: ["partly"], interval: .milliseconds(100),
            logger: log.logger, update: gauges.update, unmeasured: gauges.unmeasured)
        let running = Task { try await monitor.run() }
        defer { running.cancel() }
        func metrics(where condition: @escaping @Sendable (String) -> Bool, _ what: String) async throws -> String {
            try await Self.text(of: registry, once: condition, what)
        }
        let partition1 = #"kafka_consumergroup_group_lag{group="g",topic="partly",partition="1"}"#
        var text = try await metrics(where: { $0.contains(#"kafka_consumergroup_group_unmeasured_partitions{group="g"} 0"#) }, "every partition")
        #expect(text.contains(partition1))

        try cluster.setPartitionLeader(topic: "partly", partition: 1, broker: -1)
        text = try await metrics(where: { $0.contains(#"kafka_consumergroup_group_unmeasured_partitions{group="g"} 1"#) }, "one unmeasured")
        #expect(!text.contains(partition1), "\(text)")
        #expect(text.contains(#"kafka_consumergroup_group_lag{group="g",topic="partly",partition="0"} 0"#))
        #expect(text.contains(#"kafka_consumergroup_group_lag{group="g",topic="partly",partition="2"} 0"#))
        #expect(text.contains(#"kafka_consumergroup_group_max_lag{group="g"} 0"#))
        #expect(log.text.contains("consumer lag not measured on some partitions") && log.text.contains("partly[1]"))

        try cluster.setPartitionLeader(topic: "partly", partition: 1, broker: 1)
        text = try await metrics(where: { $0.contains(#"kafka_consumergroup_group_unmeasured_partitions{group="g"} 0"#) }, "measured again")
        #expect(text.contains(partition1))
        #expect(log.text.contains("consumer lag measured on every partition again"))
    }

    @Test("connector lag reports what it can: a group it cannot measure by its error, a partition without leader as not measured")
    func lagCommandReportsWhatItCan() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build the connector first")
        let cluster = try EmbeddedKafkaCluster(logger: quietLogger)
        // The egress's topic only: the worker's group has no topic to be measured on.
        try cluster.createTopic("eightbyeight.outbound.v1", partitions: 2)
        try cluster.setPartitionLeader(topic: "eightbyeight.outbound.v1", partition: 1, broker: -1)
        func run(_ extra: [String]) async throws -> String {
            let process = Process()
            process.executableURL = Self.binary
            process.arguments = ["lag", "--interval", "0.1", "--window", "2", "--group", "connector-worker", "--group", "connector-egress",
                                 "--brokers", cluster.bootstrapServers] + extra
            let out = Pipe()
            process.standardOutput = out
            process.standardError = Pipe()
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "\(extra)")
            return String(decoding: data, as: UTF8.self)
        }
        let json = try JSONParser.parse(Array(try await run(["--json"]).utf8))
        let group = try #require(json["groups"]?.arrayValue?.first)
        #expect(json["groups"]?.arrayValue?.count == 1)
        #expect(group["group"]?.stringValue == "connector-egress")
        #expect(group["partitions"]?.arrayValue?.map { $0["partition"]?.stringValue } == ["0"])
        #expect(group["unmeasured"]?.arrayValue?.map { $0["partition"]?.stringValue } == ["1"])
        #expect(json["failed"]?["connector-worker"]?.stringValue?.contains("eightbyeight.inbound.v1") == true, "the unknown topic named")

        let table = try await run([])
        #expect(table.contains("connector-egress") && table.contains("not measured"), "\(table)")
        #expect(table.split(separator: "\n").contains { $0.hasPrefix("connector-worker") && $0.contains("not measured") }, "\(table)")
    }

    @Test("a stuck partition: /metrics and connector lag --json report produced minus committed; lag --watch goes to STALL and back to OK")
    func stallAndRecovery() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build the connector first")
        try await EgressHarness.run(kafka: "  lagIntervalMs: 200") { h in
            // One conversation's first call hangs at 8x8: its partition's offset cannot pass it.
            let stuck = "conv-lag-stuck"
            h.gateway.inject(.delay(.seconds(12)), forPathEndingWith: "\(stuck)/messages")
            let others = (0..<9).map { EgressHarness.message("conv-lag-\($0)", 0) }
            // The stuck conversation's commands come last in their partition: its lag is exactly 2.
            let commands = others + [EgressHarness.message(stuck, 0), EgressHarness.message(stuck, 1)]
            let producer = try h.producer()
            try await h.publish(commands, with: producer)
            let egress = Egress(config: h.config, bootstrapServers: h.cluster.bootstrapServers, logger: quietLogger)
            let watch = Process()
            watch.executableURL = Self.binary
            watch.arguments = ["lag", "--watch", "--json", "--interval", "0.3", "--window", "3", "--group", "connector-egress", "--brokers", h.cluster.bootstrapServers]
            let lines = LineReader()
            let out = Pipe()
            watch.standardOutput = out
            watch.standardError = Pipe()
            out.fileHandleForReading.readabilityHandler = { lines.append($0.availableData) }
            try watch.run()
            defer { if watch.isRunning { watch.terminate() } }

            try await withRunningApplication({ egress.application(host: "127.0.0.1", port: 0, onRunning: $0) }) { port in
                let admin = try KafkaAdmin(bootstrapServers: h.cluster.bootstrapServers, logger: quietLogger)
                let topic = h.config.topicName(.outbound)
                let partitions = (0..<EgressHarness.partitions).map { TopicPartition(topic: topic, partition: $0) }
                // Produced minus committed, straight from the brokers, once the others are committed.
                try await h.waitForGateway(60, "the other conversations delivered") { Set($0).isSuperset(of: others.map(\.commandId)) }
                let expected = try await within(30, "commits settled") { () -> [Int32: Int64] in
                    while true {
                        let committed = try await admin.committedOffsets(group: "connector-egress", partitions: partitions)
                        var lag: [Int32: Int64] = [:]
                        for partition in partitions {
                            lag[partition.partition] = try await admin.watermarks(partition).high - (committed[partition] ?? 0)
                        }
                        if lag.values.reduce(0, +) == 2 { return lag }  // only the stuck conversation's two
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
                #expect(expected.values.filter { $0 > 0 } == [2])

                // The watch reports STALL for the group while the partition is stuck.
                let stall = try await lines.wait(30, "STALL") { $0.contains(#""status":"STALL""#) }
                #expect(stall.contains(#""group":"connector-egress""#))

                // connector lag --json says the same.
                let once = Process()
                once.executableURL = Self.binary
                // Two samples, not the default five 2 s apart: the partition is stuck for 12 s only.
                once.arguments = ["lag", "--json", "--interval", "0.3", "--window", "2", "--group", "connector-egress", "--brokers", h.cluster.bootstrapServers]
                let onceOut = Pipe()
                once.standardOutput = onceOut
                try once.run()
                let report = onceOut.fileHandleForReading.readDataToEndOfFile()
                once.waitUntilExit()
                let json = try JSONParser.parse(Array(report))
                let group = try #require(json["groups"]?.arrayValue?.first)
                var reported: [Int32: Int64] = [:]
                for partition in group["partitions"]?.arrayValue ?? [] {
                    reported[Int32(partition["partition"]?.stringValue ?? "") ?? -1] = Int64(partition["lag"]?.stringValue ?? "")
                }
                #expect(reported == expected, "connector lag --json")

                // And /metrics (the egress measures its own group).
                let metrics = try await within(30, "the gauges") { () -> String in
                    while true {
                        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/metrics"), timeout: .seconds(30))
                        let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
                        if text.contains(#"kafka_consumergroup_group_sum_lag{group="connector-egress"} 2"#) { return text }
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
                for (partition, lag) in expected {
                    #expect(metrics.contains(#"kafka_consumergroup_group_lag{group="connector-egress",topic="\#(topic)",partition="\#(partition)"} \#(lag)"#), "\(metrics)")
                }
                #expect(metrics.contains(#"kafka_consumergroup_group_max_lag{group="connector-egress"} 2"#))

                // 8x8 answers at last: the partition moves on and the status returns to OK.
                try await h.waitForGateway(60, "the stuck conversation delivered") { $0.contains(commands.last!.commandId) }
                let after = lines.count
                try await lines.wait(30, "OK again", from: after) { $0.contains(#""status":"OK""#) && $0.contains(#""sumLag":0"#) }
            }
            watch.terminate()
            await producer.shutdown()
        }
    }
}

/// Lines a process writes, collected as they arrive.
final class LineReader: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = Data()
    private var lines: [String] = []

    func append(_ data: Data) {
        lock.lock()
        defer { lock.unlock() }
        buffer.append(data)
        while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
            lines.append(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
            buffer = Data(buffer[buffer.index(after: newline)...])
        }
    }

    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return lines.count
    }

    func snapshot() -> [String] {
        lock.lock()
        defer { lock.unlock() }
        return lines
    }

    /// Waits for a line (from index `from` on) that satisfies `condition`.
    @discardableResult
    func wait(_ seconds: Int, _ what: String, from: Int = 0, until condition: @escaping @Sendable (String) -> Bool) async throws -> String {
        try await within(seconds, what) { [self] in
            while true {
                if let line = snapshot().dropFirst(from).first(where: condition) { return line }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }
}
