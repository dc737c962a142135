import Foundation
import Kafka
import ServiceLifecycle
import Synchronization
import Testing

/// `KafkaCallbackExecution.scheduled`: delivery reports served by polls that librdkafka's
/// thread hands to a scheduler (the ingress uses an event loop), with no polling thread.
@Suite struct ScheduledCallbackTests {
    /// A serial queue standing in for an event loop, counting the polls handed to it.
    final class Scheduler: Sendable {
        let queue = DispatchQueue(label: "kafka-tests.scheduler")
        let key = DispatchSpecificKey<Bool>()
        let scheduled = Atomic<Int>(0)

        init() { queue.setSpecific(key: key, value: true) }

        var execution: KafkaCallbackExecution {
            .scheduled { [self] poll in
                scheduled.add(1, ordering: .relaxed)
                queue.async(execute: poll)
            }
        }

        var isCurrent: Bool { DispatchQueue.getSpecific(key: key) == true }
    }

    @Test func deliveriesAreServedWhereTheSchedulerRunsThem() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("scheduled", partitions: 3)
        let scheduler = Scheduler()
        let producer = try makeProducer(cluster) { $0.callbacks = scheduler.execution }

        let first = try await producer.send(KafkaProducerMessage(topic: "scheduled", key: "k", value: "awaited"))
        #expect(first.offset >= 0)

        let total = 300
        let onScheduler = Atomic<Int>(0)
        let delivered = Atomic<Int>(0)
        try await within(60, "\(total) delivery callbacks") {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                for i in 0..<total {
                    try! producer.send(KafkaProducerMessage(topic: "scheduled", key: "k\(i % 9)", value: "\(i)")) { result in
                        if scheduler.isCurrent { onScheduler.add(1, ordering: .relaxed) }
                        if case .success = result, delivered.add(1, ordering: .relaxed).newValue == total { done.resume() }
                    }
                }
            }
        }
        #expect(onScheduler.load(ordering: .relaxed) == total)
        #expect(scheduler.scheduled.load(ordering: .relaxed) > 0)

        // Detached sends report through the stream, also from scheduled polls.
        let id = try await producer.sendDetached(KafkaProducerMessage(topic: "scheduled", value: "detached"))
        let report = try await within(30, "the detached report") { () -> KafkaDeliveryReport? in
            for await report in producer.deliveryReports where report.id == id { return report }
            return nil
        }
        #expect(report?.error == nil)
        await producer.shutdown()
    }

    @Test func gracefulShutdownFlushesAndPollsLeftQueuedDoNothingAfterwards() async throws {
        let cluster = try EmbeddedKafkaCluster()
        try cluster.createTopic("scheduled-flushed", partitions: 2)
        let scheduler = Scheduler()
        // Polls pile up on the held queue; the shutdown's flush serves the reports itself.
        scheduler.queue.suspend()
        do {
            let producer = try makeProducer(cluster) {
                $0.callbacks = scheduler.execution
                $0.lingerMilliseconds = 5_000
            }
            let reports = Task { [deliveryReports = producer.deliveryReports] in
                var count = 0
                for await report in deliveryReports where report.error == nil { count += 1 }
                return count
            }
            let group = ServiceGroup(services: [producer], logger: testLogger)
            let running = Task { try await group.run() }
            for i in 0..<500 {
                try await producer.sendDetached(KafkaProducerMessage(topic: "scheduled-flushed", key: "k\(i % 7)", value: "\(i)"))
            }
            await group.triggerGracefulShutdown()
            try await running.value
            #expect(producer.outstandingMessages == 0)
            #expect(await reports.value == 500)
        }

        // The handle is destroyed; the polls still queued must not touch it.
        #expect(await KafkaTeardowns.finish(timeout: .seconds(30)), "the handle's destroy ended")
        #expect(scheduler.scheduled.load(ordering: .relaxed) > 0)
        scheduler.queue.resume()
        scheduler.queue.sync {}
        let (_, high0) = try await KafkaAdmin(bootstrapServers: cluster.bootstrapServers, logger: testLogger)
            .watermarks(TopicPartition(topic: "scheduled-flushed", partition: 0))
        let (_, high1) = try await KafkaAdmin(bootstrapServers: cluster.bootstrapServers, logger: testLogger)
            .watermarks(TopicPartition(topic: "scheduled-flushed", partition: 1))
        #expect(high0 + high1 == 500)
    }
}
