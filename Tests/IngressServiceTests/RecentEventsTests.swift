@testable import IngressService
import Dispatch
import Kafka
import NIOPosix
import Testing

/// The de-duplication and deadline bookkeeping on their own, without a broker.
@Suite struct RecentEventsTests {
    let delivery = KafkaDelivery(topicPartition: TopicPartition(topic: "t", partition: 0), offset: 7)

    func key(_ eventId: String, tenant: String? = nil) -> RecentEvents.Key { .init(tenant: tenant, eventId: eventId) }

    @Test func keysTellTenantsAndEventIdsApart() {
        #expect(key("a", tenant: "t1") == key("a", tenant: "t1"))
        #expect(key("a", tenant: "t1") != key("a", tenant: "t2"))
        #expect(key("a", tenant: "t1") != key("b", tenant: "t1"))
        // The boundary between tenant and event id counts.
        #expect(key("c", tenant: "ab") != key("bc", tenant: "a"))
        // No tenant header counts as an empty tenant.
        #expect(key("a") == key("a", tenant: ""))
        // Many distinct ids, no two keys alike (each half alone would do here).
        let keys = (0..<100_000).map { key("event-\($0)", tenant: "tenant") }
        #expect(Set(keys).count == keys.count)
        #expect(Set(keys.map(\.high)).count == keys.count)
        #expect(Set(keys.map(\.low)).count == keys.count)
    }

    @Test func aClaimIsSharedUntilFinishedThenRemembered() {
        let recent = RecentEvents(capacity: 2)
        guard case .claimed(let first) = recent.claim(key("a")) else { Issue.record("first claim"); return }
        guard case .pending(let shared) = recent.claim(key("a")) else { Issue.record("second claim shares"); return }
        #expect(first === shared)
        recent.finish(key("a"), published: true)
        guard case .published = recent.claim(key("a")) else { Issue.record("published is remembered"); return }
        #expect(recent.count == (published: 1, pending: 0))
    }

    @Test func aFailedWriteCanBeClaimedAgain() {
        let recent = RecentEvents(capacity: 2)
        _ = recent.claim(key("a"))
        recent.finish(key("a"), published: false)
        guard case .claimed = recent.claim(key("a")) else { Issue.record("a failed write is forgotten"); return }
    }

    @Test func theOldestPublishedIdsAreForgottenFirst() {
        let recent = RecentEvents(capacity: 2)
        for id in ["a", "b", "c"] {
            _ = recent.claim(key(id))
            recent.finish(key(id), published: true)
        }
        guard case .claimed = recent.claim(key("a")) else { Issue.record("a was evicted"); return }
        guard case .published = recent.claim(key("c")) else { Issue.record("c is remembered"); return }
        #expect(recent.count.published == 2)
    }

    @Test("the tables are sized for the capacity at start and do not grow while they fill and turn over")
    func theTablesNeverGrow() {
        let recent = RecentEvents(capacity: 50_000)
        let reserved = recent.storageCapacity
        #expect(reserved.published > 50_000 && reserved.order >= 50_000)
        for id in 0..<60_000 {
            _ = recent.claim(key("event-\(id)"))
            recent.finish(key("event-\(id)"), published: true)
        }
        #expect(recent.count.published == 50_000)
        #expect(recent.storageCapacity == reserved)
    }

    @Test func waitersGetTheOutcomeOrNilAtTheirDeadline() async {
        let sweeper = DeadlineSweeper()
        let pending = PendingPublish()
        // Deadline passed and swept: nil, and a later completion does not resume it twice.
        async let expired = pending.wait(deadline: .now - .seconds(1), sweeper: sweeper)
        while sweeper.sweep() == 0 { await Task.yield() }
        #expect(await expired == nil)
        pending.complete(.success(delivery))
        // Completed before waiting: the outcome at once.
        let late = await pending.wait(deadline: .now + .seconds(60), sweeper: sweeper)
        #expect((try? late?.get()) == delivery)
    }

    @Test func anExpiredWaiterLeavesTheOthersWaiting() async {
        // The first request's wait ran out (it got 503); the retry that joined it still waits.
        let sweeper = DeadlineSweeper()
        let pending = PendingPublish()
        async let first = pending.wait(deadline: .now - .seconds(1), sweeper: sweeper)
        while pending.waiterCount < 1 { await Task.yield() }
        async let retry = pending.wait(deadline: .now + .seconds(60), sweeper: sweeper)
        while pending.waiterCount < 2 { await Task.yield() }
        #expect(sweeper.sweep() == 1)
        #expect(await first == nil)
        #expect(pending.waiterCount == 1)
        pending.complete(.success(delivery))
        #expect((try? await retry?.get()) == delivery)
        #expect(pending.waiterCount == 0)
    }

    @Test func oneCompletionWakesEveryWaiter() async {
        let sweeper = DeadlineSweeper()
        let pending = PendingPublish()
        let outcomes = await withTaskGroup(of: PendingPublish.Outcome?.self) { group in
            for _ in 0..<10 { group.addTask { await pending.wait(deadline: .now + .seconds(60), sweeper: sweeper) } }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(50))
                pending.complete(.success(delivery))
                return nil
            }
            return await group.reduce(into: [PendingPublish.Outcome?]()) { $0.append($1) }
        }
        #expect(outcomes.compactMap { try? $0?.get() }.count == 10)
        // Their deadlines come later and do nothing.
        #expect(sweeper.sweep(now: .now + .seconds(120)) == 10)
    }

    @Test func resumptionsForAnotherLoopAreHandedOverInOneBatch() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var failure: (any Error)?
        do { try await handOver(group: group) } catch { failure = error }
        try await group.shutdownGracefully()
        if let failure { throw failure }
    }

    private func handOver(group: MultiThreadedEventLoopGroup) async throws {
        let handoff = LoopHandoff(group: group)
        let loop = group.next()
        #expect(handoff.current == nil, "off the group's loops there is no home")
        let home = try await loop.submit { handoff.current }.get()
        #expect(home === handoff.homes[0])

        let sweeper = DeadlineSweeper()
        let pendings = (0..<10).map { _ in PendingPublish() }
        let outcomes = await withTaskGroup(of: PendingPublish.Outcome?.self) { group in
            for pending in pendings {
                group.addTask { await pending.wait(deadline: .now + .seconds(60), sweeper: sweeper, home: home) }
            }
            for pending in pendings { while pending.waiterCount == 0 { await Task.yield() } }
            // The loop is held until every completion has queued its resumption.
            let held = DispatchSemaphore(value: 0)
            loop.execute { held.wait() }
            for pending in pendings { pending.complete(.success(delivery)) }
            held.signal()
            return await group.reduce(into: [PendingPublish.Outcome?]()) { $0.append($1) }
        }
        #expect(outcomes.compactMap { try? $0?.get() }.count == 10)
        #expect(home?.batches.load(ordering: .relaxed) == 1)

        // Completed on the loop itself: resumed there at once, no batch.
        let pending = PendingPublish()
        async let outcome = pending.wait(deadline: .now + .seconds(60), sweeper: sweeper, home: home)
        while pending.waiterCount == 0 { await Task.yield() }
        try await loop.submit { pending.complete(.success(self.delivery)) }.get()
        #expect((try? await outcome?.get()) == delivery)
        #expect(home?.batches.load(ordering: .relaxed) == 1)
    }
}
