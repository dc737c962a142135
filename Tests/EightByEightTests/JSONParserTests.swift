import ChatEvents
import Foundation
import Testing

@Suite struct JSONParserTests {
    func parse(_ text: String) throws -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

    @Test func parsesWhatJSONDecoderParsesToTheSameValue() throws {
        let documents = [
            #"{"a":1,"b":[true,false,null],"c":{"d":"e"},"f":-0.5,"g":1e3,"h":"\u00e9\ud83d\ude00\n\"\\\/"}"#,
            #"  [ 1 , 2.25 , -3 , 0 , 1E-2 , "x" ]  "#,
            #""just a string""#, "42", "-0", "true", "null", "{}", "[]", #"{"":""}"#,
            #"{"n":9007199254740993,"m":123456789012345678901234567890}"#,
            #"{"nested":[[[[{"deep":[1]}]]]]}"#,
        ]
        for document in documents {
            let ours = try parse(document)
            let theirs = try JSONDecoder().decode(JSONValue.self, from: Data(document.utf8))
            #expect(ours == theirs, "\(document)")
        }
        #expect(try parse(#""caf\u00e9 \ud83d\ude00""#) == .string("café 😀"))
    }

    @Test("a surrogate without its other half (a JavaScript string cut inside an emoji) reads as U+FFFD, the rest of the string kept")
    func loneSurrogates() throws {
        #expect(try parse(#""cut \ud83d""#) == .string("cut \u{FFFD}"))
        #expect(try parse(#""\ude00 low first""#) == .string("\u{FFFD} low first"))
        #expect(try parse(#""\ud83d\u0041 then A""#) == .string("\u{FFFD}A then A"))
        #expect(try parse(#""\ud83d\ud83d\ude00""#) == .string("\u{FFFD}😀"))
        #expect(try parse(#"{"text":"hi \ud83d","n":1}"#)["n"] == .number(1))
    }

    @Test func hugeWholeNumbersReadAsStringsWithoutTrapping() throws {
        #expect(try parse("1e19").stringValue == "1e+19")
        #expect(try parse("-1e300").stringValue == "-1e+300")
        #expect(try parse("9007199254740991").stringValue == "9007199254740991")
    }

    @Test func rejectsWhatIsNotJSON() {
        let invalid = [
            "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "'x'", "01", "1.", ".5", "1e", "+1", "--1",
            "tru", "nul", "[1 2]", "{\"a\":1}x", "\"unterminated", "\"bad \\x escape\"", "\"\\u12\"", "\"\\ud83d\\u12\"",
            "\"tab\there\"", "{\"a\":1,\"a\":2}", "1e999", "NaN", "[" + String(repeating: "[", count: 100) + String(repeating: "]", count: 101),
        ]
        for text in invalid {
            #expect(throws: JSONParser.Error.self, "\(text.prefix(30))") { try parse(text) }
        }
        // Invalid UTF-8 inside a string.
        #expect(throws: JSONParser.Error.self) { try JSONParser.parse([0x22, 0xC3, 0x28, 0x22]) }
    }

    @Test func randomDocumentsRoundTripThroughJSONSerialization() throws {
        var generator = SystemRandomNumberGenerator()
        func random(_ depth: Int) -> Any {
            switch Int.random(in: 0..<(depth > 3 ? 4 : 6), using: &generator) {
            case 0: return Int.random(in: -1_000_000...1_000_000, using: &generator)
            case 1: return Bool.random(using: &generator)
            case 2: return String((0..<Int.random(in: 0..<12, using: &generator)).map { _ in
                Character(Unicode.Scalar([0x22, 0x5C, 0x0A, 0x41, 0xE9, 0x1F600, 0x7F, 0x01].randomElement(using: &generator)!)!) })
            case 3: return Double.random(in: -1e6...1e6, using: &generator)
            case 4: return (0..<Int.random(in: 0..<4, using: &generator)).map { _ in random(depth + 1) }
            default: return Dictionary(uniqueKeysWithValues: (0..<Int.random(in: 0..<4, using: &generator)).map { ("k\($0)", random(depth + 1)) })
            }
        }
        for _ in 0..<500 {
            let document = try JSONSerialization.data(withJSONObject: ["root": random(0)], options: [.fragmentsAllowed])
            #expect(try JSONParser.parse(Array(document)) == JSONDecoder().decode(JSONValue.self, from: document))
        }
    }
}
