public import Kafka
public import Logging
public import ServiceLifecycle
import Synchronization

/// Answers "is Kafka reachable?" for `/health/ready`: a metadata request every `interval`,
/// bounded by the admin client's request timeout. Ready only after the last probe succeeded.
public final class KafkaReadiness: Service, Sendable {
    let admin: KafkaAdmin
    let interval: Duration
    let logger: Logger
    private let ready = Atomic<Bool>(false)

    public init(admin: KafkaAdmin, interval: Duration = .seconds(2), logger: Logger) {
        self.admin = admin
        self.interval = interval
        self.logger = logger
    }

    public var isReady: Bool { ready.load(ordering: .relaxed) }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.probe()
                try await Task.sleep(for: self.interval)
            }
        }
        ready.store(false, ordering: .relaxed)
    }

    @discardableResult
    public func probe() async -> Bool {
        let reachable: Bool
        do {
            _ = try await admin.listTopics()
            reachable = true
        } catch {
            reachable = false
        }
        let was = ready.exchange(reachable, ordering: .relaxed)
        if was != reachable {
            if reachable { logger.info("kafka reachable") } else { logger.warning("kafka unreachable") }
        }
        return reachable
    }
}
