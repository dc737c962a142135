import Crypto
import Testing
@testable import DataProtection

/// The texts of the spans found, with their types.
func found(_ text: String, _ scanner: PIIScanner = PIIScanner()) -> [String] {
    let scalars = Array(text.unicodeScalars)
    return scanner.scan(text).map { "\($0.type):" + String(String.UnicodeScalarView(scalars[$0.start..<$0.end])) }
}

@Suite("PII recognizers")
struct RecognizerTests {
    @Test("credit cards: grouped or not, all major networks", arguments: [
        "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "5555 5555 5555 4444", "2223 0031 2200 3222",
        "3782 822463 10005", "378282246310005", "6011 1111 1111 1117", "3530 1113 3330 0000", "6250 9410 0652 8599",
        "3056 930902 5904", "4111 1111 1111 1111 003", "4111.1111.1111.1111", "4222222222222",
    ])
    func cards(_ number: String) {
        #expect(found("please charge \(number) today") == ["CREDIT_CARD:\(number)"])
    }

    @Test("a card followed by its CVV or expiry is still found", arguments: ["4111 1111 1111 1111 123", "4111 1111 1111 1111 0526", "4111-1111-1111-1111-12/27"])
    func cardWithTrailer(_ text: String) {
        #expect(found("card \(text) thanks").first == "CREDIT_CARD:" + (text.hasPrefix("4111-") ? "4111-1111-1111-1111" : "4111 1111 1111 1111"))
    }

    @Test("an address after the word update is still an address")
    func ipAfterUpdate() {
        #expect(found("after the update 10.0.0.5 is down") == ["IP_ADDRESS:10.0.0.5"])
        #expect(found("version 1.2.3.4 is out").isEmpty)
    }

    @Test("not credit cards: wrong checksum, wrong length, unknown issuer, inside other numbers", arguments: [
        "4111 1111 1111 1112", "4111 1111 1111", "9111 1111 1111 1111", "ticket 4458635789232992", "#4111111111111111",
        "4111111111111111222222", "41111111.11111111",
    ])
    func notCards(_ text: String) {
        #expect(!found("ref \(text) ok").contains { $0.hasPrefix("CREDIT_CARD") })
    }

    @Test("IBANs: compact, grouped, lower case", arguments: [
        "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB82 WEST 1234 5698 7654 32", "gb82west12345698765432",
        "FR14 2004 1010 0505 0001 3M02 606", "NL91ABNA0417164300", "CH93 0076 2011 6238 5295 7",
    ])
    func ibans(_ iban: String) {
        #expect(found("send it to \(iban), thanks") == ["IBAN:\(iban)"])
    }

    @Test("not IBANs: checksum, length, country", arguments: [
        "DE89 3704 0044 0532 0130 01", "DE89 3704 0044 0532 0130", "XX89370400440532013000", "GB82WEST123456987654321",
    ])
    func notIbans(_ text: String) {
        #expect(!found("to \(text) now").contains { $0.hasPrefix("IBAN") })
    }

    @Test("the digits of an IBAN with a wrong checksum are not a card")
    func brokenIBANIsNotACard() {
        #expect(found("The IBAN ES69 6453 6263 2463 7587 8361 was rejected").isEmpty)
    }

    @Test("emails", arguments: ["jane.doe@example.com", "a+tag@mail.example.co.uk", "x_y-z@sub.domain.org", "O'Brien@example.ie", "josé@ejemplo.es", "jane@müller.de"])
    func emails(_ email: String) {
        #expect(found("write to \(email).") == ["EMAIL:\(email)"])
    }

    @Test("not emails", arguments: ["jane@", "@example.com", "jane@localhost", "jane@example.c0m", "user@@example.com", "a@b.c"])
    func notEmails(_ text: String) {
        #expect(!found("contact \(text) please").contains { $0.hasPrefix("EMAIL") })
    }

    @Test("phone numbers: international, national, North American, with extension", arguments: [
        "+49 30 1234567", "+1-202-555-0143", "+44 (0)20 7946 0958", "+33 1 23 45 67 89", "(555) 123-4567", "555.123.4567",
        "202-555-0143", "030 1234567", "07911 123456", "0044 20 7946 0958", "(912)735-8182x67810", "518.929.2596 ext. 12",
        "+919876543210",
    ])
    func phones(_ phone: String) {
        #expect(found("please reach me at \(phone) tomorrow") == ["PHONE:\(phone)"])
    }

    @Test("not phone numbers: dates, versions, amounts, order numbers, short numbers", arguments: [
        "2024-05-17", "17/05/2024", "17.05.2024", "version 3.19.1", "$1,234,567", "order #72268229", "room 1234", "1.5 million",
        "90210", "ticket 12345678",
    ])
    func notPhones(_ text: String) {
        #expect(found("about \(text) here").isEmpty, "\(text)")
    }

    @Test("phone numbers without a format need a context word")
    func phoneContext() {
        #expect(found("my number is 5551234567") == ["PHONE:5551234567"])
        #expect(found("the code 5551234567 expired").isEmpty)
    }

    @Test("IP addresses: IPv4 and IPv6 forms", arguments: [
        "192.168.1.20", "8.8.8.8", "2001:db8:85a3::8a2e:370:7334", "fe80::1", "2001:0db8:0000:0000:0000:ff00:0042:8329",
        "::ffff:192.0.2.128", "db58:d808:2a66:82b9:f7a:2657:fc1e:8a55",
    ])
    func ips(_ ip: String) {
        #expect(found("the router at \(ip) drops") == ["IP_ADDRESS:\(ip)"])
    }

    @Test("an IPv6 address right after a label and a colon, not a later group of one", arguments: [
        ("IP:2001:db8::1 drops", "IP_ADDRESS:2001:db8::1"), ("IPv6:fe80::1 down", "IP_ADDRESS:fe80::1"),
        ("addr:2001:db8:85a3::8a2e:370:7334.", "IP_ADDRESS:2001:db8:85a3::8a2e:370:7334"), ("IP:10.0.0.1 too", "IP_ADDRESS:10.0.0.1"),
    ])
    func labelledIPv6(_ text: String, _ expected: String) {
        #expect(found(text) == [expected])
    }

    @Test("an SSN or a phone number labelled with a #, not an order's number", arguments: [
        ("my ss#123-45-6789 is it", "US_SSN:123-45-6789"), ("SSN#123-45-6789", "US_SSN:123-45-6789"),
        ("ssn#219099999 ok", "US_SSN:219099999"), ("cell #415-555-0132 after six", "PHONE:415-555-0132"),
    ])
    func hashLabelled(_ text: String, _ expected: String) {
        #expect(found(text) == [expected])
        var order = text
        for label in ["ssn#", "SSN#", "ss#", "cell #"] { order = order.replacing(label, with: "order #") }
        #expect(found(order).isEmpty, "\(order)")
    }

    @Test("not IP addresses", arguments: ["256.1.1.1", "1.2.3", "01.2.3.4", "10:30", "12:30:45", "1:2:3:4:5:6:7:8:9", "2001:db8::1::2"])
    func notIps(_ text: String) {
        #expect(!found("at \(text) ok").contains { $0.hasPrefix("IP_ADDRESS") })
    }

    @Test("US SSNs", arguments: ["123-45-6789", "078 05 1120", "ssn 219099999"])
    func ssns(_ text: String) {
        let value = text.hasPrefix("ssn ") ? String(text.dropFirst(4)) : text
        #expect(found("my \(text) is it") == ["US_SSN:\(value)"])
    }

    @Test("not SSNs: invalid area, group or serial, or no context", arguments: ["000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000", "219099999"])
    func notSsns(_ text: String) {
        #expect(!found("id \(text) here").contains { $0.hasPrefix("US_SSN") })
    }

    @Test("offsets count Unicode scalars")
    func unicodeOffsets() {
        let text = "Grüße 👋🏽 from jane@example.com"
        let span = PIIScanner().scan(text).first
        // G r ü ß e, space, 👋 and 🏽 (two scalars), space, f r o m, space: the address starts at 14.
        #expect(span == PIISpan(type: "EMAIL", start: 14, end: 30))
    }

    @Test("several entities in one message, each once")
    func several() {
        #expect(found("card 4111111111111111, mail jane@example.com, call +49 30 1234567, ip 10.0.0.1") == [
            "CREDIT_CARD:4111111111111111", "EMAIL:jane@example.com", "PHONE:+49 30 1234567", "IP_ADDRESS:10.0.0.1",
        ])
    }

    @Test("only the configured entities are looked for")
    func entitySelection() {
        let scanner = PIIScanner(entities: [PIIEntity.email])
        #expect(found("card 4111111111111111, mail jane@example.com", scanner) == ["EMAIL:jane@example.com"])
    }

    @Test("custom recognizers: pattern, validator, context words")
    func custom() throws {
        let employee = try CustomRecognizer(type: "EMPLOYEE_ID", pattern: "^EMP-[0-9]{5}$", contextWords: ["employee"])
        let account = try CustomRecognizer(type: "ACCOUNT", pattern: "[0-9]{8}", validator: .luhn)
        let scanner = PIIScanner(entities: ["EMPLOYEE_ID", "ACCOUNT"], custom: [employee, account])
        #expect(found("employee EMP-12345, and much later in a long message about other things: EMP-99999", scanner) == ["EMPLOYEE_ID:EMP-12345"])
        #expect(found("account 12345674 or 12345675", scanner) == ["ACCOUNT:12345674"])
        let local = try CustomRecognizer(type: "LOCAL_ACCOUNT", pattern: "^XY[0-9]{12}$", validator: .mod97)
        let localScanner = PIIScanner(entities: ["LOCAL_ACCOUNT"], custom: [local])
        #expect(found("pay to XY331234567890 not XY341234567890", localScanner) == ["LOCAL_ACCOUNT:XY331234567890"])
    }

    @Test("a custom match that ends inside a character (a combining mark follows) is found whole")
    func customMatchBeforeACombiningMark() throws {
        let account = try CustomRecognizer(type: "ACCOUNT", pattern: "[0-9]{8}", validator: .luhn)
        let scanner = PIIScanner(entities: ["ACCOUNT"], custom: [account])
        // U+20E3 (combining enclosing keycap) makes the last digit and itself one character.
        #expect(found("account 12345674\u{20E3}", scanner) == ["ACCOUNT:12345674"])
    }

    @Test("digits of other scripts, no-break spaces and full-width signs are read as what they are", arguments: [
        ("card ４１１１ １１１１ １１１１ １１１１ ok", "CREDIT_CARD:４１１１ １１１１ １１１１ １１１１"),
        ("card 4111\u{00A0}1111\u{00A0}1111\u{00A0}1111 ok", "CREDIT_CARD:4111\u{00A0}1111\u{00A0}1111\u{00A0}1111"),
        ("card 4111\u{202F}1111\u{202F}1111\u{202F}1111 ok", "CREDIT_CARD:4111\u{202F}1111\u{202F}1111\u{202F}1111"),
        ("card ٤١١١١١١١١١١١١١١١ ok", "CREDIT_CARD:٤١١١١١١١١١١١١١١١"),
        ("SSN 123\u{2011}45\u{2011}6789 ok", "US_SSN:123\u{2011}45\u{2011}6789"),
        ("mail jane＠example.com ok", "EMAIL:jane＠example.com"),
        ("call ＋49 30 1234567 ok", "PHONE:＋49 30 1234567"),
    ])
    func lookalikes(_ text: String, _ expected: String) {
        #expect(found(text) == [expected])
    }

    /// Japanese, Chinese and Thai put no space between words, and Korean none between a
    /// number and its particle: a letter of those scripts right beside a number does not make
    /// it part of a word, as a Latin letter does ("abc4111…" is a code).
    @Test("numbers right beside letters of scripts written without spaces", arguments: [
        ("カード番号４１１１１１１１１１１１１１１１です", "CREDIT_CARD:４１１１１１１１１１１１１１１１"),
        ("卡号4111111111111111谢谢", "CREDIT_CARD:4111111111111111"),
        ("카드번호4111111111111111입니다", "CREDIT_CARD:4111111111111111"),
        ("บัตร4111111111111111ครับ", "CREDIT_CARD:4111111111111111"),
        ("社会保障番号123-45-6789です", "US_SSN:123-45-6789"),
        ("口座DE89370400440532013000です", "IBAN:DE89370400440532013000"),
        ("電話は+49 30 1234567まで", "PHONE:+49 30 1234567"),
        ("IPは192.168.1.20です", "IP_ADDRESS:192.168.1.20"),
        ("アドレスは2001:db8::8a2e:370:7334です", "IP_ADDRESS:2001:db8::8a2e:370:7334"),
        ("メールはjane@example.comです", "EMAIL:jane@example.com"),
        ("宛先は山田@例え.jpです", "EMAIL:宛先は山田@例え.jp"),
        ("jane@example.みんなに", "EMAIL:jane@example.みんなに"),
    ])
    func unspacedScripts(_ text: String, _ expected: String) {
        #expect(found(text) == [expected])
    }

    @Test("phone words and the words that make a number something else, in Chinese, Japanese and Korean")
    func cjkContextWords() {
        #expect(found("我的手机是13812345678") == ["PHONE:13812345678"])
        #expect(found("电话：13812345678，谢谢") == ["PHONE:13812345678"])
        #expect(found("我的号码是13812345678") == ["PHONE:13812345678"])
        #expect(found("연락처는 3812345678 입니다") == ["PHONE:3812345678"])
        #expect(found("订单号13812345678").isEmpty, "an order number")
        #expect(found("注文番号13812345678").isEmpty, "an order number: 番号 says number, 注文 says order")
        #expect(found("会员号码13812345678").isEmpty, "a member number")
        #expect(found("手机13812345678，订单号23812345678") == ["PHONE:13812345678"])
    }

    @Test("a Latin letter or a digit beside a number still makes it part of a word")
    func latinLettersStillJoin() {
        #expect(found("code abc4111111111111111 ok").isEmpty)
        #expect(found("code 4111111111111111abc ok").isEmpty)
        #expect(found("番号94111111111111111です").isEmpty, "a 17-digit run is no card")
    }

    @Test("short context words count as whole words only")
    func wholeContextWords() {
        #expect(found("please verify 192.168.1.20 works") == ["IP_ADDRESS:192.168.1.20"])
        #expect(found("building 10.0.0.5 is down") == ["IP_ADDRESS:10.0.0.5"])
        #expect(found("ver 1.2.3.4 and build 10.0.0.5 are out").isEmpty)
        #expect(found("call me about my refund 5551234567") == ["PHONE:5551234567"])
        #expect(found("call me, an idea: 5551234567") == ["PHONE:5551234567"])
        #expect(found("call me about ref 5551234567").isEmpty)
        #expect(found("call me about my id 5551234567").isEmpty)
    }

    @Test("a custom recognizer reads a long text without spaces in windows, also across their cuts", arguments: [0, 100, 122, 127, 128, 129, 186, 190, 200, 245, 251, 252, 255, 300, 440, 444, 700, 989])
    func customInLongTokens(_ offset: Int) throws {
        let member = try CustomRecognizer(type: "MEMBER", pattern: "MEM-[0-9]+")
        // An optional tail: a window that saw only "EMP-12345" would keep it and leave "-67".
        let employee = try CustomRecognizer(type: "EMPLOYEE", pattern: "EMP-[0-9]{5}(-[0-9]{2})?")
        let scanner = PIIScanner(entities: ["MEMBER", "EMPLOYEE"], custom: [member, employee])
        // Japanese puts no spaces between words: one "token" of 1,000 characters.
        let text = String(repeating: "会", count: offset) + "MEM-1234567" + String(repeating: "員", count: 1_000 - offset)
        #expect(found(text, scanner) == ["MEMBER:MEM-1234567"])
        #expect(found(text + " MEM-42 " + text, scanner).count == 3)
        let tailed = String(repeating: "会", count: offset) + "EMP-12345-67" + String(repeating: "員", count: 1_000 - offset)
        #expect(found(tailed, scanner) == ["EMPLOYEE:EMP-12345-67"])
    }

    @Test("a custom pattern whose backtracking runs away stops, and hides the token it could not read")
    func runawayCustomPatterns() throws {
        let runaway = try CustomRecognizer(type: "CODE", pattern: "(\\d|\\d\\d)+x")
        let scanner = PIIScanner(entities: ["CODE"], custom: [runaway])
        let digits = String(repeating: "7", count: 120)
        #expect(found("code \(digits) please", scanner) == ["CODE:\(digits)"])
        // In a long run without spaces every window gives up: all of it is hidden, also what
        // the windows share, and around a finding of another recognizer.
        let long = String(repeating: "7", count: 600)
        let text = "code \(long) please"
        #expect(MaskingOperator.mask().apply(text, spans: scanner.scan(text)) == "code \(String(repeating: "*", count: 600)) please")
        let email = try CustomRecognizer(type: "MAIL", pattern: "[a-z]+@[a-z]+[.][a-z]+")
        let both = PIIScanner(entities: ["MAIL", "CODE"], custom: [email, runaway])
        let spans = both.scan("jo@x.de" + digits)
        #expect(spans.map(\.type) == ["MAIL", "CODE"] && spans.last?.start == 7 && spans.last?.end == 127)
        #expect(found("code 7777x please", scanner) == ["CODE:7777x"])
        #expect(found("code 77 please", scanner).isEmpty)
    }
}
