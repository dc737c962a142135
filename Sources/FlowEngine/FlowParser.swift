import ChatEvents
import Foundation
import Yams

/// A problem in a flow file, with its place.
public struct FlowProblem: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(file: String, line: Int, column: Int = 1, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// Reads a flow file into a `Flow`, collecting every problem instead of stopping at the first:
/// YAML syntax, unknown node kinds and fields, missing or unknown targets, unreachable nodes,
/// invalid regular expressions, template errors.
public struct FlowParser {
    let file: String
    private(set) var problems: [FlowProblem] = []
    /// The intent names conditions mention, with their position: checked against the main
    /// flow's intents once every flow is read (`FlowLibrary.load`).
    private var intentReferences: [(name: String, line: Int, column: Int)] = []

    public static func parse(yaml: String, file: String) -> (flow: Flow?, problems: [FlowProblem]) {
        var parser = FlowParser(file: file)
        let flow = parser.read(yaml)
        return (parser.problems.isEmpty ? flow : nil, parser.problems.sorted { ($0.line, $0.column) < ($1.line, $1.column) })
    }

    init(file: String) { self.file = file }

    private mutating func problem(_ node: Node?, _ message: String) {
        let found = FlowProblem(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1, message: message)
        // A node reached twice (through a YAML alias) has its problems once.
        if !problems.contains(found) { problems.append(found) }
    }

    private mutating func read(_ yaml: String) -> Flow? {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: yaml) else {
                problem(nil, "the file is empty")
                return nil
            }
            root = node
            duplicateKeys(in: root)
        } catch let error as YamlError {
            switch error {
            case .scanner(_, let message, let mark, _), .parser(_, let message, let mark, _), .composer(_, let message, let mark, _):
                problems.append(FlowProblem(file: file, line: mark.line, column: mark.column, message: "YAML: \(message)"))
            default:
                problem(nil, "YAML: \(error)")
            }
            return nil
        } catch {
            problem(nil, "YAML: \(error)")
            return nil
        }
        guard let top = fields(root, known: ["schema", "name", "description", "start", "intentThreshold", "intents", "interrupts", "nodes"], what: "the flow") else {
            return nil
        }
        if let schema = top["schema"], schema.string != "flow.v1" {
            problem(schema, "schema must be flow.v1")
        }
        let name = top["name"]?.string ?? (file as NSString).lastPathComponent

        var intents: [IntentMatcher.Intent] = []
        if let list = top["intents"] {
            for item in sequence(list, what: "intents") {
                guard let intent = fields(item, known: ["name", "examples"], what: "an intent") else { continue }
                guard let intentName = string(intent["name"], what: "intent name", at: item) else { continue }
                let examples = strings(intent["examples"], what: "examples of intent '\(intentName)'", at: item)
                if examples.isEmpty { problem(item, "intent '\(intentName)' needs at least one example") }
                if intents.contains(where: { $0.name == intentName }) { problem(item, "intent '\(intentName)' is defined twice") }
                intents.append(.init(name: intentName, examples: examples))
            }
        }
        var threshold = IntentMatcher.defaultThreshold
        if let node = top["intentThreshold"] {
            if let value = node.float, (0...1).contains(value) { threshold = value } else { problem(node, "intentThreshold must be a number from 0 to 1") }
        }

        var nodes: [String: FlowNode] = [:]
        var order: [String] = []
        var targets: [(String, Node)] = []
        var executes: [(path: String, line: Int)] = []
        guard let list = top["nodes"] else {
            problem(root, "the flow has no nodes")
            return nil
        }
        let items = sequence(list, what: "nodes")
        // Every id written down counts as declared, even when its node has problems, so one
        // broken node does not make its neighbours' targets look missing.
        let declared = items.compactMap { $0.mapping?["id"]?.string }
        // Nodes and interrupts read with problems: what they lead to is not known for sure, so
        // every id they mention counts as reached from them (no false "unreachable" around them).
        var uncertain: [String: Node] = [:]
        var uncertainRoots: [Node] = []
        for item in items {
            let before = problems.count
            let read = readNode(item, targets: &targets, executes: &executes)
            if problems.count > before, let id = item.mapping?["id"]?.string { uncertain[id] = item }
            guard let node = read else { continue }
            if nodes[node.id] != nil {
                problem(item, "node id '\(node.id)' is used twice")
                continue
            }
            nodes[node.id] = node
            order.append(node.id)
        }
        var interrupts: [Branch] = []
        if let list = top["interrupts"] {
            for item in sequence(list, what: "interrupts") {
                let before = problems.count
                let read = readCase(item, targets: &targets)
                if problems.count > before { uncertainRoots.append(item) }
                guard let branch = read else { continue }
                interrupts.append(branch)
            }
        }
        guard let first = declared.first else {
            problem(list, "the flow has no nodes")
            return nil
        }
        let start = top["start"]?.string ?? first
        if let node = top["start"] { targets.append((start, node)) }
        let known = Set(declared)
        for (target, node) in targets where !known.contains(target) {
            problem(node, "target '\(target)' is not a node of this flow")
        }
        // Unreachable: not reached from the start or an interrupt.
        var reached = Set<String>()
        var queue = [start] + interrupts.map(\.target) + uncertainRoots.flatMap { Self.mentionedIDs($0, among: known) }
        while let id = queue.popLast() {
            guard reached.insert(id).inserted else { continue }
            if let node = nodes[id] { queue.append(contentsOf: Self.successors(node)) }
            if let raw = uncertain[id] { queue.append(contentsOf: Self.mentionedIDs(raw, among: known)) }
        }
        for id in order where !reached.contains(id) {
            problems.append(FlowProblem(file: file, line: nodes[id]!.line, message: "node '\(id)' is unreachable"))
        }
        // A loop of nodes that always go on to the next (say, set, typing, goto) never waits for
        // the user: every turn that enters it runs into the step limit, and the bot says nothing.
        var settled = Set<String>()
        for id in order where !settled.contains(id) {
            var path: [String] = []
            var current: String? = id
            while let node = current.flatMap({ nodes[$0] }), !settled.contains(node.id) {
                if let index = path.firstIndex(of: node.id) {
                    let loop = path[index...] + [node.id]
                    problems.append(FlowProblem(file: file, line: nodes[loop.first!]!.line, message:
                        "nodes \(loop.map { "'\($0)'" }.joined(separator: " > ")) loop without waiting for the user (no question, condition, handover or end on the way)"))
                    break
                }
                path.append(node.id)
                current = Self.alwaysNext(node)
            }
            settled.formUnion(path)
        }
        guard nodes.count == declared.count else { return nil }
        return Flow(
            name: name, source: file, start: start, nodes: nodes, order: order,
            intents: IntentMatcher(intents: intents, threshold: threshold), interrupts: interrupts, executes: executes,
            intentReferences: intentReferences)
    }

    /// The declared ids that a node's YAML mentions anywhere below it, its own id aside.
    static func mentionedIDs(_ node: Node, among declared: Set<String>) -> [String] {
        switch node {
        case .scalar(let scalar): return declared.contains(scalar.string) ? [scalar.string] : []
        case .mapping(let mapping): return mapping.flatMap { $0.key.string == "id" ? [] : mentionedIDs($0.value, among: declared) }
        case .sequence(let sequence): return sequence.flatMap { mentionedIDs($0, among: declared) }
        default: return []
        }
    }

    /// The node a node always goes on to in the same turn; nil when it waits, stops, branches
    /// on a condition or runs another flow (which may wait).
    static func alwaysNext(_ node: FlowNode) -> String? {
        switch node.kind {
        case .say, .set, .typing: node.next
        case .goto(let target): target
        case .question, .branch, .execute, .handover, .end: nil
        }
    }

    static func successors(_ node: FlowNode) -> [String] {
        var result = node.next.map { [$0] } ?? []
        switch node.kind {
        case .branch(let cases, let otherwise):
            result += cases.map(\.target)
            if let otherwise { result.append(otherwise) }
        case .goto(let target): result.append(target)
        case .question(let question): if let escalate = question.escalate { result.append(escalate) }
        default: break
        }
        return result
    }

    // MARK: - Nodes

    static let commonFields: Set<String> = ["id", "type", "next", "description"]
    static let kindFields: [String: Set<String>] = [
        "say": ["text", "quickReplies", "buttons", "adaptiveCard", "attachment"],
        "question": ["text", "answer", "options", "pattern", "store", "reprompt", "maxAttempts", "escalate"],
        "if": ["condition", "then", "else"],
        "switch": ["cases", "default"],
        "set": ["set", "increment", "unset"],
        "goto": ["target"],
        "execute": ["flow"],
        "handover": ["text", "queueId", "handback", "waitingText"],
        "end": ["text"],
        "typing": ["thinkingSeconds"],
    ]

    private mutating func readNode(_ item: Node, targets: inout [(String, Node)], executes: inout [(path: String, line: Int)]) -> FlowNode? {
        guard let map = item.mapping else {
            problem(item, "a node must be a mapping with id and type")
            return nil
        }
        let raw = Dictionary(map.map { ($0.key.string ?? "", $0.value) }, uniquingKeysWith: { first, _ in first })
        guard let id = string(raw["id"], what: "node id", at: item) else { return nil }
        guard let typeNode = raw["type"], let type = typeNode.string else {
            problem(item, "node '\(id)' has no type (one of \(FlowNode.kindNames.joined(separator: ", ")))")
            return nil
        }
        guard let specific = Self.kindFields[type] else {
            problem(typeNode, "node '\(id)': unknown node type '\(type)' (known: \(FlowNode.kindNames.joined(separator: ", ")))")
            return nil
        }
        for (key, value) in map where !Self.commonFields.contains(key.string ?? "") && !specific.contains(key.string ?? "") {
            problem(key, "node '\(id)': unknown field '\(key.string ?? "?")' for a \(type) node")
            _ = value
        }
        let next = raw["next"]?.string
        if let next, let node = raw["next"] { targets.append((next, node)) }
        let line = item.mark?.line ?? 1

        func target(_ key: String, required: Bool) -> String? {
            guard let node = raw[key] else {
                if required { problem(item, "node '\(id)': \(type) needs '\(key)'") }
                return nil
            }
            guard let value = node.string, !value.isEmpty else {
                problem(node, "node '\(id)': '\(key)' must be a node id")
                return nil
            }
            targets.append((value, node))
            return value
        }

        let kind: FlowNode.Kind
        switch type {
        case "say":
            guard let say = readSay(raw, id: id, at: item) else { return nil }
            kind = .say(say)
        case "question":
            let text = template(raw["text"], what: "node '\(id)': text", required: true, at: item)
            var answerType = Question.AnswerType.text
            if let node = raw["answer"] {
                if let value = node.string.flatMap(Question.AnswerType.init(rawValue:)) { answerType = value }
                else { problem(node, "node '\(id)': answer must be one of \(Question.AnswerType.allCases.map(\.rawValue).joined(separator: ", "))") }
            }
            let options = raw["options"].map { choices($0, id: id) } ?? []
            if answerType == .options && options.isEmpty { problem(item, "node '\(id)': an options question needs options") }
            var pattern: Pattern?
            if let node = raw["pattern"] { pattern = regex(node, id: id) }
            if answerType == .regex && raw["pattern"] == nil { problem(item, "node '\(id)': a regex question needs a pattern") }
            let store = raw["store"].flatMap { path($0, id: id) } ?? ["answers", id]
            var maxAttempts = 3
            if let node = raw["maxAttempts"] {
                if let value = node.int, value >= 1 { maxAttempts = value } else { problem(node, "node '\(id)': maxAttempts must be a whole number of at least 1") }
            }
            let reprompt = template(raw["reprompt"], what: "node '\(id)': reprompt", required: false, at: item)
            guard let text else { return nil }
            kind = .question(Question(
                text: text, type: answerType, options: options, pattern: pattern, store: store, reprompt: reprompt,
                maxAttempts: maxAttempts, escalate: target("escalate", required: false)))
        case "if":
            let condition = raw["condition"].flatMap { self.condition($0, id: id) }
            if raw["condition"] == nil { problem(item, "node '\(id)': if needs a condition") }
            let then = target("then", required: true)
            let otherwise = target("else", required: false)
            guard let condition, let then else { return nil }
            kind = .branch(cases: [Branch(condition: condition, target: then, line: line)], otherwise: otherwise ?? next)
        case "switch":
            var cases: [Branch] = []
            if let list = raw["cases"] {
                for entry in sequence(list, what: "cases") {
                    if let branch = readCase(entry, targets: &targets) { cases.append(branch) }
                }
            } else {
                problem(item, "node '\(id)': switch needs cases")
            }
            kind = .branch(cases: cases, otherwise: target("default", required: false) ?? next)
        case "set":
            var set: [(path: [String], value: TemplatedJSON)] = []
            var increment: [(path: [String], by: Double)] = []
            var unset: [[String]] = []
            if let node = raw["set"] {
                for (key, value) in node.mapping ?? [:] {
                    guard let path = path(key, id: id) else { continue }
                    do { set.append((path, try TemplatedJSON(json(value)))) } catch { problem(value, "node '\(id)': \(Template.describe(error))") }
                }
                if node.mapping == nil { problem(node, "node '\(id)': set must map context paths to values") }
            }
            if let node = raw["increment"] {
                for (key, value) in node.mapping ?? [:] {
                    guard let path = path(key, id: id) else { continue }
                    if let by = value.float { increment.append((path, by)) } else { problem(value, "node '\(id)': increment needs a number") }
                }
                if node.mapping == nil { problem(node, "node '\(id)': increment must map context paths to numbers") }
            }
            if let node = raw["unset"] {
                let list = node.sequence.map(Array.init) ?? [node]
                for entry in list { if let path = path(entry, id: id) { unset.append(path) } }
            }
            if set.isEmpty && increment.isEmpty && unset.isEmpty && raw["set"] == nil && raw["increment"] == nil && raw["unset"] == nil {
                problem(item, "node '\(id)': set needs set, increment or unset")
            }
            kind = .set(SetContext(set: set, increment: increment, unset: unset))
        case "goto":
            guard let goto = target("target", required: true) else { return nil }
            kind = .goto(goto)
        case "execute":
            guard let node = raw["flow"], let flow = node.string, !flow.isEmpty else {
                problem(item, "node '\(id)': execute needs flow (a flow file)")
                return nil
            }
            let resolved = Self.resolve(flow, relativeTo: file)
            executes.append((resolved, line))
            kind = .execute(flow: resolved)
        case "handover":
            var handback = true
            if let node = raw["handback"] {
                if let value = node.bool { handback = value } else { problem(node, "node '\(id)': handback must be true or false") }
            }
            kind = .handover(Handover(
                text: template(raw["text"], what: "node '\(id)': text", required: false, at: item),
                queueId: raw["queueId"]?.string, handback: handback,
                waitingText: template(raw["waitingText"], what: "node '\(id)': waitingText", required: false, at: item)))
        case "end":
            kind = .end(text: template(raw["text"], what: "node '\(id)': text", required: false, at: item))
        default:  // typing
            var seconds: Int?
            if let node = raw["thinkingSeconds"] {
                if let value = node.int, (1...600).contains(value) { seconds = value } else { problem(node, "node '\(id)': thinkingSeconds must be 1 to 600") }
            }
            kind = .typing(thinkingSeconds: seconds)
        }
        return FlowNode(id: id, line: line, kind: kind, next: next)
    }

    private mutating func readSay(_ raw: [String: Node], id: String, at item: Node) -> Say? {
        let text = template(raw["text"], what: "node '\(id)': text", required: false, at: item)
        let quickReplies = raw["quickReplies"].map { choices($0, id: id) } ?? []
        var buttons: [Say.Button] = []
        if let list = raw["buttons"] {
            for entry in sequence(list, what: "buttons") {
                guard let fields = fields(entry, known: ["title", "payload", "url", "phone"], what: "a button"),
                      let title = template(fields["title"], what: "node '\(id)': button title", required: true, at: entry) else { continue }
                if let payload = fields["payload"]?.string { buttons.append(.init(title: title, action: .postback(payload))) }
                else if let url = fields["url"]?.string { buttons.append(.init(title: title, action: .url(url))) }
                else if let phone = fields["phone"]?.string { buttons.append(.init(title: title, action: .phone(phone))) }
                else { problem(entry, "node '\(id)': a button needs payload, url or phone") }
            }
        }
        var card: TemplatedJSON?
        if let node = raw["adaptiveCard"] {
            let value = json(node)
            if value["type"]?.stringValue != "AdaptiveCard" { problem(node, "node '\(id)': adaptiveCard must have type: AdaptiveCard") }
            do { card = try TemplatedJSON(value) } catch { problem(node, "node '\(id)': \(Template.describe(error))") }
        }
        var attachment: Say.Attachment?
        if let node = raw["attachment"] {
            let fields = fields(node, known: ["url", "fileName"], what: "an attachment") ?? [:]
            // A whole address from a value needs {{{…}}}: in {{…}} it would be percent-encoded.
            if let text = fields["url"]?.string, text.hasPrefix("{{"), !text.hasPrefix("{{{"), !text.hasPrefix("{{&") {
                problem(fields["url"], "node '\(id)': attachment url starts with a value in {{…}}, which is percent-encoded as one part of the address; a whole address needs {{{…}}}")
            }
            if let url = template(fields["url"], what: "node '\(id)': attachment url", required: true, at: node, kind: .url) {
                attachment = .init(url: url, fileName: fields["fileName"]?.string)
            }
        }
        if text == nil && quickReplies.isEmpty && buttons.isEmpty && card == nil && attachment == nil && raw["text"] == nil {
            problem(item, "node '\(id)': say needs text, quickReplies, buttons, adaptiveCard or attachment")
        }
        return Say(text: text, quickReplies: quickReplies, buttons: buttons, adaptiveCard: card, attachment: attachment)
    }

    private mutating func readCase(_ item: Node, targets: inout [(String, Node)]) -> Branch? {
        guard let map = item.mapping else {
            problem(item, "a case must be a mapping with when and next")
            return nil
        }
        var when: Node?
        var next: Node?
        for (key, value) in map {
            switch key.string {
            case "when": when = value
            case "next": next = value
            default: problem(key, "unknown field '\(key.string ?? "?")' in a case (use when and next)")
            }
        }
        guard let when, let next, let target = next.string else {
            problem(item, "a case needs when and next")
            return nil
        }
        targets.append((target, next))
        guard let condition = condition(when, id: "case") else { return nil }
        return Branch(condition: condition, target: target, line: item.mark?.line ?? 1)
    }

    // MARK: - Conditions

    static let comparisons: Set<String> = ["exists", "equals", "notEquals", "greaterThan", "lessThan", "contains", "matches"]

    private mutating func condition(_ node: Node, id: String) -> Condition? {
        guard let map = node.mapping, !map.isEmpty else {
            problem(node, "node '\(id)': a condition must be a mapping such as {intent: balance} or {textContains: [agent]}")
            return nil
        }
        let raw = Dictionary(map.map { ($0.key.string ?? "", $0.value) }, uniquingKeysWith: { first, _ in first })
        let operands = raw.keys.filter { !Self.comparisons.contains($0) }
        guard operands.count == 1, let operand = operands.first, let value = raw[operand] else {
            problem(node, "node '\(id)': a condition needs exactly one of textContains, textMatches, intent, kind, context, slot, input, profile, any, all, not")
            return nil
        }
        switch operand {
        case "textContains": return .textContains(strings(value, what: "textContains", at: node).map(TextNormalizer.words))
        case "textMatches": return regex(value, id: id).map(Condition.textMatches)
        case "intent":
            let names = strings(value, what: "intent", at: node)
            intentReferences += names.map { ($0, value.mark?.line ?? 1, value.mark?.column ?? 1) }
            return .intent(names)
        case "kind":
            let kinds = strings(value, what: "kind", at: node)
            for kind in kinds where NormalizedEvent.Kind(rawValue: kind) == nil {
                problem(value, "node '\(id)': unknown input kind '\(kind)'")
            }
            return .kind(kinds)
        case "any", "all":
            let list = sequence(value, what: operand).compactMap { condition($0, id: id) }
            return operand == "any" ? .any(list) : .all(list)
        case "not": return condition(value, id: id).map(Condition.not)
        case "context", "slot", "input", "profile":
            guard let name = value.string, !name.isEmpty else {
                problem(value, "node '\(id)': \(operand) needs a path")
                return nil
            }
            let path = name.split(separator: ".").map(String.init)
            let source: Condition.ValueSource = switch operand {
            case "context": .context(path)
            case "slot": .slot(name)
            case "input": .input(path)
            default: .profile(path)
            }
            let compared = raw.keys.filter(Self.comparisons.contains)
            guard compared.count <= 1 else {
                problem(node, "node '\(id)': use one comparison per condition (\(compared.sorted().joined(separator: ", ")))")
                return nil
            }
            guard let key = compared.first, let operandNode = raw[key] else { return .value(source, .exists(true)) }
            switch key {
            case "exists":
                guard let flag = operandNode.bool else { problem(operandNode, "node '\(id)': exists must be true or false"); return nil }
                return .value(source, .exists(flag))
            case "equals": return .value(source, .equals(json(operandNode)))
            case "notEquals": return .value(source, .notEquals(json(operandNode)))
            case "greaterThan", "lessThan":
                guard let number = operandNode.float else { problem(operandNode, "node '\(id)': \(key) needs a number"); return nil }
                return .value(source, key == "greaterThan" ? .greaterThan(number) : .lessThan(number))
            case "contains":
                guard let text = operandNode.string else { problem(operandNode, "node '\(id)': contains needs a text"); return nil }
                return .value(source, .contains(text))
            default:
                return regex(operandNode, id: id).map { .value(source, .matches($0)) }
            }
        default:
            problem(node, "node '\(id)': unknown condition '\(operand)'")
            return nil
        }
    }

    // MARK: - Values

    /// A key written twice in one mapping: one of the two would be lost without a word (a
    /// node's second `next`, a second `nodes:` list), so each repeat is a problem.
    private mutating func duplicateKeys(in node: Node) {
        switch node {
        case .mapping(let mapping):
            var seen: [String: Int] = [:]
            for (key, value) in mapping {
                if let name = key.string {
                    if let first = seen[name] {
                        problem(key, "'\(name)' is written twice in one mapping (first on line \(first))")
                    } else {
                        seen[name] = key.mark?.line ?? 1
                    }
                }
                duplicateKeys(in: value)
            }
        case .sequence(let sequence):
            for item in sequence { duplicateKeys(in: item) }
        case .scalar:
            break
        }
    }

    private mutating func fields(_ node: Node, known: Set<String>, what: String) -> [String: Node]? {
        guard let map = node.mapping else {
            problem(node, "\(what) must be a mapping")
            return nil
        }
        var result: [String: Node] = [:]
        for (key, value) in map {
            let name = key.string ?? ""
            if !known.contains(name) { problem(key, "unknown field '\(name)' in \(what)") }
            result[name] = value
        }
        return result
    }

    private mutating func sequence(_ node: Node, what: String) -> [Node] {
        guard let list = node.sequence else {
            problem(node, "\(what) must be a list")
            return []
        }
        return Array(list)
    }

    private mutating func string(_ node: Node?, what: String, at parent: Node) -> String? {
        guard let node else {
            problem(parent, "\(what) is missing")
            return nil
        }
        guard node.scalar != nil, let value = node.string, !value.isEmpty else {
            problem(node, "\(what) must be a non-empty text")
            return nil
        }
        return value
    }

    /// One text or a list of texts.
    private mutating func strings(_ node: Node?, what: String, at parent: Node) -> [String] {
        guard let node else { return [] }
        if let list = node.sequence {
            return list.compactMap { string($0, what: what, at: node) }
        }
        return string(node, what: what, at: parent).map { [$0] } ?? []
    }

    private mutating func template(_ node: Node?, what: String, required: Bool, at parent: Node, kind: Template.Kind = .text) -> Template? {
        guard let node else {
            if required { problem(parent, "\(what) is missing") }
            return nil
        }
        guard node.scalar != nil, let text = node.string else {
            problem(node, "\(what) must be a text")
            return nil
        }
        do {
            return try Template(text, kind: kind)
        } catch {
            problem(node, "\(what): \(Template.describe(error))")
            return nil
        }
    }

    private mutating func regex(_ node: Node, id: String) -> Pattern? {
        guard let source = node.string else {
            problem(node, "node '\(id)': a regular expression must be a text")
            return nil
        }
        if Pattern.hasNestedRepetition(source) {
            problem(node, "node '\(id)': regular expression '\(source)' repeats a group that repeats itself, as (a+)* does: "
                + "matching it can take exponential time on a user's text; write it without the nesting (e.g. [\\d,]+ for (\\d+,)*)")
            return nil
        }
        do {
            return try Pattern(source)
        } catch {
            problem(node, "node '\(id)': invalid regular expression '\(source)'")
            return nil
        }
    }

    private mutating func path(_ node: Node, id: String) -> [String]? {
        guard let text = node.string, !text.isEmpty else {
            problem(node, "node '\(id)': a context path must be a text such as user.email")
            return nil
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !parts.contains(where: \.isEmpty) else {
            problem(node, "node '\(id)': '\(text)' is not a context path")
            return nil
        }
        return parts.first == "context" && parts.count > 1 ? Array(parts.dropFirst()) : parts
    }

    /// A choice's payload is what a tap sends and an answer is matched against; it is never
    /// rendered, so a title with `{{…}}` needs one of its own (the tap would send the tags).
    private mutating func choices(_ node: Node, id: String) -> [Say.Choice] {
        sequence(node, what: "node '\(id)': choices").compactMap { entry in
            if entry.scalar != nil, let title = entry.string {
                if title.contains("{{") { problem(entry, "node '\(id)': a choice whose title is a template needs a payload ({ title: …, payload: … })") }
                return template(entry, what: "node '\(id)': choice", required: true, at: entry).map { Say.Choice(title: $0, payload: title) }
            }
            guard let fields = fields(entry, known: ["title", "payload"], what: "a choice"),
                  let title = template(fields["title"], what: "node '\(id)': choice title", required: true, at: entry) else { return nil }
            if fields["payload"] == nil, title.source.contains("{{") {
                problem(entry, "node '\(id)': a choice whose title is a template needs a payload ({ title: …, payload: … })")
            }
            return Say.Choice(title: title, payload: fields["payload"]?.string ?? title.source)
        }
    }

    /// A YAML value as JSON (scalars typed the way YAML resolves them).
    private func json(_ node: Node) -> JSONValue {
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain {
                if let value = node.null, value == NSNull() { return .null }
                if let value = node.bool { return .bool(value) }
                if let value = node.int { return .number(Double(value)) }
                if let value = node.float { return .number(value) }
            }
            return .string(scalar.string)
        case .sequence(let list): return .array(list.map(json))
        case .mapping(let map): return .object(Dictionary(map.map { ($0.key.string ?? "", json($0.value)) }, uniquingKeysWith: { first, _ in first }))
        }
    }

    /// A path in a flow file, relative to the file that names it.
    static func resolve(_ path: String, relativeTo file: String) -> String {
        if path.hasPrefix("/") { return path }
        let directory = (file as NSString).deletingLastPathComponent
        return directory.isEmpty ? path : (directory as NSString).appendingPathComponent(path)
    }
}
