public import ChatEvents

/// Builds normalized inbound events for one conversation, as the ingress writes them. Event
/// ids are `<conversation>-e<n>`; each event is one second after the previous one.
public struct EventFactory {
    public var conversation: String
    public var endpoint: String? = "support"
    private var counter = 0
    public var clock: Int64 = 1_700_000_000_000

    public init(conversation: String = "conv-1") { self.conversation = conversation }

    public mutating func make(_ kind: NormalizedEvent.Kind, eventType: String = "MESSAGE", _ configure: (inout NormalizedEvent) -> Void = { _ in }) -> InboundEvent {
        counter += 1
        clock += 1_000
        var normalized = NormalizedEvent(kind: kind)
        configure(&normalized)
        return InboundEvent(
            eventId: "\(conversation)-e\(counter)", retry: 0, tenantId: "acme", customerId: "cust", endpoint: endpoint, route: .endpoint,
            receivedAt: clock, transmissionTime: clock, eventType: eventType, conversationId: conversation,
            eventTimestamp: clock, signatureVerified: true, normalized: normalized,
            raw: .object(["eventType": .string(eventType), "conversationId": .string(conversation)]))
    }

    public mutating func user(_ text: String) -> InboundEvent {
        make(.userMessage) {
            $0.text = text
            $0.sender = .init(id: "u1", type: "user")
        }
    }

    public mutating func postback(_ payload: String, title: String? = nil) -> InboundEvent {
        make(.postback, eventType: "ACTIVITY") { $0.postback = .init(title: title ?? payload, payload: payload) }
    }

    public mutating func cardSubmit(_ data: JSONValue) -> InboundEvent {
        make(.cardSubmit, eventType: "ACTIVITY") { $0.cardSubmit = .init(action: "Action.Submit", data: data) }
    }

    public mutating func state(_ state: String, assignment: NormalizedEvent.Assignment? = nil, user: NormalizedEvent.UserInfo? = nil) -> InboundEvent {
        make(.conversationState, eventType: "CONVERSATION_UPDATE") {
            $0.state = state
            $0.assignment = assignment
            $0.user = user
        }
    }

    public mutating func member(_ kind: NormalizedEvent.Kind, type: String, id: String = "agent-7") -> InboundEvent {
        make(kind, eventType: "MEMBERS_CHANGED") { $0.member = .init(id: id, type: type) }
    }
}


/// Flows the tests of more than one target run.
public enum TestFlows {
    /// "agent" hands over (with handback); after the agent leaves, the flow loops past the node
    /// limit (a flow error); anything else is answered "hello <text>".
    public static let handbackIntoLoop = """
        nodes:
          - { id: start, type: if, condition: { textContains: agent }, then: handover, else: hello }
          - { id: handover, type: handover, text: Connecting., queueId: "101", handback: true, next: a }
          - { id: a, type: if, condition: { textContains: zzz }, then: b, else: b }
          - { id: b, type: goto, target: a }
          - { id: hello, type: say, text: "hello {{input.text}}" }
        """
}
