import ArgumentParser
import ChatEvents
import ConnectorConfiguration
import Foundation
import Kafka
import Logging
import ServiceLifecycle

/// Where to find the brokers: `--brokers`, then `--bootstrap-file`, then the configuration.
struct BrokerOptions: ParsableArguments {
    @Option(help: "Configuration file (kafka.* is used; default: ./connector.yaml when there is one).") var config: String?
    @Option(help: "Bootstrap servers, host:port,... (overrides the configuration).") var brokers: String?
    @Option(help: "A file holding the bootstrap servers, as written by `connector broker --bootstrap-file`.")
    var bootstrapFile: String?

    /// `load`, failing the command with the problem's one line.
    func loadOrFail() throws -> (ConnectorConfig, bootstrap: String) {
        do { return try load() } catch { throw fail("\(error)") }
    }

    /// The configuration read when no option names the brokers and the working directory has
    /// one (as in the container image): `connector lag` there finds the brokers it names.
    static let defaultConfigPath = "connector.yaml"

    func load() throws -> (ConnectorConfig, bootstrap: String) {
        var path = config
        if path == nil, brokers == nil, bootstrapFile == nil, FileManager.default.fileExists(atPath: Self.defaultConfigPath) {
            path = Self.defaultConfigPath
        }
        let config = try path.map { try ConnectorConfig.load(path: $0) } ?? ConnectorConfig()
        if let brokers, !brokers.isEmpty { return (config, brokers) }
        if let bootstrapFile {
            guard let text = try? String(contentsOfFile: bootstrapFile, encoding: .utf8),
                  !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw ConfigurationError("\(bootstrapFile): cannot read bootstrap servers")
            }
            return (config, text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        if config.kafka.isEmbedded {
            let source = self.config == nil && path != nil ? " (./\(Self.defaultConfigPath))" : ""
            throw ConfigurationError("kafka.brokers is 'embedded'\(source), which lives inside one process; pass --brokers HOST:PORT or --bootstrap-file F (written by `connector broker`)")
        }
        return (config, config.kafka.brokers)
    }
}

func commandLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = ConnectorCommand.logLevel ?? .warning
    return logger
}

struct BrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Runs the embedded Kafka cluster until SIGTERM or SIGINT, with the connector's topics."
    )

    @Option(help: "Write the bootstrap servers to this file.") var bootstrapFile: String?
    @Option(help: "Number of brokers.") var brokers: Int = 1
    @Option(help: "Partitions per topic.") var partitions: Int32 = 6
    @Option(help: "Prefix for every topic name.") var topicPrefix: String = ""

    /// The bounds of the configuration's `kafka.partitions`; librdkafka's mock cluster takes
    /// any broker count, and a few are all a test of failover needs.
    func validate() throws {
        guard (1...16).contains(brokers) else { throw ValidationError("--brokers must be between 1 and 16") }
        guard (1...10_000).contains(partitions) else { throw ValidationError("--partitions must be between 1 and 10000") }
    }

    func run() async throws {
        let logger = commandLogger("connector.broker")
        let cluster: EmbeddedKafkaCluster
        do {
            cluster = try EmbeddedKafkaCluster(brokers: brokers, logger: logger)
            for topic in ConnectorTopic.allCases {
                try cluster.createTopic(topic.name(prefix: topicPrefix), partitions: partitions, replicationFactor: Int32(min(brokers, 3)))
            }
        } catch {
            throw fail("\(error)")
        }
        if let bootstrapFile {
            do {
                try Data((cluster.bootstrapServers + "\n").utf8).write(to: URL(fileURLWithPath: bootstrapFile), options: .atomic)
            } catch {
                throw fail("\(bootstrapFile): \(error.localizedDescription)")
            }
        }
        print(cluster.bootstrapServers)
        fflush(nil)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: HoldUntilShutdown())],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try await group.run()
        if let bootstrapFile { try? FileManager.default.removeItem(atPath: bootstrapFile) }
        withExtendedLifetime(cluster) {}
    }
}

/// Keeps a process alive until graceful shutdown.
struct HoldUntilShutdown: Service {
    func run() async throws {
        try? await gracefulShutdown()
    }
}

struct TopicsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "topics", abstract: "Topic administration.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create",
            abstract: "Creates the connector's topics with their partition counts (existing ones are left as they are)."
        )
        @OptionGroup var brokerOptions: BrokerOptions

        func run() async throws {
            let (config, bootstrap) = try brokerOptions.loadOrFail()
            let logger = commandLogger("connector.topics")
            do {
                let admin = try KafkaAdmin(bootstrapServers: bootstrap, properties: config.kafka.properties, logger: logger)
                let specifications = ConnectorTopic.allCases.map {
                    KafkaTopicSpecification(
                        name: config.topicName($0), partitions: Int32(config.kafka.partitions),
                        replicationFactor: Int32(config.kafka.replicationFactor), config: $0.config)
                }
                var failed = false
                var created = Set<String>()
                var creationError: (any Error)?
                do {
                    let outcome = try await admin.createTopics(specifications)
                    for spec in specifications {
                        switch outcome[spec.name] {
                        case .created:
                            created.insert(spec.name)
                            print("\(spec.name): created with \(spec.partitions) partitions")
                        case .alreadyExists: break
                        case .failed(let code, let message):
                            failed = true
                            print("\(spec.name): failed: \(code.name): \(message)")
                        case nil:
                            failed = true
                            print("\(spec.name): no answer")
                        }
                    }
                } catch {
                    creationError = error
                }
                // Topics that were there already (made by hand, or by a broker's auto-creation
                // with its own defaults) are checked, not trusted.
                var counts = Dictionary(try await admin.listTopics().map { ($0.name, $0.partitions.count) }) { first, _ in first }
                if let creationError {
                    // A broker without CreateTopics (the embedded one) may still have the topics.
                    let missing = specifications.map(\.name).filter { counts[$0] == nil }
                    guard missing.isEmpty else {
                        throw fail("could not create topics (\(creationError)); missing: \(missing.joined(separator: ", "))")
                    }
                }
                for name in created { counts[name] = Int(config.kafka.partitions) }  // metadata may lag behind
                for spec in specifications where !created.contains(spec.name) {
                    guard let count = counts[spec.name] else { continue }
                    print("\(spec.name): exists" + (count == spec.partitions ? "" : " with \(count) partitions, not \(spec.partitions) (kafka.partitions)"))
                }
                let problems = Self.partitionProblems(config: config, counts: counts)
                for problem in problems { print(problem) }
                if failed || !problems.isEmpty { throw ExitCode.failure }
            } catch let error as ExitCode {
                throw error
            } catch {
                throw fail("\(error)")
            }
        }

        /// Topics the services write by partition number, each with the topic whose partition
        /// it follows: the worker writes a session to its event's partition, the egress a
        /// delivery result to its command's. Fewer partitions there refuse those writes.
        static let followers: [(follower: ConnectorTopic, leader: ConnectorTopic)] = [(.sessions, .inbound), (.delivery, .outbound)]

        static func partitionProblems(config: ConnectorConfig, counts: [String: Int]) -> [String] {
            var errors: [String] = []
            for (follower, leader) in followers {
                guard let have = counts[config.topicName(follower)], let need = counts[config.topicName(leader)], have < need else { continue }
                errors.append(
                    "\(config.topicName(follower)) has \(have) partition\(have == 1 ? "" : "s"), fewer than the \(need) of \(config.topicName(leader)), "
                        + "whose partition numbers it follows: recreate it with \(need)")
            }
            return errors
        }
    }
}

struct LagCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lag",
        abstract: "Lag per consumer group, topic and partition (high watermark minus committed offset), with each group's status (OK, WARNING, STALL, STOP, REWIND) as Burrow evaluates it."
    )

    @OptionGroup var brokerOptions: BrokerOptions
    @Option(help: "Only this consumer group (default: every group the cluster lists, else the connector's own).")
    var group: [String] = []
    @Flag(help: "Print JSON instead of a table.") var json = false
    @Flag(help: "Re-evaluate continuously, printing each group's status after every sample.") var watch = false
    @Option(help: "Seconds between samples.") var interval: Double = 2
    @Option(help: "Samples in the sliding window (a partition whose committed offset does not move over it while it has lag is STALL); without --watch, the samples taken before printing.") var window = 5
    @Option(help: "With --watch: stop after this many samples (default: until Ctrl-C).") var count: Int?

    func validate() throws {
        guard interval >= 0.1 else { throw ValidationError("--interval must be at least 0.1 seconds") }
        guard window >= 2 else { throw ValidationError("--window must be at least 2") }
    }

    func run() async throws {
        let (config, bootstrap) = try brokerOptions.loadOrFail()
        do {
            let admin = try KafkaAdmin(bootstrapServers: bootstrap, properties: config.kafka.properties, logger: commandLogger("connector.lag"))
            var groups = group
            if groups.isEmpty {
                // The embedded broker cannot list groups; fall back to the connector's own.
                groups = (try? await admin.listConsumerGroups()) ?? []
                if groups.isEmpty { groups = ConnectorConsumerGroup.allCases.map(config.groupName) }
            }
            // A group that cannot be measured is reported with its error; the others still are.
            var failed: [String: String] = [:]
            func sample() async throws -> [ConsumerGroupLag] {
                var lags: [ConsumerGroupLag] = []
                failed = [:]
                var lastError: (any Error)?
                for name in groups {
                    // The connector's groups are measured on their topics even before a first commit.
                    let topics = ConnectorConsumerGroup.allCases.first { config.groupName($0) == name }.map { $0.topics.map(config.topicName) }
                    do {
                        lags.append(try await admin.lag(group: name, topics: topics))
                    } catch {
                        failed[name] = "\(error)"
                        lastError = error
                    }
                }
                if lags.isEmpty, let lastError { throw lastError }
                return lags
            }
            var evaluator = LagEvaluator(window: window, stopAfter: window * 3)
            guard watch else {
                // A status needs a window (Burrow judges a group by how its offsets move), so the
                // one-shot report takes `window` samples and prints the last with its status.
                var lags: [ConsumerGroupLag] = []
                for taken in 1...window {
                    lags = try await sample()
                    for lag in lags { evaluator.add(lag) }
                    if taken < window { try await Task.sleep(for: .milliseconds(Int(interval * 1000))) }
                }
                print(json ? try LagReport.json(lags, evaluator, failed: failed) : LagReport.table(lags, evaluator, failed: failed))
                return
            }
            let live = isatty(STDOUT_FILENO) != 0 && !json
            var samples = 0
            while count.map({ samples < $0 }) ?? true {
                let lags = try await sample()
                for lag in lags { evaluator.add(lag) }
                samples += 1
                if json {
                    print(try LagReport.watchLine(lags, evaluator, failed: failed))
                } else {
                    if live { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                    print(LagReport.watchTable(lags, evaluator, failed: failed) + "\n")
                }
                fflush(nil)
                if count.map({ samples < $0 }) ?? true { try await Task.sleep(for: .milliseconds(Int(interval * 1000))) }
            }
        } catch {
            throw fail("\(error)")
        }
    }
}

enum LagReport {
    /// The report of one evaluation: each group's status and lag, and its partitions'.
    static func json(_ lags: [ConsumerGroupLag], _ evaluator: LagEvaluator, failed: [String: String] = [:]) throws -> String {
        struct Report: Encodable {
            var groups: [WatchGroup]
            /// Groups whose lag could not be measured, with the error.
            var failed: [String: String]?
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let report = Report(groups: watchGroups(lags, evaluator), failed: failed.isEmpty ? nil : failed)
        return String(decoding: try encoder.encode(report), as: UTF8.self)
    }

    /// Every partition with its committed offset, high watermark, lag and status, then each
    /// group's status and totals.
    static func table(_ lags: [ConsumerGroupLag], _ evaluator: LagEvaluator, failed: [String: String] = [:]) -> String {
        var lines = [pad("GROUP", 24) + pad("TOPIC", 32) + pad("PARTITION", 10) + pad("COMMITTED", 12) + pad("HIGH", 12) + pad("LAG", 10) + "STATUS"]
        for group in watchGroups(lags, evaluator) {
            if group.partitions.isEmpty {
                lines.append(pad(group.group, 24) + "(no committed offsets)")
            }
            for p in group.partitions {
                lines.append(pad(group.group, 24) + pad(p.topic, 32) + pad("\(p.partition)", 10)
                    + pad(p.committedOffset.map(String.init) ?? "-", 12) + pad("\(p.highWatermark)", 12) + pad("\(p.lag)", 10) + p.status.rawValue)
            }
            for u in group.unmeasured {
                lines.append(pad(group.group, 24) + pad(u.topic, 32) + pad("\(u.partition)", 10) + "not measured: \(u.reason)")
            }
            let count = group.unmeasured.count
            let without = count == 0 ? "" : " (\(count) partition\(count == 1 ? "" : "s") not measured)"
            lines.append(pad(group.group, 24) + "\(group.status.rawValue): max \(group.maxLag), total \(group.sumLag)\(without)")
        }
        for (group, error) in failed.sorted(by: { $0.key < $1.key }) {
            lines.append(pad(group, 24) + "not measured: \(error)")
        }
        return lines.joined(separator: "\n")
    }

    struct WatchPartition: Encodable {
        var topic: String
        var partition: Int32
        var committedOffset: Int64?
        var highWatermark: Int64
        var lag: Int64
        var status: LagEvaluator.Status
    }

    struct WatchGroup: Encodable {
        var group: String
        var status: LagEvaluator.Status
        var maxLag: Int64
        var sumLag: Int64
        var partitions: [WatchPartition]
        /// Partitions whose lag could not be read in this sample; max and sum leave them out.
        var unmeasured: [UnmeasuredPartition]
    }

    static func watchGroups(_ lags: [ConsumerGroupLag], _ evaluator: LagEvaluator) -> [WatchGroup] {
        lags.map { lag in
            let statuses = evaluator.partitionStatus(of: lag.group)
            return WatchGroup(
                group: lag.group, status: evaluator.status(of: lag.group), maxLag: lag.maxLag, sumLag: lag.sumLag,
                partitions: lag.partitions.map {
                    WatchPartition(topic: $0.topic, partition: $0.partition, committedOffset: $0.committedOffset, highWatermark: $0.highWatermark,
                                   lag: $0.lag, status: statuses[$0.topicPartition] ?? .ok)
                },
                unmeasured: lag.unmeasured)
        }
    }

    /// One line of JSON per sample: the time and each group's status and lag.
    static func watchLine(_ lags: [ConsumerGroupLag], _ evaluator: LagEvaluator, failed: [String: String] = [:]) throws -> String {
        struct Line: Encodable {
            var time: String
            var groups: [WatchGroup]
            var failed: [String: String]?
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let line = Line(time: ISO8601DateFormatter().string(from: Date()), groups: watchGroups(lags, evaluator), failed: failed.isEmpty ? nil : failed)
        return String(decoding: try encoder.encode(line), as: UTF8.self)
    }

    /// A compact table: a line per group, then its partitions with lag.
    static func watchTable(_ lags: [ConsumerGroupLag], _ evaluator: LagEvaluator, failed: [String: String] = [:]) -> String {
        var lines = [ISO8601DateFormatter().string(from: Date()), pad("GROUP", 24) + pad("STATUS", 9) + pad("MAX LAG", 10) + "TOTAL LAG"]
        for group in watchGroups(lags, evaluator) {
            lines.append(pad(group.group, 24) + pad(group.status.rawValue, 9) + pad("\(group.maxLag)", 10) + "\(group.sumLag)")
            for p in group.partitions where p.lag > 0 || p.status != .ok {
                lines.append("  " + pad("\(p.topic)[\(p.partition)]", 34) + pad(p.status.rawValue, 9) + "lag \(p.lag)")
            }
            for u in group.unmeasured {
                lines.append("  " + pad("\(u.topic)[\(u.partition)]", 34) + "not measured: \(u.reason)")
            }
        }
        for (group, error) in failed.sorted(by: { $0.key < $1.key }) {
            lines.append(pad(group, 24) + "not measured: \(error)")
        }
        return lines.joined(separator: "\n")
    }

    private static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }
}
