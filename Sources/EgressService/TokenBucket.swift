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
        if now > updated {
            tokens = min(burst, tokens + Self.seconds(now - updated) * rate)
            updated = now
        }
        tokens -= 1
        return tokens >= 0 ? .zero : .seconds(-tokens / rate)
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

    /// Waits until a call for `tenant` may go.
    public func acquire(tenant: String) async throws {
        let wait = reserve(tenant: tenant)
        if wait > .zero { try await clock.sleep(for: wait) }
    }
}
