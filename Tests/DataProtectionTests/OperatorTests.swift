import Crypto
import Foundation
import Testing
import TestSupport
@testable import DataProtection

@Suite("Masking operators")
struct OperatorTests {
    let text = "card 4111 1111 1111 1111, mail jane@example.com"
    var spans: [PIISpan] { PIIScanner().scan(text) }

    @Test func maskEverything() {
        #expect(MaskingOperator.mask().apply(text, spans: spans) == "card *******************, mail ****************")
    }

    @Test func maskKeepingTheLastCharacters() {
        #expect(MaskingOperator.mask(character: "#", keepLast: 4).apply(text, spans: spans) == "card ###############1111, mail ############.com")
    }

    @Test("keepLast keeps at most half of a finding readable")
    func keepLastIsBounded() {
        let text = "ip 1.2.3.4, mail jo@x.de"
        let spans = PIIScanner().scan(text)
        #expect(MaskingOperator.mask(keepLast: 8).apply(text, spans: spans) == "ip ****3.4, mail ****.de")
    }

    @Test func replaceWithTheType() {
        #expect(MaskingOperator.replace.apply(text, spans: spans) == "card <CREDIT_CARD>, mail <EMAIL>")
    }

    @Test func keyedHashIsStablePerKeyAndValue() {
        let key = SymmetricKey(data: Data("endpoint-secret".utf8))
        let once = MaskingOperator.hash(key: key).apply(text, spans: spans)
        #expect(once == MaskingOperator.hash(key: key).apply(text, spans: spans))
        #expect(once.hasPrefix("card <CREDIT_CARD:") && once.contains(", mail <EMAIL:"))
        #expect(!once.contains("4111") && !once.contains("jane"))
        let other = MaskingOperator.hash(key: SymmetricKey(data: Data("other".utf8))).apply(text, spans: spans)
        #expect(other != once)
        let expected = HMAC<SHA256>.authenticationCode(for: Data("jane@example.com".utf8), using: key).prefix(8).map { String(format: "%02x", $0) }.joined()
        #expect(once.hasSuffix("<EMAIL:\(expected)>"))
    }

    @Test func unicodeAroundSpansIsKept() {
        let text = "Grüße 👋🏽 jane@example.com ✓"
        #expect(MaskingOperator.replace.apply(text, spans: PIIScanner().scan(text)) == "Grüße 👋🏽 <EMAIL> ✓")
    }
}

@Suite("Hostile input")
struct HostileInputTests {
    /// (pattern, repetitions): the text is built inside the test, so the test log shows the
    /// pattern, not a megabyte.
    @Test("a megabyte of digits and separators, and long runs of @ signs, colons, dots, parentheses, emoji and IBAN starts finish", arguments: [
        ("4111 1111 1111 1111 ", 52_429), ("1-", 524_288), ("9", 1_048_576), ("a@", 131_072), ("1:", 131_072),
        ("1.1.", 65_536), ("(1) ", 65_536), ("👋🏽4", 50_000), ("DE89 ", 52_429),
    ])
    func finishes(_ pattern: String, _ count: Int) async throws {
        let text = String(repeating: pattern, count: count)
        let spans = try await onOwnThread { PIIScanner().scan(text) }
        #expect(spans.allSatisfy { $0.start < $0.end })
        // Findings never overlap; a list of cards is found card by card.
        #expect(zip(spans, spans.dropFirst()).allSatisfy { $0.end <= $1.start })
        if text.hasPrefix("4111 1111") { #expect(spans.count == 52_429) }
    }
}
