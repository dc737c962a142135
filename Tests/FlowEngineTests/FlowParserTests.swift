import Foundation
import Testing
@testable import FlowEngine

@Suite("Flow validation")
struct FlowParserTests {
    @Test("the shipped demo flow is valid")
    func demoFlowIsValid() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let library = try FlowLibrary.load(path: root.appendingPathComponent("flows/demo.yaml").path)
        #expect(library.main.nodes.count >= 8)
        #expect(library.main.intents.intents.map(\.name).contains("balance"))
    }

    @Test("the schema's example flows are valid")
    func exampleFlowsAreValid() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let folder = root.appendingPathComponent("schemas/flow-examples")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }
        #expect(!files.isEmpty)
        for file in files { _ = try FlowLibrary.load(path: folder.appendingPathComponent(file).path) }
    }

    @Test("an unknown node kind is reported with its line")
    func unknownKind() {
        let problems = parseProblems("""
            nodes:
              - id: a
                type: say
                text: hi
                next: b
              - id: b
                type: dance
            """)
        #expect(problems.count == 1)
        #expect(problems[0].line == 7)
        #expect(problems[0].message.contains("unknown node type 'dance'"))
    }

    @Test("a key written twice in one mapping is reported at the repeat, with the first one's line; an undefined alias at its line")
    func duplicateKeysAndAliases() {
        let problems = parseProblems("""
            nodes:
              - id: a
                next: b
                text: hi
                type: say
                next: c
              - { id: b, type: say, text: bye, next: c }
              - id: c
                type: say
                text: "{{name}}"
                text: other
            """)
        #expect(problems.map(\.line) == [6, 11], "\(problems)")
        #expect(problems.first?.message == "'next' is written twice in one mapping (first on line 3)")
        #expect(problems.last?.message == "'text' is written twice in one mapping (first on line 10)")
        let alias = parseProblems("""
            nodes:
              - id: a
                type: say
                text: *missing
            """)
        #expect(alias.count == 1 && alias[0].line == 4 && alias[0].message.hasPrefix("YAML: "), "\(alias)")
        #expect(alias.first.map { !$0.message.contains("\n") } == true, "one line")
        // A mapping reached twice through an alias has its repeated key reported once.
        let twice = parseProblems("""
            nodes:
              - { id: a, type: say, text: hi, next: b }
              - id: b
                type: say
                text: &greeting { en: hello, en: hi }
                next: c
              - { id: c, type: say, text: *greeting }
            """)
        #expect(twice.filter { $0.message.hasPrefix("'en' is written twice") }.map(\.line) == [5], "\(twice)")
    }

    @Test("a missing target is reported where it is named")
    func missingTarget() {
        let problems = parseProblems("""
            nodes:
              - id: a
                type: if
                condition: { intent: balance }
                then: nowhere
                else: a
            """)
        #expect(problems.map(\.line) == [5])
        #expect(problems[0].message.contains("target 'nowhere'"))
    }

    @Test("a regular expression that repeats a repeating group is refused at load: its matching can take exponential time")
    func nestedRepetitionIsRefused() {
        let problems = parseProblems("""
            nodes:
              - id: a
                type: if
                condition: { textMatches: "^(\\\\w+\\\\s?)*$" }
                then: b
              - { id: b, type: say, text: ok }
            """)
        #expect(problems.count == 1)
        #expect(problems.first?.message.contains("repeats a group that repeats itself") == true, "\(problems)")
        for pattern in ["(a+)*", "((ab)*c)+", "(a*){2,}", "(?:x|y+){1,5}"] {
            #expect(Pattern.hasNestedRepetition(pattern), "\(pattern)")
        }
        for pattern in ["^ORD-[0-9]{6}$", "(ab)+", "(a|b)*", "\\(a+\\)*", "[(a+)]*", "(?:a+)?", "^order \\d+$", "(a+){1}"] {
            #expect(!Pattern.hasNestedRepetition(pattern), "\(pattern)")
        }
    }

    @Test("a condition naming an intent the main flow does not declare is reported where it is named, in an executed flow too")
    func unknownIntent() {
        #expect {
            _ = try engine("""
                intents:
                  - { name: balance, examples: [what is my balance] }
                nodes:
                  - id: a
                    type: if
                    condition: { intent: balanse }
                    then: b
                    else: c
                  - { id: b, type: execute, flow: sub.yaml }
                  - { id: c, type: say, text: c }
                """, others: ["sub.yaml": "nodes:\n  - id: s\n    type: if\n    condition: { intent: [balance, refund] }\n    then: t\n  - { id: t, type: say, text: t }\n"])
        } throws: { error in
            let problems = (error as? FlowLoadError)?.problems ?? []
            return problems.count == 2 && problems.contains { $0.line == 6 && $0.message.contains("intent 'balanse' is not one of the intents") }
                && problems.contains { $0.file.hasSuffix("sub.yaml") && $0.line == 4 && $0.message.contains("intent 'refund'") }
        }
    }

    @Test("a loop of nodes that never waits for the user is reported at its first node; a loop through a question or a condition is not")
    func loopsWithoutWaiting() {
        let problems = parseProblems("""
            nodes:
              - { id: hello, type: say, text: hi, next: again }
              - { id: again, type: set, set: { n: 1 }, next: jump }
              - { id: jump, type: goto, target: again }
              - { id: counted, type: set, increment: { n: 1 }, next: check }
              - { id: check, type: if, condition: { context: n, lessThan: 3 }, then: counted, else: ask }
              - { id: ask, type: question, text: Again?, answer: yesNo, store: again, next: ask2 }
              - { id: ask2, type: say, text: ok, next: ask }
            start: hello
            interrupts:
              - { when: { textContains: [count] }, next: counted }
            """)
        #expect(problems.map(\.line) == [3])
        #expect(problems.first?.message == "nodes 'again' > 'jump' > 'again' loop without waiting for the user (no question, condition, handover or end on the way)")
        #expect(parseProblems("""
            nodes:
              - { id: me, type: goto, target: me }
            """).map(\.message) == ["nodes 'me' > 'me' loop without waiting for the user (no question, condition, handover or end on the way)"])
    }

    @Test("a choice whose title is a template needs a payload: a tap sends the payload, and tags are not rendered there")
    func templatedChoicesNeedPayloads() {
        let problems = parseProblems("""
            nodes:
              - id: pay
                type: say
                text: Pay?
                quickReplies: ["Pay {{context.amount}}", { title: "Pay {{context.amount}} later" }, { title: "Pay {{context.amount}} now", payload: now }, Cancel]
            """)
        #expect(problems.map(\.line) == [5, 5])
        #expect(problems.allSatisfy { $0.message == "node 'pay': a choice whose title is a template needs a payload ({ title: …, payload: … })" })
    }

    @Test("an attachment url that starts with a {{value}} (percent-encoded as one part) is reported, pointing to {{{value}}}")
    func attachmentURLFromAWholeValue() {
        let problems = parseProblems("""
            nodes:
              - { id: a, type: say, attachment: { url: "{{context.fileUrl}}" }, next: b }
              - { id: b, type: say, attachment: { url: "{{{context.fileUrl}}}" } }
            """)
        #expect(problems.map(\.line) == [2])
        #expect(problems.first?.message.hasSuffix("a whole address needs {{{…}}}") == true, "\(problems)")
    }

    @Test("unreachable nodes are reported at their line")
    func unreachable() {
        let problems = parseProblems("""
            nodes:
              - id: a
                type: say
                text: hi
              - id: orphan
                type: say
                text: never
            """)
        #expect(problems.map(\.line) == [5])
        #expect(problems[0].message == "node 'orphan' is unreachable")
    }

    @Test("unreachable nodes are still reported beside a broken node, and what the broken node mentions counts as reached")
    func unreachableBesideBrokenNodes() {
        let problems = parseProblems("""
            interrupts:
              - when: { textMatches: "([" }
                next: help
            nodes:
              - id: a
                type: say
                text: hi
                next: broken
              - id: broken
                type: sayy
                next: b
              - id: b
                type: say
                text: reached through the broken node
              - id: help
                type: say
                text: reached through the broken interrupt
              - id: orphan
                type: say
                text: never
            """)
        #expect(problems.map(\.message).filter { $0.hasSuffix("unreachable") } == ["node 'orphan' is unreachable"])
        #expect(problems.contains { $0.line == 18 && $0.message.hasSuffix("unreachable") })
        #expect(problems.contains { $0.line == 10 && $0.message.contains("unknown node type 'sayy'") })
        #expect(problems.contains { $0.line == 2 && $0.message.contains("regular expression") })
    }

    @Test("an interrupt target counts as reachable")
    func interruptsReach() {
        #expect(parseProblems("""
            interrupts:
              - when: { textContains: bye }
                next: bye
            nodes:
              - id: a
                type: say
                text: hi
              - id: bye
                type: end
            """).isEmpty)
    }

    @Test("invalid regular expressions in conditions and questions are reported")
    func invalidRegex() {
        let problems = parseProblems("""
            nodes:
              - id: a
                type: if
                condition: { textMatches: "([a-z" }
                then: q
              - id: q
                type: question
                text: Code?
                answer: regex
                pattern: "**"
            """)
        #expect(problems.map(\.line) == [4, 10])
        #expect(problems.allSatisfy { $0.message.contains("invalid regular expression") })
    }

    @Test("template errors are reported with the template's column")
    func templateErrors() {
        let problems = parseProblems("""
            nodes:
              - id: a
                type: say
                text: "Hello {{#input.text}}"
            """)
        #expect(problems.count == 1)
        #expect(problems[0].line == 4)
        #expect(problems[0].message.contains("never closed"))
    }

    @Test("unknown fields, missing required fields and bad values are reported")
    func fieldProblems() {
        let problems = parseProblems("""
            nodes:
              - id: a
                type: say
                txt: hi
              - type: say
                text: no id
              - id: q
                type: question
                answer: colour
                maxAttempts: 0
            """)
        let messages = problems.map(\.message).joined(separator: "\n")
        #expect(messages.contains("unknown field 'txt'"))
        #expect(messages.contains("node id is missing"))
        #expect(messages.contains("answer must be one of"))
        #expect(messages.contains("maxAttempts must be"))
        #expect(messages.contains("text is missing"))
    }

    @Test("a YAML syntax error is reported with its line")
    func yamlSyntax() {
        let problems = parseProblems("""
            nodes:
              - id: a
                type: say
                text: "unterminated
            """)
        #expect(problems.count == 1)
        #expect(problems[0].message.hasPrefix("YAML:"))
        #expect(problems[0].line >= 4)
    }

    @Test("an execute node naming a missing file is reported at its line")
    func missingExecutedFlow() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flows-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let main = directory.appendingPathComponent("main.yaml")
        try """
            nodes:
              - id: a
                type: execute
                flow: other.yaml
            """.write(to: main, atomically: true, encoding: .utf8)
        #expect {
            try FlowLibrary.load(path: main.path)
        } throws: { error in
            guard let error = error as? FlowLoadError else { return false }
            return error.problems.count == 1 && error.problems[0].line == 2 && error.problems[0].message.contains("other.yaml")
        }
    }
}
