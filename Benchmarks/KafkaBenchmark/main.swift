// Throughput of the Kafka wrapper against the same workload sent directly through librdkafka's
// C API, on the embedded cluster, with 200-byte messages.
//
//   swift run -c release KafkaBenchmark [messages-per-round] [rounds]
//
// Each round uses fresh topics with 24 partitions (the embedded broker keeps only ~5 MiB per
// partition, so a round of 400,000 stays below that). Produce: batches of 10,000, each batch's
// delivery reports awaited before the next. Consume: every partition assigned from offset 0,
// timed from the first message to the last (connection set-up is not throughput).
import CRdKafka
import Foundation
import Kafka
import Logging
import Synchronization

let arguments = CommandLine.arguments
let perRound = arguments.count > 1 ? Int(arguments[1]) ?? 400_000 : 400_000
let rounds = arguments.count > 2 ? Int(arguments[2]) ?? 5 : 5
let batchSize = 10_000
let partitions: Int32 = 24
let payload = [UInt8](repeating: UInt8(ascii: "x"), count: 200)
let keys: [[UInt8]] = (0..<1000).map { Array("conversation-\($0)".utf8) }

let logger: Logger = {
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    return logger
}()
let cluster = try EmbeddedKafkaCluster(brokers: 1, logger: logger)
let producerProperties = [
    "bootstrap.servers": cluster.bootstrapServers, "enable.idempotence": "true", "acks": "all",
    "linger.ms": "2", "partitioner": "murmur2_random",
]

extension Duration {
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

func seconds(_ body: () async throws -> Void) async rethrows -> Double {
    let start = ContinuousClock.now
    try await body()
    return (ContinuousClock.now - start).inSeconds
}

// MARK: Direct C API

final class DeliveryCounter: @unchecked Sendable {
    let delivered = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
}

func makeConf(_ properties: [String: String]) -> OpaquePointer {
    let conf = rd_kafka_conf_new()!
    var errstr = [CChar](repeating: 0, count: 512)
    for (key, value) in properties { precondition(rd_kafka_conf_set(conf, key, value, &errstr, 512) == RD_KAFKA_CONF_OK) }
    return conf
}

func produceDirect(topic: String) -> Double {
    let counter = DeliveryCounter()
    let conf = makeConf(producerProperties)
    rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(counter).toOpaque())
    rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
        let counter = Unmanaged<DeliveryCounter>.fromOpaque(opaque!).takeUnretainedValue()
        if message!.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
            counter.delivered.add(1, ordering: .relaxed)
        } else {
            counter.failed.add(1, ordering: .relaxed)
        }
    }
    var errstr = [CChar](repeating: 0, count: 512)
    let rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errstr, 512)!
    let rkt = rd_kafka_topic_new(rk, topic, nil)!
    let start = ContinuousClock.now
    var sent = 0
    while sent < perRound {
        let end = min(perRound, sent + batchSize)
        for i in sent..<end {
            let key = keys[i % keys.count]
            while true {
                let r = payload.withUnsafeBytes { value in
                    key.withUnsafeBytes { key in
                        rd_kafka_produce(rkt, -1, RD_KAFKA_MSG_F_COPY, UnsafeMutableRawPointer(mutating: value.baseAddress),
                                         value.count, key.baseAddress, key.count, nil)
                    }
                }
                if r == 0 { break }
                rd_kafka_poll(rk, 1)
            }
            rd_kafka_poll(rk, 0)
        }
        while counter.delivered.load(ordering: .relaxed) + counter.failed.load(ordering: .relaxed) < end {
            rd_kafka_poll(rk, 1)
        }
        sent = end
    }
    let elapsed = ContinuousClock.now - start
    precondition(counter.failed.load(ordering: .relaxed) == 0, "direct produce failed")
    rd_kafka_topic_destroy(rkt)
    rd_kafka_destroy(rk)
    return elapsed.inSeconds
}

func consumeDirect(topic: String) -> Double {
    let conf = makeConf([
        "bootstrap.servers": cluster.bootstrapServers, "group.id": "bench-direct-\(topic)",
        "enable.auto.commit": "false", "enable.partition.eof": "false",
    ])
    var errstr = [CChar](repeating: 0, count: 512)
    let rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errstr, 512)!
    rd_kafka_poll_set_consumer(rk)
    let list = rd_kafka_topic_partition_list_new(partitions)!
    for p in 0..<partitions { rd_kafka_topic_partition_list_add(list, topic, p).pointee.offset = 0 }
    rd_kafka_assign(rk, list)
    var start = ContinuousClock.now
    var received = 0
    var bytes = 0
    while received < perRound {
        guard let message = rd_kafka_consumer_poll(rk, 100) else { continue }
        if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
            if received == 0 { start = ContinuousClock.now }
            received += 1
            bytes += message.pointee.len
        }
        rd_kafka_message_destroy(message)
    }
    let elapsed = ContinuousClock.now - start
    precondition(bytes == perRound * payload.count)
    rd_kafka_topic_partition_list_destroy(list)
    rd_kafka_consumer_close(rk)
    rd_kafka_destroy(rk)
    return elapsed.inSeconds
}

// MARK: Wrapper

func produceWrapper(topic: String) async throws -> Double {
    var configuration = KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
    configuration.lingerMilliseconds = 2
    let producer = try KafkaProducer(configuration: configuration, logger: logger)
    let elapsed = try await seconds {
        var sent = 0
        while sent < perRound {
            let end = min(perRound, sent + batchSize)
            try await producer.sendBatch((sent..<end).lazy.map {
                KafkaProducerMessage(topic: topic, key: keys[$0 % keys.count], value: payload)
            })
            sent = end
        }
    }
    await producer.shutdown()
    return elapsed
}

func consumeWrapper(topic: String) async throws -> Double {
    let subscription = KafkaConsumerConfiguration.Subscription.partitions(
        Dictionary(uniqueKeysWithValues: (0..<partitions).map { (TopicPartition(topic: topic, partition: $0), Int64?.some(0)) }))
    var start = ContinuousClock.now
    let consumer = try KafkaConsumer(
        configuration: KafkaConsumerConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "bench-wrapper-\(topic)", subscription: subscription),
        logger: logger)
    var received = 0
    var bytes = 0
    for await message in consumer.messages {
        if received == 0 { start = ContinuousClock.now }
        received += 1
        bytes += message.value.count
        if received == perRound { break }
    }
    let elapsed = ContinuousClock.now - start
    precondition(bytes == perRound * payload.count)
    await consumer.shutdown()
    return elapsed.inSeconds
}

// MARK: Run

var results: [String: [Double]] = [:]
for round in 0..<(rounds + 1) {
    let direct = "bench-direct-\(round)"
    let wrapped = "bench-wrapper-\(round)"
    try cluster.createTopic(direct, partitions: partitions)
    try cluster.createTopic(wrapped, partitions: partitions)
    // Alternate the order so neither side always runs on a warmer machine.
    var r: [String: Double] = [:]
    if round % 2 == 0 {
        r["produce.direct"] = produceDirect(topic: direct)
        r["produce.wrapper"] = try await produceWrapper(topic: wrapped)
        r["consume.direct"] = consumeDirect(topic: direct)
        r["consume.wrapper"] = try await consumeWrapper(topic: wrapped)
    } else {
        r["produce.wrapper"] = try await produceWrapper(topic: wrapped)
        r["produce.direct"] = produceDirect(topic: direct)
        r["consume.wrapper"] = try await consumeWrapper(topic: wrapped)
        r["consume.direct"] = consumeDirect(topic: direct)
    }
    if round == 0 { continue }  // warm-up
    for (name, time) in r { results[name, default: []].append(Double(perRound) / time) }
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
print("messages per round: \(perRound), rounds: \(rounds) (+1 warm-up), 200-byte values, \(partitions) partitions")
print("operation   direct C API msg/s   wrapper msg/s   ratio")
for operation in ["produce", "consume"] {
    let direct = median(results["\(operation).direct"]!)
    let wrapper = median(results["\(operation).wrapper"]!)
    print("\(operation.padding(toLength: 12, withPad: " ", startingAt: 0))\(String(format: "%-21.0f%-16.0f%.2f", direct, wrapper, wrapper / direct))")
}
