import Foundation
import NIOCore
import NIOPosix

/// How a process runs Swift's tasks: on NIO's event loops (one thread hand-off less per
/// request in the HTTP services), one loop more than the machine has cores.
///
/// Why one more: a webhook waits for Kafka's acknowledgement between its two turns on a loop,
/// and each millisecond it waits costs CPU when it resumes (its state went cold meanwhile;
/// BENCHMARKS.md, "Ingress: session 11"). With a spare loop the kernel can run the loop that
/// has resumptions ready while another is busy verifying signatures, so they wait less. On
/// 2 cores, 3 loops cost less CPU per webhook than 2 in each sequential pair of runs and in
/// one of two side-by-side pairs (4 µs), and the trivial request the same; 4 loops cost more.
///
/// `CONNECTOR_NIO_EXECUTOR=0` keeps Swift's default executor; `CONNECTOR_EVENT_LOOPS=N` sets the
/// number of loops.
public enum EventLoopExecutor {
    /// Whether Swift's tasks run on NIO's event loops, and on how many.
    public struct Setup: Sendable, CustomStringConvertible {
        public var onEventLoops: Bool
        public var loops: Int

        public init(onEventLoops: Bool, loops: Int) {
            self.onEventLoops = onEventLoops
            self.loops = loops
        }

        public var description: String {
            onEventLoops ? "\(loops) of NIO's event loops" : "the default executor"
        }
    }

    /// The number of loops for this environment: `CONNECTOR_EVENT_LOOPS` when it is a number
    /// from 1 to 256, else one more than the cores.
    public static func loopCount(environment: [String: String], cores: Int) -> Int {
        if let text = environment["CONNECTOR_EVENT_LOOPS"], let count = Int(text), (1...256).contains(count) { return count }
        return max(1, cores) + 1
    }

    /// Sizes NIO's singleton event loop group and installs it as Swift's global executor. Call
    /// once, first thing in `main`, before any task or loop runs (NIO stops a process that
    /// sizes its group twice or after using it).
    public static func install() -> Setup {
        let environment = ProcessInfo.processInfo.environment
        guard environment["CONNECTOR_NIO_EXECUTOR"] != "0" else {
            return Setup(onEventLoops: false, loops: NIOSingletons.groupLoopCountSuggestion)
        }
        // NIO's own variable, when set, sizes the group as NIO documents it.
        if environment["NIO_SINGLETON_GROUP_LOOP_COUNT"] == nil {
            NIOSingletons.groupLoopCountSuggestion = loopCount(environment: environment, cores: System.coreCount)
        }
        let installed = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        return Setup(onEventLoops: installed, loops: NIOSingletons.groupLoopCountSuggestion)
    }
}
