import Synchronization

/// Sender-controlled text (ids, algorithm names) made safe for one log line.
public enum LogSafe {
    /// Printable ASCII only (any other byte becomes `?`), at most `maxBytes` bytes: no line
    /// breaks, terminal controls or bidirectional overrides, and no unbounded length.
    public static func text(_ text: String, maxBytes: Int) -> String {
        String(decoding: text.utf8.prefix(maxBytes).map { (0x20..<0x7F).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
    }
}

/// At most `limit` lines of each kind per `window`: for warnings a sender can cause once per
/// request (a scan with bad signatures, made-up key ids, a broker outage failing every
/// webhook), so that a flood costs the log a few lines per window while the metrics count
/// every case. The first line written after some were held back says how many. Kinds are
/// fixed by the caller (a message), never sender-controlled text, so their number is bounded.
public final class LogBudget: Sendable {
    private struct Window {
        var start: ContinuousClock.Instant
        var written = 0
        var held = 0
    }

    public let limit: Int
    public let window: Duration
    private let windows = Mutex<[String: Window]>([:])

    public init(limit: Int = 10, window: Duration = .seconds(10)) {
        self.limit = limit
        self.window = window
    }

    /// Whether a line of `kind` may be written now: nil when it is held back, otherwise how
    /// many lines of the kind were held back since the last one written.
    public func admit(_ kind: String) -> Int? { admit(kind, at: .now) }

    func admit(_ kind: String, at now: ContinuousClock.Instant) -> Int? {
        windows.withLock { windows -> Int? in
            var current = windows[kind] ?? Window(start: now)
            if now - current.start >= window {
                current.start = now
                current.written = 0
            }
            guard current.written < limit else {
                current.held += 1
                windows[kind] = current
                return nil
            }
            let held = current.held
            current.written += 1
            current.held = 0
            windows[kind] = current
            return held
        }
    }
}
