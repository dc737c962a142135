import Testing
@testable import FlowEngine

@Suite("Intent matcher")
struct IntentMatcherTests {
    let matcher = IntentMatcher(intents: [
        .init(name: "balance", examples: ["what is my balance", "how much money do I have", "check my account balance"]),
        .init(name: "cards", examples: ["block my card", "I lost my credit card", "my card was stolen"]),
        .init(name: "opening", examples: ["when are you open", "opening hours", "what time do you close"]),
    ], threshold: 0.45)

    @Test("ranks the intent whose examples the text is closest to first")
    func ranking() {
        let ranking = matcher.rank("How much is my balance?")
        #expect(ranking.first?.intent == "balance")
        #expect(ranking.count == 3)
        #expect(ranking[0].score > ranking[1].score)
        #expect(matcher.rank("please block my stolen card").first?.intent == "cards")
        #expect(matcher.rank("what are your opening hours").first?.intent == "opening")
    }

    @Test("case, accents, plurals and a typo still match")
    func normalization() {
        #expect(matcher.match("CHECK BALANCES")?.intent == "balance")
        #expect(matcher.match("Balánce check")?.intent == "balance")
        #expect(matcher.match("check my balanse")?.intent == "balance")
    }

    @Test("nothing matches below the threshold")
    func threshold() {
        #expect(matcher.match("tell me a joke about penguins") == nil)
        #expect(matcher.match("") == nil)
        let strict = IntentMatcher(intents: matcher.intents, threshold: 0.99)
        #expect(strict.match("how much money is in my balance") == nil)
        #expect(strict.match("what is my balance")?.intent == "balance")
    }

    @Test("scores are between 0 and 1, an exact example scores 1")
    func scoreRange() throws {
        let exact = try #require(matcher.match("when are you open"))
        #expect(abs(exact.score - 1) < 1e-9)
        for score in matcher.rank("card balance hours") { #expect((0...1).contains(score.score)) }
    }

    @Test("ASCII text is split and lower-cased without Foundation, as Foundation's folding does it")
    func asciiWordsMatchFoldedWords() {
        var generator = SystemRandomNumberGenerator()
        // Every ASCII character, with letters, digits, space and apostrophe more often.
        let alphabet = (0..<128).map { Character(Unicode.Scalar(UInt8($0))) } + Array("abcXYZ019 ' ' a1")
        var texts = ["What's my BALANCE?", "don't  stop", "e-mail: jane@example.com", "", "   ", "A1 b2'c3"]
        for _ in 0..<2_000 {
            texts.append(String((0..<Int.random(in: 0...24, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }))
        }
        for text in texts {
            #expect(TextNormalizer.asciiWords(text) == TextNormalizer.foldedWords(text), "\(text.debugDescription)")
        }
        // Anything else takes Foundation's way: accents and case folded, curly apostrophes dropped.
        #expect(TextNormalizer.asciiWords("Café") == nil)
        #expect(TextNormalizer.words("CAFÉ what\u{2019}s") == ["cafe", "whats"])
    }

    @Test("a phrase is found as consecutive whole words")
    func phrases() {
        let words = ["i", "want", "to", "talk", "to", "an", "agent"]
        #expect(TextNormalizer.contains(words, phrase: ["agent"]))
        #expect(TextNormalizer.contains(words, phrase: ["talk", "to"]))
        #expect(TextNormalizer.contains(words, phrase: ["to", "an", "agent"]))
        #expect(!TextNormalizer.contains(words, phrase: ["talk", "agent"]))
        #expect(!TextNormalizer.contains(words, phrase: ["agen"]))
        #expect(!TextNormalizer.contains(words, phrase: []))
        #expect(!TextNormalizer.contains(["agent"], phrase: ["an", "agent"]))
        #expect(!TextNormalizer.contains([], phrase: ["agent"]))
    }
}
