import ChatEvents

/// A flow that cannot go on: the turn is abandoned and the event dead-lettered with this reason.
public struct FlowRuntimeError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(message: String) { self.message = message }
}

/// Runs one turn of a flow: from the waiting question, an interrupt, a resume point or the
/// start, node by node, until a question waits, a handover or end stops it, or the nodes run out.
struct FlowInterpreter {
    static let maxSteps = 200
    static let maxDepth = 8

    let library: FlowLibrary
    var input: TurnInput
    var session: SessionState
    var outputs: [BotOutput] = []
    var path: [String] = []

    init(library: FlowLibrary, input: TurnInput, session: SessionState) {
        self.library = library
        self.input = input
        self.session = session
    }

    private var scope: TemplateScope {
        TemplateScope(input: input.json, context: .object(session.context), profile: .object(session.profile))
    }

    mutating func turn(resume: FlowPosition?) throws(FlowRuntimeError) {
        if let resume {
            session.waiting = nil
            return try run(from: resume)
        }
        // A waiting question, or a caller it returns to, that a new deployment of the flows
        // removed: the flow changed under the session, which starts over (with the main flow's
        // interrupts first, as without a question). Answering it, or a called flow's interrupt
        // returning there, would fail on every message.
        if let waiting = session.waiting, !library.contains(waiting.position) {
            session.waiting = nil
        }
        // The conversation became active again (`acceptConversationActiveEvent`, a user back
        // after going idle) while a question waits: it is asked again, not answered with
        // nothing, and no attempt is counted.
        if input.kind == .conversationState, let waiting = session.waiting, let (_, node) = lookup(waiting.position),
           case .question(let question) = node.kind {
            path.append(node.id)
            return ask(question, text: question.text)
        }
        // A valid answer to a question that expects a shape wins ("real.estate.agent@corp.com"
        // is an email address, not a request for an agent); otherwise interrupts come first. A
        // free-text or yes/no question takes almost anything ("no, get me an agent"), so there
        // the interrupts are checked first.
        if let waiting = session.waiting, let (_, node) = lookup(waiting.position), case .question(let question) = node.kind,
           question.type != .text, question.type != .yesNo,
           AnswerValidation.accept(input.text, as: question.type, options: question.options, pattern: question.pattern) != nil {
            return try answer(waiting)
        }
        // A flow run by `execute` has its own interrupts while one of its questions waits: they
        // come first and go on in that flow (which returns to its caller); then the main flow's.
        if let waiting = session.waiting, waiting.position.flow != library.main.source, let flow = library.flows[waiting.position.flow],
           let interrupt = flow.interrupts.first(where: { evaluate($0.condition) }) {
            session.waiting = nil
            return try run(from: FlowPosition(flow: flow.source, node: interrupt.target, stack: waiting.position.stack))
        }
        if let interrupt = library.main.interrupts.first(where: { evaluate($0.condition) }) {
            session.waiting = nil
            return try run(from: FlowPosition(flow: library.main.source, node: interrupt.target, stack: []))
        }
        if let waiting = session.waiting {
            return try answer(waiting)
        }
        try run(from: FlowPosition(flow: library.main.source, node: library.main.start, stack: []))
    }

    /// The input answers the waiting question: store it and go on, or reprompt, or escalate.
    private mutating func answer(_ waiting: WaitingQuestion) throws(FlowRuntimeError) {
        guard library.contains(waiting.position), let (flow, node) = lookup(waiting.position), case .question(let question) = node.kind else {
            session.waiting = nil  // the flow changed under the session: start over
            return try run(from: FlowPosition(flow: library.main.source, node: library.main.start, stack: []))
        }
        path.append(node.id)
        if let value = AnswerValidation.accept(input.text, as: question.type, options: question.options, pattern: question.pattern) {
            session.waiting = nil
            setContext(question.store, value)
            return try advance(from: node, in: flow, stack: waiting.position.stack)
        }
        let attempts = waiting.attempts + 1
        if attempts >= question.maxAttempts, let escalate = question.escalate {
            session.waiting = nil
            return try run(from: FlowPosition(flow: flow.source, node: escalate, stack: waiting.position.stack))
        }
        session.waiting = WaitingQuestion(position: waiting.position, attempts: attempts)
        ask(question, text: question.reprompt ?? question.text)
    }

    private mutating func ask(_ question: Question, text: Template) {
        let rendered = text.render(scope)
        if question.options.isEmpty {
            // A text that renders empty (an unset value) is not sent: 8x8 refuses an empty message.
            if !rendered.isEmpty { outputs.append(.text(rendered)) }
        } else {
            outputs.append(.quickReplies(rendered, question.options.map { ($0.title.render(scope), $0.payload) }))
        }
    }

    private func lookup(_ position: FlowPosition) -> (Flow, FlowNode)? {
        guard let flow = library.flows[position.flow], let node = flow.nodes[position.node] else { return nil }
        return (flow, node)
    }

    private mutating func run(from start: FlowPosition) throws(FlowRuntimeError) {
        var position: FlowPosition? = start
        var steps = 0
        while let current = position {
            steps += 1
            guard steps <= Self.maxSteps else {
                throw FlowRuntimeError(message: "flow \(current.flow) ran \(Self.maxSteps) nodes in one turn without waiting (a loop?) at node '\(current.node)'")
            }
            guard let (flow, node) = lookup(current) else {
                throw FlowRuntimeError(message: "flow \(current.flow) has no node '\(current.node)'")
            }
            path.append(node.id)
            position = nil
            switch node.kind {
            case .say(let say):
                emit(say)
                position = next(after: node, in: flow, stack: current.stack)
            case .question(let question):
                session.waiting = WaitingQuestion(position: current, attempts: 0)
                ask(question, text: question.text)
            case .branch(let cases, let otherwise):
                if let taken = cases.first(where: { evaluate($0.condition) }) {
                    position = FlowPosition(flow: flow.source, node: taken.target, stack: current.stack)
                } else if let otherwise {
                    position = FlowPosition(flow: flow.source, node: otherwise, stack: current.stack)
                } else {
                    position = FlowLibrary.unwind(current.stack)
                }
            case .set(let change):
                apply(change)
                position = next(after: node, in: flow, stack: current.stack)
            case .goto(let target):
                position = FlowPosition(flow: flow.source, node: target, stack: current.stack)
            case .execute(let other):
                guard current.stack.count < Self.maxDepth else {
                    throw FlowRuntimeError(message: "execute nested deeper than \(Self.maxDepth) flows at node '\(node.id)'")
                }
                guard let callee = library.flows[other] else {
                    throw FlowRuntimeError(message: "flow \(other) is not loaded (node '\(node.id)')")
                }
                let frame = FlowPosition.ReturnFrame(flow: flow.source, node: node.next)
                position = FlowPosition(flow: callee.source, node: callee.start, stack: current.stack + [frame])
            case .handover(let handover):
                if let text = handover.text?.render(scope), !text.isEmpty { outputs.append(.text(text)) }
                outputs.append(.handover(queueId: handover.queueId))
                if handover.handback { outputs.append(.handback) }
                session.waiting = nil
                session.handover = HandoverState(
                    phase: .requested, queueId: handover.queueId, agentId: nil, transferring: false,
                    resume: handover.handback ? next(after: node, in: flow, stack: current.stack) : nil,
                    requestedByBot: true, node: current)
            case .end(let text):
                if let message = text?.render(scope), !message.isEmpty { outputs.append(.text(message)) }
                outputs.append(.endConversation(displayMessage: nil))
                session.restart(now: session.lastActivity)
            case .typing(let seconds):
                outputs.append(seconds.map(BotOutput.thinking) ?? .typing)
                position = next(after: node, in: flow, stack: current.stack)
            }
        }
    }

    private mutating func advance(from node: FlowNode, in flow: Flow, stack: [FlowPosition.ReturnFrame]) throws(FlowRuntimeError) {
        if let position = next(after: node, in: flow, stack: stack) { try run(from: position) }
    }

    private func next(after node: FlowNode, in flow: Flow, stack: [FlowPosition.ReturnFrame]) -> FlowPosition? {
        if let next = node.next { return FlowPosition(flow: flow.source, node: next, stack: stack) }
        return FlowLibrary.unwind(stack)
    }

    // MARK: - Say

    private mutating func emit(_ say: Say) {
        let scope = self.scope
        let text = say.text?.render(scope)
        var textSent = false
        if !say.quickReplies.isEmpty {
            outputs.append(.quickReplies(text, say.quickReplies.map { ($0.title.render(scope), $0.payload) }))
            textSent = true
        }
        if !say.buttons.isEmpty {
            var body: [JSONValue] = []
            if let text, !textSent, !text.isEmpty {
                body.append(.object(["type": .string("TextBlock"), "text": .string(text), "wrap": .bool(true)]))
                textSent = true
            }
            let actions: [JSONValue] = say.buttons.map { button in
                let title = JSONValue.string(button.title.render(scope))
                switch button.action {
                case .postback(let payload):
                    return .object(["type": .string("Action.Submit"), "title": title, "data": .object(["payload": .string(payload)])])
                case .url(let url):
                    return .object(["type": .string("Action.OpenUrl"), "title": title, "url": .string(url)])
                case .phone(let phone):
                    return .object(["type": .string("Action.OpenUrl"), "title": title, "url": .string("tel:" + phone)])
                }
            }
            outputs.append(.adaptiveCard(.object(["type": .string("AdaptiveCard"), "body": .array(body), "actions": .array(actions)])))
        }
        if let text, !textSent, !text.isEmpty {
            outputs.append(.text(text))
        }
        if let card = say.adaptiveCard { outputs.append(.adaptiveCard(card.render(scope))) }
        if let attachment = say.attachment {
            outputs.append(.attachment(url: attachment.url.render(scope), fileName: attachment.fileName))
        }
    }

    // MARK: - Context

    private mutating func apply(_ change: SetContext) {
        let scope = self.scope
        for (path, value) in change.set { setContext(path, value.render(scope)) }
        for (path, by) in change.increment {
            let current = Self.number(getContext(path)) ?? 0
            let next = current + by
            // A counter past what a double holds stays where it was (infinity is no JSON number).
            setContext(path, .number(next.isFinite ? next : current))
        }
        for path in change.unset { setContext(path, nil) }
    }

    func getContext(_ path: [String]) -> JSONValue? {
        guard let first = path.first else { return nil }
        var value = session.context[first]
        for key in path.dropFirst() { value = value?[key] }
        return value
    }

    mutating func setContext(_ path: [String], _ value: JSONValue?) {
        guard let first = path.first else { return }
        func put(_ object: JSONValue?, _ rest: ArraySlice<String>) -> JSONValue? {
            guard let key = rest.first else { return value }
            var members = object?.objectValue ?? [:]
            members[key] = put(members[key], rest.dropFirst())
            return .object(members)
        }
        session.context[first] = put(session.context[first], path.dropFirst())
    }

    // MARK: - Conditions

    func evaluate(_ condition: Condition) -> Bool {
        switch condition {
        case .textContains(let phrases):
            let words = TextNormalizer.words(input.text)
            return phrases.contains { TextNormalizer.contains(words, phrase: $0) }
        case .textMatches(let pattern): return pattern.matches(input.text)
        case .intent(let names): return input.intent.map { names.contains($0.intent) } ?? false
        case .kind(let kinds): return kinds.contains(input.kind.rawValue)
        case .any(let conditions): return conditions.contains { evaluate($0) }
        case .all(let conditions): return conditions.allSatisfy { evaluate($0) }
        case .not(let inner): return !evaluate(inner)
        case .value(let source, let comparison):
            let value: JSONValue? = switch source {
            case .context(let path): getContext(path)
            case .slot(let name): input.slots[name]
            case .input(let path): input[path]
            case .profile(let path): path.dropFirst().reduce(session.profile[path.first ?? ""]) { $0?[$1] }
            }
            return Self.compare(value, comparison)
        }
    }

    static func compare(_ value: JSONValue?, _ comparison: Condition.Comparison) -> Bool {
        let present: JSONValue? = value == .null ? nil : value
        switch comparison {
        case .exists(let flag): return (present != nil) == flag
        case .equals(let expected): return equal(present, expected)
        case .notEquals(let expected): return !equal(present, expected)
        case .greaterThan(let bound): return number(present).map { $0 > bound } ?? false
        case .lessThan(let bound): return number(present).map { $0 < bound } ?? false
        case .contains(let text):
            switch present {
            case .array(let items)?: return items.contains { $0.stringValue == text }
            // Case-insensitive without the host's locale: every replica branches alike.
            default: return present?.stringValue.map { $0.range(of: text, options: .caseInsensitive) != nil } ?? false
            }
        case .matches(let pattern): return present?.stringValue.map(pattern.matches) ?? false
        }
    }

    private static func equal(_ value: JSONValue?, _ expected: JSONValue) -> Bool {
        guard let value else { return expected == .null }
        if value == expected { return true }
        // YAML `equals: 3` against a stored "3", or `equals: yes` against true.
        return value.stringValue != nil && value.stringValue?.lowercased() == expected.stringValue?.lowercased()
    }

    /// A stored number, or a text that is one in decimal notation ("12", "-0.5", "1e3"):
    /// not "nan", "inf", a hexadecimal float or a number too large for a double.
    static func number(_ value: JSONValue?) -> Double? {
        switch value {
        case .number(let number)?: return number.isFinite ? number : nil
        case .string(let text)?:
            var trimmed = Substring(text)
            while trimmed.first?.isWhitespace == true { trimmed.removeFirst() }
            while trimmed.last?.isWhitespace == true { trimmed.removeLast() }
            guard !trimmed.isEmpty, trimmed.utf8.allSatisfy({ (0x30...0x39).contains($0) || "+-.eE".utf8.contains($0) }),
                  let number = Double(trimmed), number.isFinite else { return nil }
            return number
        default: return nil
        }
    }
}
