import Foundation

/// A piece of personal data found in a text. Offsets count Unicode scalars (code points), as
/// Python and most labeling tools do.
public struct PIISpan: Sendable, Hashable, Codable {
    public var type: String
    public var start: Int
    public var end: Int

    public init(type: String, start: Int, end: Int) {
        self.type = type
        self.start = start
        self.end = end
    }
}

/// The built-in entity types.
public enum PIIEntity {
    public static let creditCard = "CREDIT_CARD"
    public static let iban = "IBAN"
    public static let email = "EMAIL"
    public static let phone = "PHONE"
    public static let ipAddress = "IP_ADDRESS"
    public static let usSSN = "US_SSN"
    public static let all: [String] = [creditCard, iban, email, phone, ipAddress, usSSN]
}

/// Finds personal data in text without regular expressions: one left-to-right pass that looks
/// at each position a bounded number of times, so the cost is linear in the text whatever it
/// holds (a megabyte of digits and separators included). Every candidate is validated, not
/// just matched: Luhn and issuer prefixes for cards, length per country and mod-97 for IBANs,
/// area/group/serial rules for SSNs, octet ranges for IPv4, a full parse for IPv6, a
/// structural check for email addresses, and grouping rules plus context words for phone
/// numbers.
public struct PIIScanner: Sendable {
    public var entities: Set<String>
    public var custom: [CustomRecognizer]

    public init(entities: Set<String> = Set(PIIEntity.all), custom: [CustomRecognizer] = []) {
        self.entities = entities
        self.custom = custom
    }

    public func scan(_ text: String) -> [PIISpan] {
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars { scalars.append(scalar.isASCII ? scalar : Self.folded(scalar)) }
        var found: [PIISpan] = []
        var taken = TakenRanges(count: scalars.count)
        // Most specific first; a later recognizer never overlaps an earlier finding.
        if entities.contains(PIIEntity.email) { Self.emails(scalars, into: &found, taken: &taken) }
        if entities.contains(PIIEntity.iban) { Self.ibans(scalars, into: &found, taken: &taken) }
        if entities.contains(PIIEntity.ipAddress) { Self.ipv6(scalars, into: &found, taken: &taken) }
        Self.digitEntities(scalars, entities: entities, into: &found, taken: &taken)
        for recognizer in custom where entities.contains(recognizer.type) || entities.isEmpty {
            recognizer.scan(scalars, into: &found, taken: &taken)
        }
        return found.sorted { $0.start < $1.start }
    }

    // MARK: - Character classes

    /// What people type for the ASCII a number or an address is written in, read as that ASCII,
    /// one scalar for one so that offsets stay: the digits of every script ("４１１１" from a
    /// Japanese keyboard, "٤١١١"), no-break and thin spaces (numbers pasted from a bank's app or
    /// a PDF), hyphens and dashes, and the full-width "@", ".", "+", "(" and ")".
    static func folded(_ s: Unicode.Scalar) -> Unicode.Scalar {
        switch s.value {
        case 0x00A0, 0x2007, 0x2009, 0x202F, 0x3000: return " "
        case 0x2010...0x2013, 0x2212, 0xFE63, 0xFF0D: return "-"
        case 0xFF20: return "@"
        case 0xFF0E: return "."
        case 0xFF0B: return "+"
        case 0xFF08: return "("
        case 0xFF09: return ")"
        default:
            let properties = s.properties
            guard properties.numericType == .decimal, let value = properties.numericValue, value >= 0, value <= 9 else { return s }
            return Unicode.Scalar(48 + UInt8(value))
        }
    }

    @inline(__always) static func isDigit(_ s: Unicode.Scalar) -> Bool { s.value >= 48 && s.value <= 57 }
    @inline(__always) static func isASCIILetter(_ s: Unicode.Scalar) -> Bool {
        (s.value >= 65 && s.value <= 90) || (s.value >= 97 && s.value <= 122)
    }
    @inline(__always) static func isHex(_ s: Unicode.Scalar) -> Bool {
        isDigit(s) || (s.value >= 65 && s.value <= 70) || (s.value >= 97 && s.value <= 102)
    }
    /// Letters and digits of any script: what makes a word go on.
    @inline(__always) static func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
        s.isASCII ? (isDigit(s) || isASCIILetter(s) || s == "_") : s.properties.isAlphabetic || s.properties.numericType != nil
    }

    /// A word character that makes a number or code it touches part of a longer word ("abc4111…"
    /// is a code, "4111…abc" too). Not a letter of a script written without spaces between
    /// words (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar) or between a number and its
    /// particle (Hangul): "カード番号４１１１…です" holds a card number.
    @inline(__always) static func joinsWord(_ s: Unicode.Scalar) -> Bool {
        isWordCharacter(s) && (s.isASCII || !isUnspacedLetter(s))
    }

    static func isUnspacedLetter(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x0E00...0x0EFF,  // Thai, Lao
             0x1000...0x109F,  // Myanmar
             0x1100...0x11FF,  // Hangul Jamo
             0x1780...0x17FF,  // Khmer
             0x3005...0x3007, 0x3021...0x3029, 0x3031...0x3035, 0x303B...0x303C,  // iteration marks, Suzhou numerals
             0x3040...0x30FF,  // Hiragana, Katakana
             0x3130...0x318F,  // Hangul compatibility Jamo
             0x31F0...0x31FF,  // Katakana extensions
             0x3400...0x4DBF, 0x4E00...0x9FFF, 0xF900...0xFAFF,  // Han
             0xA960...0xA97F, 0xAC00...0xD7FF,  // Hangul
             0xFF66...0xFFDC,  // half-width Katakana and Hangul
             0x20000...0x3FFFF:  // Han, supplementary planes
            true
        default:
            false
        }
    }

    // MARK: - Email

    static func emails(_ text: [Unicode.Scalar], into found: inout [PIISpan], taken: inout TakenRanges) {
        // Internationalized addresses (josé@ejemplo.es, jane@müller.de) count too.
        func isLetter(_ s: Unicode.Scalar) -> Bool { isASCIILetter(s) || (!s.isASCII && s.properties.isAlphabetic) }
        func isLocal(_ s: Unicode.Scalar) -> Bool { isDigit(s) || isLetter(s) || "._%+-'!#$&*=?^`{|}~".unicodeScalars.contains(s) }
        func isDomain(_ s: Unicode.Scalar) -> Bool { isDigit(s) || isLetter(s) || s == "." || s == "-" }
        var index = 0
        while index < text.count {
            defer { index += 1 }
            guard text[index] == "@" else { continue }
            // Where Latin letters or digits meet a script written without spaces, a word ends:
            // "メールはjane@example.comです" holds "jane@example.com".
            func scriptChanges(_ a: Unicode.Scalar, _ b: Unicode.Scalar) -> Bool {
                (isUnspacedLetter(a) && (isDigit(b) || isASCIILetter(b))) || (isUnspacedLetter(b) && (isDigit(a) || isASCIILetter(a)))
            }
            var start = index
            while start > 0, isLocal(text[start - 1]), start == index || !scriptChanges(text[start - 1], text[start]) { start -= 1 }
            while start < index, !isDigit(text[start]) && !isLetter(text[start]) { start += 1 }  // no leading dot or quote
            if index - start > 64 { start = index - 64 }  // a long run before "@" (a URL): keep the address part
            var end = index + 1
            while end < text.count, isDomain(text[end]), end == index + 1 || !scriptChanges(text[end - 1], text[end]) { end += 1 }
            while end > index + 1, text[end - 1] == "." || text[end - 1] == "-" { end -= 1 }
            guard start < index, end > index + 1 else { continue }
            let local = text[start..<index]
            let domain = text[(index + 1)..<end]
            guard !hasDoubleDot(local), local.last != ".",
                  validDomain(domain) else { continue }
            if taken.claim(start, end) { found.append(PIISpan(type: PIIEntity.email, start: start, end: end)) }
            index = end - 1
        }
    }

    static func hasDoubleDot(_ part: ArraySlice<Unicode.Scalar>) -> Bool {
        zip(part, part.dropFirst()).contains { $0 == "." && $1 == "." }
    }

    static func validDomain(_ domain: ArraySlice<Unicode.Scalar>) -> Bool {
        guard domain.count >= 3, domain.count <= 253, !hasDoubleDot(domain) else { return false }
        var labels: [ArraySlice<Unicode.Scalar>] = []
        var labelStart = domain.startIndex
        for i in domain.indices where domain[i] == "." {
            labels.append(domain[labelStart..<i])
            labelStart = i + 1
        }
        labels.append(domain[labelStart..<domain.endIndex])
        guard labels.count >= 2 else { return false }
        for label in labels {
            guard !label.isEmpty, label.count <= 63, label.first != "-", label.last != "-" else { return false }
        }
        guard let tld = labels.last, tld.count >= 2, tld.allSatisfy({ isASCIILetter($0) || (!$0.isASCII && $0.properties.isAlphabetic) }) else { return false }
        return true
    }

    // MARK: - IBAN

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

    static func ibans(_ text: [Unicode.Scalar], into found: inout [PIISpan], taken: inout TakenRanges) {
        var index = 0
        while index + 15 <= text.count {
            defer { index += 1 }
            guard isASCIILetter(text[index]), index == 0 || !joinsWord(text[index - 1]),
                  isASCIILetter(text[index + 1]), isDigit(text[index + 2]), isDigit(text[index + 3]) else { continue }
            let country = String(String.UnicodeScalarView([text[index], text[index + 1]])).uppercased()
            guard let length = ibanLengths[country] else { continue }
            // Compact, or printed in groups of four separated by single spaces.
            var characters: [Unicode.Scalar] = []
            var position = index
            var groupLength = 0
            while position < text.count, characters.count < length {
                let s = text[position]
                if isDigit(s) || isASCIILetter(s) {
                    characters.append(s)
                    groupLength += 1
                    position += 1
                } else if s == " " || s == "-", groupLength == 4, position + 1 < text.count,
                          isDigit(text[position + 1]) || isASCIILetter(text[position + 1]) {
                    groupLength = 0
                    position += 1
                } else {
                    break
                }
            }
            guard characters.count == length, position == text.count || !joinsWord(text[position]),
                  mod97(characters) == 1 else { continue }
            if taken.claim(index, position) { found.append(PIISpan(type: PIIEntity.iban, start: index, end: position)) }
            index = position - 1
        }
    }

    /// An IBAN in compact form (no spaces), checked for its country's length and mod-97.
    public static func isValidIBAN(_ compact: String) -> Bool {
        let characters = Array(compact.uppercased().unicodeScalars)
        guard characters.count >= 15, characters.allSatisfy({ isDigit($0) || isASCIILetter($0) }),
              let length = ibanLengths[String(String.UnicodeScalarView(characters.prefix(2)))], characters.count == length,
              isDigit(characters[2]), isDigit(characters[3]) else { return false }
        return mod97(characters) == 1
    }

    static func mod97(_ characters: [Unicode.Scalar]) -> Int {
        var remainder = 0
        for s in characters.dropFirst(4) + characters.prefix(4) {
            let value: Int
            if isDigit(s) { value = Int(s.value - 48) }
            else if s.value >= 97 { value = Int(s.value - 97 + 10) }
            else { value = Int(s.value - 65 + 10) }
            remainder = value >= 10 ? (remainder * 100 + value) % 97 : (remainder * 10 + value) % 97
        }
        return remainder
    }

    // MARK: - IPv6

    static func ipv6(_ text: [Unicode.Scalar], into found: inout [PIISpan], taken: inout TakenRanges) {
        var index = 0
        while index < text.count {
            guard isHex(text[index]) || text[index] == ":", index == 0 || !(joinsWord(text[index - 1]) || text[index - 1] == ":") || labelled(text, at: index) else {
                index += 1
                continue
            }
            var end = index
            var colons = 0
            while end < text.count, isHex(text[end]) || text[end] == ":" || text[end] == "." {
                if text[end] == ":" { colons += 1 }
                end += 1
                if end - index > 45 { break }
            }
            var candidateEnd = end
            while candidateEnd > index, text[candidateEnd - 1] == "." { candidateEnd -= 1 }
            if colons >= 2, candidateEnd == text.count || !joinsWord(text[candidateEnd]),
               validIPv6(text[index..<candidateEnd]), taken.claim(index, candidateEnd) {
                found.append(PIISpan(type: PIIEntity.ipAddress, start: index, end: candidateEnd))
            }
            index = max(end, index + 1)
        }
    }

    /// Whether an address may start at `index` right after a label and a colon ("IP:2001:db8::1",
    /// "IPv6:fe80::1"): the word before the colon has a letter that is not a hex digit, so the
    /// colon ends a label, not a group of the same address.
    static func labelled(_ text: [Unicode.Scalar], at index: Int) -> Bool {
        guard index >= 2, text[index - 1] == ":", isHex(text[index]) else { return false }
        var before = index - 2
        while before >= 0, isHex(text[before]) { before -= 1 }
        return before >= 0 && joinsWord(text[before]) && text[before] != ":"
    }

    /// RFC 4291 text forms: eight groups, `::` once, an IPv4 tail.
    static func validIPv6(_ text: ArraySlice<Unicode.Scalar>) -> Bool {
        let string = String(String.UnicodeScalarView(text))
        let doubleColons = string.components(separatedBy: "::").count - 1
        guard doubleColons <= 1, !string.contains(":::") else { return false }
        var groups = string.split(separator: ":", omittingEmptySubsequences: true).map(String.init)
        var needed = 8
        if let last = groups.last, last.contains(".") {
            guard validIPv4(Array(last.unicodeScalars)[...]) else { return false }
            groups.removeLast()
            needed = 6
        }
        guard groups.allSatisfy({ (1...4).contains($0.count) && $0.unicodeScalars.allSatisfy(isHex) }) else { return false }
        if doubleColons == 1 {
            guard groups.count < needed else { return false }
            if string.hasPrefix(":") && !string.hasPrefix("::") { return false }
            if string.hasSuffix(":") && !string.hasSuffix("::") { return false }
        } else {
            guard groups.count == needed, !string.hasPrefix(":"), !string.hasSuffix(":") else { return false }
        }
        // Something that reads like a time or a ratio ("10:30:15") is not an address.
        return groups.contains { $0.unicodeScalars.contains(where: { !isDigit($0) }) } || groups.count >= 5 || doubleColons == 1
    }

    static func validIPv4(_ text: ArraySlice<Unicode.Scalar>) -> Bool {
        var octets = 0
        var value = 0
        var digits = 0
        for s in text {
            if isDigit(s) {
                if digits == 1 && value == 0 { return false }  // leading zero
                value = value * 10 + Int(s.value - 48)
                digits += 1
                guard digits <= 3, value <= 255 else { return false }
            } else if s == "." {
                guard digits > 0 else { return false }
                octets += 1
                value = 0
                digits = 0
            } else {
                return false
            }
        }
        return digits > 0 && octets == 3
    }
}

/// The scalars already claimed by a finding, so recognizers never report overlapping spans.
/// A flag per scalar: checking a span costs its length, never the number of findings.
struct TakenRanges {
    private var taken: [Bool]

    init(count: Int) { taken = [Bool](repeating: false, count: count) }

    func overlaps(_ start: Int, _ end: Int) -> Bool {
        taken[start..<end].contains(true)
    }

    /// Claims the range unless it overlaps one already claimed.
    mutating func claim(_ start: Int, _ end: Int) -> Bool {
        guard start < end, !overlaps(start, end) else { return false }
        for i in start..<end { taken[i] = true }
        return true
    }

    /// Claims what is not yet claimed of the range; returns those pieces.
    mutating func claimFree(_ start: Int, _ end: Int) -> [Range<Int>] {
        var pieces: [Range<Int>] = []
        var i = start
        while i < end {
            guard !taken[i] else { i += 1; continue }
            let pieceStart = i
            while i < end, !taken[i] { taken[i] = true; i += 1 }
            pieces.append(pieceStart..<i)
        }
        return pieces
    }
}
