import Foundation
@testable import Kafka
import Synchronization
import Testing
import TestSupport

/// `blockingCall`: librdkafka's blocking calls (flushes, commits, admin requests, transaction
/// steps) each get a thread while they block, however many block at once.
@Suite struct BlockingCallTests {
    /// Calls that wait for each other: each arrives, then waits until `expected` arrived or
    /// `timeout` passed, and says whether all arrived.
    final class Rendezvous: @unchecked Sendable {
        private let condition = NSCondition()
        private var arrived = 0
        let expected: Int
        let timeout: TimeInterval

        init(expected: Int, timeout: TimeInterval) {
            self.expected = expected
            self.timeout = timeout
        }

        func arriveAndWait() -> Bool {
            condition.lock()
            defer { condition.unlock() }
            arrived += 1
            condition.broadcast()
            let deadline = Date(timeIntervalSinceNow: timeout)
            while arrived < expected {
                if !condition.wait(until: deadline) { break }
            }
            return arrived >= expected
        }
    }

    /// Sixteen calls block at once, each until all sixteen are blocking: a pool as wide as the
    /// cores (Dispatch's global queue adds a thread about once a second while its threads
    /// block) would run them a few at a time, and a lag measurement against a slow broker would
    /// hold a rebalance's commit behind it.
    @Test func blockedCallsDoNotHoldOthersBack() async throws {
        let calls = 16
        let rendezvous = Rendezvous(expected: calls, timeout: 8)
        let met = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<calls {
                group.addTask { await blockingCall { rendezvous.arriveAndWait() } }
            }
            return await group.reduce(into: 0) { count, met in count += met ? 1 : 0 }
        }
        #expect(met == calls, "calls that saw all \(calls) blocking at once")
    }

    /// Threads beyond the idle limit end after their call, the idle ones after the idle
    /// timeout; a thread left idle serves the next call, and a call's error comes back thrown.
    @Test func threadsAreKeptWithinTheIdleLimit() async throws {
        let threads = BlockingThreads(idleLimit: 2, idleTimeout: .seconds(120))
        let calls = 6
        let rendezvous = Rendezvous(expected: calls, timeout: 8)
        let met = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<calls {
                group.addTask {
                    await withCheckedContinuation { continuation in threads.run { continuation.resume(returning: rendezvous.arriveAndWait()) } }
                }
            }
            return await group.reduce(into: 0) { count, met in count += met ? 1 : 0 }
        }
        #expect(met == calls)
        #expect(threads.counts.started == calls)
        try await within(10, "the threads past the idle limit end") { while threads.counts.alive > 2 { try await Task.sleep(for: .milliseconds(20)) } }

        // One after another: each call finds a thread the last ones left idle.
        let before = threads.counts.started
        for round in 0..<20 {
            let value = await withCheckedContinuation { continuation in threads.run { continuation.resume(returning: round) } }
            #expect(value == round)
        }
        #expect(threads.counts.started - before <= 1, "sequential calls reuse an idle thread")

        // Idle threads end after the idle timeout.
        let brief = BlockingThreads(idleLimit: 2, idleTimeout: .milliseconds(100))
        let value = await withCheckedContinuation { continuation in brief.run { continuation.resume(returning: 7) } }
        #expect(value == 7 && brief.counts.started == 1)
        try await within(10, "idle threads end after the idle timeout") { while brief.counts.alive > 0 { try await Task.sleep(for: .milliseconds(20)) } }

        struct Refused: Error {}
        await #expect(throws: Refused.self) {
            try await blockingCall { () throws(Refused) -> Int in throw Refused() }
        }
    }

    /// A call's captures are let go before its thread takes the threads' lock again: a capture
    /// whose deinit hands work to the same threads gets it run. (A committed-offsets call held
    /// the last reference to a group reader the admin client had pushed out; let go under the
    /// lock, the reader's teardown waited for the lock its thread held, and every later call
    /// waited behind it: a whole test run froze.)
    @Test func aCallsCapturesAreLetGoOutsideTheLock() async throws {
        final class HandsOnWhenReleased: Sendable {
            let threads: BlockingThreads
            let ran: Flag
            init(threads: BlockingThreads, ran: Flag) { (self.threads, self.ran) = (threads, ran) }
            deinit { threads.run { [ran] in ran.value.store(true, ordering: .releasing) } }
        }
        final class Flag: Sendable { let value = Atomic<Bool>(false) }

        /// The call holds the last reference once this returns and `gate` opens.
        func submit(_ threads: BlockingThreads, _ ran: Flag, _ gate: DispatchSemaphore) {
            let holder = HandsOnWhenReleased(threads: threads, ran: ran)
            threads.run {
                gate.wait()
                withExtendedLifetime(holder) {}
            }
        }

        let threads = BlockingThreads(idleLimit: 2, idleTimeout: .seconds(120))
        let ran = Flag(), gate = DispatchSemaphore(value: 0)
        submit(threads, ran, gate)
        gate.signal()
        try await within(30, "the call handed on by a deinit ran") {
            while !ran.value.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(20)) }
        }
        let value = await withCheckedContinuation { continuation in threads.run { continuation.resume(returning: 7) } }
        #expect(value == 7, "the threads serve later calls")
    }
}
