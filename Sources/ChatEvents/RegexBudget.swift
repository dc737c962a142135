#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import Foundation
import Synchronization

/// Runs a regular expression search under a budget of the calling thread's CPU time: ICU
/// reports its progress as it goes (also inside one long match), and a search past the budget
/// stops. CPU time, not the clock on the wall: a thread descheduled on a busy machine (a test
/// run, two cores) does not use up its budget waiting.
public struct RegexBudget: Sendable {
    public let limit: Duration

    public init(_ limit: Duration) {
        self.limit = limit
    }

    /// Counts the searches that stopped at their budget (and counted as no match) while it is
    /// bound to `RegexBudget.tally`: a flow condition or custom pattern that stops working on
    /// real messages shows in the worker's metrics, not only as answers that never come.
    public final class Tally: Sendable {
        private let count = Atomic<Int>(0)
        public init() {}
        public var exhausted: Int { count.load(ordering: .relaxed) }
        func add() { count.add(1, ordering: .relaxed) }
    }

    /// Where the searches of the current task count their budgets run out.
    @TaskLocal public static var tally: Tally?

    /// The matches of `regex` in `range` of `text`, and whether the search stopped at the budget
    /// (`first`: stop at the first match).
    public func matches(
        of regex: NSRegularExpression, in text: String, range: NSRange, first: Bool = false
    ) -> (matches: [NSTextCheckingResult], gaveUp: Bool) {
        var matches: [NSTextCheckingResult] = []
        var reports: UInt = 0
        var gaveUp = false
        let deadline = Self.threadCPUNanoseconds() &+ UInt64(limit / .nanoseconds(1))
        regex.enumerateMatches(in: text, options: [.reportProgress], range: range) { match, _, stop in
            if let match {
                matches.append(match)
                if first { stop.pointee = true }
            } else {
                // Reports come often (one per position tried): the clock is read every 64th.
                reports &+= 1
                if reports & 63 == 0, Self.threadCPUNanoseconds() > deadline {
                    gaveUp = true
                    stop.pointee = true
                    Self.tally?.add()
                }
            }
        }
        return (matches, gaveUp)
    }

    /// The CPU time this thread has used.
    static func threadCPUNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }
}
