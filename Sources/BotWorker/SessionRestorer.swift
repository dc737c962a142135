import ChatEvents
import FlowEngine
import Kafka
import Logging
import Synchronization

/// Reads the session records of the partitions a worker was just given, so the conversations
/// continue where the previous owner left them. The newest record per conversation wins; an
/// empty record (tombstone) removes it.
struct SessionRestorer {
    let bootstrapServers: String
    let properties: [String: String]
    let sessionsTopic: String
    let admin: KafkaAdmin
    /// Transaction markers and aborted records leave offsets that are never delivered.
    let transactional: Bool
    let logger: Logger

    func restore(partitions: [Int32]) async throws -> [Int32: [String: SessionState]] {
        var result: [Int32: [String: SessionState]] = [:]
        var start: [TopicPartition: Int64?] = [:]
        var end: [Int32: Int64] = [:]
        for partition in partitions {
            result[partition] = [:]
            let topicPartition = TopicPartition(topic: sessionsTopic, partition: partition)
            let (low, high) = try await admin.watermarks(topicPartition)
            if high > low {
                start[topicPartition] = low
                end[partition] = high
            }
        }
        guard !start.isEmpty else { return result }
        var configuration = KafkaConsumerConfiguration(
            bootstrapServers: bootstrapServers, groupID: "connector-worker-restore", subscription: .partitions(start))
        configuration.clientID = "connector-worker-restore"
        configuration.properties = properties
        configuration.properties["enable.auto.commit"] = "false"
        let consumer = try KafkaConsumer(configuration: configuration, logger: logger)
        // Offsets below the high watermark that never arrive (transaction markers, records the
        // broker deleted meanwhile) must not hold the partition up: stop after a quiet spell.
        let progress = Progress()
        let quietLimit: Duration = transactional ? .seconds(2) : .seconds(15)
        let watchdog = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                if progress.quietFor > quietLimit {
                    await consumer.shutdown()
                    return
                }
            }
        }
        var remaining = end
        var corrupt = 0
        for await message in consumer.messages {
            progress.touch()
            let partition = message.partition
            if message.value.isEmpty {
                if let key = message.keyString { result[partition]?[key] = nil }
            } else if let state = try? SessionState.decode(message.value) {
                result[partition]?[state.conversationId] = state
            } else {
                corrupt += 1
            }
            if let high = remaining[partition], message.offset >= high - 1 { remaining[partition] = nil }
            if remaining.isEmpty { break }
        }
        watchdog.cancel()
        await consumer.shutdown()
        if !remaining.isEmpty {
            // Without transactions every offset below the high watermark is a record: not
            // reaching it means the restore is incomplete, and processing on would lose state.
            guard transactional else {
                throw KafkaError(kind: .consumer, code: .timedOut, message: "session restore did not reach the end of \(remaining.keys.sorted())", isRetriable: true)
            }
            logger.info("session restore ended before the high watermark (transaction markers)", metadata: ["kafka.partitions": "\(remaining.keys.sorted())"])
        }
        if corrupt > 0 {
            logger.warning("unreadable session records skipped", metadata: ["count": "\(corrupt)"])
        }
        return result
    }
}

/// When the restore last saw a record.
private final class Progress: Sendable {
    private let last = Mutex(ContinuousClock.now)
    func touch() { last.withLock { $0 = .now } }
    var quietFor: Duration { ContinuousClock.now - last.withLock { $0 } }
}
