import ChatEvents
import FlowEngine
import Kafka
import Logging

/// Reads the session records of the partitions a worker was just given, so the conversations
/// continue where the previous owner left them. The newest record per conversation wins; an
/// empty or null record (a tombstone) removes it, and an unreadable one leaves a blank session.
struct SessionRestorer {
    let bootstrapServers: String
    let properties: [String: String]
    let sessionsTopic: String
    let admin: KafkaAdmin
    /// Transaction markers and aborted records leave offsets that are never delivered.
    let transactional: Bool
    let logger: Logger

    /// The sessions per partition, and the partitions whose read ended before the high
    /// watermark (transactional mode only; without transactions that throws).
    func restore(partitions: [Int32]) async throws -> (sessions: [Int32: [String: SessionState]], incomplete: Set<Int32>) {
        var result: [Int32: [String: SessionState]] = [:]
        for partition in partitions { result[partition] = [:] }
        let ranges = try await PartitionReader.ranges(partitions.map { TopicPartition(topic: sessionsTopic, partition: $0) }, admin: admin)
        let reader = PartitionReader(
            bootstrapServers: bootstrapServers, properties: properties, clientID: "connector-worker-restore", logger: logger)
        var corrupt = 0
        // Offsets below the high watermark that never arrive must not hold the partition up:
        // the read stops after a quiet spell. Transaction markers and aborted records do not
        // (the consumer's position passes them); what is left in transactional mode is an open
        // transaction of a crashed owner, which read_committed cannot pass until it is aborted.
        // The spell is as long as without transactions: a slow fetch ending the read early
        // would restore old sessions.
        let incomplete = try await reader.read(ranges, quietLimit: .seconds(15)) { message in
            let partition = message.partition
            if message.value.isEmpty {
                if let key = message.keyString { result[partition]?[key] = nil }
            } else if let state = try? SessionState.decode(message.value) {
                result[partition]?[state.conversationId] = state
            } else {
                // Newer than what came before it (a later version's record during a rolling
                // deploy, say): the older state is out of date, and continuing from it would
                // act on what is no longer so (a handover that ended, a question answered).
                // The conversation starts afresh, in a blank session of the record's time that
                // expires as any other, so the tombstone that forgets it covers this record too.
                // Without a readable record before it the endpoint is unknown: the blank session
                // is kept as long as one of an endpoint this worker does not know (a week), then
                // forgotten, so the unreadable record's personal data does not stay for good.
                if let key = message.keyString, let older = result[partition]?[key] {
                    result[partition]?[key] = SessionState(
                        conversationId: key, endpoint: older.endpoint, tenantId: older.tenantId,
                        now: max(older.lastActivity, message.timestamp ?? older.lastActivity))
                } else if let key = message.keyString, let time = message.timestamp {
                    result[partition]?[key] = SessionState(conversationId: key, endpoint: "", tenantId: nil, now: time)
                }
                corrupt += 1
            }
        }
        if !incomplete.partitions.isEmpty {
            let numbers = incomplete.partitions.map(\.partition).sorted()
            // Without transactions every offset below the high watermark is a record: not
            // reaching it means the restore is incomplete, and processing on would lose state.
            guard transactional else {
                throw KafkaError(kind: .consumer, code: .timedOut, message: "session restore did not reach the end of \(numbers)", isRetriable: true)
            }
            logger.info("session restore ended before the high watermark (transaction markers)", metadata: ["kafka.partitions": "\(numbers)"])
        }
        if corrupt > 0 {
            logger.warning("unreadable session records skipped", metadata: ["count": "\(corrupt)"])
        }
        return (result, Set(incomplete.partitions.map(\.partition)))
    }
}
