import Foundation
import Kafka
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@Suite("Kafka layer on the embedded cluster", .serialized)
struct ProducerConsumerTests {
    @Test func roundTripKeepsKeyValueAndHeaders() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("round-trip", partitions: 3)
        let producer = try makeProducer(cluster)
        let headers = [KafkaHeader(key: "x-8x8-event-id", string: "evt-1"), KafkaHeader(key: "empty", value: nil)]
        let value = Array(#"{"text":"hello"}"#.utf8)
        let delivery = try await producer.send(KafkaProducerMessage(topic: "round-trip", key: "conv-42", value: value, headers: headers))

        let consumer = try makeConsumer(cluster, group: "rt", allPartitions("round-trip", 3))
        let messages = try await take(1, from: consumer)
        let message = try #require(messages.first)
        #expect(message.keyString == "conv-42")
        #expect(message.value == value)
        #expect(message.headers == headers)
        #expect(message.topicPartition == delivery.topicPartition)
        #expect(message.offset == delivery.offset)
        #expect(message.timestamp != nil)
        await consumer.shutdown()
        await producer.shutdown()
    }

    @Test("a nil value is written as Kafka's null (a tombstone), an empty value as an empty record, with and without adaptive batching")
    func nullAndEmptyValuesStayApart() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("tombstones", partitions: 1)
        // Twenty at once: under adaptive batching most of them wait in the partition's gate.
        let values = Array(repeating: [Array("state".utf8), nil, [], nil] as [[UInt8]?], count: 5).flatMap { $0 }
        for batching in [KafkaBatching.linger, .adaptive] {
            let producer = try makeProducer(cluster) { $0.batching = batching }
            try await producer.sendBatch(values.map { KafkaProducerMessage(topic: "tombstones", key: "conv-1", value: $0) })
            await producer.shutdown()
        }
        let consumer = try makeConsumer(cluster, group: "tombstones", allPartitions("tombstones", 1))
        let messages = try await take(values.count * 2, from: consumer)
        #expect(messages.map(\.valueIsNull) == (values + values).map { $0 == nil })
        #expect(messages.map(\.value) == (values + values).map { $0 ?? [] })
        #expect(messages.allSatisfy { $0.keyString == "conv-1" })
        await consumer.shutdown()
    }

    @Test("ticks come, when configured, after the messages polled before them, and never otherwise")
    func ticksFollowTheMessagesBeforeThem() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("ticking", partitions: 1)
        let producer = try makeProducer(cluster)
        try await producer.sendBatch((0..<50).map { KafkaProducerMessage(topic: "ticking", key: "k", value: "m\($0)") })
        for interval in [Duration.milliseconds(50), nil] {
            let consumer = try makeConsumer(cluster, group: "ticking-\(interval == nil)", allPartitions("ticking", 1)) { $0.tickInterval = interval }
            let sequence = try await within(60, "the messages, then a tick or the next message") {
                var events = consumer.events.makeAsyncIterator()
                var seen: [String] = []
                var messages = 0
                while let event = await events.next() {
                    switch event {
                    case .message(let message):
                        messages += 1
                        seen.append(message.valueString)
                    case .tick: seen.append("tick")
                    case .partitionsAssigned, .partitionsRevoked: continue
                    }
                    if messages == 50 && interval == nil {
                        // Several would-be intervals without an event, then one more message.
                        try await Task.sleep(for: .milliseconds(300))
                        try await producer.sendBatch([KafkaProducerMessage(topic: "ticking", key: "k", value: "late")])
                    }
                    if seen.last == "late" || (messages == 50 && seen.last == "tick") { return seen }
                }
                return seen
            }
            let values = (0..<50).map { "m\($0)" }
            if interval == nil {
                #expect(sequence == values + ["late"], "no tick at all")
            } else {
                #expect(sequence.filter { $0 != "tick" } == values)
                #expect(sequence.last == "tick")
            }
            await consumer.shutdown()
        }
        await producer.shutdown()
    }

    @Test func sameKeyStaysOrderedInOnePartition() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("ordered", partitions: 6)
        let producer = try makeProducer(cluster)
        let keys = (0..<12).map { "conversation-\($0)" }
        let perKey = 25
        var batch: [KafkaProducerMessage<String, String>] = []
        for sequence in 0..<perKey {
            for key in keys { batch.append(KafkaProducerMessage(topic: "ordered", key: key, value: "\(key)|\(sequence)")) }
        }
        try await producer.sendBatch(batch)

        let consumer = try makeConsumer(cluster, group: "ordered", allPartitions("ordered", 6))
        let messages = try await take(keys.count * perKey, from: consumer)
        var sequences: [String: [Int]] = [:]
        var partitions: [String: Set<Int32>] = [:]
        for message in messages {
            let parts = message.valueString.split(separator: "|")
            #expect(String(parts[0]) == message.keyString)
            sequences[String(parts[0]), default: []].append(Int(parts[1])!)
            partitions[String(parts[0]), default: []].insert(message.partition)
        }
        for key in keys {
            #expect(sequences[key] == Array(0..<perKey), "order of \(key)")
            #expect(partitions[key]?.count == 1, "\(key) in one partition")
        }
        #expect(Set(partitions.values.flatMap { $0 }).count > 1, "keys spread over partitions")
        await consumer.shutdown()
        await producer.shutdown()
    }

    @Test func consumerThatDidNotStoreGetsTheMessagesAgain() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("redeliver", partitions: 1)
        let producer = try makeProducer(cluster)
        try await producer.sendBatch((0..<10).map { KafkaProducerMessage(topic: "redeliver", value: "m\($0)") })

        let first = try makeConsumer(cluster, group: "alo", .topics(["redeliver"]))
        try await within(60, "first five") {
            var seen = 0
            for await message in first.messages {
                seen += 1
                // Only the first five are finished; the rest are read but never stored.
                if message.offset < 5 { try first.storeOffset(message) }
                if seen == 10 { break }
            }
        }
        await first.shutdown()  // stops without having finished messages 5...9

        let second = try makeConsumer(cluster, group: "alo", .topics(["redeliver"]))
        let again = try await take(5, from: second)
        #expect(again.map(\.offset) == [5, 6, 7, 8, 9])
        #expect(again.map(\.valueString) == ["m5", "m6", "m7", "m8", "m9"])
        await second.shutdown()
        await producer.shutdown()
    }

    @Test("a caller busy longer than max.poll.interval.ms keeps its partitions: fetching pauses while the buffer is full, polling goes on, and every message comes once, in order")
    func aBusyCallerStaysInTheGroup() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("busy", partitions: 2)
        let producer = try makeProducer(cluster)
        // More than the caller's batch and the buffer take: the rest waits in librdkafka.
        let count = 4_000
        try await producer.sendBatch((0..<count).map { KafkaProducerMessage(topic: "busy", partition: Int32($0 % 2), value: "m\($0)") })
        let log = LogCapture()
        var configuration = KafkaConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "busy", subscription: .topics(["busy"]))
        configuration.maxBufferedMessages = 2
        configuration.sessionTimeoutMilliseconds = 6_000
        configuration.heartbeatIntervalMilliseconds = 500
        configuration.properties["max.poll.interval.ms"] = "7000"
        let consumer = try KafkaConsumer(configuration: configuration, logger: log.logger)
        let values = try await within(120, "every message") {
            var values: [String] = []
            var events = consumer.events.makeAsyncIterator()
            while values.count < count, let event = await events.next() {
                guard case .message(let message) = event else { continue }
                values.append(message.valueString)
                try consumer.storeOffset(message)
                // Busy with the first message past max.poll.interval.ms.
                if values.count == 1 { try await Task.sleep(for: .seconds(9)) }
            }
            return values
        }
        #expect(values.count == count && Set(values).count == count, "each once")
        for partition in 0..<2 {
            let numbers = values.compactMap { Int($0.dropFirst()) }.filter { $0 % 2 == partition }
            #expect(numbers == numbers.sorted(), "in order in partition \(partition)")
        }
        #expect(log.text.contains("fetching paused"))
        #expect(!log.text.contains("partitions revoked") && !log.text.contains("partitions lost"), "\(log.text)")
        await consumer.shutdown()
        await producer.shutdown()
    }

    @Test func twoConsumersSplitPartitionsAndTakeOverWithoutLossOrRedelivery() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("shared", partitions: 4)
        let producer = try makeProducer(cluster)
        let ledger = Ledger()

        func produce(_ range: Range<Int>) async throws {
            try await producer.sendBatch(range.map { KafkaProducerMessage(topic: "shared", key: "k\($0)", value: "v\($0)") })
        }
        func start(_ name: String) throws -> (KafkaConsumer, Task<Void, Never>) {
            let consumer = try makeConsumer(cluster, group: "pair", .topics(["shared"]))
            let task = Task {
                for await event in consumer.events {
                    switch event {
                    case .message(let message):
                        ledger.record(message.valueString, by: name)
                        try? consumer.storeOffset(message)
                    case .partitionsAssigned(let partitions):
                        ledger.assigned(partitions, to: name)
                    case .partitionsRevoked(let partitions, _):
                        ledger.revoked(partitions, from: name)
                    case .tick:
                        break
                    }
                }
            }
            return (consumer, task)
        }

        let (a, aTask) = try start("a")
        try await produce(0..<40)
        try await ledger.waitUntil("40 distinct messages") { $0.counts.count >= 40 }
        // Committed before b joins: the commit on revoke can meet the mock broker's "rebalance
        // in progress" (COMMITFAIL) under load, and then b would rightly read them again.
        try await a.commit()

        let (b, bTask) = try start("b")
        try await ledger.waitUntil("both own partitions") { $0.owned["a"]?.isEmpty == false && $0.owned["b"]?.isEmpty == false }
        let split = ledger.snapshot.owned
        #expect(split["a"]!.isDisjoint(with: split["b"]!))
        #expect(split["a"]!.union(split["b"]!).count == 4)
        try await produce(40..<80)
        try await ledger.waitUntil("80 distinct messages") { $0.counts.count >= 80 }
        #expect(ledger.snapshot.seenBy["b", default: 0] > 0, "b took part")

        await b.shutdown()
        _ = await bTask.value
        try await ledger.waitUntil("a owns everything") { $0.owned["a"]?.count == 4 }
        try await produce(80..<120)
        try await ledger.waitUntil("120 distinct messages") { $0.counts.count >= 120 }

        let counts = ledger.snapshot.counts
        #expect(counts.count == 120, "every message delivered")
        #expect(counts.values.allSatisfy { $0 == 1 }, "none delivered twice: \(counts.filter { $0.value > 1 })")
        await a.shutdown()
        _ = await aTask.value
        await producer.shutdown()
    }

    @Test func pausedPartitionDeliversNothingUntilResumed() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("paused", partitions: 2)
        let producer = try makeProducer(cluster)
        let consumer = try makeConsumer(cluster, group: "pause", allPartitions("paused", 2))
        let p0 = TopicPartition(topic: "paused", partition: 0)
        try await consumer.pause([p0])
        try await producer.send(KafkaProducerMessage(topic: "paused", partition: 0, value: "held"))
        try await producer.send(KafkaProducerMessage(topic: "paused", partition: 1, value: "flowing"))
        let first = try await take(1, from: consumer)
        #expect(first.map(\.valueString) == ["flowing"])
        try await consumer.resume([p0])
        let second = try await take(1, from: consumer)
        #expect(second.map(\.valueString) == ["held"])
        await consumer.shutdown()
        await producer.shutdown()
    }

    @Test("a resume asked for while the polling thread polls, just before a crash, is answered instead of waiting for ever; one asked for afterwards fails at once")
    func requestsAroundACrashAreAnswered() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("crash-requests", partitions: 1)
        let consumer = try makeConsumer(cluster, group: "crash-requests", allPartitions("crash-requests", 1))
        let p0 = TopicPartition(topic: "crash-requests", partition: 0)
        try await consumer.pause([p0])
        // The idle polling thread sits in a 100 ms poll: the request waits for its next step.
        let answered = Mutex(false)
        Task {
            try? await consumer.resume([p0])
            answered.withLock { $0 = true }
        }
        try await Task.sleep(for: .milliseconds(2))
        await consumer.simulateCrash()
        try await within(30, "the resume answered") {
            while !answered.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        }
        await #expect(throws: KafkaError.self) { try await consumer.pause([p0]) }
    }
}

/// What consumers saw, shared between their tasks.
final class Ledger: Sendable {
    struct State {
        var counts: [String: Int] = [:]
        var seenBy: [String: Int] = [:]
        var owned: [String: Set<TopicPartition>] = [:]
        var total: Int { counts.values.reduce(0, +) }
    }

    private let state = Mutex(State())

    var snapshot: State { state.withLock { $0 } }

    func record(_ value: String, by consumer: String) {
        state.withLock {
            $0.counts[value, default: 0] += 1
            $0.seenBy[consumer, default: 0] += 1
        }
    }

    func assigned(_ partitions: [TopicPartition], to consumer: String) {
        state.withLock { $0.owned[consumer, default: []].formUnion(partitions) }
    }

    func revoked(_ partitions: [TopicPartition], from consumer: String) {
        state.withLock { $0.owned[consumer, default: []].subtract(partitions) }
    }

    func waitUntil(_ what: String, _ condition: @escaping @Sendable (State) -> Bool) async throws {
        try await within(90, what) {
            while !condition(self.snapshot) { try await Task.sleep(for: .milliseconds(20)) }
        }
    }
}
