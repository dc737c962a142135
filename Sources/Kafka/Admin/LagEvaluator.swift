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

    /// Adds one sample of a group. A partition the sample does not measure (its offsets could
    /// not be read, see `ConsumerGroupLag.unmeasured`, or it is no longer the group's) loses its
    /// history: its last verdict would otherwise stand for as long as it is unmeasured, and the
    /// samples on either side of the gap would be judged as if they were a window apart.
    public mutating func add(_ lag: ConsumerGroupLag) {
        let previous = history[lag.group] ?? [:]
        var partitions: [TopicPartition: [Sample]] = [:]
        for partition in lag.partitions {
            var samples = previous[partition.topicPartition] ?? []
            samples.append(Sample(committed: partition.committedOffset, lag: partition.lag))
            if samples.count > stopAfter { samples.removeFirst(samples.count - stopAfter) }
            partitions[partition.topicPartition] = samples
        }
        history[lag.group] = partitions
    }

    public func status(of group: String) -> Status {
        (history[group] ?? [:]).values.map(status).max() ?? .ok
    }

    public func partitionStatus(of group: String) -> [TopicPartition: Status] {
        (history[group] ?? [:]).mapValues(status)
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
