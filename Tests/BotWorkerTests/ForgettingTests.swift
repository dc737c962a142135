@testable import BotWorker
import ChatEvents
import FlowEngine
import Foundation
import Kafka
import Synchronization
import Testing

/// Expired sessions leave memory and, by a tombstone, the sessions topic.
@Suite("Forgotten sessions on the embedded cluster", .serialized)
struct ForgettingTests {
    @Test("an unreadable session record (a later version's, say) leaves a blank session, not the older record, in a restore")
    func unreadableSessionRecordSupersedes() async throws {
        let harness = try WorkerHarness()
        let producer = try harness.producer()
        let topic = harness.config.topicName(.sessions)
        var stale = SessionState(conversationId: "conv-stale", endpoint: "support", tenantId: "acme", now: 1_000)
        stale.context["step"] = .string("asked for the order number")
        let kept = SessionState(conversationId: "conv-kept", endpoint: "support", tenantId: "acme", now: 1_000)
        try await producer.sendBatch([
            KafkaProducerMessage(topic: topic, partition: 0, key: "conv-stale", value: stale.encoded()),
            KafkaProducerMessage(topic: topic, partition: 0, key: "conv-kept", value: kept.encoded()),
            KafkaProducerMessage(topic: topic, partition: 0, key: "conv-stale", value: Array(#"{"schema":"session.v9","x":"#.utf8)),
            // Only a later version's record, nothing readable before it.
            KafkaProducerMessage(topic: topic, partition: 0, key: "conv-only-unreadable", value: Array(#"{"schema":"session.v9"}"#.utf8)),
        ])
        let admin = try KafkaAdmin(bootstrapServers: harness.cluster.bootstrapServers, logger: quietLogger)
        let restorer = SessionRestorer(
            bootstrapServers: harness.cluster.bootstrapServers, properties: [:], sessionsTopic: topic, admin: admin,
            transactional: false, logger: quietLogger)
        let (restored, incomplete) = try await restorer.restore(partitions: [0])
        #expect(incomplete.isEmpty)
        #expect(restored[0]?["conv-kept"]?.conversationId == "conv-kept")
        let blank = try #require(restored[0]?["conv-stale"], "a session that expires, so its tombstone covers the unreadable record")
        #expect(blank.context.isEmpty && blank.endpoint == "support" && blank.lastActivity >= 1_000,
                "the conversation starts afresh instead of from the record before")
        // A blank session of the record's time too, of no endpoint this worker knows: it is
        // forgotten (and tombstoned) a week after, not kept for good.
        let alone = try #require(restored[0]?["conv-only-unreadable"], "a session whose expiry covers the unreadable record")
        #expect(alone.context.isEmpty && alone.endpoint.isEmpty && alone.lastActivity > 0)
        let worker = try harness.makeWorker()
        #expect(!worker.isForgettable(alone, now: alone.lastActivity + BotWorker.abandonedHandoverMillis))
        #expect(worker.isForgettable(alone, now: alone.lastActivity + BotWorker.abandonedHandoverMillis + 1))
    }

    @Test("an expired session is forgotten by a tombstone after its last record; the live one goes on", arguments: [false, true])
    func expiredSessionGetsTombstone(transactional: Bool) async throws {
        let harness = try WorkerHarness(worker: transactional ? "  transactional: true\n  transactionalId: worker-forget-tx" : "")
        let sessions = try harness.reader(.sessions)
        let outbound = try harness.reader(.outbound)
        let running = try harness.start()
        let producer = try harness.producer()
        var old = EventFactory(conversation: "conv-old")
        var recent = EventFactory(conversation: "conv-recent")
        try await harness.publish([old.user("update my email")], partition: 0, with: producer)
        try await sessions.wait(60, "conv-old's session") { $0.contains { $0.keyString == "conv-old" } }

        // 41 minutes of event time later (the demo endpoint's TTL of 30 plus 10 have passed),
        // and once more a minute after that: the partition looks for expired sessions at most
        // once a minute of event time, and skips a session whose record is still on its way.
        recent.clock = old.clock + 41 * 60_000
        let question = recent.user("update my email")
        recent.clock += 61_000
        let answer = recent.user("jane@example.com")
        try await harness.publish([question, answer], partition: 0, with: producer)
        let records = try await sessions.wait(60, "conv-old's tombstone") {
            $0.contains { $0.keyString == "conv-old" && $0.valueIsNull }
        }
        let oldRecords = records.filter { $0.keyString == "conv-old" }
        #expect(oldRecords.map(\.valueIsNull) == Array(repeating: false, count: oldRecords.count - 1) + [true])
        #expect(records.allSatisfy { $0.partition == 0 })

        // The recent conversation was not touched: its answer is saved, its session kept.
        let commands = try await outbound.wait(60, "conv-recent's answer") { records in
            records.contains { (try? OutboundCommand.decode($0.value))?.causationEventId == answer.eventId }
        }
        #expect(try commands.map { try OutboundCommand.decode($0.value) }.contains {
            $0.conversationId == "conv-recent" && $0.body["text"] == .string("Thanks, I saved jane@example.com.")
        })
        let all = try await sessions.wait(60, "conv-recent's last session") { records in
            records.contains { (try? SessionState.decode($0.value))?.processedEventIds.contains(answer.eventId) == true }
        }
        #expect(!all.contains { $0.keyString == "conv-recent" && $0.valueIsNull })
        let metrics = String(decoding: running.worker.metrics.render(), as: UTF8.self)
        #expect(metrics.contains("connector_worker_sessions_forgotten_total 1"), "\(metrics)")
        await running.stop()
        await sessions.close()
        await outbound.close()
        await producer.shutdown()
    }

    @Test("a worker taking a partition forgets the sessions that expired meanwhile once the records before it are committed, and keeps a handover", arguments: [false, true])
    func expiredWhileUnowned(transactional: Bool) async throws {
        let harness = try WorkerHarness(worker: transactional ? "  transactional: true\n  transactionalId: worker-unowned-tx" : "")
        let producer = try harness.producer()
        let start: Int64 = 1_700_000_000_000
        // As a topic written before tombstones existed holds them: one session long expired,
        // one handover of the same age, one 41 minutes newer that sets the partition's clock.
        let expired = SessionState(conversationId: "conv-expired", endpoint: "support", tenantId: "acme", now: start)
        var handover = SessionState(conversationId: "conv-agent", endpoint: "support", tenantId: "acme", now: start)
        handover.handover = HandoverState(phase: .agent, transferring: false, requestedByBot: true)
        let live = SessionState(conversationId: "conv-live", endpoint: "support", tenantId: "acme", now: start + 41 * 60_000)
        try await producer.sendBatch([expired, handover, live].map {
            KafkaProducerMessage(topic: harness.config.topicName(.sessions), partition: 0, key: $0.conversationId, value: $0.encoded())
        })
        // Three records the group never committed: for all the worker knows, one of them wrote
        // conv-expired's session, so without transactions it stays until they are committed.
        var chat = EventFactory(conversation: "conv-live")
        chat.clock = start + 41 * 60_000
        let backlog = [chat.user("hello"), chat.user("what is my balance"), chat.user("thanks")]
        try await harness.publish(backlog, partition: 0, with: producer)
        let sessions = try harness.reader(.sessions)
        let running = try harness.start()
        let caughtUp = try await sessions.wait(60, "the backlog's sessions") { records in
            records.contains { (try? SessionState.decode($0.value))?.processedEventIds.contains(backlog[2].eventId) == true }
        }
        if !transactional {
            // The first look came with the first record, when none of the three was committed.
            #expect(!caughtUp.contains { $0.valueIsNull })
        }

        // A minute of event time later the next look commits the backlog and forgets it. In
        // transactional mode the first look did (tombstones commit with the offsets).
        chat.clock += 61_000
        try await harness.publish([chat.user("hello again")], partition: 0, with: producer)
        try await sessions.wait(60, "conv-expired's tombstone") { $0.contains { $0.keyString == "conv-expired" && $0.valueIsNull } }
        // A record written after that look's tombstones: nothing else was forgotten before it.
        let marker = chat.user("bye")
        try await harness.publish([marker], partition: 0, with: producer)
        let records = try await sessions.wait(60, "the marker's session") { records in
            records.contains { (try? SessionState.decode($0.value))?.processedEventIds.contains(marker.eventId) == true }
        }
        #expect(records.filter(\.valueIsNull).map(\.keyString) == ["conv-expired"])
        let metrics = String(decoding: running.worker.metrics.render(), as: UTF8.self)
        #expect(metrics.contains("connector_worker_sessions_forgotten_total 1"), "\(metrics)")
        #expect(metrics.contains("connector_worker_sessions_restored_total 2"), "\(metrics)")
        await running.stop()
        await sessions.close()
        await producer.shutdown()
    }

    @Test("a partition without new events forgets its expired sessions once it has processed every record and time passed on the worker's host", arguments: [false, true])
    func quietPartitionForgets(transactional: Bool) async throws {
        let harness = try WorkerHarness(worker: transactional ? "  transactional: true\n  transactionalId: worker-quiet-tx" : "")
        let sessions = try harness.reader(.sessions)
        let outbound = try harness.reader(.outbound)
        let running = try harness.start(tickInterval: .milliseconds(100))
        let producer = try harness.producer()
        var old = EventFactory(conversation: "conv-old")
        var recent = EventFactory(conversation: "conv-recent")
        recent.clock = old.clock + 35 * 60_000
        let first = recent.user("update my email")
        try await harness.publish([old.user("update my email"), first], partition: 0, with: producer)
        try await sessions.wait(60, "both sessions") { records in
            records.contains { (try? SessionState.decode($0.value))?.processedEventIds.contains(first.eventId) == true }
        }

        // No event comes, but six minutes pass on the worker's host: the partition's clock runs
        // on from its newest event, so conv-old has been idle for 41 minutes (the demo
        // endpoint's TTL of 30 plus 10), conv-recent for 6.
        running.worker.clock.advance(by: .seconds(6 * 60 + 1))
        let records = try await sessions.wait(60, "conv-old's tombstone") { $0.contains { $0.keyString == "conv-old" && $0.valueIsNull } }
        #expect(!records.contains { $0.keyString == "conv-recent" && $0.valueIsNull })
        #expect(records.last { $0.keyString == "conv-old" }?.valueIsNull == true)

        // conv-recent goes on with its session: the email question is answered in its flow.
        let answer = recent.user("jane@example.com")
        try await harness.publish([answer], partition: 0, with: producer)
        let commands = try await outbound.wait(60, "conv-recent's answer") { records in
            records.contains { (try? OutboundCommand.decode($0.value))?.causationEventId == answer.eventId }
        }
        #expect(try commands.map { try OutboundCommand.decode($0.value) }.contains {
            $0.causationEventId == answer.eventId && $0.body["text"] == .string("Thanks, I saved jane@example.com.")
        })
        let metrics = String(decoding: running.worker.metrics.render(), as: UTF8.self)
        #expect(metrics.contains("connector_worker_sessions_forgotten_total 1"), "\(metrics)")
        await running.stop()
        await sessions.close()
        await outbound.close()
        await producer.shutdown()
    }

    @Test("a quiet partition's check holds no event of the worker's while Kafka is slow to answer it")
    func slowQuietCheckHoldsNoEvent() async throws {
        let harness = try WorkerHarness()
        let sessions = try harness.reader(.sessions)
        let outbound = try harness.reader(.outbound)
        let log = LogCapture()
        let running = try harness.start(logger: log.logger, tickInterval: .milliseconds(100))
        let producer = try harness.producer()
        var old = EventFactory(conversation: "conv-old")
        let first = old.user("update my email")
        try await harness.publish([first], partition: 0, with: producer)
        try await sessions.wait(60, "conv-old's session") { records in
            records.contains { (try? SessionState.decode($0.value))?.processedEventIds.contains(first.eventId) == true }
        }

        // The check's next watermark request is answered after 20 s: conv-old has expired on
        // the host's clock, and the check starts asking.
        try harness.cluster.pushRequestError(broker: 1, .listOffsets, .noError, rtt: .seconds(20))
        running.worker.clock.advance(by: .seconds(41 * 60))
        try await within(60, "the quiet partition's check asking Kafka") {
            while try harness.cluster.pendingRequestErrors(broker: 1, .listOffsets) > 0 { try await Task.sleep(for: .milliseconds(20)) }
        }
        var other = EventFactory(conversation: "conv-other")
        let hello = other.user("hello")
        try await harness.publish([hello], partition: 1, with: producer)
        _ = try await outbound.wait(60, "conv-other's answer") { records in
            records.contains { (try? OutboundCommand.decode($0.value))?.causationEventId == hello.eventId }
        }
        #expect(!log.text.contains("sessions forgotten"), "answered while the check was still waiting for Kafka")

        // Once Kafka answers, the partition is found caught up and conv-old is forgotten.
        let records = try await sessions.wait(60, "conv-old's tombstone") { $0.contains { $0.keyString == "conv-old" && $0.valueIsNull } }
        #expect(records.last { $0.keyString == "conv-old" }?.valueIsNull == true)
        #expect(log.text.contains("sessions forgotten"))
        await running.stop()
        await sessions.close()
        await outbound.close()
        await producer.shutdown()
    }

    /// Without transactions only: the embedded broker answers the offsets a transaction
    /// commits without keeping them, so a transactional worker there reads the partition again
    /// and goes by the records it was handed (as in `quietPartitionForgets`).
    @Test("a worker given a partition that gets no event forgets its restored sessions once time passes (the group's committed offset is the high watermark), also one of an endpoint no longer configured")
    func quietPartitionForgetsRestoredSessions() async throws {
        let harness = try WorkerHarness()
        let sessions = try harness.reader(.sessions)
        let producer = try harness.producer()
        var old = EventFactory(conversation: "conv-old")
        let event = old.user("update my email")
        let first = try harness.start(tickInterval: .milliseconds(100))
        try await harness.publish([event], partition: 0, with: producer)
        try await sessions.wait(60, "conv-old's session") { records in
            records.contains { (try? SessionState.decode($0.value))?.processedEventIds.contains(event.eventId) == true }
        }
        await first.stop()
        // A session of an endpoint the configuration no longer has (renamed since): it is kept
        // a week, as an abandoned handover.
        let retired = SessionState(conversationId: "conv-retired", endpoint: "retired", tenantId: "acme", now: event.receivedAt)
        _ = try await producer.send(
            KafkaProducerMessage(topic: harness.config.topicName(.sessions), partition: 0, key: retired.conversationId, value: retired.encoded()))

        // The next worker restores the sessions and gets no event: 41 minutes on its host later
        // conv-old has expired, a week later conv-retired.
        let second = try harness.start(tickInterval: .milliseconds(100))
        try await within(60, "the restore") {
            while !String(decoding: second.worker.metrics.render(), as: UTF8.self).contains("connector_worker_sessions_restored_total 2") {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        second.worker.clock.advance(by: .seconds(41 * 60))
        let records = try await sessions.wait(60, "conv-old's tombstone") { $0.contains { $0.keyString == "conv-old" && $0.valueIsNull } }
        #expect(records.last { $0.keyString == "conv-old" }?.valueIsNull == true)
        #expect(!records.contains { $0.keyString == "conv-retired" && $0.valueIsNull })
        second.worker.clock.advance(by: .seconds(7 * 24 * 3600))
        let later = try await sessions.wait(60, "conv-retired's tombstone") { $0.contains { $0.keyString == "conv-retired" && $0.valueIsNull } }
        #expect(later.last { $0.keyString == "conv-retired" }?.valueIsNull == true)
        let metrics = String(decoding: second.worker.metrics.render(), as: UTF8.self)
        #expect(metrics.contains("connector_worker_sessions_forgotten_total 2"), "\(metrics)")
        await second.stop()
        await sessions.close()
        await producer.shutdown()
    }

    @Test("a conversation counts as writing its session from its event's registration to the record's acknowledgement")
    func sessionKeysInFlight() {
        typealias Done = @Sendable (Result<KafkaDelivery, KafkaError>) -> Void
        let sent = Mutex<[(key: String, done: Done)]>([])
        let pipeline = PartitionPipeline(
            partition: TopicPartition(topic: "in", partition: 0),
            sendSession: { key, _, done in sent.withLock { $0.append((key, done)) } },
            storeOffset: { _ in true }, onFailure: { _ in })
        let ack: Result<KafkaDelivery, KafkaError> = .success(KafkaDelivery(topicPartition: TopicPartition(topic: "out", partition: 0), offset: 0))
        pipeline.add(offset: 10, commands: 1, session: ("conv-a", [1]))
        pipeline.add(offset: 11, commands: 0, session: ("conv-b", [1]))
        pipeline.add(offset: 12, commands: 0, session: nil)
        // conv-b's record waits behind conv-a's command: both are on their way.
        #expect(pipeline.sessionKeysInFlight() == ["conv-a", "conv-b"])
        #expect(sent.withLock { $0.isEmpty })
        pipeline.commandDone(offset: 10, ack)
        #expect(sent.withLock { $0.map(\.key) } == ["conv-a", "conv-b"])
        let done = sent.withLock { $0.map(\.done) }
        done[1](ack)
        #expect(pipeline.sessionKeysInFlight() == ["conv-a"])
        done[0](ack)
        #expect(pipeline.sessionKeysInFlight().isEmpty)
        #expect(pipeline.inFlight == 0)
    }

    @Test("a full producer queue holds the session records back until there is room, in order, and fails nothing")
    func fullQueueWaitsForRoom() async throws {
        typealias Done = @Sendable (Result<KafkaDelivery, KafkaError>) -> Void
        // librdkafka's queue refuses the first three sends, then takes them.
        let refusals = Mutex(3)
        let sent = Mutex<[(key: String, done: Done)]>([])
        let failures = Mutex<[KafkaError]>([])
        let stored = Mutex<[Int64]>([])
        let pipeline = PartitionPipeline(
            partition: TopicPartition(topic: "in", partition: 0),
            sendSession: { key, _, done in
                let refuse = refusals.withLock { left in
                    defer { left = max(0, left - 1) }
                    return left > 0
                }
                if refuse { throw KafkaError(kind: .delivery, code: .queueFull, message: "queue full") }
                sent.withLock { $0.append((key, done)) }
            },
            storeOffset: { offset in stored.withLock { $0.append(offset) }; return true },
            onFailure: { error in failures.withLock { $0.append(error) } })
        let ack: Result<KafkaDelivery, KafkaError> = .success(KafkaDelivery(topicPartition: TopicPartition(topic: "out", partition: 0), offset: 0))
        pipeline.add(offset: 20, commands: 0, session: ("conv-a", [1]))
        pipeline.add(offset: 21, commands: 0, session: nil)
        pipeline.add(offset: 22, commands: 1, session: ("conv-b", [1]))
        // Two refusals so far; nothing else pumps: the pipeline tries again by itself.
        try await within(30, "conv-a's record sent once the queue had room") {
            while sent.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(1)) }
        }
        #expect(refusals.withLock { $0 } == 0)
        pipeline.commandDone(offset: 22, ack)
        pipeline.add(offset: 23, commands: 0, session: ("conv-c", [1]))
        #expect(failures.withLock { $0.isEmpty })
        #expect(sent.withLock { $0.map(\.key) } == ["conv-a", "conv-b", "conv-c"])
        #expect(stored.withLock { $0.isEmpty }, "nothing is finished before its session record is acknowledged")
        for done in sent.withLock({ $0.map(\.done) }) { done(ack) }
        #expect(stored.withLock { $0.last } == 24)
        #expect(pipeline.inFlight == 0)
    }

    @Test("an offset that does not follow the last one added fails the pipeline, also once the earlier events are finished")
    func offsetsMustFollow() {
        let failures = Mutex<[KafkaError]>([])
        let stored = Mutex<[Int64]>([])
        let pipeline = PartitionPipeline(
            partition: TopicPartition(topic: "in", partition: 0),
            sendSession: { _, _, _ in },
            storeOffset: { offset in stored.withLock { $0.append(offset) }; return true },
            onFailure: { error in failures.withLock { $0.append(error) } })
        #expect(pipeline.add(offset: 5, commands: 0, session: nil))
        #expect(pipeline.inFlight == 0 && stored.withLock { $0 } == [6], "finished at once")
        #expect(!pipeline.add(offset: 5, commands: 0, session: nil), "the consumer's position went back")
        #expect(failures.withLock { $0.count } == 1)
        #expect(stored.withLock { $0 } == [6], "nothing stored for it")
    }
}
