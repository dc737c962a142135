import Kafka
import Testing

@Suite("Lag evaluation over a sliding window, as Burrow does")
struct LagEvaluatorTests {
    /// One sample of group "g" with one partition.
    func sample(committed: Int64?, high: Int64) -> ConsumerGroupLag {
        ConsumerGroupLag(group: "g", partitions: [
            PartitionLag(topic: "t", partition: 0, committedOffset: committed, lowWatermark: 0, highWatermark: high),
        ])
    }

    func evaluate(_ samples: [(Int64?, Int64)], window: Int = 3, stopAfter: Int = 6) -> LagEvaluator.Status {
        var evaluator = LagEvaluator(window: window, stopAfter: stopAfter)
        for (committed, high) in samples { evaluator.add(sample(committed: committed, high: high)) }
        return evaluator.status(of: "g")
    }

    @Test func statuses() {
        #expect(evaluate([(10, 20), (10, 20)]) == .ok, "too few samples to judge")
        #expect(evaluate([(10, 20), (15, 20), (20, 20)]) == .ok, "caught up")
        #expect(evaluate([(10, 20), (12, 22), (14, 24)]) == .ok, "moving, lag steady")
        #expect(evaluate([(10, 20), (11, 25), (12, 30)]) == .warning, "moving, lag growing")
        #expect(evaluate([(10, 20), (10, 21), (10, 22)]) == .stall, "not moving with lag")
        #expect(evaluate([(10, 10), (10, 10), (10, 10)]) == .ok, "not moving, nothing to read")
        #expect(evaluate(Array(repeating: (10, 20), count: 6)) == .stop, "not moving for stopAfter samples")
        #expect(evaluate([(10, 20), (15, 20), (5, 20)]) == .rewind, "committed offset went back")
        #expect(evaluate([(10, 20), (10, 20), (10, 20), (12, 20)]) == .ok, "moves again")
        #expect(evaluate([(nil, 20), (nil, 20), (nil, 20)]) == .stall, "never committed, lag waiting")
    }

    @Test func aGroupIsAsBadAsItsWorstPartition() {
        var evaluator = LagEvaluator(window: 2, stopAfter: 4)
        for high in [20, 21] as [Int64] {
            evaluator.add(ConsumerGroupLag(group: "g", partitions: [
                PartitionLag(topic: "t", partition: 0, committedOffset: high, lowWatermark: 0, highWatermark: high),
                PartitionLag(topic: "t", partition: 1, committedOffset: 3, lowWatermark: 0, highWatermark: 9),
            ]))
        }
        #expect(evaluator.status(of: "g") == .stall)
        #expect(evaluator.partitionStatus(of: "g")[TopicPartition(topic: "t", partition: 0)] == .ok)
        #expect(evaluator.status(of: "unknown") == .ok)
    }

    @Test func anUnmeasuredPartitionIsNotJudgedWhileUnmeasured() {
        var evaluator = LagEvaluator(window: 2, stopAfter: 3)
        /// Partition 0 keeps up; partition 1 is stuck at offset 3 of 9, or unmeasured.
        func sample(_ high: Int64, measured: Bool) -> ConsumerGroupLag {
            let keepingUp = PartitionLag(topic: "t", partition: 0, committedOffset: high, lowWatermark: 0, highWatermark: high)
            let stuck = PartitionLag(topic: "t", partition: 1, committedOffset: 3, lowWatermark: 0, highWatermark: 9)
            return ConsumerGroupLag(
                group: "g", partitions: measured ? [keepingUp, stuck] : [keepingUp],
                unmeasured: measured ? [] : [UnmeasuredPartition(topic: "t", partition: 1, reason: "Local: Leader not available")])
        }
        let stuck = TopicPartition(topic: "t", partition: 1)
        evaluator.add(sample(20, measured: true))
        evaluator.add(sample(21, measured: true))
        #expect(evaluator.status(of: "g") == .stall)

        // Its leader gone: the partition is unmeasured, and its verdict does not stand meanwhile.
        evaluator.add(sample(22, measured: false))
        #expect(evaluator.status(of: "g") == .ok)
        #expect(evaluator.partitionStatus(of: "g")[stuck] == nil)

        // Measured again, still stuck: its history counts, and a gap does not keep it from STOP.
        evaluator.add(sample(23, measured: true))
        #expect(evaluator.status(of: "g") == .stop)

        // A partition no longer in the group's samples at all is forgotten.
        evaluator.add(ConsumerGroupLag(group: "g", partitions: [
            PartitionLag(topic: "t", partition: 0, committedOffset: 24, lowWatermark: 0, highWatermark: 24),
        ]))
        evaluator.add(sample(25, measured: true))
        #expect(evaluator.status(of: "g") == .ok, "one sample of the partition, too few to judge")
    }
}
