import ChatEvents
import Foundation
@testable import FlowEngine

/// Builds inbound events the way the ingress normalizes them.
struct Events {
    var conversation = "conv-1"
    var endpoint = "support"
    private var counter = 0
    var clock: Int64 = 1_700_000_000_000

    mutating func make(_ kind: NormalizedEvent.Kind, eventType: String = "MESSAGE", _ configure: (inout NormalizedEvent) -> Void = { _ in }) -> InboundEvent {
        counter += 1
        clock += 1_000
        var normalized = NormalizedEvent(kind: kind)
        configure(&normalized)
        return InboundEvent(
            eventId: "evt-\(counter)", retry: 0, tenantId: "acme", customerId: "cust", endpoint: endpoint, route: .endpoint,
            receivedAt: clock, transmissionTime: clock, eventType: eventType, conversationId: conversation,
            eventTimestamp: clock, signatureVerified: true, normalized: normalized,
            raw: .object(["eventType": .string(eventType), "conversationId": .string(conversation)]))
    }

    mutating func user(_ text: String) -> InboundEvent {
        make(.userMessage) {
            $0.text = text
            $0.sender = .init(id: "u1", type: "user")
        }
    }

    mutating func postback(_ payload: String, title: String? = nil) -> InboundEvent {
        make(.postback, eventType: "ACTIVITY") { $0.postback = .init(title: title ?? payload, payload: payload) }
    }

    mutating func cardSubmit(_ data: JSONValue) -> InboundEvent {
        make(.cardSubmit, eventType: "ACTIVITY") { $0.cardSubmit = .init(action: "Action.Submit", data: data) }
    }

    mutating func state(_ state: String, assignment: NormalizedEvent.Assignment? = nil, user: NormalizedEvent.UserInfo? = nil) -> InboundEvent {
        make(.conversationState, eventType: "CONVERSATION_UPDATE") {
            $0.state = state
            $0.assignment = assignment
            $0.user = user
        }
    }

    mutating func member(_ kind: NormalizedEvent.Kind, type: String, id: String = "agent-7") -> InboundEvent {
        make(kind, eventType: "MEMBERS_CHANGED") { $0.member = .init(id: id, type: type) }
    }
}

/// A flow written to a temporary directory (with any flows it executes) and an engine for it.
func engine(
    _ yaml: String, others: [String: String] = [:], policy: EndpointPolicy = EndpointPolicy(name: "support")
) throws -> ConversationEngine {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flows-\(UUID().uuidString)")
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
