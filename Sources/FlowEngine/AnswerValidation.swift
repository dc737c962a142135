public import ChatEvents
import Foundation

/// Checks a question's answer by type and gives the value to store.
public enum AnswerValidation {
    /// The value to store, or nil when the answer does not fit the type.
    public static func accept(_ text: String, as type: Question.AnswerType, options: [Say.Choice] = [], pattern: Pattern? = nil) -> JSONValue? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        switch type {
        case .text: return trimmed.isEmpty ? nil : .string(trimmed)
        case .yesNo: return yesNo(trimmed).map(JSONValue.bool)
        case .number: return number(trimmed).map(JSONValue.number)
        case .email: return email(trimmed).map(JSONValue.string)
        case .phone: return phone(trimmed).map(JSONValue.string)
        case .iban: return iban(trimmed).map(JSONValue.string)
        case .options:
            let folded = fold(trimmed)
            return options.first { fold($0.payload) == folded || fold($0.title.source) == folded }.map { .string($0.payload) }
        case .regex:
            guard let pattern, !trimmed.isEmpty, pattern.matches(trimmed) else { return nil }
            return .string(trimmed)
        }
    }

    static func fold(_ text: String) -> String {
        TextNormalizer.words(text).joined(separator: " ")
    }

    static let yesWords: Set<String> = ["yes", "y", "yeah", "yep", "yup", "sure", "ok", "okay", "correct", "right", "ja", "si", "oui", "absolutely", "of course"]
    static let noWords: Set<String> = ["no", "n", "nope", "nah", "not", "never", "nein", "non", "no thanks", "no thank you"]

    public static func yesNo(_ text: String) -> Bool? {
        let folded = fold(text)
        if yesWords.contains(folded) { return true }
        if noWords.contains(folded) { return false }
        let first = TextNormalizer.words(text).first ?? ""
        if yesWords.contains(first) { return true }
        if noWords.contains(first) { return false }
        return nil
    }

    /// A number in the text: `42`, `-3.5`, `1,234.50`, `3,5` (decimal comma).
    public static func number(_ text: String) -> Double? {
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
        let localAllowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-")
        guard local.allSatisfy(localAllowed.contains), !local.hasPrefix("."), !local.hasSuffix("."), !local.contains("..") else { return nil }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2 else { return nil }
        for label in labels {
            guard (1...63).contains(label.count), label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }),
                  !label.hasPrefix("-"), !label.hasSuffix("-") else { return nil }
        }
        guard let tld = labels.last, tld.count >= 2, tld.allSatisfy(\.isLetter) else { return nil }
        return "\(local)@\(domain.lowercased())"
    }

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

    /// IBAN lengths by country (ISO 13616 registry).
    static let ibanLengths: [String: Int] = [
        "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
        "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
        "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
        "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
        "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
        "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
        "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SV": 28,
        "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    ]

    /// An IBAN in its compact upper-case form, checked for the country's length and mod-97.
    public static func iban(_ text: String) -> String? {
        let compact = text.uppercased().filter { $0 != " " && $0 != "-" }
        guard compact.count >= 15, compact.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else { return nil }
        let country = String(compact.prefix(2))
        guard let length = ibanLengths[country], compact.count == length,
              compact.dropFirst(2).prefix(2).allSatisfy(\.isNumber) else { return nil }
        let rearranged = compact.dropFirst(4) + compact.prefix(4)
        var remainder = 0
        for character in rearranged {
            let value = character.isNumber ? Int(String(character))! : Int(character.asciiValue! - 55)
            remainder = value >= 10 ? (remainder * 100 + value) % 97 : (remainder * 10 + value) % 97
        }
        return remainder == 1 ? compact : nil
    }

    /// Values found in free text, offered to flows as `input.slots`: the first email, phone
    /// number, IBAN and number.
    public static func slots(in text: String) -> [String: JSONValue] {
        guard !text.isEmpty else { return [:] }
        var slots: [String: JSONValue] = [:]
        let tokens = text.split(whereSeparator: { $0.isWhitespace || $0 == "," || $0 == ";" })
            .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: ".!?:()[]\"'")) }
        for token in tokens where !token.isEmpty {
            if slots["email"] == nil, token.contains("@"), let value = email(token) { slots["email"] = .string(value) }
            else if slots["number"] == nil, let value = number(token) { slots["number"] = .number(value) }
        }
        if slots["iban"] == nil, let value = iban(text) { slots["iban"] = .string(value) }
        if let value = phone(text) { slots["phone"] = .string(value) }
        return slots
    }
}
