public import Logging
import Synchronization

/// Collects the lines a logger would print (message and all metadata), for tests that check
/// what reaches a log.
public final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])

    public init() {}

    public struct Handler: LogHandler {
        let sink: LogCapture
        public var logLevel: Logger.Level = .trace
        public var metadata: Logger.Metadata = [:]
        public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        public func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            let rendered = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            sink.lines.withLock { $0.append("\(event.message) \(rendered)") }
        }
    }

    /// A logger writing here.
    public var logger: Logger { Logger(label: "test") { _ in Handler(sink: self) } }
    public var text: String { lines.withLock { $0.joined(separator: "\n") } }
}
