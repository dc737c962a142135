public import ChatEvents
public import EightByEight

/// When a failed delivery is tried again (spec section 5.5): honor `Retry-After` on 429,
/// exponential backoff with jitter on 5xx and connection failures, never retry 400, 401, 403
/// or 404; give up after `maxAttempts` (429s not counted) or when the command is older than
/// `maxAge`. Calls that
/// are not idempotent (`sendMessage`, `sendAttachment`, `createConversation`) are repeated only
/// when 8x8 provably did not process them: connection refused, 408, 429, 502, 503 (or the egress
/// found at 8x8 that a call answered 500 or 504, or not at all, did not take effect). A typing
/// or thinking indicator is retried only while it can still be shown in time, then skipped.
public struct DeliveryPolicy: Sendable {
    public enum Decision: Sendable, Hashable {
        case retry(after: Duration)
        case giveUp(reason: String)
        /// A typing or thinking indicator that failed and could be shown only late: left out
        /// (not dead-lettered), so the reply behind it goes now.
        case skip(reason: String)
    }

    /// How long after the bot produced it an indicator is still worth a retry: a typing
    /// indicator shown after the reply it announced, or holding that reply up, helps nobody.
    public static let indicatorMaxAge: Duration = .seconds(2)

    public var maxAttempts: Int
    public var maxAge: Duration
    public var baseBackoff: Duration
    public var maxBackoff: Duration
    /// Each backoff is drawn from [1 - jitter, 1 + jitter] times its nominal value.
    public var jitter: Double

    public init(maxAttempts: Int = 5, maxAge: Duration = .seconds(300), baseBackoff: Duration = .milliseconds(500),
                maxBackoff: Duration = .seconds(8), jitter: Double = 0.2) {
        self.maxAttempts = maxAttempts
        self.maxAge = maxAge
        self.baseBackoff = baseBackoff
        self.maxBackoff = maxBackoff
        self.jitter = jitter
    }

    static func isIdempotent(_ action: OutboundCommand.Action) -> Bool {
        switch action {
        case .sendMessage, .sendAttachment, .createConversation: false
        case .typing, .thinking, .patchConversation, .endConversation, .postAgentAssignment: true
        }
    }

    /// What to do after attempt number `attempt` (1 for the first) failed with `error`, the
    /// command being `age` old, `throttled` of the earlier attempts answered 429 (they do not
    /// count toward `maxAttempts`; the backoff still grows with every attempt).
    public func decide(
        _ error: ChatGatewayError, attempt: Int, throttled: Int = 0, age: Duration, action: OutboundCommand.Action,
        using random: inout some RandomNumberGenerator
    ) -> Decision {
        let wait: Duration
        switch error {
        case .status(let status, _, let retryAfter):
            switch status {
            case 400, 401, 403, 404: return .giveUp(reason: "8x8 answered \(status)")
            case 429: wait = retryAfter ?? backoff(attempt, using: &random)
            // 408: the request did not reach 8x8 whole in the time it waits for one (RFC 9110,
            // 15.5.9), so it was not processed: tried again like a gateway that had no backend.
            case 408, 502, 503: wait = retryAfter ?? backoff(attempt, using: &random)
            // 504 as 500: it may have taken effect (8x8 is asked first), so a call that must not
            // be repeated is not sent again on it.
            case 500...599:
                guard Self.isIdempotent(action) else { return .giveUp(reason: "8x8 answered \(status) to a call that must not be repeated") }
                wait = backoff(attempt, using: &random)
            default: return .giveUp(reason: "8x8 answered \(status)")
            }
        case .transport(let reason, let reachedServer):
            guard !reachedServer || Self.isIdempotent(action) else {
                return .giveUp(reason: "no answer after the request was sent (\(reason)); repeating it could send it twice")
            }
            wait = backoff(attempt, using: &random)
        case .invalid:
            // Its reason follows in the dead letter (the failure's summary).
            return .giveUp(reason: "not deliverable")
        case .timedOut:
            guard Self.isIdempotent(action) else {
                return .giveUp(reason: "no answer in time; repeating the call could send it twice")
            }
            wait = backoff(attempt, using: &random)
        }
        if action == .typing || action == .thinking, attempt >= maxAttempts || age + wait > Self.indicatorMaxAge {
            return .skip(reason: "an indicator that could be shown only late")
        }
        // 8x8 throttling the tenant is no failure of this command: it waits its turn for as long
        // as maxAge allows.
        let counted = attempt - throttled
        guard counted < maxAttempts || error.isThrottled else {
            return .giveUp(reason: throttled > 0 ? "\(counted) attempts failed (and \(throttled) throttled)" : "\(attempt) attempts failed")
        }
        guard age + wait <= maxAge else { return .giveUp(reason: "older than \(maxAge)") }
        return .retry(after: wait)
    }

    /// base × 2^(attempt-1), capped, with jitter.
    func backoff(_ attempt: Int, using random: inout some RandomNumberGenerator) -> Duration {
        let nominal = min(baseBackoff * (1 << min(attempt - 1, 20)), maxBackoff)
        let factor = jitter > 0 ? Double.random(in: (1 - jitter)...(1 + jitter), using: &random) : 1
        return nominal * factor
    }
}

extension ChatGatewayError {
    /// 8x8 throttled the call (429): it did not process it.
    var isThrottled: Bool {
        if case .status(429, _, _) = self { return true }
        return false
    }
}
