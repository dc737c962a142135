import ChatEvents
import TestSupport
import Foundation
@testable import FlowEngine

/// Builds inbound events the way the ingress normalizes them.
/// The flow tests' event builder is the shared one.
typealias Events = EventFactory

/// A flow written to a temporary directory (with any flows it executes) and an engine for it.
/// `directory` (default: a new one) is where the flows are written: a second engine in the
/// same one is a new deployment of the same flow files.
func engine(
    _ yaml: String, others: [String: String] = [:], policy: EndpointPolicy = EndpointPolicy(name: "support"),
    directory: URL = FileManager.default.temporaryDirectory.appendingPathComponent("flows-\(UUID().uuidString)")
) throws -> ConversationEngine {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    for (name, text) in others { try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8) }
    let main = directory.appendingPathComponent("main.yaml")
    try yaml.write(to: main, atomically: true, encoding: .utf8)
    return ConversationEngine(policy: policy, library: try FlowLibrary.load(path: main.path))
}

/// Runs events through an engine, keeping the session like the worker does.
struct Conversation {
    let engine: ConversationEngine
    var session: SessionState?

    init(_ engine: ConversationEngine) { self.engine = engine }

    @discardableResult
    mutating func send(_ event: InboundEvent) throws -> TurnResult {
        let result = try engine.handle(event, session: session, now: event.receivedAt)
        if let next = result.session { session = next }
        return result
    }
}

extension TurnResult {
    /// The texts of the message outputs.
    var texts: [String] {
        outputs.compactMap {
            if case .message(let body) = $0 { return body["text"]?.stringValue }
            return nil
        }
    }

    var messages: [JSONValue] {
        outputs.compactMap {
            if case .message(let body) = $0 { return body }
            return nil
        }
    }
}

func parseProblems(_ yaml: String) -> [FlowProblem] {
    FlowParser.parse(yaml: yaml, file: "test.yaml").problems
}
