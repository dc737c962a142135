public import ChatEvents
import Foundation

/// Everything the worker remembers about one conversation between events, written to
/// `bot.sessions.v1` after each change (keyed by conversation, co-partitioned with the inbound
/// topic) and read back by whichever worker owns the partition next.
public struct SessionState: Sendable, Hashable, Codable, VersionedRecord {
    public static let schemaVersion = "bot.sessions.v1"
    /// How many processed event ids are kept to recognize a re-delivered event.
    public static let processedEventCapacity = 64

    public var schema: String
    public var conversationId: String
    public var endpoint: String
    public var tenantId: String?
    /// When this session (flow state) began; a new one begins after the TTL.
    public var startedAt: Int64
    /// The last flow input (milliseconds since 1970).
    public var lastActivity: Int64
    /// Flow inputs in this session (`input.execution`).
    public var executionCount: Int
    public var context: [String: JSONValue]
    /// The user fields of the conversation's `CONVERSATION_UPDATE` (name, email, userId, ...).
    public var profile: [String: JSONValue]
    /// 8x8's time (`timestamp`) of the `CONVERSATION_UPDATE` the profile was last taken from:
    /// an older one delivered late (a retry, out of order) does not overwrite it.
    public var profileUpdatedAt: Int64?
    public var ipAddress: String?
    /// The question waiting for the next input, if any.
    public var waiting: WaitingQuestion?
    public var handover: HandoverState?
    /// 8x8's time (`timestamp`) of the event that ended the last handover: an event 8x8 sent
    /// before it (a retry delivered late, out of order) does not start that handover again.
    public var handoverEndedAt: Int64?
    /// An accepted `CONVERSATION_UPDATE active` started the flow in this activation.
    public var activationHandled: Bool
    /// The newest processed inbound event ids, oldest first.
    public var processedEventIds: [String]

    public init(conversationId: String, endpoint: String, tenantId: String?, now: Int64) {
        schema = Self.schemaVersion
        self.conversationId = conversationId
        self.endpoint = endpoint
        self.tenantId = tenantId
        startedAt = now
        lastActivity = now
        executionCount = 0
        context = [:]
        profile = [:]
        waiting = nil
        handover = nil
        handoverEndedAt = nil
        activationHandled = false
        processedEventIds = []
    }

    public func hasProcessed(_ eventId: String) -> Bool { processedEventIds.contains(eventId) }

    public mutating func markProcessed(_ eventId: String) {
        processedEventIds.append(eventId)
        if processedEventIds.count > Self.processedEventCapacity {
            processedEventIds.removeFirst(processedEventIds.count - Self.processedEventCapacity)
        }
    }

    /// Forgets the flow's state (position, question, context, count) and starts a new session;
    /// the conversation's facts (profile, handover, processed events) stay.
    public mutating func restart(now: Int64) {
        startedAt = now
        lastActivity = now
        executionCount = 0
        context = [:]
        waiting = nil
    }

    public func isExpired(now: Int64, ttlMinutes: Int) -> Bool {
        ttlMinutes > 0 && now - lastActivity > Int64(ttlMinutes) * 60_000
    }

    /// The record value, written by hand (one per processed event on the worker's hot path);
    /// `Codable` reads it back.
    public func encoded() -> [UInt8] {
        var json = JSONWriter(capacity: 512)
        json.beginObject()
        json.field("schema", schema)
        json.field("conversationId", conversationId)
        json.field("endpoint", endpoint)
        json.field("tenantId", tenantId)
        json.field("startedAt", startedAt)
        json.field("lastActivity", lastActivity)
        json.field("executionCount", executionCount)
        json.field("context", JSONValue.object(context))
        json.field("profile", JSONValue.object(profile))
        json.field("profileUpdatedAt", profileUpdatedAt)
        json.field("ipAddress", ipAddress)
        json.object("waiting", waiting) { json, waiting in
            json.object("position", waiting.position, FlowPosition.write)
            json.field("attempts", waiting.attempts)
        }
        json.object("handover", handover) { json, handover in
            json.field("phase", handover.phase.rawValue)
            json.field("queueId", handover.queueId)
            json.field("agentId", handover.agentId)
            json.array("otherAgents", handover.otherAgents) { json, id in json.string(id) }
            json.field("transferring", handover.transferring)
            json.object("resume", handover.resume, FlowPosition.write)
            json.field("requestedByBot", handover.requestedByBot)
            json.object("node", handover.node, FlowPosition.write)
            json.field("requestedBy", handover.requestedBy)
            json.field("startedAt", handover.startedAt)
        }
        json.field("handoverEndedAt", handoverEndedAt)
        json.field("activationHandled", activationHandled)
        json.key("processedEventIds")
        json.beginArray()
        for id in processedEventIds { json.string(id) }
        json.endArray()
        json.endObject()
        return json.bytes
    }

}

/// A place in a flow, with the flows to return to (`execute`).
public struct FlowPosition: Sendable, Hashable, Codable {
    public var flow: String
    public var node: String
    /// Return points, innermost last; a frame with no node returns further.
    public var stack: [ReturnFrame]

    public struct ReturnFrame: Sendable, Hashable, Codable {
        public var flow: String
        public var node: String?
    }

    static func write(_ json: inout JSONWriter, _ position: FlowPosition) {
        json.field("flow", position.flow)
        json.field("node", position.node)
        json.key("stack")
        json.beginArray()
        for frame in position.stack {
            json.element(frame) { json, frame in
                json.field("flow", frame.flow)
                json.field("node", frame.node)
            }
        }
        json.endArray()
    }
}

public struct WaitingQuestion: Sendable, Hashable, Codable {
    public var position: FlowPosition
    /// Failed answers so far.
    public var attempts: Int
}

/// Where a handover to a human agent stands.
public struct HandoverState: Sendable, Hashable, Codable {
    public enum Phase: String, Sendable, Hashable, Codable {
        /// The bot asked 8x8 to move the conversation to a queue.
        case requested
        /// 8x8 reported the conversation queued.
        case queued
        /// An agent is in the conversation.
        case agent
    }

    public var phase: Phase
    public var queueId: String?
    /// The agent who joined last.
    public var agentId: String?
    /// Agents who joined before `agentId` and have not left (a colleague or supervisor joining
    /// an agent's chat): the handover ends when the last agent leaves, not the last to join.
    public var otherAgents: [String]?
    /// A transfer between agents is under way: the next agent leaving is part of it.
    public var transferring: Bool
    /// Where the flow continues when the agent leaves (handback), nil to end the conversation
    /// or, for a handover the bot did not start, to do nothing.
    public var resume: FlowPosition?
    /// The bot started this handover (a handover node).
    public var requestedByBot: Bool
    /// The handover node, for its waiting text.
    public var node: FlowPosition?
    /// The inbound event whose turn asked for this handover: a report that 8x8 refused a
    /// handover names it, so a report about another (an older one, replayed) is told apart.
    public var requestedBy: String?
    /// 8x8's time (`timestamp`) of the event that began this handover (the user's message
    /// whose turn asked for it, or 8x8's first handover event): an event 8x8 sent before it (a
    /// retry, a copy through another ingress replica, a replay after a crash) belongs to an
    /// older handover or to none, and neither ends nor changes this one.
    public var startedAt: Int64?

    /// An agent joined (`MEMBERS_CHANGED`): the one there before stays present until it leaves.
    mutating func agentJoined(_ id: String?) {
        var others = otherAgents ?? []
        if phase == .agent, let present = agentId, present != id, !others.contains(present) { others.append(present) }
        others.removeAll { $0 == id }
        otherAgents = others.isEmpty ? nil : others
        phase = .agent
        agentId = id
        transferring = false
    }

    /// A `CONVERSATION_UPDATE` names the agent the conversation is assigned to: that agent
    /// holds it now; one of the others present stays so.
    mutating func agentAssigned(_ id: String) {
        phase = .agent
        guard id != agentId else { return }
        if var others = otherAgents, let index = others.firstIndex(of: id) {
            others.remove(at: index)
            if let present = agentId { others.append(present) }
            otherAgents = others
        }
        agentId = id
    }

    /// An agent left; true when another agent who joined is still there (then it holds the
    /// conversation if the one who left did).
    mutating func agentLeft(_ id: String?) -> Bool {
        guard var others = otherAgents, !others.isEmpty else { return false }
        if let id, let index = others.firstIndex(of: id) {
            others.remove(at: index)
        } else if id == nil || id == agentId {
            agentId = others.removeLast()
        } else {
            return false
        }
        otherAgents = others.isEmpty ? nil : others
        return true
    }

    public init(
        phase: Phase, queueId: String? = nil, agentId: String? = nil, transferring: Bool, resume: FlowPosition? = nil,
        requestedByBot: Bool, node: FlowPosition? = nil
    ) {
        self.phase = phase
        self.queueId = queueId
        self.agentId = agentId
        self.transferring = transferring
        self.resume = resume
        self.requestedByBot = requestedByBot
        self.node = node
    }
}
