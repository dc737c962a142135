import Foundation
@testable import Kafka
import Synchronization
import Testing

/// The hand-over between a consumer's polling thread and its caller.
@Suite struct ConsumerEventBufferTests {
    static func message(_ offset: Int64) -> KafkaConsumerEvent {
        .message(KafkaMessage(topic: "t", partition: 0, offset: offset, key: nil, value: [], headers: [], timestamp: nil, valueIsNull: false))
    }

    /// Whether a thread's work returned.
    final class Done: Sendable {
        private let flag = Atomic<Bool>(false)
        func set() { flag.store(true, ordering: .releasing) }
        var isSet: Bool { flag.load(ordering: .acquiring) }
    }

    /// Runs `body` on a thread of its own (it may block), and says when it returned.
    static func onThread(_ body: @escaping @Sendable () -> Void) -> Done {
        let done = Done()
        Thread { body(); done.set() }.start()
        return done
    }

    @Test("a caller that stops taking events releases a polling thread waiting for room and one waiting for a revoke's acknowledgement")
    func abandonReleasesTheWaits() async throws {
        let buffer = ConsumerEventBuffer(capacity: 1)
        buffer.append([Self.message(0)])
        #expect(!buffer.tryAppend([Self.message(1)]), "full")
        let appended = Self.onThread { buffer.waitForRoom(timeout: .seconds(3600)) }
        let revoked = Mutex<Bool?>(nil)
        let revoke = Self.onThread {
            let acknowledged = buffer.appendRevokeAndWait([TopicPartition(topic: "t", partition: 0)], timeout: .seconds(3600))
            revoked.withLock { $0 = acknowledged }
        }
        try await Task.sleep(for: .milliseconds(100))
        #expect(!appended.isSet && !revoke.isSet, "both wait while the caller takes nothing")
        buffer.abandon()
        try await within(30, "the waits released") {
            while !appended.isSet || !revoke.isSet { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(revoked.withLock { $0 } == true, "nothing is left to wait for")
        #expect(buffer.tryAppend([Self.message(2)]), "later events are dropped, not refused")
    }

    @Test("a full buffer refuses a batch without waiting and takes it once the caller took the others; a wait for room ends when it has room")
    func tryAppendAndWaitForRoom() async throws {
        let buffer = ConsumerEventBuffer(capacity: 2)
        #expect(buffer.tryAppend([Self.message(0), Self.message(1)]))
        #expect(!buffer.tryAppend([Self.message(2)]))
        let waited = Self.onThread { buffer.waitForRoom(timeout: .seconds(3600)) }
        let taken = await buffer.nextBatch()
        #expect(taken?.count == 2)
        try await within(30, "the wait for room ended") {
            while !waited.isSet { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(buffer.tryAppend([Self.message(2)]))
        #expect(await buffer.nextBatch()?.count == 1)
    }
}
