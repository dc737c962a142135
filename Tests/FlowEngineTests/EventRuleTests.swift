import Foundation
import ChatEvents
import Testing
import TestSupport
@testable import FlowEngine

@Suite("Event rules and sessions")
struct EventRuleTests {
    static let flow = """
        interrupts:
          - { when: { textContains: [agent] }, next: handover }
        nodes:
          - id: start
            type: switch
            cases:
              - { when: { kind: conversationState }, next: welcome }
              - { when: { kind: memberLeft }, next: back }
            default: echo
          - { id: welcome, type: say, text: "Welcome {{profile.name}}" }
          - { id: echo, type: say, text: "You said {{input.text}} ({{input.execution}})" }
          - { id: handover, type: handover, text: Connecting., queueId: q1, waitingText: Still waiting., handback: true, next: back }
          - { id: back, type: say, text: "Bot again ({{input.handover.status}})" }
        """

    func chat(accept: Bool = false, ttl: Int = 30) throws -> Conversation {
        Conversation(try engine(Self.flow, policy: EndpointPolicy(name: "support", acceptConversationActiveEvent: accept, sessionTTLMinutes: ttl)))
    }

    @Test("echoes, agent messages, typing and read receipts never run the flow")
    func dropped() throws {
        var chat = try chat()
        var events = Events()
        let echo = try chat.send(events.make(.echo) { $0.text = "hi" })
        #expect(echo.outcome == .echo && echo.outputs.isEmpty && echo.session == nil)
        #expect(try chat.send(events.make(.agentMessage) { $0.text = "hello" }).outcome == .agentMessage)
        #expect(try chat.send(events.make(.typing, eventType: "ACTIVITY")).outcome == .ignored)
        #expect(try chat.send(events.make(.readReceipt, eventType: "ACTIVITY")).outcome == .ignored)
        #expect(chat.session == nil)
    }

    @Test("postbacks and card submits are inputs; card data is in input.data")
    func postbackInputs() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: a, type: say, text: "{{input.kind}}:{{input.text}}:{{input.data.size}}" }
            """))
        var events = Events()
        #expect(try chat.send(events.postback("menu")).texts == ["postback:menu:"])
        #expect(try chat.send(events.cardSubmit(.object(["payload": .string("order"), "size": .string("L")]))).texts == ["cardSubmit:order:L"])
    }

    @Test("CONVERSATION_UPDATE active starts the flow only when accepted, once per activation")
    func activeEvent() throws {
        var events = Events()
        var off = try chat(accept: false)
        var user = NormalizedEvent.UserInfo()
        user.name = "Jane"
        let ignored = try off.send(events.state("active", user: user))
        #expect(ignored.outputs.isEmpty)
        #expect(ignored.outcome == .stateUpdated)

        var on = try chat(accept: true)
        #expect(try on.send(events.state("active", user: user)).texts == ["Welcome Jane"])
        #expect(try on.send(events.state("active")).outputs.isEmpty)
        #expect(try on.send(events.state("idle")).outputs.isEmpty)
        #expect(try on.send(events.state("active")).texts == ["Welcome Jane"])
        #expect(try on.send(events.state("created")).outputs.isEmpty)
    }

    @Test("a conversation active again while a question waits asks it again: no wrong answer, no attempt counted")
    func activeAgainWhileAQuestionWaits() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: ask, type: question, text: "Your email?", answer: email, store: email, reprompt: "Not an email.", maxAttempts: 1, escalate: agent, next: done }
              - { id: done, type: say, text: "Saved {{context.email}}" }
              - { id: agent, type: say, text: "Escalated" }
            """, policy: EndpointPolicy(name: "support", acceptConversationActiveEvent: true, sessionTTLMinutes: 30)))
        var events = Events()
        #expect(try chat.send(events.user("hi")).texts == ["Your email?"])
        _ = try chat.send(events.state("idle"))
        #expect(try chat.send(events.state("active")).texts == ["Your email?"])
        #expect(try chat.send(events.user("jane@example.com")).texts == ["Saved jane@example.com"])
    }

    @Test("handover: silent while queued (waiting text) and while an agent is assigned; TRANSFER keeps it; agent left hands back")
    func handoverLifecycle() throws {
        var chat = try chat()
        var events = Events()
        let requested = try chat.send(events.user("I want an agent"))
        #expect(requested.outputs == [.text("Connecting."), .handover(queueId: "q1"), .handback])
        #expect(chat.session?.handover?.phase == .requested)

        #expect(try chat.send(events.make(.queued, eventType: "QUEUED") { $0.queue = .init(id: "q1", name: "Support") }).outcome == .stateUpdated)
        #expect(chat.session?.handover?.phase == .queued)
        let waiting = try chat.send(events.user("hello?"))
        #expect(waiting.outcome == .silent)
        #expect(waiting.texts == ["Still waiting."])

        try chat.send(events.member(.memberJoined, type: "agent", id: "agent-1"))
        #expect(chat.session?.handover?.phase == .agent)
        let silent = try chat.send(events.user("are you a person?"))
        #expect(silent.outcome == .silent && silent.outputs.isEmpty)

        try chat.send(events.make(.transfer, eventType: "TRANSFER"))
        #expect(try chat.send(events.member(.memberLeft, type: "agent", id: "agent-1")).outputs.isEmpty)
        #expect(chat.session?.handover != nil)
        try chat.send(events.member(.memberJoined, type: "agent", id: "agent-2"))
        #expect(chat.session?.handover?.agentId == "agent-2")
        #expect(try chat.send(events.user("thanks")).outputs.isEmpty)

        let back = try chat.send(events.member(.memberLeft, type: "agent", id: "agent-2"))
        #expect(back.texts == ["Bot again (completed)"])
        #expect(chat.session?.handover == nil)
        #expect(try chat.send(events.user("hi bot")).texts.first?.hasPrefix("You said hi bot") == true)
    }

    @Test("CONVERSATION_UPDATE idle ends a handover even when it still names the agent")
    func idleEndsHandover() throws {
        var chat = try chat()
        var events = Events()
        try chat.send(events.user("agent please"))
        try chat.send(events.state("active", assignment: .init(type: "agent", id: "a1", resourceId: nil)))
        #expect(chat.session?.handover?.phase == .agent)
        let back = try chat.send(events.state("idle", assignment: .init(type: "agent", id: "a1", resourceId: nil)))
        #expect(back.texts == ["Bot again (completed)"])
        #expect(chat.session?.handover == nil)
    }

    @Test("a long agent chat does not expire the session the bot comes back to")
    func ttlDuringHandover() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: count, type: set, increment: { n: 1 }, next: h }
              - { id: h, type: if, condition: { context: n, equals: 1 }, then: handover, else: say }
              - { id: handover, type: handover, queueId: q, handback: true, next: say }
              - { id: say, type: say, text: "n={{context.n}}" }
            """, policy: EndpointPolicy(name: "support", sessionTTLMinutes: 1)))
        var events = Events()
        try chat.send(events.user("help"))
        try chat.send(events.member(.memberJoined, type: "agent"))
        for _ in 0..<5 {
            events.clock += 50_000
            try chat.send(events.user("still talking to the agent"))
        }
        events.clock += 30_000
        #expect(try chat.send(events.member(.memberLeft, type: "agent")).texts == ["n=1"])
    }

    @Test("the flow resumed after an agent chat the user was silent in keeps its context, however long the agent talked")
    func handbackAfterASilentAgentChat() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: name, type: set, set: { name: Ada }, next: h }
              - { id: h, type: if, condition: { context: name, exists: true }, then: check, else: say }
              - { id: check, type: if, condition: { input: execution, equals: 1 }, then: handover, else: say }
              - { id: handover, type: handover, queueId: q, handback: true, next: say }
              - { id: say, type: say, text: "back, {{context.name}}" }
            """, policy: EndpointPolicy(name: "support", sessionTTLMinutes: 1)))
        var events = Events()
        try chat.send(events.user("help"))
        try chat.send(events.member(.memberJoined, type: "agent"))
        events.clock += 5 * 60_000  // the agent talks for five minutes, the user reads
        #expect(try chat.send(events.member(.memberLeft, type: "agent")).texts == ["back, Ada"])
        #expect(chat.session?.context["name"] == .string("Ada"))
    }

    /// What the egress writes when it gives up on the handover's queue move.
    static func handoverFailed(_ events: inout Events, status: Int? = 400, causation: String? = nil) -> InboundEvent {
        events.make(.handoverFailed, eventType: "HANDOVER_FAILED") {
            $0.failure = .init(status: status, reason: "8x8 answered 400 (invalid_queue)", causationEventId: causation)
        }
    }

    @Test("a report about another handover (an older one's queue move, replayed and refused again) leaves the waiting one alone")
    func failureOfAnotherHandover() throws {
        var chat = try chat()
        var events = Events()
        let request = events.user("agent please")
        try chat.send(request)
        #expect(chat.session?.handover?.requestedBy == request.eventId)
        #expect(try chat.send(Self.handoverFailed(&events, causation: "an-older-event")).outcome == .ignored)
        #expect(chat.session?.handover?.phase == .requested)
        #expect(try chat.send(Self.handoverFailed(&events, causation: request.eventId)).texts == ["Bot again (error)"])
    }

    @Test("a handover 8x8 refused continues the flow below the node with status error, once; the bot answers again")
    func refusedHandover() throws {
        var chat = try chat()
        var events = Events()
        try chat.send(events.user("agent please"))
        #expect(try chat.send(events.user("hello?")).texts == ["Still waiting."])
        let failed = Self.handoverFailed(&events)
        let result = try chat.send(failed)
        #expect(result.outcome == .executed)
        #expect(result.texts == ["Bot again (error)"])
        #expect(chat.session?.handover == nil)
        #expect(try chat.send(failed).outcome == .duplicate, "the egress writing it again changes nothing")
        #expect(try chat.send(events.user("hi bot")).texts.first?.hasPrefix("You said hi bot") == true)
    }

    @Test("the flow sees why the handover failed in input.handover.error")
    func refusedHandoverError() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: h, type: handover, queueId: q1, handback: true, next: why }
              - { id: why, type: say, text: "{{input.handover.status}} {{input.handover.error.reason}} {{input.handover.error.status}}: {{input.handover.error.message}}" }
            """))
        var events = Events()
        try chat.send(events.user("help"))
        #expect(try chat.send(Self.handoverFailed(&events)).texts == ["error error 400: 8x8 answered 400 (invalid_queue)"])
    }

    @Test("a failure report once the conversation is queued, with an agent, or without a handover changes nothing")
    func lateHandoverFailure() throws {
        var chat = try chat()
        var events = Events()
        #expect(try chat.send(Self.handoverFailed(&events)).outcome == .ignored, "no handover")
        try chat.send(events.user("agent please"))
        try chat.send(events.make(.queued, eventType: "QUEUED") { $0.queue = .init(id: "q1", name: nil) })
        #expect(try chat.send(Self.handoverFailed(&events)).outcome == .ignored, "8x8 queued it after all")
        #expect(chat.session?.handover?.phase == .queued)
        try chat.send(events.member(.memberJoined, type: "agent", id: "a1"))
        #expect(try chat.send(Self.handoverFailed(&events)).outcome == .ignored)
        #expect(chat.session?.handover?.phase == .agent)
    }

    @Test("without handback a refused handover goes on at the node's next, or starts the flow over; it does not end the conversation")
    func refusedHandoverWithoutHandback() throws {
        var withNext = Conversation(try engine("""
            nodes:
              - { id: h, type: handover, queueId: q1, handback: false, next: sorry }
              - { id: sorry, type: say, text: "No agent ({{input.handover.status}})" }
            """))
        var events = Events()
        try withNext.send(events.user("help"))
        #expect(try withNext.send(Self.handoverFailed(&events)).outputs == [.text("No agent (error)")])

        var without = Conversation(try engine("""
            nodes:
              - { id: start, type: if, condition: { input: handover.status, equals: error }, then: sorry, else: h }
              - { id: h, type: handover, queueId: q1, handback: false }
              - { id: sorry, type: say, text: "Nobody is there, sorry." }
            """))
        try without.send(events.user("help"))
        #expect(try without.send(Self.handoverFailed(&events)).outputs == [.text("Nobody is there, sorry.")])
        #expect(without.session?.handover == nil)
    }

    @Test("without handback the agent leaving ends the conversation")
    func handoverWithoutHandback() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: h, type: handover, queueId: q1, handback: false }
            """))
        var events = Events()
        #expect(try chat.send(events.user("help")).outputs == [.handover(queueId: "q1")])
        try chat.send(events.member(.memberJoined, type: "agent"))
        #expect(try chat.send(events.member(.memberLeft, type: "agent")).outputs == [.endConversation(displayMessage: nil)])
    }

    @Test("an agent assigned by 8x8 silences the bot; when the agent leaves the bot answers again")
    func externalAgent() throws {
        var chat = try chat()
        var events = Events()
        try chat.send(events.state("active", assignment: .init(type: "agent", id: "a9", resourceId: nil)))
        #expect(try chat.send(events.user("hello")).outcome == .silent)
        #expect(try chat.send(events.member(.memberLeft, type: "agent", id: "a9")).outputs.isEmpty)
        #expect(try chat.send(events.user("hello")).texts.first?.hasPrefix("You said hello") == true)
    }

    @Test("a second agent joining (a colleague, a supervisor) and leaving does not end the handover; the last agent leaving does")
    func severalAgents() throws {
        var chat = try chat()
        var events = Events()
        try chat.send(events.user("agent please"))
        try chat.send(events.member(.memberJoined, type: "agent", id: "a1"))
        try chat.send(events.member(.memberJoined, type: "agent", id: "supervisor"))
        #expect(try chat.send(events.member(.memberLeft, type: "agent", id: "supervisor")).outputs.isEmpty)
        #expect(chat.session?.handover?.agentId == "a1", "the first agent holds the conversation again")
        #expect(try chat.send(events.user("still there?")).outcome == .silent)
        // The other order: the first agent leaves while the second stays.
        try chat.send(events.member(.memberJoined, type: "agent", id: "a2"))
        #expect(try chat.send(events.member(.memberLeft, type: "agent", id: "a1")).outputs.isEmpty)
        #expect(chat.session?.handover?.agentId == "a2" && chat.session?.handover?.otherAgents == nil)
        #expect(try chat.send(events.user("and now?")).outcome == .silent)
        // A transfer whose old agent leaves after the new one joined.
        try chat.send(events.make(.transfer, eventType: "TRANSFER"))
        try chat.send(events.member(.memberJoined, type: "agent", id: "a3"))
        #expect(try chat.send(events.member(.memberLeft, type: "agent", id: "a2")).outputs.isEmpty)
        #expect(chat.session?.handover != nil)
        let back = try chat.send(events.member(.memberLeft, type: "agent", id: "a3"))
        #expect(back.texts == ["Bot again (completed)"])
        #expect(chat.session?.handover == nil)
    }

    @Test("an assignment naming an agent who is present does not list that agent twice: the last agent leaving still ends the handover, in either order")
    func assignmentWithSeveralAgents() throws {
        for supervisorLeavesFirst in [true, false] {
            var chat = try chat()
            var events = Events()
            try chat.send(events.user("agent please"))
            try chat.send(events.member(.memberJoined, type: "agent", id: "a1"))
            try chat.send(events.member(.memberJoined, type: "agent", id: "supervisor"))
            try chat.send(events.state("active", assignment: .init(type: "agent", id: "a1", resourceId: nil)))
            #expect(chat.session?.handover?.agentId == "a1" && chat.session?.handover?.otherAgents == ["supervisor"])
            let order = supervisorLeavesFirst ? ["supervisor", "a1"] : ["a1", "supervisor"]
            #expect(try chat.send(events.member(.memberLeft, type: "agent", id: order[0])).outputs.isEmpty)
            #expect(try chat.send(events.member(.memberLeft, type: "agent", id: order[1])).texts == ["Bot again (completed)"], "\(order)")
            #expect(chat.session?.handover == nil)
        }
    }

    @Test("the agents present survive a session record written and read back")
    func severalAgentsAreKept() throws {
        var chat = try chat()
        var events = Events()
        try chat.send(events.member(.memberJoined, type: "agent", id: "a1"))
        try chat.send(events.member(.memberJoined, type: "agent", id: "a2"))
        let session = try #require(chat.session)
        let restored = try SessionState.decode(session.encoded())
        #expect(restored == session && restored.handover?.otherAgents == ["a1"])
    }

    @Test("a question the bot asked before an agent took over is not answered by the user's first message after the agent left")
    func staleQuestionAfterTakeover() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: ask, type: question, text: "Your email?", answer: email, store: email, reprompt: "That is no email.", next: thanks }
              - { id: thanks, type: say, text: "Saved {{context.email}}." }
            """))
        var events = Events()
        #expect(try chat.send(events.user("hi")).texts == ["Your email?"])
        try chat.send(events.state("active", assignment: .init(type: "agent", id: "a1", resourceId: nil)))
        #expect(try chat.send(events.user("can you help me with my order")).outcome == .silent)
        try chat.send(events.member(.memberLeft, type: "agent", id: "a1"))
        #expect(try chat.send(events.user("thanks")).texts == ["Your email?"], "the flow starts over: no reprompt for 'thanks'")
    }

    @Test("handover events 8x8 sent before the handover ended, delivered late (retries), do not silence the bot again; newer ones do")
    func lateHandoverEvents() throws {
        var chat = try chat()
        var events = Events()
        try chat.send(events.user("agent please"))
        let queued = events.make(.queued, eventType: "QUEUED") { $0.queue = .init(id: "q1", name: nil) }
        let assigned = events.state("active", assignment: .init(type: "agent", id: "a1", resourceId: nil))
        let rejoined = events.member(.memberJoined, type: "agent", id: "a1")  // the ingress refused it then
        let joined = events.member(.memberJoined, type: "agent", id: "a1")
        try chat.send(joined)
        #expect(try chat.send(events.member(.memberLeft, type: "agent", id: "a1")).texts == ["Bot again (completed)"])
        // 8x8's retries of what it sent before the agent left, arriving now.
        for late in [queued, assigned, rejoined, events.make(.transfer, eventType: "TRANSFER") { _ in }] {
            var late = late
            if late.normalized.kind == .transfer { late.eventTimestamp = joined.eventTimestamp }
            #expect(try chat.send(late).outcome == .ignored, "\(late.normalized.kind)")
            #expect(chat.session?.handover == nil)
        }
        #expect(try chat.send(events.user("yes thanks")).texts.first?.hasPrefix("You said yes thanks") == true)
        // Nor do they touch a newer handover: not the agent's, not its end.
        let lateLeft = events.member(.memberLeft, type: "agent", id: "a2")
        try chat.send(events.user("agent again please"))
        for late in [rejoined, lateLeft, events.state("idle")] {
            var late = late
            late.eventId += "-retry"
            late.eventTimestamp = joined.eventTimestamp
            #expect(try chat.send(late).outcome == .ignored, "\(late.normalized.kind)")
            #expect(chat.session?.handover?.phase == .requested && chat.session?.handover?.otherAgents == nil)
        }
        #expect(try chat.send(Self.handoverFailed(&events)).texts == ["Bot again (error)"], "the refused queue move still reaches the flow")
        // A new assignment, sent after the handover ended, starts one.
        try chat.send(events.state("active", assignment: .init(type: "agent", id: "a2", resourceId: nil)))
        #expect(chat.session?.handover?.phase == .agent)
        #expect(try chat.send(events.user("hello?")).outcome == .silent)
    }

    @Test("a CONVERSATION_UPDATE 8x8 sent before the one the profile holds, delivered late (a retry), does not overwrite it")
    func lateProfileUpdate() throws {
        var chat = try chat()
        var events = Events()
        func user(_ name: String, _ email: String) -> NormalizedEvent.UserInfo {
            var user = NormalizedEvent.UserInfo()
            user.name = name
            user.email = email
            return user
        }
        let earlier = events.state("active", user: user("J. Smith", "old@example.com"))
        let later = events.state("active", user: user("Jane Smith", "jane@example.com"))
        #expect(try chat.send(later).outcome == .stateUpdated)
        #expect(try chat.send(earlier).outcome == .ignored)
        #expect(chat.session?.profile["name"] == .string("Jane Smith") && chat.session?.profile["email"] == .string("jane@example.com"))
        // The same facts sent again later move the profile's time on: an update sent between
        // the two, delivered last, is older than the profile.
        let between = events.state("active", user: user("J. S.", "js@example.com"))
        var again = events.state("active", user: user("Jane Smith", "jane@example.com"))
        #expect(try chat.send(again).outcome == .stateUpdated)
        #expect(try chat.send(between).outcome == .ignored)
        #expect(chat.session?.profile["name"] == .string("Jane Smith"))
        // The profile's time survives the session record.
        let session = try #require(chat.session)
        #expect(try SessionState.decode(session.encoded()).profileUpdatedAt == again.eventTimestamp)
        // A newer update changes it; one without 8x8's time is taken as it comes.
        #expect(try chat.send(events.state("active", user: user("Jane Doe", "jane@example.com"))).outcome == .stateUpdated)
        #expect(chat.session?.profile["name"] == .string("Jane Doe"))
        again = events.state("active", user: user("Janet Doe", "jane@example.com"))
        again.eventTimestamp = nil
        try chat.send(again)
        #expect(chat.session?.profile["name"] == .string("Janet Doe"))
    }

    @Test("an agent's leaving ignored when no handover ran, delivered again (another ingress replica, a replay), does not end a newer handover")
    func ignoredLeaveDeliveredAgain() throws {
        for handback in [true, false] {
            var chat = Conversation(try engine("""
                nodes:
                  - id: start
                    type: switch
                    cases:
                      - { when: { textContains: [agent] }, next: handover }
                    default: echo
                  - { id: echo, type: say, text: "You said {{input.text}}" }
                  - { id: handover, type: handover, text: Connecting., queueId: q1, handback: \(handback), next: back }
                  - { id: back, type: say, text: "Bot again ({{input.handover.status}})" }
                """))
            var events = Events()
            try chat.send(events.user("hi"))
            let left = events.member(.memberLeft, type: "agent", id: "a0")
            #expect(try chat.send(left).outcome == .ignored, "no handover runs")
            #expect(try chat.send(events.user("agent please")).texts == ["Connecting."])
            // Its copy comes now: 8x8 sent it before this handover began.
            let again = try chat.send(left)
            #expect(again.outputs.isEmpty && again.outcome == .ignored, "handback \(handback)")
            #expect(chat.session?.handover?.phase == .requested)
            #expect(try chat.send(events.user("still there?")).outcome == .silent)
            // The handover's start survives the session record; an agent's leaving sent after it ends it.
            let session = try #require(chat.session)
            #expect(try SessionState.decode(session.encoded()).handover?.startedAt == session.handover?.startedAt)
            try chat.send(events.member(.memberJoined, type: "agent", id: "a1"))
            let ended = try chat.send(events.member(.memberLeft, type: "agent", id: "a1"))
            #expect(handback ? ended.texts == ["Bot again (completed)"] : ended.outputs.contains(.endConversation(displayMessage: nil)))
            #expect(chat.session?.handover == nil)
        }
    }

    @Test("a flow that fails on after the agent left ends the handover all the same and starts over at the next message; the error goes with the result")
    func flowErrorAfterHandover() throws {
        var chat = Conversation(try engine(TestFlows.handbackIntoLoop))
        var events = Events()
        #expect(try chat.send(events.user("agent please")).texts == ["Connecting."])
        try chat.send(events.member(.memberJoined, type: "agent", id: "a1"))
        let left = try chat.send(events.member(.memberLeft, type: "agent", id: "a1"))
        #expect(left.flowError != nil && left.outputs.isEmpty)
        #expect(left.session?.handover == nil && chat.session?.handover == nil)
        #expect(try chat.send(events.user("are you back")).texts == ["hello are you back"])
    }

    @Test("the same event id is processed once")
    func duplicates() throws {
        var chat = try chat()
        var events = Events()
        let event = events.user("once")
        #expect(try chat.send(event).outputs.count == 1)
        let again = try chat.send(event)
        #expect(again.outcome == .duplicate && again.outputs.isEmpty && again.session == nil)
    }

    @Test("an expired session starts fresh; TTL 0 never expires")
    func ttl() throws {
        var chat = try chat(ttl: 1)
        var events = Events()
        #expect(try chat.send(events.user("a")).texts == ["You said a (1)"])
        #expect(try chat.send(events.user("b")).texts == ["You said b (2)"])
        events.clock += 61_000
        #expect(try chat.send(events.user("c")).texts == ["You said c (1)"])

        var forever = try self.chat(ttl: 0)
        try forever.send(events.user("a"))
        events.clock += 10 * 24 * 3_600_000
        #expect(try forever.send(events.user("b")).texts == ["You said b (2)"])
    }

    @Test("the input object carries the request, ids, channel, user fields and masked ip")
    func inputObject() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: a, type: say, text: "{{input.channel}}|{{input.sessionId}}|{{input.userId}}|{{input.data.request.eventType}}|{{input.user.email}}|{{input.ip}}|{{input.currentTime.year}}|{{input.language}}" }
            """, policy: EndpointPolicy(name: "support", maskIPAddress: true)))
        var events = Events()
        var user = NormalizedEvent.UserInfo()
        user.userId = "crm-7"
        user.email = "jane@example.com"
        user.ipAddress = "10.1.2.3"
        user.language = "de"
        try chat.send(events.state("active", user: user))
        #expect(chat.session?.ipAddress == nil, "with maskIPAddress the address is not kept")
        #expect(try chat.send(events.user("x")).texts == ["eightByEight|conv-1|crm-7|MESSAGE|jane@example.com||2023|de"])

        var unmasked = Conversation(try engine("""
            nodes:
              - { id: a, type: say, text: "{{input.ip}}" }
            """, policy: EndpointPolicy(name: "support", maskIPAddress: false)))
        try unmasked.send(events.state("active", user: user))
        #expect(try unmasked.send(events.user("x")).texts == ["10.1.2.3"])
    }

    @Test("with maskIPAddress the address in the request the flow sees is starred, and one a session kept while the setting was off goes at its next write")
    func maskedAddressInRequestAndSession() throws {
        let flow = """
            nodes:
              - { id: a, type: say, text: "[{{input.data.request.data.user.ipaddress}}]" }
            """
        var events = Events()
        var user = NormalizedEvent.UserInfo()
        user.ipAddress = "10.1.2.3"
        var active = events.state("active", user: user)
        active.raw = .object([
            "eventType": .string("CONVERSATION_UPDATE"),
            "data": .object(["state": .string("active"), "user": .object(["ipaddress": .string("10.1.2.3"), "name": .string("Jane")])]),
        ])
        var masked = Conversation(try engine(flow, policy: EndpointPolicy(name: "support", acceptConversationActiveEvent: true, maskIPAddress: true)))
        #expect(try masked.send(active).texts == ["[********]"])
        var clear = Conversation(try engine(flow, policy: EndpointPolicy(name: "support", acceptConversationActiveEvent: true, maskIPAddress: false)))
        #expect(try clear.send(active).texts == ["[10.1.2.3]"])
        #expect(clear.session?.ipAddress == "10.1.2.3")

        // The setting turned on: the session the endpoint kept is written without the address.
        var later = Conversation(try engine(flow, policy: EndpointPolicy(name: "support", maskIPAddress: true)))
        later.session = clear.session
        let result = try later.send(events.user("x"))
        let written = try #require(result.session)
        #expect(written.ipAddress == nil)
        #expect(!String(decoding: try JSONEncoder().encode(written), as: UTF8.self).contains("10.1.2.3"))
    }

    @Test("the user leaving resets the flow state")
    func userLeft() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: q, type: question, text: Name?, next: hi }
              - { id: hi, type: say, text: "Hi {{context.answers.q}}" }
            """))
        var events = Events()
        try chat.send(events.user("start"))
        #expect(chat.session?.waiting != nil)
        try chat.send(events.member(.memberLeft, type: "user"))
        #expect(chat.session?.waiting == nil)
    }

    /// 8x8 can move a conversation to another channel, whose webhook is another endpoint of
    /// the connector: that endpoint's flow starts at its beginning. The other flow's question,
    /// context and count mean nothing to it; the conversation's facts (8x8's user fields, the
    /// events already processed) stay.
    @Test("a conversation that comes through another endpoint starts that endpoint's flow; its profile and processed events stay")
    func conversationMovedToAnotherEndpoint() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flows-\(UUID().uuidString)")
        let sales = try engine("""
            nodes:
              - { id: ask, type: question, text: "Your email?", answer: email, store: email, reprompt: "That is no email.", next: thanks }
              - { id: thanks, type: say, text: "Saved {{context.email}}." }
            """, policy: EndpointPolicy(name: "sales"), directory: directory.appendingPathComponent("sales"))
        let support = try engine("""
            nodes:
              - { id: hello, type: say, text: "Support here, {{profile.name}} ({{input.execution}}). You said {{input.text}}; email {{context.email}}." }
            """, policy: EndpointPolicy(name: "support"), directory: directory.appendingPathComponent("support"))
        var events = Events()
        events.endpoint = "sales"
        var chat = Conversation(sales)
        var user = NormalizedEvent.UserInfo()
        user.name = "Jane"
        try chat.send(events.state("active", user: user))
        let asked = events.user("hi")
        #expect(try chat.send(asked).texts == ["Your email?"])
        #expect(try chat.send(events.user("jane@example.com")).texts == ["Saved jane@example.com."])
        #expect(try chat.send(events.user("one more")).texts == ["Your email?"])

        events.endpoint = "support"
        var moved = Conversation(support)
        moved.session = chat.session
        let answer = try moved.send(events.user("jane@example.com"))
        #expect(answer.texts == ["Support here, Jane (1). You said jane@example.com; email ."], "not taken as the sales flow's answer")
        #expect(answer.session?.endpoint == "support")
        #expect(answer.session?.waiting == nil)
        #expect(try moved.send(asked).outcome == .duplicate, "an event the conversation processed before the move is still known")
    }
}
