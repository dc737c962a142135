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

    @Test("a revoke the caller did not reach in time gives its partition up: its events the caller still holds are not handed out, it reads as given up until the caller reaches the revoke, and a late acknowledgement counts for that revoke only")
    func revokeGivenUpBeforeTheCallerGotThere() async throws {
        let buffer = ConsumerEventBuffer(capacity: 100)
        let partition = TopicPartition(topic: "t", partition: 0)
        buffer.append([Self.message(0), Self.message(1), Self.message(2)])
        var cursor = ConsumerEventCursor(buffer: buffer)
        guard case .message(let first)? = await cursor.next() else { Issue.record("no message"); return }
        #expect(first.offset == 0)
        // The caller is busy with offset 0; the rebalance's wait for it runs out.
        #expect(!buffer.appendRevokeAndWait([partition], timeout: .milliseconds(50)))
        #expect(buffer.isGivenUp(partition))
        // The next rebalance revokes again, and waits.
        let second = Mutex<Bool?>(nil)
        let waiting = Self.onThread {
            let acknowledged = buffer.appendRevokeAndWait([partition], timeout: .milliseconds(500))
            second.withLock { $0 = acknowledged }
        }
        // Offsets 1 and 2, taken with 0, are not handed out; the first revoke is.
        guard case .partitionsRevoked(let revoked, _)? = await cursor.next() else { Issue.record("the held messages were handed out"); return }
        #expect(revoked == [partition])
        #expect(buffer.isGivenUp(partition), "until the caller handled the revoke")
        // Asking for more acknowledges the first revoke, not the second, which the caller has
        // only just been handed.
        guard case .partitionsRevoked? = await cursor.next() else { Issue.record("no second revoke"); return }
        try await within(30, "the second revoke's wait") { while !waiting.isSet { try await Task.sleep(for: .milliseconds(5)) } }
        #expect(second.withLock { $0 } == false, "the first revoke's acknowledgement taken for the second's")
        // Assigned again (an eager rebalance): its messages come after the revokes.
        buffer.append([.partitionsAssigned([partition]), Self.message(1)])
        guard case .partitionsAssigned? = await cursor.next() else { Issue.record("no assignment"); return }
        #expect(!buffer.isGivenUp(partition))
        guard case .message(let again)? = await cursor.next() else { Issue.record("the new assignment's message was dropped"); return }
        #expect(again.offset == 1)
    }

    @Test("an earlier revoke's acknowledgement does not clear a later revoke of the same partition that was given up too")
    func aLaterGivenUpRevokeStays() async throws {
        let buffer = ConsumerEventBuffer(capacity: 100)
        let partition = TopicPartition(topic: "t", partition: 0)
        var cursor = ConsumerEventCursor(buffer: buffer)
        buffer.append([Self.message(0)])
        _ = await cursor.next()  // the caller is busy with offset 0 through both rebalances
        #expect(!buffer.appendRevokeAndWait([partition], timeout: .milliseconds(20)))
        buffer.append([.partitionsAssigned([partition]), Self.message(1)])
        #expect(!buffer.appendRevokeAndWait([partition], timeout: .milliseconds(20)))
        guard case .partitionsRevoked? = await cursor.next() else { Issue.record("no first revoke"); return }
        guard case .partitionsAssigned? = await cursor.next() else { Issue.record("no assignment"); return }
        #expect(buffer.isGivenUp(partition), "the second revoke's")
        guard case .partitionsRevoked? = await cursor.next() else { Issue.record("offset 1, given up by the second revoke, was handed out"); return }
        buffer.append([Self.message(2)])
        _ = await cursor.next()
        #expect(!buffer.isGivenUp(partition))
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
