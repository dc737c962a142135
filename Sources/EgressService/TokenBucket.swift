import Synchronization

/// A token bucket: `rate` tokens per second, at most `burst` saved up. `reserve(at:)` takes
/// one token and says how long to wait until it is there; time is passed in, so it is tested
/// with any clock.
public struct TokenBucket: Sendable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var updated: Duration

    /// `start` is the time of creation on the caller's clock (as a duration since its epoch).
    public init(rate: Double, burst: Double, start: Duration) {
        precondition(rate > 0 && burst >= 1)
        self.rate = rate
        self.burst = burst
        tokens = burst
        updated = start
    }

    /// Takes a token at `now`; returns how long the caller must wait before using it (zero
    /// when one was there). Reservations queue up: the next caller waits behind this one.
    public mutating func reserve(at now: Duration) -> Duration {
        refill(at: now)
        tokens -= 1
        return tokens >= 0 ? .zero : .seconds(-tokens / rate)
    }

    /// Gives back a token taken and not used (its call will not be made): the reservations
    /// after it move up by one slot.
    public mutating func release(at now: Duration) {
        refill(at: now)
        tokens = min(burst, tokens + 1)
    }

    /// Adds the tokens earned since the last update, up to the burst.
    private mutating func refill(at now: Duration) {
        guard now > updated else { return }
        tokens = min(burst, tokens + Self.seconds(now - updated) * rate)
        updated = now
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// One token bucket per tenant, on an injectable clock.
public final class TenantRateLimiter<C: Clock>: Sendable where C.Duration == Duration {
    private let clock: C
    private let origin: C.Instant
    private let rate: Double
    private let burst: Double
    private let buckets = Mutex<[String: TokenBucket]>([:])

    public init(rate: Double, burst: Double, clock: C) {
        self.clock = clock
        self.origin = clock.now
        self.rate = rate
        self.burst = burst
    }

    /// How long the next call for `tenant` must wait (and reserves its slot).
    public func reserve(tenant: String) -> Duration {
        let now = origin.duration(to: clock.now)
        return buckets.withLock { buckets in
            buckets[tenant, default: TokenBucket(rate: rate, burst: burst, start: now)].reserve(at: now)
        }
    }

    /// Gives back a slot `reserve` took for a call that will not be made.
    public func release(tenant: String) {
        let now = origin.duration(to: clock.now)
        buckets.withLock { $0[tenant]?.release(at: now) }
    }

    /// Waits until a call for `tenant` may go; true then. False, and the slot given back, when
    /// `proceed` turns false (the call's partition was revoked, its generation ended) or the
    /// task is cancelled while it waits: a wait that was for nothing neither delays the calls
    /// reserved after it nor holds up a revoke until its slot comes.
    public func acquire(tenant: String, proceed: () -> Bool = { true }) async -> Bool {
        let until = clock.now.advanced(by: reserve(tenant: tenant))
        while clock.now < until {
            guard !Task.isCancelled, proceed() else {
                release(tenant: tenant)
                return false
            }
            try? await clock.sleep(for: min(clock.now.duration(to: until), Self.checkInterval))
        }
        return true
    }

    /// How often a waiting call checks that it is still wanted.
    static var checkInterval: Duration { .milliseconds(50) }
}
