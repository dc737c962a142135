import CRdKafka
import Foundation

/// How librdkafka's own threads are scheduled: its main thread, one per broker connection,
/// and the embedded cluster's broker.
///
/// `batch`, the default on Linux, gives each of them the kernel's `SCHED_BATCH` policy when it
/// starts. Such a thread gets the same share of the CPU as before, but when a broker's reply
/// wakes it, it does not preempt the thread that is running: it runs at the next scheduling
/// point (a slice's end, or a thread going to sleep). On a core with idle time nothing
/// changes. When the cores are busy, the event loops that serve HTTP keep their core, and each
/// librdkafka wake-up finds more messages to send or more replies to read: fewer, larger
/// produce requests and fewer context switches. In the ingress benchmark on this project's
/// 2-core machine that cut the switches per webhook by 40% and took about a third off
/// librdkafka's CPU per webhook (BENCHMARKS.md, "Ingress: session 12").
///
/// `CONNECTOR_KAFKA_THREADS=normal` keeps the kernel's default policy for them.
public enum KafkaThreadScheduling: String, Sendable {
    case normal
    case batch

    /// The environment variable that chooses the policy.
    public static let environmentVariable = "CONNECTOR_KAFKA_THREADS"

    /// The policy `environment` asks for: `normal` or `batch`; anything else (or nothing) is the default.
    public static func policy(environment: [String: String]) -> Self {
        environment[environmentVariable].flatMap { Self(rawValue: $0.lowercased()) } ?? .default
    }

    #if os(Linux)
    public static let `default` = Self.batch
    #else
    public static let `default` = Self.normal
    #endif

    /// This process's policy, read from its environment once, when the first librdkafka handle
    /// is made.
    public static let current = policy(environment: ProcessInfo.processInfo.environment)

    /// What the ingress's startup line says.
    public var description: String {
        switch self {
        case .normal: "librdkafka's threads scheduled normally"
        case .batch: "librdkafka's threads batch-scheduled"
        }
    }

    /// Registers, on a configuration about to become a handle, the hook that applies
    /// `current` to each thread librdkafka starts for it (an `on_thread_start` interceptor,
    /// which runs on the new thread itself).
    static func install(on conf: OpaquePointer) {
        #if os(Linux)
        guard current == .batch else { return }
        rd_kafka_conf_interceptor_add_on_new(conf, schedulingInterceptorName, { rk, _, _, _, _ in
            rd_kafka_interceptor_add_on_thread_start(rk, schedulingInterceptorName, { _, _, _, _ in
                // Best effort: a thread that keeps the default policy only loses the gain.
                var parameters = sched_param(sched_priority: 0)
                _ = sched_setscheduler(0, linuxSchedBatch, &parameters)
                return RD_KAFKA_RESP_ERR_NO_ERROR
            }, nil)
        }, nil)
        #endif
    }
}

// File-level, not static members: librdkafka's hooks are C function pointers, which cannot
// capture anything, not even the type.
private let schedulingInterceptorName = "connector-thread-scheduling"
/// Linux's `SCHED_BATCH` (Glibc defines it only under `_GNU_SOURCE`).
private let linuxSchedBatch: Int32 = 3
