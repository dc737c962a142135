import Foundation
import ChatEvents
import Testing
@testable import FlowEngine

@Suite("Answer validation")
struct AnswerValidationTests {
    @Test("yes and no in several forms", arguments: [
        ("yes", true), ("Yes please", true), ("yep", true), ("OK", true), ("ja", true),
        ("no", false), ("No thanks", false), ("nope", false), ("nein", false),
    ])
    func yesNo(_ text: String, _ expected: Bool) {
        #expect(AnswerValidation.yesNo(text) == expected)
    }

    @Test("neither yes nor no", arguments: ["maybe", "", "tomorrow"])
    func notYesNo(_ text: String) {
        #expect(AnswerValidation.yesNo(text) == nil)
    }

    @Test("numbers", arguments: [("42", 42.0), ("-3.5", -3.5), ("1,234.50", 1234.5), ("3,5", 3.5), ("1,000", 1000.0), ("1.234,56", 1234.56)])
    func numbers(_ text: String, _ expected: Double) {
        #expect(AnswerValidation.number(text) == expected)
    }

    @Test("not numbers", arguments: ["forty", "12abc", "", "1.2.3e"])
    func notNumbers(_ text: String) {
        #expect(AnswerValidation.number(text) == nil)
    }

    @Test("emails", arguments: ["jane.doe@example.com", "a+b@mail.Example.ORG", "x_y@sub-domain.example.co"])
    func emails(_ text: String) {
        #expect(AnswerValidation.email(text) != nil)
    }

    @Test("not emails", arguments: ["jane@", "@example.com", "jane@example", "jane..doe@example.com", "jane@exa mple.com", "jane@example.c0m", "a@b@c.com"])
    func notEmails(_ text: String) {
        #expect(AnswerValidation.email(text) == nil)
    }

    @Test("phone numbers", arguments: [("+49 30 1234567", "+49301234567"), ("(030) 123-4567", "0301234567"), ("0044 20 7946 0958", "+442079460958")])
    func phones(_ text: String, _ expected: String) {
        #expect(AnswerValidation.phone(text) == expected)
    }

    @Test("not phone numbers", arguments: ["12345", "+1 (555)) 123", "call me", "+1234567890123456"])
    func notPhones(_ text: String) {
        #expect(AnswerValidation.phone(text) == nil)
    }

    @Test("IBANs with valid checksums", arguments: ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "fr14 2004 1010 0505 0001 3m02 606"])
    func ibans(_ text: String) {
        #expect(AnswerValidation.iban(text) != nil)
    }

    @Test("IBANs with a wrong checksum, length or country", arguments: ["DE89 3704 0044 0532 0130 01", "GB82WEST1234569876543", "XX82WEST12345698765432"])
    func notIbans(_ text: String) {
        #expect(AnswerValidation.iban(text) == nil)
    }

    @Test("options match title or payload, regex matches the pattern")
    func optionsAndRegex() throws {
        let options = [Say.Choice(title: try Template("Red"), payload: "red"), Say.Choice(title: try Template("Dark blue"), payload: "blue")]
        #expect(AnswerValidation.accept("dark  BLUE", as: .options, options: options) == .string("blue"))
        #expect(AnswerValidation.accept("red", as: .options, options: options) == .string("red"))
        #expect(AnswerValidation.accept("green", as: .options, options: options) == nil)
        let pattern = try Pattern("^[A-Z]{3}-\\d{4}$")
        #expect(AnswerValidation.accept("ABC-1234", as: .regex, pattern: pattern) == .string("ABC-1234"))
        #expect(AnswerValidation.accept("abc-1234", as: .regex, pattern: pattern) == nil)
        #expect(AnswerValidation.accept("  ", as: .text) == nil)
    }

    @Test("a search whose backtracking explodes (a shape the load-time check lets through) stops at its budget and counts as no match; ordinary ones still match")
    func runawayPatternsStop() throws {
        let alternation = try Pattern("^(a|a)*b$")
        #expect(!Pattern.hasNestedRepetition(alternation.source), "the load-time check does not see this one")
        #expect(!alternation.matches(String(repeating: "a", count: 4_096)))
        #expect(alternation.matches("aaab"))
        let cubic = try Pattern(".*refund.*order")
        #expect(!cubic.matches(String(repeating: "refund please now ", count: 228)))
        #expect(cubic.matches("a refund for my order"))
        #expect(try Pattern("\\b(agent|human)\\b").matches(String(repeating: "x ", count: 2_000) + "human"))
    }

    @Test("slots are found in free text")
    func slots() {
        let slots = AnswerValidation.slots(in: "my mail is jane@example.com and I need 3 tickets")
        #expect(slots["email"] == .string("jane@example.com"))
        #expect(slots["number"] == .number(3))
        // Punctuation around a token is trimmed, inside it is kept.
        let quoted = AnswerValidation.slots(in: "write to (\"jane.doe@example.com\"). Order: [42]!")
        #expect(quoted["email"] == .string("jane.doe@example.com"))
        #expect(quoted["number"] == .number(42))
        #expect(AnswerValidation.slots(in: "(...) !? \"\"").isEmpty)
    }

    @Test("answers are trimmed of Unicode white space at both ends, not inside")
    func trimming() {
        #expect(AnswerValidation.accept("\u{00A0} 42\n\t", as: .number) == .number(42))
        #expect(AnswerValidation.accept("\u{3000}yes\u{2028}", as: .yesNo) == .bool(true))
        #expect(AnswerValidation.accept("  New  York \r\n", as: .text) == .string("New  York"))
        #expect(AnswerValidation.accept("\u{2003}\n", as: .text) == nil)
        // The trim matches Foundation's for each of these.
        for text in ["\u{00A0} 42\n\t", "  New  York \r\n", "\u{2003}\n", "a", "", " \u{0085}x\u{200A}"] {
            let ours = String(AnswerValidation.trim(Substring(text)) { $0.properties.isWhitespace })
            #expect(ours == text.trimmingCharacters(in: .whitespacesAndNewlines), "\(text.debugDescription)")
        }
    }
}
