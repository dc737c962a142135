/// A consumer group's health from its lag over a sliding window, in the spirit of LinkedIn's
/// Burrow. Burrow reads every offset commit with its time; this evaluator works from samples
/// (`KafkaAdmin.lag` taken at a steady interval), so "no commit" shows as "the committed
/// offset did not move". Per partition, over the last `window` samples:
///
/// - REWIND: the committed offset went backwards between two samples;
/// - OK: the lag was zero in some sample (or too few samples yet);
/// - STOP: the committed offset has not moved for `stopAfter` samples while there was lag: no
///   consumer is making any progress (stopped, or gone);
/// - STALL: the committed offset did not move over the window while there was lag;
/// - WARNING: the offset moves but the lag grew over the window (the consumer falls behind);
/// - OK otherwise.
///
/// A group's status is its worst partition's.
public struct LagEvaluator: Sendable {
    public enum Status: String, Sendable, Hashable, Codable, Comparable, CaseIterable {
        case ok = "OK", warning = "WARNING", rewind = "REWIND", stall = "STALL", stop = "STOP"

        var severity: Int { Status.allCases.firstIndex(of: self)! }
        public static func < (a: Status, b: Status) -> Bool { a.severity < b.severity }
    }

    struct Sample: Sendable {
        var committed: Int64?
        var lag: Int64
    }

    public let window: Int
    public let stopAfter: Int
    /// Per group and partition, the newest samples (at most `stopAfter`), oldest first.
    private var history: [String: [TopicPartition: [Sample]]] = [:]

    public init(window: Int = 5, stopAfter: Int = 15) {
        precondition(window >= 2 && stopAfter >= window)
        self.window = window
        self.stopAfter = stopAfter
    }

    /// Per group, the partitions its newest sample could not measure (`ConsumerGroupLag.unmeasured`).
    private var unmeasured: [String: Set<TopicPartition>] = [:]

    /// Adds one sample of a group. A partition the sample could not measure keeps its history
    /// but is not judged until it is measured again (its last verdict would stand for as long
    /// as it is unmeasured); one the sample no longer names at all (no longer the group's) is
    /// forgotten.
    public mutating func add(_ lag: ConsumerGroupLag) {
        let previous = history[lag.group] ?? [:]
        let missing = Set(lag.unmeasured.map(\.topicPartition))
        var partitions = previous.filter { missing.contains($0.key) }
        for partition in lag.partitions {
            var samples = previous[partition.topicPartition] ?? []
            samples.append(Sample(committed: partition.committedOffset, lag: partition.lag))
            if samples.count > stopAfter { samples.removeFirst(samples.count - stopAfter) }
            partitions[partition.topicPartition] = samples
        }
        history[lag.group] = partitions
        unmeasured[lag.group] = missing
    }

    public func status(of group: String) -> Status {
        partitionStatus(of: group).values.max() ?? .ok
    }

    /// The partitions of the group's newest sample that it measured, each with its status.
    public func partitionStatus(of group: String) -> [TopicPartition: Status] {
        let missing = unmeasured[group] ?? []
        return (history[group] ?? [:]).filter { !missing.contains($0.key) }.mapValues(status)
    }

    func status(_ all: [Sample]) -> Status {
        let recent = Array(all.suffix(window))
        for (earlier, later) in zip(recent, recent.dropFirst()) {
            if let a = earlier.committed, let b = later.committed, b < a { return .rewind }
        }
        guard recent.count >= window, !recent.contains(where: { $0.lag == 0 }) else { return .ok }
        func unmoved(_ samples: [Sample]) -> Bool { Set(samples.map(\.committed)).count == 1 }
        if all.count >= stopAfter, unmoved(all) { return .stop }
        if unmoved(recent) { return .stall }
        if zip(recent, recent.dropFirst()).allSatisfy({ $0.lag <= $1.lag }), recent.last!.lag > recent.first!.lag { return .warning }
        return .ok
    }
}
