public import Logging
import Synchronization

/// Reads partitions once, from a start offset up to the high watermark they had when the read
/// began, with a consumer of its own outside any group. Services use it to rebuild state from
/// a topic (sessions, delivery results) and tools to scan one (dead letters).
public struct PartitionReader: Sendable {
    public let bootstrapServers: String
    public let properties: [String: String]
    public let clientID: String
    public let logger: Logger

    public init(bootstrapServers: String, properties: [String: String], clientID: String, logger: Logger) {
        self.bootstrapServers = bootstrapServers
        self.properties = properties
        self.clientID = clientID
        self.logger = logger
    }

    /// What `read` did not reach.
    public struct Incomplete: Sendable {
        /// Partitions whose last offset below the high watermark never arrived.
        public var partitions: Set<TopicPartition>
    }

    /// Start offsets for `partitions`: the whole partition, or with `lastRecords` only that many
    /// before the high watermark. Empty partitions are left out.
    public static func ranges(
        _ partitions: [TopicPartition], admin: KafkaAdmin, lastRecords: Int64? = nil
    ) async throws -> [TopicPartition: Range<Int64>] {
        var result: [TopicPartition: Range<Int64>] = [:]
        for partition in partitions {
            let (low, high) = try await admin.watermarks(partition)
            let start = lastRecords.map { max(low, high - $0) } ?? low
            if high > start { result[partition] = start..<high }
        }
        return result
    }

    /// Calls `body` with each record of `ranges` in offset order per partition. A partition is
    /// read once its last record came, or once the consumer's position passed the range's end
    /// (the offsets left were transaction markers or aborted records, which are never
    /// delivered). Offsets that never come otherwise (records deleted meanwhile) end the read
    /// after `quietLimit` without records; what was not reached is returned.
    public func read(
        _ ranges: [TopicPartition: Range<Int64>], quietLimit: Duration = .seconds(15), _ body: (KafkaMessage) throws -> Void
    ) async throws -> Incomplete {
        guard !ranges.isEmpty else { return Incomplete(partitions: []) }
        var configuration = KafkaConsumerConfiguration(
            bootstrapServers: bootstrapServers, groupID: clientID, subscription: .partitions(ranges.mapValues { $0.lowerBound }))
        configuration.clientID = clientID
        configuration.properties = properties
        configuration.properties["enable.auto.commit"] = "false"
        let consumer = try KafkaConsumer(configuration: configuration, logger: logger)
        let progress = Progress()
        let passedEnd = Mutex<Set<TopicPartition>>([])
        let watchdog = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                // Every partition's position is past its end: the records before it are
                // buffered or read, and the shutdown hands the buffered ones over first.
                let positions = consumer.positions(Array(ranges.keys))
                if ranges.allSatisfy({ partition, range in positions[partition].map { $0 >= range.upperBound } ?? false }) {
                    passedEnd.withLock { $0 = Set(ranges.keys) }
                    await consumer.shutdown()
                    return
                }
                if progress.quietFor > quietLimit {
                    await consumer.shutdown()
                    return
                }
            }
        }
        defer { watchdog.cancel() }
        var remaining = ranges
        do {
            for await message in consumer.messages {
                progress.touch()
                let partition = message.topicPartition
                if let range = remaining[partition] {
                    if range.contains(message.offset) { try body(message) }
                    if message.offset >= range.upperBound - 1 { remaining[partition] = nil }
                }
                if remaining.isEmpty { break }
            }
        } catch {
            await consumer.shutdown()
            throw error
        }
        await consumer.shutdown()
        let reached = passedEnd.withLock { $0 }
        return Incomplete(partitions: Set(remaining.keys).subtracting(reached))
    }
}

/// When the read last saw a record.
private final class Progress: Sendable {
    private let last = Mutex(ContinuousClock.now)
    func touch() { last.withLock { $0 = .now } }
    var quietFor: Duration { ContinuousClock.now - last.withLock { $0 } }
}
