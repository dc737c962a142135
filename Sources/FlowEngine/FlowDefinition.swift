public import ChatEvents
import Foundation
import Mustache

/// A conversation flow read from a YAML file (`schemas/flow.v1.schema.json`). Nodes are
/// addressed by id; a node without `next` ends the turn, and the next input starts again at
/// `start` unless a question is waiting for it, as in a Cognigy flow.
public struct Flow: Sendable {
    public var name: String
    /// The file it was read from (as given), for messages.
    public var source: String
    public var start: String
    public var nodes: [String: FlowNode]
    /// Node ids in file order.
    public var order: [String]
    public var intents: IntentMatcher
    /// Checked on every input before anything else, also while a question waits: "agent",
    /// "bye" and the like work anywhere in the conversation.
    public var interrupts: [Branch]
    /// Other flows `execute` nodes name (paths resolved relative to this file), with the line.
    public var executes: [(path: String, line: Int)]
    /// The intents conditions name, where they name them.
    public var intentReferences: [(name: String, line: Int, column: Int)] = []
}

public struct FlowNode: Sendable {
    public var id: String
    public var line: Int
    public var kind: Kind
    public var next: String?

    public enum Kind: Sendable {
        case say(Say)
        case question(Question)
        /// `if` (two cases) and `switch` (any number): the first case whose condition holds.
        case branch(cases: [Branch], otherwise: String?)
        case set(SetContext)
        case goto(String)
        /// Runs another flow from its start, then comes back to this node's `next`.
        case execute(flow: String)
        case handover(Handover)
        case end(text: Template?)
        /// `typing` (no seconds) or `thinking` for up to `thinkingSeconds`.
        case typing(thinkingSeconds: Int?)
    }

    /// The node kinds as they are spelled in a flow file.
    public static let kindNames = ["say", "question", "if", "switch", "set", "goto", "execute", "handover", "end", "typing"]
}

public struct Branch: Sendable {
    public var condition: Condition
    public var target: String
    public var line: Int
}

/// What a `say` node sends: each present part, in one 8x8 message where 8x8 can carry them
/// together (text with quick replies), otherwise one message per part.
public struct Say: Sendable {
    public var text: Template?
    public var quickReplies: [Choice]
    public var buttons: [Button]
    /// An Adaptive Card (emitted as version 1.3); strings in it may be templates.
    public var adaptiveCard: TemplatedJSON?
    public var attachment: Attachment?

    public struct Choice: Sendable {
        public var title: Template
        public var payload: String
    }

    public struct Button: Sendable {
        public enum Action: Sendable { case postback(String), url(String), phone(String) }
        public var title: Template
        public var action: Action
    }

    public struct Attachment: Sendable {
        public var url: Template
        public var fileName: String?
    }
}

public struct Question: Sendable {
    public enum AnswerType: String, Sendable, CaseIterable {
        case text, yesNo, number, email, phone, iban, options, regex
    }
    public var text: Template
    public var type: AnswerType
    public var options: [Say.Choice]
    public var pattern: Pattern?
    /// Context path the accepted answer is stored at.
    public var store: [String]
    public var reprompt: Template?
    /// Failed answers before `escalate` (when set) takes over.
    public var maxAttempts: Int
    public var escalate: String?
}

public struct SetContext: Sendable {
    public var set: [(path: [String], value: TemplatedJSON)]
    public var increment: [(path: [String], by: Double)]
    public var unset: [[String]]
}

public struct Handover: Sendable {
    /// Said before the conversation moves to the queue.
    public var text: Template?
    /// The 8x8 queue; the endpoint's `handover.queueId` when absent.
    public var queueId: String?
    /// After the agent leaves: true continues this flow at `next` (the bot takes the
    /// conversation back), false ends the conversation.
    public var handback: Bool
    /// Said again when the user writes while waiting in the queue.
    public var waitingText: Template?
}

/// A condition of `if`, `switch` and `interrupts`.
public indirect enum Condition: Sendable {
    /// The input text contains one of these phrases (case- and diacritic-insensitive, whole
    /// words), each kept as its normalized words.
    case textContains([[String]])
    case textMatches(Pattern)
    case intent([String])
    /// The input's event kind (`userMessage`, `postback`, `cardSubmit`, `conversationState`, ...).
    case kind([String])
    case value(ValueSource, Comparison)
    case any([Condition])
    case all([Condition])
    case not(Condition)

    public enum ValueSource: Sendable, Hashable {
        case context([String])
        case slot(String)
        case input([String])
        case profile([String])
    }

    public enum Comparison: Sendable {
        case exists(Bool)
        case equals(JSONValue)
        case notEquals(JSONValue)
        case greaterThan(Double)
        case lessThan(Double)
        case contains(String)
        case matches(Pattern)
    }
}

/// A compiled regular expression with its source.
public struct Pattern: @unchecked Sendable {
    public let source: String
    let regex: NSRegularExpression

    public init(_ source: String) throws {
        self.source = source
        regex = try NSRegularExpression(pattern: source)
    }

    public func matches(_ text: String) -> Bool {
        firstMatch(in: text, range: NSRange(location: 0, length: min(text.utf16.count, Self.maxInput))) != nil
    }

    /// True when the whole text matches.
    public func matchesWhole(_ text: String) -> Bool {
        let length = text.utf16.count
        guard length <= Self.maxInput, let match = firstMatch(in: text, range: NSRange(location: 0, length: length)) else { return false }
        return match.range.location == 0 && match.range.length == length
    }

    /// The first match, or nil when there is none or the matcher gave up: a search still
    /// running after `matchBudget` (CPU time) stops. Backtracking
    /// that explodes in a way the check at load time does not see (`(a|a)*b`, or
    /// `.*refund.*order`, cubic: 16 s over 4,096 characters here) then costs the budget, not
    /// the worker's partitions.
    func firstMatch(in text: String, range: NSRange) -> NSTextCheckingResult? {
        Self.matchBudget.matches(of: regex, in: text, range: range, first: true).matches.first
    }

    /// How much CPU time one search may take; a text it does not finish with counts as not
    /// matching.
    static let matchBudget = RegexBudget(.milliseconds(50))

    /// Whether a group holding an unbounded repetition (`*`, `+`, `{n,}`) is itself repeated
    /// (`*`, `+`, `{n,}`, `{n,m}` with m > 1), as in `(a+)*` or `(\w+\s?)*`: the shape whose
    /// backtracking can take exponential time. Character classes and escapes are skipped;
    /// a repeated group counts as a repetition inside the group around it.
    static func hasNestedRepetition(_ pattern: String) -> Bool {
        let scalars = Array(pattern.unicodeScalars)
        /// The length of a repetition operator at `index` (0: none), and whether it is unbounded
        /// (`*`, `+`, `{n,}`) or repeats at most a few times (`{n,m}`: m > 1 counts as a repeat).
        func repetition(at index: Int) -> (length: Int, unbounded: Bool, repeats: Bool) {
            guard index < scalars.count else { return (0, false, false) }
            switch scalars[index] {
            case "*", "+": return (1, true, true)
            case "?": return (1, false, false)
            case "{":
                var end = index + 1
                while end < scalars.count, scalars[end] != "}" { end += 1 }
                guard end < scalars.count else { return (0, false, false) }
                let body = String(String.UnicodeScalarView(scalars[(index + 1)..<end]))
                let parts = body.split(separator: ",", omittingEmptySubsequences: false)
                guard (1...2).contains(parts.count), parts.allSatisfy({ $0.allSatisfy(\.isNumber) }), !parts[0].isEmpty else { return (0, false, false) }
                let unbounded = parts.count == 2 && parts[1].isEmpty
                return (end - index + 1, unbounded, unbounded || (Int(parts.last!) ?? 0) > 1)
            default: return (0, false, false)
            }
        }
        var groups: [Bool] = []  // per open group: it holds an unbounded repetition
        var index = 0
        var inClass = false
        while index < scalars.count {
            let scalar = scalars[index]
            if scalar == "\\" { index += 2; continue }
            if inClass {
                if scalar == "]" { inClass = false }
                index += 1
                continue
            }
            switch scalar {
            case "[": inClass = true
            case "(":
                groups.append(false)
                if index + 1 < scalars.count, scalars[index + 1] == "?" { index += 1 }  // (?: (?i) (?= ...
            case ")":
                let inner = groups.popLast() ?? false
                let after = repetition(at: index + 1)
                if inner && after.repeats { return true }
                if !groups.isEmpty, inner || after.unbounded { groups[groups.count - 1] = true }
                index += max(after.length, 0)
            default:
                let found = repetition(at: index)
                if found.length > 0 {
                    if found.unbounded, !groups.isEmpty { groups[groups.count - 1] = true }
                    index += found.length
                    continue
                }
            }
            index += 1
        }
        return false
    }

    /// A pattern looks at most this many UTF-16 units of a text: the time a backtracking
    /// pattern takes grows with the text (see `nestedQuantifier`).
    static let maxInput = 4_096
}

/// A text that may contain Mustache tags over `input`, `context` and `profile`. Plain text is
/// kept as is and costs nothing to render.
public struct Template: Sendable {
    public let source: String
    let compiled: MustacheTemplate?

    /// What a rendered value is inserted into.
    public enum Kind: Sendable {
        /// Chat text, which is not HTML: nothing is escaped.
        case text
        /// A URL the egress downloads: `{{x}}` is percent-encoded as one component (a user's
        /// `../admin?` cannot leave the path the author wrote), `{{{x}}}` goes in as it is (a
        /// whole address the flow holds).
        case url
    }

    public init(_ source: String, kind: Kind = .text) throws {
        self.source = source
        if source.contains("{{") {
            compiled = try MustacheTemplate(string: (kind == .url ? Self.urlPragma : Self.pragma) + source)
        } else {
            compiled = nil
        }
    }

    public func render(_ scope: TemplateScope) -> String {
        guard let compiled else { return source }
        return compiled.render(scope.root)
    }

    static let pragma = "{{% CONTENT_TYPE: TEXT}}"
    static let urlPragma: String = {
        MustacheContentTypes.register(URLComponentContentType(), named: "CONNECTOR_URL_COMPONENT")
        return "{{% CONTENT_TYPE: CONNECTOR_URL_COMPONENT}}"
    }()

    /// Percent-encodes all but RFC 3986's unreserved characters, and the dots of a value that
    /// is only dots (a `..` path segment).
    struct URLComponentContentType: MustacheContentType {
        func escapeText(_ text: String) -> String {
            var out = ""
            out.reserveCapacity(text.utf8.count)
            let onlyDots = text.utf8.allSatisfy { $0 == UInt8(ascii: ".") }
            for byte in text.utf8 {
                switch byte {
                case UInt8(ascii: "."):
                    out += onlyDots ? "%2E" : "."
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                     UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "~"):
                    out.unicodeScalars.append(Unicode.Scalar(byte))
                default:
                    out.unicodeScalars.append("%")
                    out.unicodeScalars.append(Self.hexDigit(byte >> 4))
                    out.unicodeScalars.append(Self.hexDigit(byte & 0x0F))
                }
            }
            return out
        }

        static func hexDigit(_ value: UInt8) -> Unicode.Scalar {
            Unicode.Scalar(value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "A") + value - 10)
        }
    }

    /// A template parse error in the author's terms (column within their text).
    static func describe(_ error: any Error) -> String {
        guard let error = error as? MustacheTemplate.ParserError else { return "template error: \(error)" }
        let reason = switch error.error as? MustacheTemplate.Error {
        case .sectionCloseNameIncorrect?: "a section is closed with the wrong name"
        case .unfinishedName?: "a tag is not closed with }}"
        case .expectedSectionEnd?: "a {{#section}} or {{^section}} is never closed"
        case .invalidSetDelimiter?: "invalid delimiter change"
        default: "\(error.error)"
        }
        let column = error.context.lineNumber == 1 ? max(1, error.context.columnNumber - pragma.count) : error.context.columnNumber
        return "template error: \(reason) (template line \(error.context.lineNumber), column \(column))"
    }
}

/// A JSON value whose strings may be templates (an Adaptive Card, a `set` value).
public struct TemplatedJSON: Sendable {
    public let value: JSONValue
    let templates: [String: Template]

    public init(_ value: JSONValue) throws {
        self.value = value
        var templates: [String: Template] = [:]
        func collect(_ value: JSONValue) throws {
            switch value {
            case .string(let text) where text.contains("{{"): templates[text] = try Template(text)
            case .array(let items): for item in items { try collect(item) }
            case .object(let members): for member in members.values { try collect(member) }
            default: break
            }
        }
        try collect(value)
        self.templates = templates
    }

    public func render(_ scope: TemplateScope) -> JSONValue {
        templates.isEmpty ? value : render(value, scope)
    }

    private func render(_ value: JSONValue, _ scope: TemplateScope) -> JSONValue {
        switch value {
        case .string(let text): templates[text].map { .string($0.render(scope)) } ?? value
        case .array(let items): .array(items.map { render($0, scope) })
        case .object(let members): .object(members.mapValues { render($0, scope) })
        default: value
        }
    }
}
