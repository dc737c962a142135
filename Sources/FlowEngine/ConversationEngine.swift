public import ChatEvents

/// The endpoint settings that decide what the worker does with an event.
public struct EndpointPolicy: Sendable {
    public var name: String
    /// Cognigy's "Accept Conversation Active Event".
    public var acceptConversationActiveEvent: Bool
    /// 0: sessions never expire.
    public var sessionTTLMinutes: Int
    public var maskIPAddress: Bool

    public init(name: String, acceptConversationActiveEvent: Bool = false, sessionTTLMinutes: Int = 30, maskIPAddress: Bool = true) {
        self.name = name
        self.acceptConversationActiveEvent = acceptConversationActiveEvent
        self.sessionTTLMinutes = sessionTTLMinutes
        self.maskIPAddress = maskIPAddress
    }
}

/// What the worker did with one event.
public struct TurnResult: Sendable {
    public enum Outcome: String, Sendable, CaseIterable {
        /// The flow ran.
        case executed
        /// The event id was processed before (a re-delivery).
        case duplicate
        /// The bot's own message coming back.
        case echo
        /// An agent wrote; 8x8 shows it to the user itself.
        case agentMessage
        /// The user wrote while an agent has (or is about to have) the conversation.
        case silent
        /// QUEUED, MEMBERS_CHANGED, TRANSFER or CONVERSATION_UPDATE changed the handover or profile.
        case stateUpdated
        /// Nothing to do (typing, read receipts, verify, unknown events, inactive states).
        case ignored
    }

    public var outcome: Outcome
    public var outputs: [BotOutput]
    /// The new session; nil when nothing changed and nothing needs writing.
    public var session: SessionState?
    /// Node ids the flow passed, in order.
    public var path: [String]
    public var intent: IntentMatcher.Score?
    /// The flow failed after a handover ended: the handover's end stands (in `session`, the
    /// flow to start over at the next input) and the event is the worker's to dead-letter.
    public var flowError: FlowRuntimeError? = nil
}

/// Applies the rules of spec sections 6.4 and 7 to one event and runs the flow when the event
/// is a flow input. Pure: the same event and session always give the same result (the clock
/// is an argument), which is what makes re-processing after a crash safe.
public struct ConversationEngine: Sendable {
    public let policy: EndpointPolicy
    public let library: FlowLibrary

    public init(policy: EndpointPolicy, library: FlowLibrary) {
        self.policy = policy
        self.library = library
    }

    public func handle(_ event: InboundEvent, session existing: SessionState?, now: Int64) throws(FlowRuntimeError) -> TurnResult {
        let conversation = event.conversationId ?? event.eventId
        if let existing, existing.hasProcessed(event.eventId) {
            return TurnResult(outcome: .duplicate, outputs: [], session: nil, path: [])
        }
        var session = existing ?? SessionState(conversationId: conversation, endpoint: policy.name, tenantId: event.tenantId, now: now)
        if session.endpoint != policy.name {
            // The conversation now comes through this endpoint (8x8 moved it to a channel whose
            // webhook is this one): the other flow's question, context and count mean nothing
            // to this flow. The conversation's facts (profile, handover, processed events) stay.
            session.restart(now: now)
            session.endpoint = policy.name
        }
        // With maskIPAddress no address is kept: one a session got while it was off goes with
        // the session's next write.
        if policy.maskIPAddress { session.ipAddress = nil }
        let normalized = event.normalized

        func changed(_ outcome: TurnResult.Outcome, _ outputs: [BotOutput] = [], path: [String] = []) -> TurnResult {
            session.markProcessed(event.eventId)
            return TurnResult(outcome: outcome, outputs: outputs, session: session, path: path)
        }
        func ignored(_ outcome: TurnResult.Outcome) -> TurnResult {
            TurnResult(outcome: outcome, outputs: [], session: nil, path: [])
        }
        // A handover event 8x8 sent before the last handover ended (a retry the ingress refused
        // then, delivered after the events that followed it): it belongs to that handover, not
        // to none or to a newer one. So does one sent before the current handover began (an
        // agent's leaving that was ignored then, its copy or replay arriving now).
        let late = event.eventTimestamp.map { at in
            session.handoverEndedAt.map { at < $0 } ?? false || session.handover?.startedAt.map { at < $0 } ?? false
        } ?? false
        /// The session's handover, or one 8x8's event begins now.
        func currentHandover(_ begun: HandoverState) -> HandoverState {
            if let handover = session.handover { return handover }
            var handover = begun
            handover.startedAt = event.eventTimestamp
            return handover
        }

        switch normalized.kind {
        case .echo: return ignored(.echo)
        case .agentMessage: return ignored(.agentMessage)
        case .typing, .readReceipt, .verify, .unknown: return ignored(.ignored)

        case .userMessage, .postback, .cardSubmit:
            if let handover = session.handover {
                // The user writes to the agent (or the queue); 8x8 shows it, the bot stays out.
                // The conversation is alive: a long agent chat must not expire the bot's session.
                session.lastActivity = max(session.lastActivity, now)
                var outputs: [BotOutput] = []
                if handover.phase != .agent, let node = handover.node, let text = waitingText(node) {
                    outputs.append(.text(text.render(scope(input: TurnInput(event: event, session: session, maskIP: policy.maskIPAddress, now: now), session))))
                }
                return changed(.silent, outputs)
            }
            return try runTurn(event, &session, from: nil, now: now)

        case .conversationState:
            let profileChanged = absorbProfile(normalized, sentAt: event.eventTimestamp, into: &session)
            if late { return profileChanged ? changed(.stateUpdated) : ignored(.ignored) }
            let state = normalized.state ?? ""
            // Idle ends the interaction (and a handover), whatever assignment it still names.
            if state == "idle" || state == "closed" {
                session.activationHandled = false
                if session.handover != nil { return agentFinished(event, &session, now: now) }
                return changed(.stateUpdated)
            }
            if normalized.assignment?.type?.lowercased() == "agent" {
                var handover = currentHandover(HandoverState(phase: .agent, transferring: false, requestedByBot: false))
                handover.phase = .agent
                if let id = normalized.assignment?.id { handover.agentAssigned(id) }
                session.handover = handover
                return changed(.stateUpdated)
            }
            if state == "active", policy.acceptConversationActiveEvent, !session.activationHandled, session.handover == nil {
                session.activationHandled = true
                return try runTurn(event, &session, from: nil, now: now)
            }
            return profileChanged ? changed(.stateUpdated) : ignored(.ignored)

        case .queued:
            if late { return ignored(.ignored) }
            var handover = currentHandover(HandoverState(phase: .queued, transferring: false, requestedByBot: false))
            if handover.phase == .requested { handover.phase = .queued }
            handover.queueId = normalized.queue?.id ?? handover.queueId
            session.handover = handover
            return changed(.stateUpdated)

        case .memberJoined:
            guard normalized.member?.type?.lowercased() == "agent", !late else { return ignored(.ignored) }
            var handover = currentHandover(HandoverState(phase: .agent, transferring: false, requestedByBot: false))
            handover.agentJoined(normalized.member?.id)
            session.handover = handover
            return changed(.stateUpdated)

        case .transfer:
            if late { return ignored(.ignored) }
            var handover = currentHandover(HandoverState(phase: .agent, transferring: true, requestedByBot: false))
            handover.transferring = true
            session.handover = handover
            return changed(.stateUpdated)

        case .handoverFailed:
            // The egress gave up on the handover's queue move (8x8 refused it, or did not accept
            // it within the retry policy): no agent is coming, and no 8x8 event would end the
            // wait. The flow goes on after the handover node, `input.handover.status` error.
            guard let handover = session.handover, handover.requestedByBot, handover.phase == .requested,
                  handover.requestedBy == nil || normalized.failure?.causationEventId == nil || handover.requestedBy == normalized.failure?.causationEventId
            else {
                return ignored(.ignored)
            }
            session.handover = nil
            let after = (handover.resume ?? handover.node.flatMap(library.position(after:))).flatMap { library.contains($0) ? $0 : nil }
            return runAfterHandover(event, &session, from: after, status: "error", failure: normalized.failure ?? .init(status: nil, reason: nil), now: now)

        case .memberLeft:
            switch normalized.member?.type?.lowercased() {
            case "agent":
                guard var handover = session.handover, !late else { return ignored(.ignored) }
                let left = normalized.member?.id
                if handover.agentLeft(left) {
                    // Another agent (one who joined before, or the one who joined last) is still there.
                    session.handover = handover
                    return changed(.stateUpdated)
                }
                if handover.transferring || (handover.agentId != nil && left != nil && handover.agentId != left) {
                    // Part of a transfer (or another agent than the one holding it): keep the handover.
                    if left == handover.agentId { handover.agentId = nil }
                    handover.transferring = false
                    session.handover = handover
                    return changed(.stateUpdated)
                }
                return agentFinished(event, &session, now: now)
            case "user", "customer":
                // The user left: the conversation is over; its flow state goes with it.
                if session.handover != nil { session.handoverEndedAt = event.eventTimestamp ?? session.handoverEndedAt }
                session.handover = nil
                session.restart(now: now)
                return changed(.stateUpdated)
            default:
                return ignored(.ignored)
            }
        }
    }

    /// The agent left without a transfer (or the conversation went idle during the handover):
    /// hand back to the flow, end the conversation, or, for a handover the bot did not start,
    /// simply stop being silent.
    private func agentFinished(_ event: InboundEvent, _ session: inout SessionState, now: Int64) -> TurnResult {
        let handover = session.handover
        session.handover = nil
        session.handoverEndedAt = event.eventTimestamp ?? session.handoverEndedAt
        guard let handover, handover.requestedByBot else {
            // An agent took the conversation over from the bot: a question the bot asked before
            // is stale, and the user's next message is no answer to it.
            session.waiting = nil
            session.markProcessed(event.eventId)
            return TurnResult(outcome: .stateUpdated, outputs: [], session: session, path: [])
        }
        if let resume = handover.resume {
            // A flow edited meanwhile may have lost the node: then the flow starts over rather
            // than leave the conversation silent.
            return runAfterHandover(event, &session, from: library.contains(resume) ? resume : nil, status: "completed", now: now)
        }
        session.markProcessed(event.eventId)
        if !(handover.node.flatMap(handoverNode)?.handback ?? false) {
            session.restart(now: now)
            return TurnResult(outcome: .executed, outputs: [.endConversation(displayMessage: nil)], session: session, path: [])
        }
        return TurnResult(outcome: .stateUpdated, outputs: [], session: session, path: [])
    }

    /// Runs the flow on after a handover ended. A flow that fails there (a loop past the node
    /// limit, a flow it executes gone) cannot undo the end: the handover stays ended and the
    /// flow starts over at the user's next message, else the bot would stay silent for good.
    private func runAfterHandover(
        _ event: InboundEvent, _ session: inout SessionState, from resume: FlowPosition?, status: String,
        failure: NormalizedEvent.Failure? = nil, now: Int64
    ) -> TurnResult {
        let ended = session
        do throws(FlowRuntimeError) {
            return try runTurn(event, &session, from: resume, handoverStatus: status, handoverFailure: failure, now: now)
        } catch {
            session = ended
            session.restart(now: now)
            session.markProcessed(event.eventId)
            return TurnResult(outcome: .stateUpdated, outputs: [], session: session, path: [], flowError: error)
        }
    }

    private func runTurn(
        _ event: InboundEvent, _ session: inout SessionState, from resume: FlowPosition?, handoverStatus: String? = nil,
        handoverFailure: NormalizedEvent.Failure? = nil, now: Int64
    ) throws(FlowRuntimeError) -> TurnResult {
        // A flow resumed after a handover (the agent left, or 8x8 refused it) goes on with its
        // context: the conversation was alive meanwhile, with the agent talking and the user
        // maybe silent, so the time since the user's last input does not expire it.
        if handoverStatus == nil, session.isExpired(now: now, ttlMinutes: policy.sessionTTLMinutes) {
            session.restart(now: now)
        }
        session.executionCount += 1
        session.lastActivity = now
        var input = TurnInput(event: event, session: session, maskIP: policy.maskIPAddress, now: now)
        input.setExecution(session.executionCount)
        if let handoverStatus { input.setHandoverStatus(handoverStatus, failure: handoverFailure) }
        if !input.text.isEmpty, !library.main.intents.intents.isEmpty {
            let ranking = library.main.intents.rank(input.text)
            let best = ranking.first.flatMap { $0.score >= library.main.intents.threshold ? $0 : nil }
            input.setIntent(best, ranking: ranking)
        }
        var interpreter = FlowInterpreter(library: library, input: input, session: session)
        try interpreter.turn(resume: resume)
        session = interpreter.session
        if session.handover?.requestedByBot == true, session.handover?.phase == .requested, session.handover?.requestedBy == nil {
            session.handover?.requestedBy = event.eventId
            session.handover?.startedAt = event.eventTimestamp
        }
        session.markProcessed(event.eventId)
        return TurnResult(outcome: .executed, outputs: interpreter.outputs, session: session, path: interpreter.path, intent: input.intent)
    }

    /// Copies the user fields of a CONVERSATION_UPDATE into the profile; true when anything
    /// changed. One 8x8 sent before the update the profile holds (a retry delivered late) is
    /// older news and changes nothing.
    private func absorbProfile(_ normalized: NormalizedEvent, sentAt: Int64?, into session: inout SessionState) -> Bool {
        guard let user = normalized.user else { return false }
        if let sentAt, let newest = session.profileUpdatedAt, sentAt < newest { return false }
        var profile = session.profile
        func put(_ key: String, _ value: String?) { if let value { profile[key] = .string(value) } }
        put("name", user.name)
        put("userId", user.userId)
        put("email", user.email)
        put("phone", user.phone)
        put("company", user.company)
        put("caseId", user.caseId)
        put("language", user.language)
        if let offset = user.timezoneOffset { profile["timezoneOffset"] = .number(Double(offset)) }
        if let properties = user.additionalProperties, !properties.isEmpty {
            var additional = profile["additionalProperties"]?.objectValue ?? [:]
            for property in properties { additional[property.key] = property.value.map(JSONValue.string) ?? .null }
            profile["additionalProperties"] = .object(additional)
        }
        if let channel = normalized.channel { profile["channel"] = .string(channel) }
        // With maskIPAddress the address is not kept at all: the flow sees null, records nothing.
        let ip = policy.maskIPAddress ? nil : user.ipAddress
        let ipChanged = ip != nil && ip != session.ipAddress
        if let ip { session.ipAddress = ip }
        let newer = sentAt.map { at in session.profileUpdatedAt.map { at > $0 } ?? true } ?? false
        if newer { session.profileUpdatedAt = sentAt }
        guard profile != session.profile || ipChanged else { return newer }
        session.profile = profile
        return true
    }

    private func handoverNode(_ position: FlowPosition) -> Handover? {
        guard case .handover(let handover)? = library.flows[position.flow]?.nodes[position.node]?.kind else { return nil }
        return handover
    }

    private func waitingText(_ position: FlowPosition) -> Template? { handoverNode(position)?.waitingText }

    private func scope(input: TurnInput, _ session: SessionState) -> TemplateScope {
        TemplateScope(input: input.json, context: .object(session.context), profile: .object(session.profile))
    }
}
