import ChatEvents
import Foundation
import Logging
import TestSupport
import Testing
@testable import DataProtection

@Suite("Data protection settings")
struct PolicyTests {
    @Test("entities mode hides only the personal data; fields mode stars whole fields")
    func modes() throws {
        let text = "hi, I'm Jane, jane@example.com"
        let entities = DataProtectionPolicy()
        #expect(entities.mask(text) == "hi, I'm Jane, <EMAIL>")
        let fields = DataProtectionPolicy(mode: .fields)
        #expect(fields.mask(text) == String(repeating: "*", count: text.count))
        let data: JSONValue = .object(["email": .string("jane@example.com"), "size": .number(3), "nested": .array([.string("call +49 30 1234567")])])
        #expect(entities.mask(data) == .object(["email": .string("<EMAIL>"), "size": .number(3), "nested": .array([.string("call <PHONE>")])]))
        #expect(fields.mask(data)["size"] == .string("***"))
    }

    @Test("the configured entities, operator and custom recognizers are used")
    func configured() throws {
        let policy = try DataProtectionPolicy(
            maskLogging: nil, maskAnalytics: nil, maskIPAddress: false, collectAnalytics: nil, sanitizeInput: true, mode: nil,
            entities: ["EMAIL", "ORDER"], operator: "mask", maskCharacter: "#", keepLast: 2, hashKey: nil,
            custom: [("ORDER", "^ORD-[0-9]{6}$", nil, ["order"])])
        #expect(policy.mask("order ORD-123456 by jane@example.com, card 4111111111111111") == "order ########56 by ##############om, card 4111111111111111")
        #expect(policy.maskIP("10.0.0.1") == "********", "maskAnalytics (on by default) stars the ip field too")
        #expect(policy.sanitizeInput)
        #expect(throws: DataProtectionError.self) {
            try DataProtectionPolicy(
                maskLogging: nil, maskAnalytics: nil, maskIPAddress: nil, collectAnalytics: nil, sanitizeInput: nil, mode: nil,
                entities: nil, operator: "hash", maskCharacter: nil, keepLast: nil, hashKey: nil, custom: [])
        }
        let defaults = try DataProtectionPolicy(
            maskLogging: nil, maskAnalytics: nil, maskIPAddress: nil, collectAnalytics: nil, sanitizeInput: nil, mode: nil,
            entities: nil, operator: nil, maskCharacter: nil, keepLast: nil, hashKey: nil, custom: [])
        #expect(defaults.maskLogging && defaults.maskAnalytics && defaults.maskIPAddress && defaults.collectAnalytics && !defaults.sanitizeInput)
        #expect(defaults.maskIP("10.0.0.1") == "********")
        // maskIPAddress alone still hides addresses inside analytics text; maskAnalytics alone stars the ip field.
        let ipOnly = DataProtectionPolicy(maskAnalytics: false, maskIPAddress: true)
        #expect(ipOnly.analyticsText("from 10.0.0.1, mail jane@example.com") == "from ********, mail jane@example.com")
        let analyticsOnly = DataProtectionPolicy(maskAnalytics: true, maskIPAddress: false)
        #expect(analyticsOnly.maskIP("10.0.0.1") == "********")
        #expect(DataProtectionPolicy(maskAnalytics: false, maskIPAddress: false).maskIP("10.0.0.1") == "10.0.0.1")
        // Numbers in submitted data are scanned too.
        #expect(DataProtectionPolicy().mask(JSONValue.object(["card": .number(4111111111111111)])) == .object(["card": .string("<CREDIT_CARD>")]))
        for entities in [["CREDITCARD"], []] {
            #expect(throws: DataProtectionError.self) {
                try DataProtectionPolicy(
                    maskLogging: nil, maskAnalytics: nil, maskIPAddress: nil, collectAnalytics: nil, sanitizeInput: nil, mode: nil,
                    entities: entities, operator: nil, maskCharacter: nil, keepLast: nil, hashKey: nil, custom: [])
            }
        }
    }

    @Test("the hash operator gives one pseudonym per value however it is written (also in the digits of another script)")
    func canonicalHash() throws {
        let policy = try DataProtectionPolicy(
            maskLogging: nil, maskAnalytics: nil, maskIPAddress: nil, collectAnalytics: nil, sanitizeInput: nil, mode: nil,
            entities: nil, operator: "hash", maskCharacter: nil, keepLast: nil, hashKey: "a-key-of-sixteen-bytes", custom: [])
        #expect(policy.mask("4111 1111 1111 1111") == policy.mask("4111-1111-1111-1111"))
        #expect(policy.mask("４１１１ １１１１ １１１１ １１１１") == policy.mask("4111 1111 1111 1111"))
        #expect(policy.mask("４１１１ １１１１ １１１１ １１１１") != policy.mask("5555 5555 5555 4444"))
        #expect(policy.mask("Jane@Example.com") == policy.mask("jane@example.com"))
        #expect(policy.mask("jane@example.com") != policy.mask("john@example.com"))
    }

    @Test("custom patterns that could backtrack exponentially are refused", arguments: ["(\\d+)+x", "(a*)*", "(x|y+){2,}", "(a)\\1"])
    func unsafePatterns(_ pattern: String) {
        #expect(throws: DataProtectionError.self) { try CustomRecognizer(type: "X", pattern: pattern) }
    }

    @Test("HTML is removed from user text", arguments: [
        ("<b>hello</b> world", "hello world"),
        ("hi<script>alert('x')</script> there", "hi there"),
        ("<img src=x onerror=\"alert(1)\">pic", "pic"),
        ("a &lt;b&gt; &amp; c &#39;d&#x27;", "a &lt;b&gt; &amp; c 'd'"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("&#60;img src=x onerror=alert(1)&#62;", "&#60;img src=x onerror=alert(1)&#62;"),
        ("<SCRIPT>x</SCRIPT>ok <scr<script>ipt>y</script>", "ok ipt>y"),
        ("a<b then more", "a<b then more"),
        ("line<br>break<p>para</p>", "line break para"),
        ("<!-- note -->text", "text"),
        ("3 < 4 and 5 > 2", "3 < 4 and 5 > 2"),
        ("<style>p{color:red}</style><a href='https://evil'>click</a>", "click"),
        ("<a title=\"1>2\">z", "z"),
        ("<a \" <b >c", "<a \" c"),
        ("<a title='x\">y'>z", "z"),
    ])
    func sanitize(_ input: String, _ expected: String) {
        #expect(HTMLSanitizer.strip(input) == expected)
    }

    @Test("many unclosed tags are read in one pass (each used to scan to the end: minutes for one message)")
    func unclosedTags() {
        let unclosed = String(repeating: "<a", count: 200_000)
        #expect(HTMLSanitizer.strip(unclosed) == unclosed)
        let quoted = String(repeating: "<a\"\"", count: 100_000) + "\">"
        #expect(HTMLSanitizer.strip(quoted) == quoted)
        #expect(HTMLSanitizer.strip(unclosed + ">tail") == "tail")
    }

    @Test("a member's name is the context of its value in submitted data")
    func memberNamesAsContext() {
        let data: JSONValue = .object([
            "ssn": .string("123456789"), "phone": .number(5551234567), "note": .string("123456789"),
            "items": .array([.object(["mobile": .string("5551234567")])]),
        ])
        #expect(DataProtectionPolicy().mask(data) == .object([
            "ssn": .string("<US_SSN>"), "phone": .string("<PHONE>"), "note": .string("123456789"),
            "items": .array([.object(["mobile": .string("<PHONE>")])]),
        ]))
        // A name that vetoes ("customer", "v") does not hide what the value alone shows.
        #expect(DataProtectionPolicy().mask(.object(["customer": .string("5551234567 is my mobile"), "v": .string("10.1.2.3")]))
            == .object(["customer": .string("<PHONE> is my mobile"), "v": .string("<IP_ADDRESS>")]))
    }

    @Test("an analytics text is masked as it is cut: a finding the cut goes through is hidden as far as it is kept")
    func analyticsCut() {
        // Emails before the cut make the masked text shorter than the original.
        let emails = String(repeating: "mail jane.doe.longname@example.com ", count: 30)
        let text = emails + "card 4111 1111 1111 1111 thanks"
        let keep = emails.unicodeScalars.count + 10  // "card 4111 "
        let masked = DataProtectionPolicy().analyticsText(text, keep: keep)
        #expect(!masked.contains("4111") && !masked.contains("jane"))
        #expect(masked.hasSuffix("mail <EMAIL> card <CREDIT_CARD>"), "\(masked.suffix(40))")
        #expect(DataProtectionPolicy().analyticsText("short", keep: 100) == "short")
        #expect(DataProtectionPolicy(maskAnalytics: false, maskIPAddress: false).analyticsText(text, keep: 5) == "mail ")
        #expect(DataProtectionPolicy(maskAnalytics: false, maskIPAddress: true).analyticsText("from 10.1.2.3 on", keep: 9) == "from ****")
        #expect(DataProtectionPolicy(mode: .fields).analyticsText(text, keep: 7) == "*******")
    }

    @Test("a card's data in analytics is cut to a budget of scalars in all, each string masked as it is cut")
    func analyticsDataCut() {
        let data: JSONValue = .object([
            "a": .string("card 4111 1111 1111 1111 thanks"),
            "b": .array([.string("mail jane@example.com"), .number(42), .string(String(repeating: "9", count: 1_000_000))]),
            "c": .string("past the budget"),
        ])
        // "a" whole (31 scalars), then 7 of the first string of "b": the cut goes through the address.
        let policy = DataProtectionPolicy()
        #expect(policy.analyticsData(data, keep: 38) == .object([
            "a": .string("card <CREDIT_CARD> thanks"),
            "b": .array([.string("mail <EMAIL>"), .number(42), .string("")]),
            "c": .string(""),
        ]))
        // A cut through the card: what is kept of it is still masked.
        #expect(policy.analyticsData(.object(["a": .string("card 4111 1111 1111 1111 thanks")]), keep: 12) == .object(["a": .string("card <CREDIT_CARD>")]))
        // Without masking the data is still cut, and the megabyte string with it.
        let unmasked = DataProtectionPolicy(maskAnalytics: false, maskIPAddress: false).analyticsData(data, keep: 40)
        #expect(unmasked == .object([
            "a": .string("card 4111 1111 1111 1111 thanks"), "b": .array([.string("mail jane"), .number(42), .string("")]), "c": .string(""),
        ]))
        #expect(DataProtectionPolicy(mode: .fields).analyticsData(.object(["a": .string("secret words")]), keep: 6) == .object(["a": .string("******")]))
    }

    @Test("maskIPAddress keeps addresses out of analytics also when entities leaves them out")
    func analyticsIPsWithSelectedEntities() throws {
        let policy = try DataProtectionPolicy(
            maskLogging: nil, maskAnalytics: nil, maskIPAddress: nil, collectAnalytics: nil, sanitizeInput: nil, mode: nil,
            entities: ["EMAIL"], operator: nil, maskCharacter: nil, keepLast: nil, hashKey: nil, custom: [])
        #expect(policy.analyticsText("from 10.1.2.3, mail jane@example.com") == "from <IP_ADDRESS>, mail <EMAIL>")
        #expect(policy.analyticsData(.object(["ip": .string("10.1.2.3")])) == .object(["ip": .string("<IP_ADDRESS>")]))
        #expect(policy.mask("from 10.1.2.3") == "from 10.1.2.3", "elsewhere only the configured entities")
        var kept = policy
        kept.maskIPAddress = false
        #expect(kept.analyticsText("from 10.1.2.3") == "from 10.1.2.3")
    }
}

@Suite("Masked logging")
struct MaskedLoggingTests {
    @Test("with maskLogging no line carries the user's text, id or data, whatever the call site logs")
    func masked() {
        let capture = LogCapture()
        let policy = DataProtectionPolicy()
        var logger = capture.logger
        logger.handler = MaskingLogHandler(wrapping: logger.handler) { policy.mask($0) }
        logger[metadataKey: "userId"] = "crm-7781"
        MaskingLogHandler.$turnValues.withValue(["crm-7781", "whatever she typed"]) {
            logger.warning("turn of crm-7781 failed", metadata: ["User_ID": "crm-7781", "profile": "crm-7781 / whatever she typed"])
        }
        logger.info("user wrote jane@example.com and 4111 1111 1111 1111", metadata: [
            "text": "my card is 4111 1111 1111 1111", "data": ["iban": "DE89370400440532013000"],
            "conversationId": "c-1", "note": "call +49 30 1234567", "input.text": "secret words",
        ])
        let log = capture.text
        for secret in ["jane@example.com", "4111 1111 1111 1111", "crm-7781", "my card is", "DE89370400440532013000", "+49 30 1234567", "secret words", "whatever she typed"] {
            #expect(!log.contains(secret), "\(secret) leaked")
        }
        #expect(log.contains("<EMAIL>") && log.contains("<CREDIT_CARD>") && log.contains("<PHONE>"))
        #expect(log.contains("conversationId=c-1"))
        #expect(log.contains("text=***") && log.contains("userId=***") && log.contains("data=***"))
    }

    @Test("metadata set on the logger as a whole is masked like metadata set by key")
    func wholeMetadataMasked() {
        let capture = LogCapture()
        let policy = DataProtectionPolicy()
        var logger = capture.logger
        logger.handler = MaskingLogHandler(wrapping: logger.handler) { policy.mask($0) }
        logger.handler.metadata = ["userId": "crm-7781", "text": "no one should read this", "note": "mail jane@example.com"]
        logger.info("a line")
        let log = capture.text
        for secret in ["crm-7781", "no one should read this", "jane@example.com"] {
            #expect(!log.contains(secret), "\(secret) leaked")
        }
        #expect(log.contains("userId=***") && log.contains("text=***") && log.contains("<EMAIL>"))
    }
}
