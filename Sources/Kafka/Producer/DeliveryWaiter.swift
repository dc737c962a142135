import CRdKafka
import Synchronization

/// Receives the delivery report of one or more messages. An instance is passed (retained) as the
/// per-message opaque and released by the delivery callback.
class DeliveryWaiter: @unchecked Sendable {
    func complete(_ message: UnsafePointer<rd_kafka_message_t>) {}
    func enqueueFailed(_ error: KafkaError) {}
}

/// Resumes one `send` with the message's offset or its delivery error.
final class SingleDeliveryWaiter: DeliveryWaiter, @unchecked Sendable {
    private let continuation: CheckedContinuation<KafkaDelivery, any Error>

    init(_ continuation: CheckedContinuation<KafkaDelivery, any Error>) {
        self.continuation = continuation
    }

    override func complete(_ message: UnsafePointer<rd_kafka_message_t>) {
        let m = message.pointee
        if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            continuation.resume(throwing: KafkaError(kind: .delivery, m.err))
        } else {
            let topic = String(cString: rd_kafka_topic_name(m.rkt))
            continuation.resume(returning: KafkaDelivery(
                topicPartition: TopicPartition(topic: topic, partition: m.partition), offset: m.offset))
        }
    }

    override func enqueueFailed(_ error: KafkaError) {
        continuation.resume(throwing: error)
    }
}

/// Hands one message's delivery result to a callback.
final class CallbackDeliveryWaiter: DeliveryWaiter, @unchecked Sendable {
    private let callback: @Sendable (Result<KafkaDelivery, KafkaError>) -> Void

    init(_ callback: @escaping @Sendable (Result<KafkaDelivery, KafkaError>) -> Void) {
        self.callback = callback
    }

    override func complete(_ message: UnsafePointer<rd_kafka_message_t>) {
        let m = message.pointee
        if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            callback(.failure(KafkaError(kind: .delivery, m.err)))
        } else {
            let topic = String(cString: rd_kafka_topic_name(m.rkt))
            callback(.success(KafkaDelivery(topicPartition: TopicPartition(topic: topic, partition: m.partition), offset: m.offset)))
        }
    }

    /// A held message that librdkafka refused when the gate released it. That happens inside
    /// another `send` (whose caller may hold a lock this callback takes) or on the polling
    /// thread: the callback runs on a task of its own, never inside the caller's call.
    override func enqueueFailed(_ error: KafkaError) {
        let callback = self.callback
        Task { callback(.failure(error)) }
    }
}

/// Counts down the reports of a batch and resumes `sendBatch` when the last one arrived.
final class BatchDeliveryWaiter: DeliveryWaiter, @unchecked Sendable {
    private struct State {
        var remaining: Int
        var failed = 0
        var firstError: KafkaError?
        var continuation: CheckedContinuation<Void, Never>?
    }

    private let state: Mutex<State>

    /// `count` messages plus one hold that `wait` releases, so the batch cannot complete before
    /// every message has been enqueued.
    init(count: Int) {
        state = Mutex(State(remaining: count + 1))
    }

    override func complete(_ message: UnsafePointer<rd_kafka_message_t>) {
        let err = message.pointee.err
        countDown(err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(kind: .delivery, err))
    }

    override func enqueueFailed(_ error: KafkaError) {
        countDown(error)
    }

    private func countDown(_ error: KafkaError?) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.remaining -= 1
            if let error {
                state.failed += 1
                if state.firstError == nil { state.firstError = error }
            }
            guard state.remaining == 0 else { return nil }
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume()
    }

    /// Waits for every report; returns the number of failed messages and the first error.
    func wait() async -> (failed: Int, firstError: KafkaError?) {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                state.remaining -= 1  // the hold taken in init
                if state.remaining == 0 { return true }
                state.continuation = continuation
                return false
            }
            if done { continuation.resume() }
        }
        return state.withLock { ($0.failed, $0.firstError) }
    }
}

/// Per-message opaques are either a retained `DeliveryWaiter` or, for detached sends, the
/// message id shifted left by two with the low bit set (object pointers are never odd). Bit 1
/// marks a message that went through a `PartitionGate` (object pointers are 16-byte aligned).
enum DeliveryOpaque {
    static func detached(_ id: UInt64) -> UnsafeMutableRawPointer? {
        UnsafeMutableRawPointer(bitPattern: UInt((id << 2) | 1))
    }

    static func detachedID(_ pointer: UnsafeMutableRawPointer) -> UInt64? {
        let bits = UInt(bitPattern: pointer)
        return bits & 1 == 1 ? UInt64(bits >> 2) : nil
    }

    static func gated(_ pointer: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: pointer) | 2)!
    }

    /// The opaque without the gate's mark, and whether it had it.
    static func ungated(_ pointer: UnsafeMutableRawPointer) -> (opaque: UnsafeMutableRawPointer, gated: Bool) {
        let bits = UInt(bitPattern: pointer)
        return (UnsafeMutableRawPointer(bitPattern: bits & ~2)!, bits & 2 != 0)
    }
}
