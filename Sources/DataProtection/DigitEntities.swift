extension PIIScanner {
    /// A maximal run of ASCII digits.
    struct Group {
        var start: Int
        var end: Int
        var count: Int { end - start }
    }

    /// Cards, SSNs, IPv4 addresses and phone numbers: runs of digit groups joined by short
    /// separators (space, dash, dot, slash, parentheses) are split into chains, and each chain
    /// is read left to right, trying at each group the longest window of up to eight groups
    /// that validates. Each group is visited a bounded number of times: linear.
    static func digitEntities(_ text: [Unicode.Scalar], entities: Set<String>, into found: inout [PIISpan], taken: inout TakenRanges) {
        var chain: [Group] = []
        var index = 0
        func flush() {
            if !chain.isEmpty { readChain(chain, text, entities, &found, &taken) }
            chain.removeAll(keepingCapacity: true)
        }
        while index < text.count {
            guard isDigit(text[index]) else {
                index += 1
                continue
            }
            let start = index
            while index < text.count, isDigit(text[index]) { index += 1 }
            let group = Group(start: start, end: index)
            if let last = chain.last, !joinable(text, from: last.end, to: group.start) { flush() }
            chain.append(group)
        }
        flush()
    }

    /// One or two separator characters between groups keep them in one chain.
    static func joinable(_ text: [Unicode.Scalar], from: Int, to: Int) -> Bool {
        let gap = to - from
        guard gap >= 1, gap <= 2 else { return false }
        for i in from..<to where !" -./()".unicodeScalars.contains(text[i]) { return false }
        return true
    }

    static func readChain(_ chain: [Group], _ text: [Unicode.Scalar], _ entities: Set<String>, _ found: inout [PIISpan], _ taken: inout TakenRanges) {
        var i = 0
        while i < chain.count {
            var matched = false
            // The widest window that can still hold an entity (at most 20 digits, 8 groups).
            var width = 0
            var digitCount = 0
            while width < 8, i + width < chain.count, digitCount + chain[i + width].count <= 20 {
                digitCount += chain[i + width].count
                width += 1
            }
            while width >= 1 {
                let window = chain[i..<(i + width)]
                let digits = window.reduce(0) { $0 + $1.count }
                // Nothing has fewer than 7 digits but an IPv4 address (four groups).
                if (digits >= 7 || width == 4), let span = classify(window, text, entities), taken.claim(span.start, span.end) {
                    found.append(span)
                    matched = true
                    break
                }
                width -= 1
            }
            i += matched ? width : 1
        }
    }

    static func classify(_ groups: ArraySlice<Group>, _ text: [Unicode.Scalar], _ entities: Set<String>) -> PIISpan? {
        let first = groups.first!
        let last = groups.last!
        var digits: [UInt8] = []
        digits.reserveCapacity(20)
        for group in groups {
            for i in group.start..<group.end { digits.append(UInt8(text[i].value - 48)) }
            if digits.count > 20 { return nil }
        }
        let separators = zip(groups, groups.dropFirst()).map { text[$0.end..<$1.start] }
        let before: Unicode.Scalar? = first.start > 0 ? text[first.start - 1] : nil
        let after: Unicode.Scalar? = last.end < text.count ? text[last.end] : nil
        // Part of a bigger number or word (a decimal, an amount, an order number, a code).
        if let before, isWordCharacter(before) || before == "#" || before == "$" || before == "€" || before == "£" || before == "@" { return nil }
        if let before, before == "." || before == ",", first.start >= 2, isDigit(text[first.start - 2]) { return nil }
        if let after, (after == "." || after == ","), last.end + 1 < text.count, isDigit(text[last.end + 1]) { return nil }
        let sizes = groups.map(\.count)
        let singleSeparators = separators.allSatisfy { $0.count == 1 }
        let uniform = singleSeparators && Set(separators.map { $0.first! }).count <= 1
        let separator: Unicode.Scalar? = separators.first?.first
        let endsCleanly = after == nil || !isWordCharacter(after!)

        // IPv4: four dotted octets.
        if entities.contains(PIIEntity.ipAddress), groups.count == 4, uniform, separator == ".", endsCleanly,
           validIPv4(text[first.start..<last.end]) {
            return PIISpan(type: PIIEntity.ipAddress, start: first.start, end: last.end)
        }
        if separator == "." && groups.count == 3 && sizes.allSatisfy({ $0 <= 3 }) { return nil }  // a version or a date

        // Credit card: 13-19 digits, Luhn, an issuer prefix, printed as one run or in groups.
        if entities.contains(PIIEntity.creditCard), (13...19).contains(digits.count), endsCleanly, luhn(digits), issuer(digits),
           groups.count == 1 || (uniform && separator != "/" && sizes.first == 4 && sizes.dropFirst().allSatisfy({ (3...6).contains($0) }) || (uniform && sizes.dropLast().allSatisfy { $0 == 4 })) {
            return PIISpan(type: PIIEntity.creditCard, start: first.start, end: last.end)
        }

        // US SSN: 3-2-4 with one separator, or nine digits after "ssn"/"social security".
        if entities.contains(PIIEntity.usSSN), digits.count == 9, endsCleanly, validSSN(digits),
           (groups.count == 3 && sizes == [3, 2, 4] && uniform && (separator == "-" || separator == " "))
            || (groups.count == 1 && hasContext(text, before: first.start, words: ssnWords)) {
            return PIISpan(type: PIIEntity.usSSN, start: first.start, end: last.end)
        }

        // Phone numbers.
        if entities.contains(PIIEntity.phone), (7...15).contains(digits.count) {
            return phone(groups, digits: digits, separators: separators, text)
        }
        return nil
    }

    static func phone(_ groups: ArraySlice<Group>, digits: [UInt8], separators: [ArraySlice<Unicode.Scalar>], _ text: [Unicode.Scalar]) -> PIISpan? {
        let first = groups.first!
        let last = groups.last!
        let sizes = groups.map(\.count)
        // Dates are not phone numbers: 2024-05-17, 17/05/2024, 17.05.2024.
        if digits.count == 8, groups.count == 3, sizes == [4, 2, 2] || sizes == [2, 2, 4] { return nil }
        if separators.contains(where: { $0.contains("/") }) { return nil }
        var start = first.start
        var international = false
        var parenthesized = false
        if start > 0, text[start - 1] == "(" {
            parenthesized = true
            start -= 1
        }
        if start > 0, text[start - 1] == "+" {
            international = true
            start -= 1
        }
        if start > 0, isWordCharacter(text[start - 1]) { return nil }
        if !international, digits.count >= 10, digits[0] == 0, digits[1] == 0 { international = true }
        // Parentheses must pair up inside the number.
        var depth = parenthesized ? 1 : 0
        for separator in separators {
            for s in separator {
                if s == "(" { depth += 1 } else if s == ")" { depth -= 1 }
                if depth < 0 || depth > 1 { return nil }
            }
        }
        guard depth == 0 else { return nil }
        var end = last.end
        // An extension: x123, ext. 123, ext 123.
        if end < text.count {
            var probe = end
            if text[probe] == " " { probe += 1 }
            var marker = ""
            while probe < text.count, isASCIILetter(text[probe]), marker.count < 4 {
                marker.unicodeScalars.append(text[probe])
                probe += 1
            }
            if ["x", "ext", "ext."].contains(marker.lowercased()) || marker.lowercased() == "ext" {
                if probe < text.count, text[probe] == "." { probe += 1 }
                if probe < text.count, text[probe] == " " { probe += 1 }
                let digitsStart = probe
                while probe < text.count, isDigit(text[probe]), probe - digitsStart < 6 { probe += 1 }
                if probe > digitsStart, probe == text.count || !isWordCharacter(text[probe]) { end = probe }
            }
        }
        if end == last.end, end < text.count, isWordCharacter(text[end]) { return nil }
        let nanp = digits.count == 10 && groups.count == 3 && sizes == [3, 3, 4] && digits[0] >= 2
            && Set(separators.map { String(String.UnicodeScalarView($0)) }).count == 1
        let nanpParenthesized = digits.count == 10 && parenthesized && sizes.first == 3
        let national = digits[0] == 0 && (9...12).contains(digits.count) && !(digits.count <= 12 && groups.count == 1 && digits.count < 10)
        let accepted = (international && (8...15).contains(digits.count))
            || nanp || nanpParenthesized
            || (parenthesized && (7...12).contains(digits.count))
            || national
            || ((7...13).contains(digits.count) && hasContext(text, before: start, words: phoneWords))
        return accepted ? PIISpan(type: PIIEntity.phone, start: start, end: end) : nil
    }

    static func luhn(_ digits: [UInt8]) -> Bool {
        var sum = 0
        for (offset, digit) in digits.reversed().enumerated() {
            var value = Int(digit)
            if offset % 2 == 1 {
                value *= 2
                if value > 9 { value -= 9 }
            }
            sum += value
        }
        return sum % 10 == 0
    }

    /// The major networks' prefixes: Visa 4, Mastercard 51-55 and 2221-2720, Amex 34/37,
    /// Discover 6011/644-649/65, Diners 300-305/36/38-39, JCB 3528-3589, UnionPay 62, Maestro
    /// 50/56-58/6x.
    static func issuer(_ digits: [UInt8]) -> Bool {
        let two = Int(digits[0]) * 10 + Int(digits[1])
        let four = two * 100 + Int(digits[2]) * 10 + Int(digits[3])
        switch digits[0] {
        case 4: return true
        case 5: return (50...58).contains(two)
        case 2: return (2221...2720).contains(four)
        case 3: return [34, 36, 37, 38, 39].contains(two) || (3000...3059).contains(four) || (3528...3589).contains(four)
        case 6: return true
        default: return false
        }
    }

    static func validSSN(_ digits: [UInt8]) -> Bool {
        let area = Int(digits[0]) * 100 + Int(digits[1]) * 10 + Int(digits[2])
        let group = Int(digits[3]) * 10 + Int(digits[4])
        let serial = digits[5...].reduce(0) { $0 * 10 + Int($1) }
        return area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
    }

    static let ssnWords = ["ssn", "social security", "soc sec", "ss#", "ss no", "tax id", "itin"]
    static let phoneWords = [
        "call", "phone", "tel", "mobile", "cell", "reach", "contact", "whatsapp", "fax", "sms", "text me", "number",
        "ring", "dial", "handy", "telefon", "téléphone", "portable", "móvil", "celular",
    ]

    /// One of `words` in the 40 scalars before `position` (ASCII case ignored). Compares
    /// scalars in place: no strings are built, so a text with many candidates stays cheap.
    static func hasContext(_ text: [Unicode.Scalar], before position: Int, words: [String]) -> Bool {
        let from = max(0, position - 40)
        guard from < position else { return false }
        // Inside a long run of digits and separators there is nothing to read: skip the search.
        guard text[from..<position].contains(where: { !$0.isASCII || isASCIILetter($0) }) else { return false }
        for word in words {
            let pattern = Array(word.unicodeScalars)
            guard pattern.count <= position - from else { continue }
            var start = from
            while start + pattern.count <= position {
                var matches = true
                for k in 0..<pattern.count where lowered(text[start + k]) != pattern[k] {
                    matches = false
                    break
                }
                if matches { return true }
                start += 1
            }
        }
        return false
    }

    @inline(__always) static func lowered(_ s: Unicode.Scalar) -> Unicode.Scalar {
        s.value >= 65 && s.value <= 90 ? Unicode.Scalar(s.value + 32)! : s
    }
}
