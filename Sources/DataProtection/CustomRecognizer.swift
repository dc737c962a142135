import ChatEvents
import Foundation

/// A recognizer from configuration: a regular expression matched inside each whitespace-
/// separated token (a longer token in windows of 256 scalars that overlap by half), an
/// optional checksum, and optional context words that must appear within 40
/// scalars before the match.
public struct CustomRecognizer: @unchecked Sendable {
    public enum Validator: String, Sendable, CaseIterable {
        case none, luhn, mod97
    }

    public let type: String
    public let pattern: String
    let regex: NSRegularExpression
    public let validator: Validator
    public let contextWords: [String]
    let context: ContextWords

    public init(type: String, pattern: String, validator: Validator = .none, contextWords: [String] = []) throws {
        if let problem = Self.backtrackingRisk(pattern) { throw DataProtectionError("custom recognizer \(type): \(problem)") }
        self.type = type
        self.pattern = pattern
        regex = try NSRegularExpression(pattern: pattern)
        self.validator = validator
        self.contextWords = contextWords.map { $0.lowercased() }
        context = ContextWords(self.contextWords)
    }

    static let maxToken = 256
    /// How long the search of one token may take.
    static let matchBudget = RegexBudget(.milliseconds(20))

    /// Patterns that can backtrack exponentially are refused: back-references, and a
    /// quantified group that itself contains a quantifier (`(\d+)+`, `(a*)*`, `(x|y+){2,}`).
    static func backtrackingRisk(_ pattern: String) -> String? {
        let scalars = Array(pattern.unicodeScalars)
        var groupHasQuantifier: [Bool] = []
        var lastClosedHadQuantifier = false
        var i = 0
        var inClass = false
        while i < scalars.count {
            let c = scalars[i]
            if c == "\\" {
                if i + 1 < scalars.count, ("1"..."9").contains(scalars[i + 1]) { return "back-references are not allowed" }
                i += 2
                lastClosedHadQuantifier = false
                continue
            }
            if inClass {
                if c == "]" { inClass = false }
                i += 1
                continue
            }
            switch c {
            case "[": inClass = true
            case "(": groupHasQuantifier.append(false)
            case ")":
                lastClosedHadQuantifier = groupHasQuantifier.popLast() ?? false
                if lastClosedHadQuantifier, !groupHasQuantifier.isEmpty { groupHasQuantifier[groupHasQuantifier.count - 1] = true }
                i += 1
                if i < scalars.count, "+*{".unicodeScalars.contains(scalars[i]), lastClosedHadQuantifier {
                    return "a repeated group that repeats inside can take exponential time"
                }
                continue
            case "+", "*", "{", "?":
                if !groupHasQuantifier.isEmpty, c != "?" { groupHasQuantifier[groupHasQuantifier.count - 1] = true }
            default: break
            }
            lastClosedHadQuantifier = false
            i += 1
        }
        return nil
    }
    static let wrapping = Set(".,;:!?()[]{}\"'<>".unicodeScalars)

    func scan(_ text: [Unicode.Scalar], into found: inout [PIISpan], taken: inout TakenRanges) {
        var index = 0
        while index < text.count {
            while index < text.count, text[index].properties.isWhitespace { index += 1 }
            let start = index
            while index < text.count, !text[index].properties.isWhitespace { index += 1 }
            // Punctuation around a word ("EMP-12345," or "(EMP-12345)") is not part of it.
            var (from, to) = (start, index)
            while from < to, Self.wrapping.contains(text[from]) { from += 1 }
            while to > from, Self.wrapping.contains(text[to - 1]) { to -= 1 }
            guard to > from else { continue }
            if to - from <= Self.maxToken {
                match(text, from: from, to: to, into: &found, taken: &taken)
                continue
            }
            // A longer run without spaces (Chinese, Japanese or Thai writes none, a long URL) is
            // read in windows of `maxToken` that overlap by half. Each window keeps the matches
            // that start in its first half (the first window from its start, the last to its
            // end) and do not reach its cut end: such a match shorter than half a window is seen
            // whole, with whatever follows it, by the window keeping it.
            var window = from
            while true {
                let end = min(to, window + Self.maxToken)
                let owned = (window == from ? 0 : 1)...(end == to ? Self.maxToken : Self.maxToken / 2)
                match(text, from: window, to: end, starts: owned, cutAfter: end < to, into: &found, taken: &taken)
                if end == to { break }
                window += Self.maxToken / 2
            }
        }
    }

    /// The matches inside `text[from..<to]` that start at an offset in `starts` and do not end
    /// at a cut end.
    private func match(
        _ text: [Unicode.Scalar], from: Int, to: Int, starts: ClosedRange<Int> = 0...Int.max, cutAfter: Bool = false,
        into found: inout [PIISpan], taken: inout TakenRanges
    ) {
        let tokenStart = from
        let token = String(String.UnicodeScalarView(text[from..<to]))
        let range = NSRange(token.startIndex..., in: token)
        // A search still running after `matchBudget` of CPU time (a pattern whose backtracking
        // explodes in a way `backtrackingRisk` does not see, such as `(\d|\d\d)+x`) stops,
        // and what is not yet hidden of the token is: what the recognizer could not read is
        // not let through.
        let (matches, gaveUp) = Self.matchBudget.matches(of: regex, in: token, range: range)
        if gaveUp {
            for piece in taken.claimFree(from, to) { found.append(PIISpan(type: type, start: piece.lowerBound, end: piece.upperBound)) }
            return
        }
        for match in matches {
            // By UTF-16 offsets and scalars: a match may end inside a character (before a
            // combining mark), where a character range cannot end.
            let utf16 = token.utf16
            guard match.range.location != NSNotFound,
                  let lower = utf16.index(utf16.startIndex, offsetBy: match.range.location, limitedBy: utf16.endIndex),
                  let upper = utf16.index(lower, offsetBy: match.range.length, limitedBy: utf16.endIndex) else { continue }
            let matched = lower..<upper
            let offset = token.unicodeScalars.distance(from: token.unicodeScalars.startIndex, to: matched.lowerBound)
            let scalars = token.unicodeScalars[matched]
            let length = scalars.count
            if !starts.contains(offset) || (cutAfter && offset + length == to - from) { continue }
            let value = String(scalars)
            guard validates(value) else { continue }
            if !contextWords.isEmpty, !PIIScanner.hasContext(text, before: tokenStart + offset, words: context) { continue }
            if taken.claim(tokenStart + offset, tokenStart + offset + length) {
                found.append(PIISpan(type: type, start: tokenStart + offset, end: tokenStart + offset + length))
            }
        }
    }

    func validates(_ value: String) -> Bool {
        switch validator {
        case .none: return true
        case .luhn:
            let digits = value.unicodeScalars.filter(PIIScanner.isDigit).map { UInt8($0.value - 48) }
            return digits.count >= 2 && PIIScanner.luhn(digits)
        case .mod97:
            let characters = value.unicodeScalars.filter { PIIScanner.isDigit($0) || PIIScanner.isASCIILetter($0) }
            return characters.count >= 5 && PIIScanner.mod97(Array(characters)) == 1
        }
    }
}
