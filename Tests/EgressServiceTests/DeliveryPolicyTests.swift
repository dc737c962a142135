import ChatEvents
import EightByEight
import Synchronization
import Testing
@testable import EgressService

/// A generator that always returns the same value (no jitter surprises in tests).
struct FixedRandom: RandomNumberGenerator {
    var value: UInt64 = UInt64.max / 2
    mutating func next() -> UInt64 { value }
}

@Suite("Delivery policy")
struct DeliveryPolicyTests {
    let policy = DeliveryPolicy(maxAttempts: 5, maxAge: .seconds(60), baseBackoff: .milliseconds(500), maxBackoff: .seconds(8), jitter: 0)

    func decide(_ error: ChatGatewayError, attempt: Int = 1, age: Duration = .zero, _ action: OutboundCommand.Action = .sendMessage) -> DeliveryPolicy.Decision {
        var random = FixedRandom()
        return policy.decide(error, attempt: attempt, age: age, action: action, using: &random)
    }

    @Test("400, 401, 403 and 404 are never retried", arguments: [400, 401, 403, 404, 409, 422])
    func permanent(_ status: Int) {
        guard case .giveUp = decide(.status(status, problem: nil, retryAfter: nil)) else { Issue.record("retried \(status)"); return }
    }

    @Test("429 waits what Retry-After says, or backs off")
    func tooManyRequests() {
        #expect(decide(.status(429, problem: nil, retryAfter: .seconds(7))) == .retry(after: .seconds(7)))
        #expect(decide(.status(429, problem: nil, retryAfter: nil), attempt: 3) == .retry(after: .seconds(2)))
        // Throttling is no failure of the command: it waits past maxAttempts, up to maxAge.
        #expect(decide(.status(429, problem: nil, retryAfter: .seconds(7)), attempt: 5) == .retry(after: .seconds(7)))
        // Without Retry-After the waits still grow with every attempt, throttled ones too.
        var random = FixedRandom()
        #expect(policy.decide(.status(429, problem: nil, retryAfter: nil), attempt: 4, throttled: 3, age: .zero, action: .sendMessage, using: &random)
            == .retry(after: .seconds(4)))
        // After three 429s a message still has its five attempts for failures.
        #expect(policy.decide(.status(503, problem: nil, retryAfter: nil), attempt: 7, throttled: 3, age: .zero, action: .sendMessage, using: &random)
            == .retry(after: .seconds(8)))
        #expect(policy.decide(.status(503, problem: nil, retryAfter: nil), attempt: 8, throttled: 3, age: .zero, action: .sendMessage, using: &random)
            == .giveUp(reason: "5 attempts failed (and 3 throttled)"))
        guard case .giveUp = decide(.status(429, problem: nil, retryAfter: .seconds(7)), attempt: 5, age: .seconds(55)) else { Issue.record("retried past maxAge"); return }
        guard case .giveUp = decide(.status(503, problem: nil, retryAfter: .seconds(7)), attempt: 5) else { Issue.record("a 503 retried past maxAttempts"); return }
    }

    @Test("backoff doubles from the base up to the cap")
    func exponential() {
        let waits = (1...6).map { decide(.status(503, problem: nil, retryAfter: nil), attempt: $0) }
        #expect(waits.prefix(4) == [.retry(after: .milliseconds(500)), .retry(after: .seconds(1)), .retry(after: .seconds(2)), .retry(after: .seconds(4))])
        guard case .giveUp = waits[4] else { Issue.record("attempt 5 retried"); return }
        let capped = DeliveryPolicy(maxAttempts: 20, maxAge: .seconds(600), jitter: 0)
        var random = FixedRandom()
        #expect(capped.decide(.status(503, problem: nil, retryAfter: nil), attempt: 10, age: .zero, action: .patchConversation, using: &random) == .retry(after: .seconds(8)))
    }

    @Test("jitter stays within its band")
    func jitter() {
        let jittery = DeliveryPolicy(jitter: 0.2)
        var random = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            guard case .retry(let wait) = jittery.decide(.status(503, problem: nil, retryAfter: nil), attempt: 2, age: .zero, action: .patchConversation, using: &random) else {
                Issue.record("no retry")
                return
            }
            #expect(wait >= .milliseconds(800) && wait <= .milliseconds(1200))
        }
    }

    @Test("a 500 or an unanswered request is repeated only for calls that may be repeated")
    func idempotence() {
        #expect(decide(.status(500, problem: nil, retryAfter: nil), .typing) == .retry(after: .milliseconds(500)))
        guard case .giveUp = decide(.status(500, problem: nil, retryAfter: nil), .sendMessage) else { Issue.record("message repeated after 500"); return }
        #expect(decide(.status(502, problem: nil, retryAfter: nil), .sendMessage) == .retry(after: .milliseconds(500)))
        // 408: 8x8 (or a proxy before it) did not get the whole request in time, so it did not
        // process it; sent again like a 503, with its Retry-After when it has one.
        #expect(decide(.status(408, problem: nil, retryAfter: nil), .sendMessage) == .retry(after: .milliseconds(500)))
        #expect(decide(.status(408, problem: nil, retryAfter: .seconds(3)), .createConversation) == .retry(after: .seconds(3)))
        guard case .giveUp = decide(.status(504, problem: nil, retryAfter: nil), .createConversation) else { Issue.record("conversation created again after 504"); return }
        #expect(decide(.status(504, problem: nil, retryAfter: nil), .patchConversation) == .retry(after: .milliseconds(500)))
        #expect(decide(.transport("refused", reachedServer: false), .sendMessage) == .retry(after: .milliseconds(500)))
        guard case .giveUp = decide(.transport("timeout", reachedServer: true), .sendMessage) else { Issue.record("message repeated after timeout"); return }
        #expect(decide(.transport("timeout", reachedServer: true), .patchConversation) == .retry(after: .milliseconds(500)))
        guard case .giveUp = decide(.timedOut(after: .seconds(10)), .sendMessage) else { Issue.record("message repeated after timeout"); return }
        #expect(decide(.timedOut(after: .seconds(10)), .typing) == .retry(after: .milliseconds(500)))
    }

    @Test("a typing or thinking indicator is retried only while it can still be shown in time, then skipped (no dead letter); a refused one is a dead letter")
    func indicators() {
        #expect(decide(.status(503, problem: nil, retryAfter: nil), age: .milliseconds(500), .typing) == .retry(after: .milliseconds(500)))
        guard case .skip = decide(.status(429, problem: nil, retryAfter: .seconds(30)), .typing) else { Issue.record("typing waits 30 s"); return }
        guard case .skip = decide(.status(503, problem: nil, retryAfter: nil), age: .seconds(2), .thinking) else { Issue.record("a late indicator retried"); return }
        guard case .skip = decide(.timedOut(after: .seconds(1)), attempt: policy.maxAttempts, .typing) else { Issue.record("indicator dead-lettered"); return }
        guard case .giveUp = decide(.status(400, problem: nil, retryAfter: nil), .typing) else { Issue.record("a refused indicator skipped"); return }
        // The reply itself waits out 8x8's Retry-After.
        #expect(decide(.status(429, problem: nil, retryAfter: .seconds(30)), .sendMessage) == .retry(after: .seconds(30)))
    }

    @Test("which failures may have taken effect at 8x8 (checked there before a resend or giving up), and which may still be running")
    func mayHaveTakenEffect() {
        let taken: [ChatGatewayError] = [
            .status(500, problem: nil, retryAfter: nil), .status(504, problem: nil, retryAfter: nil), .status(501, problem: nil, retryAfter: nil),
            .transport("reset", reachedServer: true), .timedOut(after: .seconds(10)),
        ]
        let notTaken: [ChatGatewayError] = [
            .status(502, problem: nil, retryAfter: nil), .status(503, problem: nil, retryAfter: nil), .status(429, problem: nil, retryAfter: nil),
            .status(400, problem: nil, retryAfter: nil), .status(408, problem: nil, retryAfter: nil), .transport("refused", reachedServer: false),
        ]
        #expect(taken.allSatisfy { $0.mayHaveTakenEffect })
        #expect(!notTaken.contains { $0.mayHaveTakenEffect })
        #expect(ChatGatewayError.status(504, problem: nil, retryAfter: nil).mayStillBeRunning(requestTimeout: .seconds(7)) == .seconds(7))
        #expect(ChatGatewayError.timedOut(after: .seconds(3)).mayStillBeRunning(requestTimeout: .seconds(7)) == .seconds(3))
        #expect(ChatGatewayError.status(500, problem: nil, retryAfter: nil).mayStillBeRunning(requestTimeout: .seconds(7)) == nil)
    }

    @Test("a command older than the maximum age is given up")
    func maxAge() {
        guard case .giveUp(let reason) = decide(.status(503, problem: nil, retryAfter: .seconds(10)), age: .seconds(55)) else { Issue.record("retried"); return }
        #expect(reason.contains("older"))
    }
}

@Suite("Rate limiting")
struct RateLimiterTests {
    @Test("a bucket allows its burst at once, then one call per 1/rate seconds")
    func bucket() {
        var bucket = TokenBucket(rate: 5, burst: 2, start: .zero)
        #expect(bucket.reserve(at: .zero) == .zero)
        #expect(bucket.reserve(at: .zero) == .zero)
        #expect(bucket.reserve(at: .zero) == .milliseconds(200))
        #expect(bucket.reserve(at: .zero) == .milliseconds(400), "reservations queue up")
        // One second later: 5 tokens refilled, 2 owed: 3 in hand, capped at the burst of 2.
        #expect(bucket.reserve(at: .seconds(1)) == .zero)
        #expect(bucket.reserve(at: .seconds(1)) == .zero)
        #expect(bucket.reserve(at: .seconds(1)) == .milliseconds(200))
    }

    @Test("tenants have their own buckets, on an injected clock")
    func perTenant() {
        let clock = ManualClock()
        let limiter = TenantRateLimiter(rate: 10, burst: 1, clock: clock)
        #expect(limiter.reserve(tenant: "acme") == .zero)
        #expect(limiter.reserve(tenant: "acme") == .milliseconds(100))
        #expect(limiter.reserve(tenant: "globex") == .zero)
        clock.advance(by: .seconds(1))
        #expect(limiter.reserve(tenant: "acme") == .zero)
    }
}

extension RateLimiterTests {
    @Test("a wait given up (its call no longer wanted, or cancelled) gives its slot back: the calls after it are not held behind it")
    func givenUpWaitReturnsItsSlot() async {
        let clock = ManualClock()
        let limiter = TenantRateLimiter(rate: 1, burst: 1, clock: clock)
        #expect(await limiter.acquire(tenant: "acme"), "the burst")
        // The next slot is a second away; the call stops being wanted at its third check.
        let checks = Mutex(0)
        #expect(await !limiter.acquire(tenant: "acme") { checks.withLock { $0 += 1; return $0 < 3 } })
        let elapsed = clock.now.offset
        #expect(elapsed > .zero && elapsed < .seconds(1))
        // Its slot is back: the next call waits for that slot, not behind it.
        // (Tokens are counted in Double: the same time to a microsecond.)
        func near(_ a: Duration, _ b: Duration) -> Bool { a - b < .microseconds(1) && b - a < .microseconds(1) }
        #expect(near(limiter.reserve(tenant: "acme"), .seconds(1) - elapsed))
        #expect(near(limiter.reserve(tenant: "acme"), .seconds(2) - elapsed))

        // A cancelled wait gives its slot back as well.
        let other = TenantRateLimiter(rate: 1, burst: 1, clock: ManualClock())
        #expect(other.reserve(tenant: "acme") == .zero)
        let cancelled = Task { () -> Bool in
            while !Task.isCancelled { await Task.yield() }
            return await other.acquire(tenant: "acme")
        }
        cancelled.cancel()
        #expect(await cancelled.value == false)
        #expect(other.reserve(tenant: "acme") == .seconds(1))
    }
}

/// A clock that moves only when told to.
final class ManualClock: Clock, @unchecked Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (a: Instant, b: Instant) -> Bool { a.offset < b.offset }
    }

    private var current = Instant(offset: .zero)
    var now: Instant { current }
    var minimumResolution: Duration { .nanoseconds(1) }
    func advance(by duration: Duration) { current = current.advanced(by: duration) }
    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        current = max(current, deadline)
    }
}
