import Foundation
import ChatEvents
import Testing
@testable import FlowEngine

@Suite("Flow nodes")
struct NodeTests {
    @Test("say renders templates over input, context and profile")
    func sayTemplates() throws {
        var chat = Conversation(try engine("""
            nodes:
              - id: remember
                type: set
                set: { city: Berlin }
                next: hello
              - id: hello
                type: say
                text: "Hi {{profile.name}}, you said '{{input.text}}' from {{context.city}} (turn {{input.execution}}) <ok>"
            """))
        var events = Events()
        try chat.send(events.state("active", user: { var u = NormalizedEvent.UserInfo(); u.name = "Jane"; return u }()))
        let result = try chat.send(events.user("hello & welcome"))
        #expect(result.texts == ["Hi Jane, you said 'hello & welcome' from Berlin (turn 1) <ok>"])
        #expect(result.path == ["remember", "hello"])
    }

    @Test("say sends quick replies, buttons as an adaptive card, a card of version 1.3 and an attachment")
    func sayRichContent() throws {
        var chat = Conversation(try engine("""
            nodes:
              - id: rich
                type: say
                text: Pick one
                quickReplies:
                  - Yes
                  - { title: "No ({{input.text}})", payload: no-thanks }
                next: buttons
              - id: buttons
                type: say
                text: Or these
                buttons:
                  - { title: Balance, payload: balance }
                  - { title: Website, url: "https://example.com" }
                  - { title: Call us, phone: "+4930123" }
                next: card
              - id: card
                type: say
                adaptiveCard:
                  type: AdaptiveCard
                  body:
                    - { type: TextBlock, text: "Order for {{input.text}}" }
                attachment: { url: "https://files.example.com/{{input.text}}.pdf", fileName: invoice.pdf }
            """))
        var events = Events()
        let result = try chat.send(events.user("x"))
        #expect(result.outputs.count == 4)
        let quick = result.messages[0]
        #expect(quick["text"] == .string("Pick one"))
        #expect(quick["authorType"] == .string("bot"))
        let card = quick["cards"]?.arrayValue?.first
        #expect(card?["contentType"] == .string("application/8x8.quick.replies"))
        let options = card?["content"]?["options"]?.arrayValue ?? []
        #expect(options.count == 2)
        #expect(options[1]["title"] == .string("No (x)"))
        #expect(options[1]["data"]?["postback"] == .string("no-thanks"))
        #expect(options[0]["data"]?["postback"] == .string("Yes"))

        let buttons = result.messages[1]["cards"]?.arrayValue?.first?["content"]
        #expect(buttons?["version"] == .string("1.3"))
        #expect(buttons?["body"]?.arrayValue?.first?["text"] == .string("Or these"))
        let actions = buttons?["actions"]?.arrayValue ?? []
        #expect(actions.map { $0["type"]?.stringValue } == ["Action.Submit", "Action.OpenUrl", "Action.OpenUrl"])
        #expect(actions[0]["data"]?["payload"] == .string("balance"))
        #expect(actions[2]["url"] == .string("tel:+4930123"))

        let adaptive = result.messages[2]["cards"]?.arrayValue?.first
        #expect(adaptive?["contentType"] == .string("application/vnd.microsoft.card.adaptive"))
        #expect(adaptive?["content"]?["version"] == .string("1.3"))
        #expect(adaptive?["content"]?["body"]?.arrayValue?.first?["text"] == .string("Order for x"))
        #expect(result.outputs[3] == .attachment(url: "https://files.example.com/x.pdf", fileName: "invoice.pdf"))
    }

    @Test("an attachment url's {{values}} are percent-encoded (a user's text cannot leave the path the author wrote); {{{values}}} go in as they are")
    func attachmentURLsEncodeValues() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: keep, type: set, set: { base: "https://cdn.example.com/a b.png" }, next: files }
              - id: files
                type: say
                attachment: { url: "https://files.example.com/invoices/{{input.text}}.pdf?v={{input.execution}}" }
                next: whole
              - { id: whole, type: say, attachment: { url: "{{{context.base}}}" } }
            """))
        var events = Events()
        let result = try chat.send(events.user("../admin/export?all=1#x"))
        #expect(result.outputs == [
            .attachment(url: "https://files.example.com/invoices/..%2Fadmin%2Fexport%3Fall%3D1%23x.pdf?v=1", fileName: nil),
            .attachment(url: "https://cdn.example.com/a b.png", fileName: nil),
        ])
        #expect(try chat.send(events.user("..")).outputs.first == .attachment(url: "https://files.example.com/invoices/%2E%2E.pdf?v=2", fileName: nil))
        #expect(try chat.send(events.user("Zoë")).outputs.first == .attachment(url: "https://files.example.com/invoices/Zo%C3%AB.pdf?v=3", fileName: nil))
    }

    @Test("question: waits, reprompts on an invalid answer, stores a valid one and goes on")
    func questionFlow() throws {
        var chat = Conversation(try engine("""
            nodes:
              - id: ask
                type: question
                text: Your email?
                answer: email
                store: user.email
                reprompt: That is not an email.
                next: thanks
              - id: thanks
                type: say
                text: "Saved {{context.user.email}}"
            """))
        var events = Events()
        #expect(try chat.send(events.user("hi")).texts == ["Your email?"])
        #expect(chat.session?.waiting != nil)
        #expect(try chat.send(events.user("not an address")).texts == ["That is not an email."])
        #expect(chat.session?.waiting?.attempts == 1)
        #expect(try chat.send(events.user("Jane@Example.COM")).texts == ["Saved Jane@example.com"])
        #expect(chat.session?.waiting == nil)
        #expect(chat.session?.context["user"]?["email"] == .string("Jane@example.com"))
    }

    @Test("a valid answer to the waiting question wins over an interrupt that its words would trigger")
    func answerBeforeInterrupts() throws {
        var chat = Conversation(try engine("""
            interrupts:
              - { when: { textContains: [agent] }, next: human }
            nodes:
              - { id: ask, type: question, text: Email?, answer: email, store: email, next: ok }
              - { id: ok, type: say, text: "saved {{context.email}}" }
              - { id: human, type: say, text: human }
            """))
        var events = Events()
        try chat.send(events.user("hi"))
        #expect(try chat.send(events.user("real.estate.agent@corp.com")).texts == ["saved real.estate.agent@corp.com"])
        try chat.send(events.user("hi"))
        #expect(try chat.send(events.user("an agent please")).texts == ["human"])
    }

    @Test("during a free-text or yes/no question the interrupts come first: 'agent' is a request, not the answer")
    func interruptsDuringFreeTextQuestions() throws {
        var chat = Conversation(try engine("""
            interrupts:
              - { when: { textContains: [agent] }, next: human }
            nodes:
              - { id: ask, type: question, text: What happened?, store: issue, next: sure }
              - { id: sure, type: question, text: Shall I file it?, answer: yesNo, store: file, next: ok }
              - { id: ok, type: say, text: "filed {{context.issue}} {{context.file}}" }
              - { id: human, type: say, text: human }
            """))
        var events = Events()
        try chat.send(events.user("hi"))
        #expect(try chat.send(events.user("agent")).texts == ["human"])
        #expect(chat.session?.waiting == nil)
        try chat.send(events.user("hi"))
        #expect(try chat.send(events.user("my parcel is lost")).texts == ["Shall I file it?"])
        #expect(try chat.send(events.user("no, get me an agent")).texts == ["human"])
        try chat.send(events.user("hi"))
        try chat.send(events.user("lost again"))
        #expect(try chat.send(events.user("not sure")).texts == ["Shall I file it?"], "neither yes nor no: asked again")
        #expect(AnswerValidation.yesNo("not really") == false && AnswerValidation.yesNo("not now") == false && AnswerValidation.yesNo("Not certain") == nil)
        #expect(try chat.send(events.user("yes please")).texts == ["filed lost again true"])
    }

    @Test("options: a button's payload or title as sent picks it; emoji, empty text or a folded text two options share pick none")
    func optionsWithoutLetters() throws {
        var chat = Conversation(try engine("""
            nodes:
              - id: rate
                type: question
                text: How was it?
                answer: options
                options: ["👍", "👎", "C++", "C#", { title: Track my order, payload: track }]
                store: rating
                maxAttempts: 9
                next: ok
              - { id: ok, type: say, text: "got {{context.rating}}" }
            """))
        var events = Events()
        try chat.send(events.user("hi"))
        #expect(try chat.send(events.user("👎")).texts == ["got 👎"])
        try chat.send(events.user("hi"))
        #expect(try chat.send(events.user("?")).texts == ["How was it?"])
        #expect(try chat.send(events.user("c")).texts == ["How was it?"], "C++ and C# fold alike")
        #expect(try chat.send(events.user("c#")).texts == ["got C#"])
        try chat.send(events.user("hi"))
        #expect(try chat.send(events.user("track  MY order!")).texts == ["got track"])
    }

    @Test("question: escalates after the maximum failed answers; options come as quick replies and accept postbacks")
    func questionEscalation() throws {
        var chat = Conversation(try engine("""
            nodes:
              - id: pick
                type: question
                text: Which colour?
                answer: options
                options: [Red, { title: Blue, payload: blue }]
                maxAttempts: 2
                escalate: help
                next: done
              - id: done
                type: say
                text: "You chose {{context.answers.pick}}"
              - id: help
                type: say
                text: Let me get help.
            """))
        var events = Events()
        let asked = try chat.send(events.user("hi"))
        #expect(asked.messages[0]["cards"]?.arrayValue?.first?["content"]?["options"]?.arrayValue?.count == 2)
        #expect(try chat.send(events.user("green")).texts == ["Which colour?"])
        #expect(try chat.send(events.user("purple")).texts == ["Let me get help."])
        #expect(try chat.send(events.user("hi")).texts == ["Which colour?"])
        #expect(try chat.send(events.postback("blue", title: "Blue")).texts == ["You chose blue"])
    }

    @Test("if and switch branch on text, regex, intent, kind, context and slots")
    func branching() throws {
        let flow = """
            intents:
              - { name: balance, examples: [what is my balance, check balance] }
            nodes:
              - id: route
                type: switch
                cases:
                  - { when: { kind: postback }, next: postback }
                  - { when: { textContains: [agent, human] }, next: agent }
                  - { when: { textMatches: "^order \\\\d+$" }, next: order }
                  - { when: { intent: balance }, next: balance }
                  - { when: { slot: email }, next: email }
                  - { when: { context: vip, equals: true }, next: vip }
                default: other
              - { id: postback, type: say, text: postback }
              - { id: agent, type: say, text: agent }
              - { id: order, type: say, text: order }
              - { id: balance, type: say, text: "balance {{input.intentScore}}" }
              - { id: email, type: say, text: "email {{input.slots.email}}" }
              - { id: vip, type: say, text: vip }
              - id: other
                type: if
                condition: { all: [ { input: text, contains: vip }, { not: { context: vip, exists: true } } ] }
                then: promote
                else: plain
              - { id: promote, type: set, set: { vip: true }, next: promoted }
              - { id: promoted, type: say, text: promoted }
              - { id: plain, type: say, text: plain }
            """
        var chat = Conversation(try engine(flow))
        var events = Events()
        #expect(try chat.send(events.postback("x")).texts == ["postback"])
        #expect(try chat.send(events.user("Can I talk to a HUMAN?")).texts == ["agent"])
        #expect(try chat.send(events.user("order 123")).texts == ["order"])
        #expect(try chat.send(events.user("what's my balance")).texts == ["balance 1"])
        #expect(try chat.send(events.user("write to me at jane@example.com")).texts == ["email jane@example.com"])
        #expect(try chat.send(events.user("hello")).texts == ["plain"])
        #expect(try chat.send(events.user("make me vip")).texts == ["promoted"])
        #expect(try chat.send(events.user("hello again")).texts == ["vip"])
    }

    @Test("conditions on the profile and values: any, notEquals, lessThan, matches; the flow reads input.intent")
    func valueConditions() throws {
        let flow = """
            intents:
              - { name: balance, examples: [what is my balance, check balance] }
              - { name: opening, examples: [when are you open, opening hours] }
            intentThreshold: 0.5
            nodes:
              - id: route
                type: switch
                cases:
                  - when: { any: [ { profile: company, equals: ACME }, { profile: additionalProperties.tier, equals: gold } ] }
                    next: priority
                  - { when: { context: balance, lessThan: 0 }, next: overdrawn }
                  - { when: { input: text, matches: "^#[0-9]{4}$" }, next: ticket }
                  - { when: { profile: language, notEquals: en }, next: foreign }
                default: intent
              - { id: priority, type: say, text: "priority {{profile.name}}" }
              - { id: overdrawn, type: say, text: overdrawn }
              - { id: ticket, type: say, text: ticket }
              - { id: foreign, type: say, text: "foreign {{profile.language}}" }
              - { id: intent, type: say, text: "intent={{input.intent}}" }
            """
        var events = Events()
        func user(_ configure: (inout NormalizedEvent.UserInfo) -> Void) -> NormalizedEvent.UserInfo {
            var user = NormalizedEvent.UserInfo()
            configure(&user)
            return user
        }

        var plain = Conversation(try engine(flow))
        try plain.send(events.state("active", user: user { $0.language = "en" }))
        #expect(try plain.send(events.user("when are you open?")).texts == ["intent=opening"])
        #expect(try plain.send(events.user("check my balance")).texts == ["intent=balance"])
        #expect(try plain.send(events.user("tell me a joke")).texts == ["intent="])
        #expect(try plain.send(events.user("#1234")).texts == ["ticket"])
        #expect(try plain.send(events.user("#12345")).texts == ["intent="])
        plain.session?.context["balance"] = .number(-5)
        #expect(try plain.send(events.user("hi")).texts == ["overdrawn"])
        plain.session?.context["balance"] = .number(0)
        #expect(try plain.send(events.user("hi")).texts == ["intent="])

        events.conversation = "conv-tier"
        var gold = Conversation(try engine(flow))
        try gold.send(events.state("active", user: user {
            $0.name = "Ann"
            $0.additionalProperties = [.init(key: "tier", value: "gold", id: nil)]
        }))
        #expect(try gold.send(events.user("hi")).texts == ["priority Ann"])

        events.conversation = "conv-acme"
        var acme = Conversation(try engine(flow))
        try acme.send(events.state("active", user: user { $0.name = "Bo"; $0.company = "ACME"; $0.language = "de" }))
        #expect(try acme.send(events.user("hi")).texts == ["priority Bo"])

        events.conversation = "conv-de"
        var german = Conversation(try engine(flow))
        try german.send(events.state("active", user: user { $0.language = "de" }))
        #expect(try german.send(events.user("hallo")).texts == ["foreign de"])
    }

    @Test("set, increment and unset change the context")
    func setContext() throws {
        var chat = Conversation(try engine("""
            nodes:
              - id: count
                type: set
                set: { last: "{{input.text}}", profile.tier: gold }
                increment: { visits: 1, score: 2.5 }
                unset: [temp]
                next: check
              - id: check
                type: if
                condition: { context: visits, greaterThan: 2 }
                then: reset
              - { id: reset, type: set, unset: [visits], set: { temp: x } }
            """))
        var events = Events()
        try chat.send(events.user("one"))
        #expect(chat.session?.context["visits"] == .number(1))
        #expect(chat.session?.context["last"] == .string("one"))
        #expect(chat.session?.context["profile"]?["tier"] == .string("gold"))
        try chat.send(events.user("two"))
        #expect(chat.session?.context["score"] == .number(5))
        try chat.send(events.user("three"))
        #expect(chat.session?.context["visits"] == nil)
        #expect(chat.session?.context["temp"] == .string("x"))
        try chat.send(events.user("four"))
        #expect(chat.session?.context["temp"] == nil)
        #expect(chat.session?.context["visits"] == .number(1))
    }

    @Test("numbers in texts are decimal and finite: nan, inf, 1e309 and hexadecimal floats compare as no number and count from 0")
    func numbersAreDecimalAndFinite() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: store, type: set, set: { amount: "{{input.text}}" }, next: check }
              - id: check
                type: if
                condition: { context: amount, greaterThan: 100 }
                then: big
                else: small
              - { id: big, type: say, text: "big", next: count }
              - { id: small, type: say, text: "small", next: count }
              - { id: count, type: set, set: { n: "{{input.text}}" }, next: add }
              - { id: add, type: set, increment: { n: 1 } }
            """))
        var events = Events()
        #expect(try chat.send(events.user("250")).texts == ["big"])
        #expect(chat.session?.context["n"] == .number(251))
        for text in ["nan", "inf", "1e309", "0x1p10"] {
            #expect(try chat.send(events.user(text)).texts == ["small"], "\(text)")
            #expect(chat.session?.context["n"] == .number(1), "\(text)")
        }
    }

    @Test("a question waiting in a called flow whose return node a new deployment removed starts the flow over instead of failing every answer, also when the called flow's interrupt takes the message")
    func redeployRemovedTheReturnNode() throws {
        let sub = """
            interrupts:
              - { when: { textContains: [help] }, next: help }
            nodes:
              - { id: size, type: question, text: How many?, answer: number, store: size }
              - { id: help, type: say, text: "a number, please" }
            """
        let deployed = FileManager.default.temporaryDirectory.appendingPathComponent("flows-\(UUID().uuidString)")
        var before = Conversation(try engine("""
            nodes:
              - { id: call, type: execute, flow: sub.yaml, next: back }
              - { id: back, type: say, text: "back with {{context.size}}" }
            """, others: ["sub.yaml": sub], directory: deployed))
        var events = Events()
        #expect(try before.send(events.user("go")).texts == ["How many?"])
        var after = Conversation(try engine("""
            nodes:
              - { id: call, type: execute, flow: sub.yaml, next: done }
              - { id: done, type: say, text: "done with {{context.size}}" }
            """, others: ["sub.yaml": sub], directory: deployed))
        after.session = before.session
        let waiting = before.session
        #expect(try after.send(events.user("3")).texts == ["How many?"], "started over")
        #expect(try after.send(events.user("4")).texts == ["done with 4"])
        // The called flow's interrupt would return to the removed node: the flow starts over
        // instead, and the next message goes on from there.
        after.session = waiting
        #expect(try after.send(events.user("help")).texts == ["How many?"], "started over")
        #expect(after.session?.waiting?.position.stack.first?.node == "done")
        #expect(try after.send(events.user("help")).texts == ["a number, please", "done with "], "the interrupt returns to the new node")
    }

    @Test("a flow sees at most 16,384 characters of a message, and a regular expression the first 4,096")
    func longMessagesAreCut() throws {
        var chat = Conversation(try engine("""
            nodes:
              - id: start
                type: if
                condition: { textMatches: "end$" }
                then: matched
                else: echo
              - { id: matched, type: say, text: matched }
              - { id: echo, type: say, text: "{{input.text}}" }
            """))
        var events = Events()
        let long = String(repeating: "ab ", count: 10_000)
        #expect(try chat.send(events.user(long)).texts.first?.unicodeScalars.count == TurnInput.maxTextScalars)
        #expect(try chat.send(events.user("short end")).texts == ["matched"])
        #expect(try chat.send(events.user(String(repeating: "a", count: 5_000) + " end")).texts.first?.hasPrefix("aaa") == true)
    }

    @Test("goto jumps; execute runs another flow and returns, also across a question")
    func gotoAndExecute() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: start, type: goto, target: call }
              - { id: call, type: execute, flow: sub.yaml, next: back }
              - { id: back, type: say, text: "back with {{context.answers.size}}" }
            """, others: ["sub.yaml": """
            nodes:
              - { id: intro, type: say, text: in the sub flow, next: size }
              - { id: size, type: question, text: How many?, answer: number }
            """]))
        var events = Events()
        let first = try chat.send(events.user("go"))
        #expect(first.texts == ["in the sub flow", "How many?"])
        #expect(first.path == ["start", "call", "intro", "size"])
        #expect(try chat.send(events.user("3")).texts == ["back with 3"])
    }

    @Test("an executed flow's interrupts count while its question waits, first, and go on in that flow (which returns to its caller); the main flow's count everywhere")
    func interruptsOfExecutedFlows() throws {
        var chat = Conversation(try engine("""
            interrupts:
              - { when: { textContains: [agent, skip] }, next: human }
            nodes:
              - { id: call, type: execute, flow: sub.yaml, next: back }
              - { id: back, type: say, text: "back with {{context.answers.size}}" }
              - { id: human, type: say, text: human }
            """, others: ["sub.yaml": """
            interrupts:
              - { when: { textContains: [skip] }, next: skipped }
            nodes:
              - { id: size, type: question, text: How many?, answer: number, next: thanks }
              - { id: thanks, type: say, text: thanks }
              - { id: skipped, type: set, set: { answers: { size: none } }, next: thanks }
            """]))
        var events = Events()
        #expect(try chat.send(events.user("go")).texts == ["How many?"])
        #expect(try chat.send(events.user("skip it")).texts == ["thanks", "back with none"])
        #expect(try chat.send(events.user("go")).texts == ["How many?"])
        #expect(try chat.send(events.user("an agent")).texts == ["human"])
        #expect(try chat.send(events.user("skip")).texts == ["human"], "outside the executed flow only the main flow's count")
    }

    @Test("a question, handover or end text that renders empty is not sent (8x8 refuses an empty message); a contains condition ignores case without the host's locale")
    func emptyRenderedTexts() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: route, type: if, condition: { input: text, contains: "İSTANBUL" }, then: city, else: ask }
              - { id: city, type: say, text: city }
              - { id: ask, type: question, text: "{{context.prompt}}", store: x, next: move }
              - { id: move, type: handover, text: "{{context.moving}}", queueId: q, handback: false }
            """))
        var events = Events()
        let asked = try chat.send(events.user("hi"))
        #expect(asked.outputs.isEmpty && chat.session?.waiting != nil, "the question waits without an empty message")
        let moved = try chat.send(events.user("my answer"))
        #expect(moved.outputs == [.handover(queueId: "q")])
        var again = Conversation(try engine("""
            nodes:
              - { id: route, type: if, condition: { input: text, contains: "istanbul" }, then: city, else: bye }
              - { id: city, type: say, text: city }
              - { id: bye, type: end, text: "{{context.bye}}" }
            """))
        #expect(try again.send(events.user("to ISTANBUL please")).texts == ["city"])
        #expect(try again.send(events.user("elsewhere")).outputs == [.endConversation(displayMessage: nil)])
    }

    @Test("a loop without a waiting node (through a condition, which loading lets pass) is stopped with an error")
    func loopGuard() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: a, type: if, condition: { input: text, exists: true }, then: b, else: b }
              - { id: b, type: goto, target: a }
            """))
        var events = Events()
        #expect(throws: FlowRuntimeError.self) { try chat.send(events.user("x")) }
    }

    @Test("handover, end and typing produce their outputs")
    func handoverEndTyping() throws {
        var chat = Conversation(try engine("""
            interrupts:
              - { when: { textContains: bye }, next: bye }
            nodes:
              - { id: typing, type: typing, next: think }
              - { id: think, type: typing, thinkingSeconds: 5, next: handover }
              - { id: handover, type: handover, text: Connecting you., queueId: "42", handback: false }
              - { id: bye, type: end, text: Bye! }
            """))
        var events = Events()
        let result = try chat.send(events.user("help"))
        #expect(result.outputs == [.typing, .thinking(seconds: 5), .text("Connecting you."), .handover(queueId: "42")])
        #expect(chat.session?.handover?.phase == .requested)
        var other = Conversation(chat.engine)
        events.conversation = "conv-2"
        #expect(try other.send(events.user("bye")).outputs == [.text("Bye!"), .endConversation(displayMessage: nil)])
    }

    @Test("end without a message only ends the conversation, and the next input starts the flow again")
    func endWithoutMessage() throws {
        var chat = Conversation(try engine("""
            nodes:
              - { id: hello, type: say, text: "hello {{input.text}}", next: done }
              - { id: done, type: end }
            """))
        var events = Events()
        let first = try chat.send(events.user("one"))
        #expect(first.outputs == [.text("hello one"), .endConversation(displayMessage: nil)])
        #expect(try chat.send(events.user("two")).outputs == [.text("hello two"), .endConversation(displayMessage: nil)])
    }
}
