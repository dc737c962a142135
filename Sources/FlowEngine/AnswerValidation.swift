public import ChatEvents
import DataProtection
import Foundation

/// Checks a question's answer by type and gives the value to store.
public enum AnswerValidation {
    /// The value to store, or nil when the answer does not fit the type.
    public static func accept(_ text: String, as type: Question.AnswerType, options: [Say.Choice] = [], pattern: Pattern? = nil) -> JSONValue? {
        let trimmed = String(trim(Substring(text)) { $0.properties.isWhitespace })
        switch type {
        case .text: return trimmed.isEmpty ? nil : .string(trimmed)
        case .yesNo: return yesNo(trimmed).map(JSONValue.bool)
        case .number: return number(trimmed).map(JSONValue.number)
        case .email: return email(trimmed).map(JSONValue.string)
        case .phone: return phone(trimmed).map(JSONValue.string)
        case .iban: return iban(trimmed).map(JSONValue.string)
        case .options:
            return option(trimmed, in: options).map { .string($0.payload) }
        case .regex:
            guard let pattern, !trimmed.isEmpty, pattern.matches(trimmed) else { return nil }
            return .string(trimmed)
        }
    }

    /// `text` without the leading and trailing Unicode scalars that `drop` accepts (what
    /// `trimmingCharacters(in:)` does, without Foundation's bridging).
    static func trim(_ text: Substring, where drop: (Unicode.Scalar) -> Bool) -> Substring {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !drop($0) }), let last = scalars.lastIndex(where: { !drop($0) }) else { return "" }
        return Substring(scalars[first...last])
    }

    /// The option `text` picks: its payload or title as sent (a button's postback), else in any
    /// case, else by folded words ("track  my ORDER!"). Folding keeps letters and digits only,
    /// so a text with none ("👎", "?", an attachment's empty text) picks only by the first two,
    /// and a folded text that two options share ("C++", "C#") picks none.
    static func option(_ text: String, in options: [Say.Choice]) -> Say.Choice? {
        guard !text.isEmpty else { return nil }
        if let exact = options.first(where: { $0.payload == text || $0.title.source == text }) { return exact }
        let lowered = text.lowercased()
        if let caseless = options.first(where: { $0.payload.lowercased() == lowered || $0.title.source.lowercased() == lowered }) { return caseless }
        let folded = fold(text)
        guard !folded.isEmpty else { return nil }
        let matching = options.filter { fold($0.payload) == folded || fold($0.title.source) == folded }
        return matching.count == 1 ? matching[0] : nil
    }

    static func fold(_ text: String) -> String {
        TextNormalizer.words(text).joined(separator: " ")
    }

    static let yesWords: Set<String> = ["yes", "y", "yeah", "yep", "yup", "sure", "ok", "okay", "correct", "right", "ja", "si", "oui", "absolutely", "of course"]
    static let noWords: Set<String> = ["no", "n", "nope", "nah", "not", "never", "nein", "non", "no thanks", "no thank you"]

    /// After "not": no answer at all ("not sure").
    static let hedges: Set<String> = ["sure", "certain", "decided", "know"]

    public static func yesNo(_ text: String) -> Bool? {
        let folded = fold(text)
        if yesWords.contains(folded) { return true }
        if noWords.contains(folded) { return false }
        // "yes please", "no thanks", "not really"; but "not sure" is neither.
        let words = TextNormalizer.words(text)
        let first = words.first ?? ""
        if yesWords.contains(first) { return true }
        if first == "not", words.count > 1, hedges.contains(words[1]) { return nil }
        if noWords.contains(first) { return false }
        return nil
    }

    /// A number in the text: `42`, `-3.5`, `1,234.50`, `3,5` (decimal comma).
    public static func number(_ text: String) -> Double? {
        // A letter anywhere rules a number out: most words end here without an allocation.
        guard !text.utf8.contains(where: { ($0 | 0x20) >= UInt8(ascii: "a") && ($0 | 0x20) <= UInt8(ascii: "z") }) else { return nil }
        var candidate = text.filter { !$0.isWhitespace }
        guard !candidate.isEmpty, candidate.allSatisfy({ $0.isASCII && ($0.isNumber || "+-.,".contains($0)) }) else { return nil }
        let commas = candidate.filter { $0 == "," }.count
        let dots = candidate.filter { $0 == "." }.count
        if commas > 0 && dots > 0 {
            // The last separator is the decimal point: 1,234.50 and 1.234,50.
            if candidate.lastIndex(of: ",")! > candidate.lastIndex(of: ".")! {
                candidate.removeAll { $0 == "." }
                candidate = candidate.replacingOccurrences(of: ",", with: ".")
            } else {
                candidate.removeAll { $0 == "," }
            }
        } else if commas == 1 && dots == 0 {
            let decimals = candidate.split(separator: ",").last?.count ?? 0
            candidate = decimals == 3 ? candidate.replacingOccurrences(of: ",", with: "") : candidate.replacingOccurrences(of: ",", with: ".")
        } else if commas > 1 {
            candidate.removeAll { $0 == "," }
        }
        guard let value = Double(candidate), value.isFinite else { return nil }
        return value
    }

    /// An email address (lower-cased domain), by the practical rules: one `@`, a local part
    /// of allowed characters without leading, trailing or double dots, a domain of labels with
    /// a letter-only top-level label.
    public static func email(_ text: String) -> String? {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, let local = parts.first, let domain = parts.last,
              (1...64).contains(local.count), (3...253).contains(domain.count) else { return nil }
        guard local.allSatisfy(emailLocalCharacters.contains), !local.hasPrefix("."), !local.hasSuffix("."),
              !zip(local.utf8, local.utf8.dropFirst()).contains(where: { $0 == UInt8(ascii: ".") && $1 == UInt8(ascii: ".") }) else { return nil }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2 else { return nil }
        for label in labels {
            guard (1...63).contains(label.count), label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }),
                  !label.hasPrefix("-"), !label.hasSuffix("-") else { return nil }
        }
        guard let tld = labels.last, tld.count >= 2, tld.allSatisfy(\.isLetter) else { return nil }
        return "\(local)@\(domain.lowercased())"
    }

    static let emailLocalCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-")

    /// A phone number: an optional `+` (or `00`), then 7 to 15 digits with spaces, dashes,
    /// dots or one pair of parentheses between them. Stored as `+digits` when international,
    /// digits otherwise.
    public static func phone(_ text: String) -> String? {
        var digits = ""
        var international = false
        var parentheses = 0
        for (index, character) in text.enumerated() {
            switch character {
            case "+" where index == 0: international = true
            case "0"..."9": digits.append(character)
            case " ", "-", ".", "/": continue
            case "(": parentheses += 1
            case ")": parentheses -= 1
            default: return nil
            }
            if parentheses < 0 || parentheses > 1 { return nil }
        }
        guard parentheses == 0 else { return nil }
        if !international, digits.hasPrefix("00") {
            international = true
            digits.removeFirst(2)
        }
        guard (7...15).contains(digits.count) else { return nil }
        return international ? "+" + digits : digits
    }

    /// An IBAN in its compact upper-case form, checked for the country's length and mod-97
    /// (the same check the data-protection scanner uses).
    public static func iban(_ text: String) -> String? {
        let compact = text.uppercased().filter { $0 != " " && $0 != "-" }
        return PIIScanner.isValidIBAN(compact) ? compact : nil
    }

    /// Values found in free text, offered to flows as `input.slots`: the first email, phone
    /// number, IBAN and number.
    static let tokenPunctuation: Set<Unicode.Scalar> = [".", "!", "?", ":", "(", ")", "[", "]", "\"", "'"]

    public static func slots(in text: String) -> [String: JSONValue] {
        guard !text.isEmpty else { return [:] }
        var slots: [String: JSONValue] = [:]
        let tokens = text.split(whereSeparator: { $0.isWhitespace || $0 == "," || $0 == ";" })
            .map { trim($0) { tokenPunctuation.contains($0) } }
        for token in tokens where !token.isEmpty {
            if slots["email"] == nil, token.utf8.contains(UInt8(ascii: "@")), let value = email(String(token)) { slots["email"] = .string(value) }
            else if slots["number"] == nil, let value = number(String(token)) { slots["number"] = .number(value) }
        }
        if slots["iban"] == nil, let value = iban(text) { slots["iban"] = .string(value) }
        if let value = phone(text) { slots["phone"] = .string(value) }
        return slots
    }
}
