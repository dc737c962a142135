public import Kafka
import Synchronization

/// How one generation of a consuming service (one consumer and producer) ends: stopped,
/// crashed (tests kill it as a process would be killed), or by its first Kafka failure, after
/// which the service starts over from the committed offsets.
public final class GenerationState: Sendable {
    private let firstFailure = Mutex<KafkaError?>(nil)
    private let ended = Atomic<Bool>(false)
    private let crashed = Atomic<Bool>(false)

    public init() {}

    /// The first Kafka failure, if one happened.
    public var failure: KafkaError? { firstFailure.withLock { $0 } }
    public var isEnded: Bool { ended.load(ordering: .acquiring) }
    public var isCrashed: Bool { crashed.load(ordering: .acquiring) }

    /// Marks the generation ended; true only for the first caller, who then stops it.
    public func end() -> Bool {
        ended.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }

    /// Ends it as a killed process ends; true only when it was not ended before.
    public func crash() -> Bool {
        guard end() else { return false }
        crashed.store(true, ordering: .releasing)
        return true
    }

    /// Records a failure. True when it is the first and the generation did not crash: the
    /// caller then reports it and ends the generation's consumer.
    public func fail(_ error: KafkaError) -> Bool {
        let first = firstFailure.withLock { failure -> Bool in
            defer { if failure == nil { failure = error } }
            return failure == nil
        }
        return first && !isCrashed
    }

    /// After the consumer's events ended: returns for a stop or a crash; after a failure drops
    /// what the producer still holds and rethrows, so the service starts a new generation.
    public func finish(producer: KafkaProducer) async throws {
        if isCrashed { return }
        if let failure {
            await producer.simulateCrash()
            throw failure
        }
    }
}
