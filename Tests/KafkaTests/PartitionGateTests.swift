import Foundation
@testable import Kafka
import ServiceLifecycle
import Synchronization
import Testing

/// `KafkaBatching.adaptive`: a partition with nothing in flight sends at once,
/// one with a request in flight holds what comes until the acknowledgement and then sends it
/// all together. The embedded broker answers each request 100 ms late here, so that messages
/// sent back to back certainly find their partition busy.
@Suite struct PartitionGateTests {
    /// A gated producer, run as a service (stopped gracefully through its group), with the
    /// topic's partition count known before it returns.
    func startGated(
        _ cluster: EmbeddedKafkaCluster, topic: String, partitions: Int, _ configure: (inout KafkaProducerConfiguration) -> Void = { _ in }
    ) async throws -> (KafkaProducer, ServiceGroup, Task<Void, any Error>) {
        let producer = try makeProducer(cluster) {
            $0.batching = .adaptive
            configure(&$0)
        }
        let group = ServiceGroup(services: [producer], logger: testLogger)
        let running = Task { try await group.run() }
        // The first message makes the topic's handle, whose partition count the producer then asks for.
        try await producer.send(KafkaProducerMessage(topic: topic, key: "first", value: "first"))
        try await within(30, "the partition count") {
            while producer.gateStatistics(topic: topic)?.partitions != partitions { try await Task.sleep(for: .milliseconds(10)) }
        }
        return (producer, group, running)
    }

    @Test func heldMessagesGoOutTogetherInOrderOnTheLibrariesPartitions() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("gated", partitions: 6)
        try cluster.createTopic("ungated", partitions: 6)
        let (producer, group, running) = try await startGated(cluster, topic: "gated", partitions: 6)
        try cluster.setRoundTripTime(broker: 1, .milliseconds(100))

        // 20 keys, 15 messages each, sent back to back; every third with a header (those are
        // enqueued one by one when released), some detached.
        let keys = (0..<20).map { "conversation-\($0)" }
        let perKey = 15
        let total = keys.count * perKey
        let delivered = Atomic<Int>(0)
        let failed = Atomic<Int>(0)
        var detachedIDs: Set<UInt64> = []
        try await within(60, "\(total) deliveries") {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                let count = { @Sendable (ok: Bool) in
                    if !ok { failed.add(1, ordering: .relaxed) }
                    if delivered.add(1, ordering: .relaxed).newValue == total { done.resume() }
                }
                for sequence in 0..<perKey {
                    for (index, key) in keys.enumerated() {
                        let headers = (index + sequence) % 3 == 0 ? [KafkaHeader(key: "sequence", string: "\(sequence)")] : []
                        let message = KafkaProducerMessage(topic: "gated", key: key, value: "\(key)|\(sequence)", headers: headers)
                        if index == 0 {
                            // Detached sends of one key, reported on the stream below.
                            count(true)
                            continue
                        }
                        try! producer.send(message) { count((try? $0.get()) != nil) }
                    }
                }
            }
        }
        for sequence in 0..<perKey {
            let id = try await producer.sendDetached(KafkaProducerMessage(topic: "gated", key: keys[0], value: "\(keys[0])|\(sequence)"))
            detachedIDs.insert(id)
        }
        let reports = try await within(60, "the detached reports") { [deliveryReports = producer.deliveryReports] in
            var reports: [KafkaDeliveryReport] = []
            for await report in deliveryReports {
                reports.append(report)
                if reports.count == perKey { break }
            }
            return reports
        }
        #expect(failed.load(ordering: .relaxed) == 0)
        #expect(Set(reports.map(\.id)) == detachedIDs)
        #expect(reports.allSatisfy { $0.error == nil })

        let statistics = try #require(producer.gateStatistics(topic: "gated"))
        #expect(statistics.held == 0)
        #expect(statistics.releasedMessages > 0, "messages waited for their partition")
        #expect(statistics.releasedBatches < statistics.releasedMessages, "held messages went out together")
        // Every gated message once (the first one went before the partition count was known).
        #expect(statistics.sentAtOnce + statistics.releasedMessages == total)

        // The same keys through an ungated producer, for librdkafka's own partitioning.
        try cluster.setRoundTripTime(broker: 1, .zero)
        let plain = try makeProducer(cluster)
        try await plain.sendBatch(keys.map { KafkaProducerMessage(topic: "ungated", key: $0, value: $0) })

        let consumer = try makeConsumer(cluster, group: "gated", allPartitions("gated", 6))
        let messages = try await take(total + 1, from: consumer).filter { $0.keyString != "first" }
        let reference = try makeConsumer(cluster, group: "ungated", allPartitions("ungated", 6))
        let partitionOf = Dictionary(uniqueKeysWithValues: try await take(keys.count, from: reference).map { ($0.keyString!, $0.partition) })
        var sequences: [String: [Int]] = [:]
        for message in messages {
            let parts = message.valueString.split(separator: "|")
            let key = String(parts[0]), sequence = Int(parts[1])!
            #expect(message.keyString == key)
            #expect(message.partition == partitionOf[key], "\(key) where librdkafka's partitioner puts it")
            if (keys.firstIndex(of: key)! + sequence) % 3 == 0 && key != keys[0] {
                #expect(message.headers.last("sequence")?.stringValue == "\(sequence)")
            }
            sequences[key, default: []].append(sequence)
        }
        for key in keys { #expect(sequences[key] == Array(0..<perKey), "order of \(key)") }

        await reference.shutdown()
        await consumer.shutdown()
        await plain.shutdown()
        await group.triggerGracefulShutdown()
        try await running.value
    }

    @Test func shutdownSendsWhatIsHeldAndACrashFailsIt() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("gated-stop", partitions: 2)

        // Graceful: everything held is flushed, none lost.
        let (producer, group, running) = try await startGated(cluster, topic: "gated-stop", partitions: 2)
        try cluster.setRoundTripTime(broker: 1, .milliseconds(300))
        let results = Mutex<[Bool]>([])
        for i in 0..<40 {
            try producer.send(KafkaProducerMessage(topic: "gated-stop", key: "k\(i % 4)", value: "\(i)")) { result in
                results.withLock { $0.append((try? result.get()) != nil) }
            }
        }
        #expect(producer.gateStatistics(topic: "gated-stop")!.held > 0)
        #expect(producer.outstandingMessages >= 40)
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(results.withLock { $0 } == Array(repeating: true, count: 40))
        #expect(producer.outstandingMessages == 0)
        #expect(producer.gateStatistics(topic: "gated-stop")?.held == 0)

        // Crash: what is held fails at once; nothing is left waiting.
        let (crashing, crashingGroup, crashingRun) = try await startGated(cluster, topic: "gated-stop", partitions: 2)
        let errors = Mutex<[KafkaError?]>([])
        for i in 0..<40 {
            try crashing.send(KafkaProducerMessage(topic: "gated-stop", key: "k\(i % 4)", value: "crash \(i)")) { result in
                errors.withLock { $0.append(result.failure) }
            }
        }
        let held = crashing.gateStatistics(topic: "gated-stop")!.held
        #expect(held > 0)
        await crashing.simulateCrash()
        #expect(crashing.gateStatistics(topic: "gated-stop")?.partitions == 0, "no gating after the crash")
        // The held ones' failures come on a task of their own (never inside a caller's call).
        try await within(30, "every message reported") {
            while errors.withLock({ $0.count }) < 40 { try await Task.sleep(for: .milliseconds(5)) }
        }
        let reported = errors.withLock { $0 }
        #expect(reported.count == 40, "every message reported")
        #expect(reported.compactMap { $0 }.count >= held, "the held ones failed")
        await crashingGroup.triggerGracefulShutdown()
        try await crashingRun.value
        try cluster.setRoundTripTime(broker: 1, .zero)
    }

    /// Runs `body` on a thread of its own (not Swift's pool, which a loop would hold).
    static func onThread(_ body: @escaping @Sendable () -> Void) -> Task<Void, Never> {
        Task {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                Thread {
                    body()
                    continuation.resume()
                }.start()
            }
        }
    }

    @Test("sends racing a crash or a stop: every message a send accepted is reported, none is left in librdkafka unreported")
    func sendsRacingTheEnd() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("gated-race", partitions: 2)
        try cluster.setRoundTripTime(broker: 1, .milliseconds(20))
        for round in 0..<12 {
            let (producer, group, running) = try await startGated(cluster, topic: "gated-race", partitions: 2)
            let accepted = Atomic<Int>(0)
            let reported = Atomic<Int>(0)
            // Senders on threads of their own, as the worker's and the ingress's callbacks are.
            let senders = (0..<4).map { sender in
                Self.onThread {
                    var n = 0
                    while true {
                        do {
                            try producer.send(KafkaProducerMessage(topic: "gated-race", key: "k\(n % 3)", value: "\(sender)-\(n)")) { _ in
                                reported.add(1, ordering: .relaxed)
                            }
                            accepted.add(1, ordering: .relaxed)
                        } catch let error as KafkaError where error.code == .queueFull {
                            Thread.sleep(forTimeInterval: 0.001)
                        } catch {
                            return
                        }
                        n += 1
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(30))
            if round % 2 == 0 {
                await producer.simulateCrash()
            } else {
                await group.triggerGracefulShutdown()
                try await running.value
            }
            for sender in senders { await sender.value }
            try await within(30, "every accepted message reported (round \(round))") {
                while reported.load(ordering: .relaxed) < accepted.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(5)) }
            }
            #expect(reported.load(ordering: .relaxed) == accepted.load(ordering: .relaxed), "round \(round)")
            #expect(producer.outstandingMessages == 0, "round \(round)")
            await group.triggerGracefulShutdown()
            try? await running.value
        }
    }

    @Test func heldMessagesCountAgainstTheQueueLimitAndADroppedProducerFailsThem() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("gated-full", partitions: 1)
        var producer: KafkaProducer? = try makeProducer(cluster) {
            $0.batching = .adaptive
            $0.properties["queue.buffering.max.messages"] = "10"
        }
        try await producer!.send(KafkaProducerMessage(topic: "gated-full", key: "k", value: "first"))
        try await within(30, "the partition count") { [weak producer] in
            while producer?.gateStatistics(topic: "gated-full")?.partitions != 1 { try await Task.sleep(for: .milliseconds(10)) }
        }
        try cluster.setRoundTripTime(broker: 1, .milliseconds(300))
        let results = Mutex<[Result<KafkaDelivery, KafkaError>]>([])
        // 5 go at once, the next ones are held until 5 in flight and 5 held fill the 10 places.
        var refusal: KafkaError?
        for i in 0..<20 {
            do {
                try producer!.send(KafkaProducerMessage(topic: "gated-full", key: "k", value: "\(i)")) { result in
                    results.withLock { $0.append(result) }
                }
            } catch let error as KafkaError {
                refusal = error
                break
            }
        }
        #expect(refusal?.code == .queueFull, "the 11th message is refused when it is sent, not failed later")
        let statistics = try #require(producer!.gateStatistics(topic: "gated-full"))
        #expect(statistics.held == 5 && statistics.sentAtOnce == 5, "the first message went before the count was known")

        // Dropped without a shutdown: every message is reported (failed), the held ones too
        // (theirs come on a task of their own, never inside a caller's call).
        producer = nil
        try await within(30, "every accepted message reported") {
            while results.withLock({ $0.count }) < 10 { try await Task.sleep(for: .milliseconds(10)) }
        }
        let reported = results.withLock { $0 }
        #expect(reported.count == 10, "every accepted message reported")
        #expect(reported.filter { $0.failure != nil }.count >= 5)
        try cluster.setRoundTripTime(broker: 1, .zero)
    }

    @Test func aHeldMessageKeepsItsRoomWhenAnotherTopicFillsTheQueue() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("room-held", partitions: 1)
        try cluster.createTopic("room-other", partitions: 3)
        let producer = try makeProducer(cluster) {
            $0.batching = .adaptive
            $0.properties["queue.buffering.max.messages"] = "10"
        }
        for topic in ["room-held", "room-other"] {
            try await producer.send(KafkaProducerMessage(topic: topic, key: "k", value: "first"))
            try await within(30, "the partition count of \(topic)") {
                while (producer.gateStatistics(topic: topic)?.partitions ?? 0) == 0 { try await Task.sleep(for: .milliseconds(10)) }
            }
        }
        try cluster.setRoundTripTime(broker: 1, .milliseconds(300))
        let results = Mutex<[String: Result<KafkaDelivery, KafkaError>]>([:])
        func send(_ topic: String, partition: Int32, _ value: String) throws {
            try producer.send(KafkaProducerMessage(topic: topic, partition: partition, key: "k", value: value)) { result in
                results.withLock { $0[value] = result }
            }
        }
        // room-held's partition: 5 in flight, 3 held.
        for i in 0..<8 { try send("room-held", partition: 0, "held-\(i)") }
        #expect(producer.gateStatistics(topic: "room-held")?.held == 3)
        // Another topic's partitions would each take 5 at once: only the room left (2) is given,
        // the next message is refused when it is sent.
        var accepted = 0
        var refusal: KafkaError?
        for i in 0..<15 {
            do {
                try send("room-other", partition: Int32(i % 3), "other-\(i)")
                accepted += 1
            } catch let error as KafkaError {
                refusal = error
                break
            }
        }
        #expect(accepted == 2)
        #expect(refusal?.code == .queueFull)
        // The held messages are released with the first acknowledgement and find their room.
        let expected = 8 + accepted
        try await within(30, "every accepted message reported") {
            while results.withLock({ $0.count }) < expected { try await Task.sleep(for: .milliseconds(10)) }
        }
        let failed = results.withLock { $0.filter { $0.value.failure != nil }.keys.sorted() }
        #expect(failed.isEmpty, "\(failed)")
        try cluster.setRoundTripTime(broker: 1, .zero)
        await producer.shutdown()
    }

    @Test func lingerAndPartitionerFollowTheConfiguration() {
        var configuration = KafkaProducerConfiguration(bootstrapServers: "localhost:9092")
        #expect(configuration.librdkafkaProperties["linger.ms"] == "2")
        configuration.batching = .adaptive
        // No linger under the gate unless the properties ask for one.
        #expect(configuration.librdkafkaProperties["linger.ms"] == "0")
        configuration.properties = ["linger.ms": "3"]
        #expect(configuration.librdkafkaProperties["linger.ms"] == "3")

        // The key-based partitioners are librdkafka's own; without one nothing is gated.
        for name in ["murmur2", "murmur2_random", "consistent", "consistent_random", "fnv1a", "fnv1a_random"] {
            #expect(PartitionGate.partitioner(named: name) != nil, "\(name)")
        }
        #expect(PartitionGate.partitioner(named: "random") == nil)
        let murmur2 = PartitionGate.partitioner(named: "murmur2_random")!
        let crc = PartitionGate.partitioner(named: "consistent")!
        let spread = { (partitioner: PartitionGate.Partitioner) in
            Set((0..<50).map { i in Array("key-\(i)".utf8).withUnsafeBytes { partitioner(nil, $0.baseAddress, $0.count, 6, nil, nil) } })
        }
        #expect(spread(murmur2).isSubset(of: Set(0..<6)) && spread(murmur2).count > 1)
        #expect(spread(crc).isSubset(of: Set(0..<6)) && spread(crc).count > 1)
    }

    @Test func theKeysPartitionFollowsTheConfiguredPartitioner() {
        var configuration = KafkaProducerConfiguration(bootstrapServers: "localhost:9092")
        let keys = (0..<50).map { "conv-\($0)" }
        func partitions() -> [Int32?] { keys.map { configuration.partition(ofKey: $0, partitionCount: 6) } }
        func librdkafkas(_ name: String) -> [Int32?] {
            let partitioner = PartitionGate.partitioner(named: name)!
            return keys.map { key in Array(key.utf8).withUnsafeBytes { partitioner(nil, $0.baseAddress, $0.count, 6, nil, nil) } }
        }
        // The default is murmur2 (Java's), not librdkafka's own default (CRC32).
        #expect(partitions() == librdkafkas("murmur2"))
        #expect(partitions() != librdkafkas("consistent"))
        configuration.partitioner = "consistent_random"
        #expect(partitions() == librdkafkas("consistent"))
        configuration.properties["partitioner"] = "fnv1a"  // the properties win
        #expect(partitions() == librdkafkas("fnv1a"))
        #expect(configuration.partition(ofKey: "", partitionCount: 6) != nil, "fnv1a places no key in one partition")
        configuration.properties["partitioner"] = "murmur2_random"
        #expect(configuration.partition(ofKey: "", partitionCount: 6) == nil, "murmur2_random places no key at random")
        #expect(configuration.partition(ofKey: "conv-1", partitionCount: 0) == nil)
        configuration.properties["partitioner"] = "random"
        #expect(configuration.partition(ofKey: "conv-1", partitionCount: 6) == nil, "not key-based")
    }

    @Test func anUnknownTopicsPartitionCountIsAskedLessAndLessOften() {
        // Known: the regular refresh.
        #expect(KafkaProducer.partitionCountDelay(failures: 0) == KafkaProducer.partitionCountRefresh)
        // Unanswered: 200 ms, doubling, capped at the regular refresh.
        let delays = (1...12).map { KafkaProducer.partitionCountDelay(failures: $0) }
        #expect(Array(delays.prefix(4)) == [.milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600)])
        #expect(zip(delays, delays.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(delays.last == KafkaProducer.partitionCountRefresh)
        #expect(KafkaProducer.partitionCountDelay(failures: Int.max) == KafkaProducer.partitionCountRefresh)
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
