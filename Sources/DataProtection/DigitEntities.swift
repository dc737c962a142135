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
        // The digit groups of an IBAN-shaped string ("ES69 6453 6263 2463 ...") are not cards or
        // phones, even when the IBAN's checksum fails.
        let start = chain[0].start
        if chain.count > 1, chain[0].count == 2, start >= 2, isASCIILetter(text[start - 2]), isASCIILetter(text[start - 1]),
           start == 2 || !joinsWord(text[start - 3]),
           ibanLengths[String(String.UnicodeScalarView([text[start - 2], text[start - 1]])).uppercased()] != nil {
            return
        }
        var i = 0
        var consumedUpTo = 0
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
                // A window that continues a longer number may still be a card (followed by its
                // CVV or expiry, "4111 1111 1111 1111 123"), but nothing else.
                if digits >= 7 || width == 4,
                   let span = classify(window, text, entities, cardOnly: continues(chain, i, width, text, consumedBefore: i == 0 || consumedUpTo == i)),
                   taken.claim(span.start, span.end) {
                    found.append(span)
                    matched = true
                    break
                }
                width -= 1
            }
            if matched {
                i += width
                consumedUpTo = i
            } else {
                i += 1
            }
        }
    }

    /// The window is a piece of a longer number written the same way ("1-447-785-6447",
    /// "4302-9773-7920-7687-448"): the group before it (unless a finding took it) or after it
    /// is joined by the separator the window itself uses, or by a dash or dot for a single group.
    static func continues(_ chain: [Group], _ i: Int, _ width: Int, _ text: [Unicode.Scalar], consumedBefore: Bool) -> Bool {
        func separator(_ a: Group, _ b: Group) -> String { String(String.UnicodeScalarView(text[a.end..<b.start])) }
        let inside: String? = width > 1 ? separator(chain[i], chain[i + 1]) : nil
        func joins(_ neighbour: String, _ group: Group) -> Bool {
            // A short neighbour (an expiry "05/27", a country code "1-") is not the same number.
            guard group.count >= 3 else { return false }
            if let inside { return neighbour == inside && !neighbour.contains("(") && !neighbour.contains(")") }
            return neighbour == "-" || neighbour == "."
        }
        if !consumedBefore, i > 0, joins(separator(chain[i - 1], chain[i]), chain[i - 1]) { return true }
        if i + width < chain.count, joins(separator(chain[i + width - 1], chain[i + width]), chain[i + width]) { return true }
        return false
    }

    static func classify(_ groups: ArraySlice<Group>, _ text: [Unicode.Scalar], _ entities: Set<String>, cardOnly: Bool = false) -> PIISpan? {
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
        // Part of a bigger number or word (a decimal, an amount, an order number, a code); after
        // a "#" only where an SSN or phone word labels it ("ss#123-45-6789", "cell #415-555-0132").
        if let before, joinsWord(before) || before == "$" || before == "€" || before == "£" || before == "@" { return nil }
        if before == "#", !hasContext(text, before: first.start - 1, words: hashLabels, within: 9, wholeWordsUpTo: .max) { return nil }
        if let before, before == "." || before == ",", first.start >= 2, isDigit(text[first.start - 2]) { return nil }

        if let after, (after == "." || after == ","), last.end + 1 < text.count, isDigit(text[last.end + 1]) { return nil }
        let sizes = groups.map(\.count)
        let singleSeparators = separators.allSatisfy { $0.count == 1 }
        let uniform = singleSeparators && Set(separators.map { $0.first! }).count <= 1
        let separator: Unicode.Scalar? = separators.first?.first
        let endsCleanly = after == nil || !joinsWord(after!)

        // IPv4: four dotted octets.
        if !cardOnly, entities.contains(PIIEntity.ipAddress), groups.count == 4, uniform, separator == ".", endsCleanly,
           validIPv4(text[first.start..<last.end]), !hasContext(text, before: first.start, words: versionWords, within: 10, wholeWordsUpTo: .max) {
            return PIISpan(type: PIIEntity.ipAddress, start: first.start, end: last.end)
        }
        if separator == "." && groups.count == 3 && sizes.allSatisfy({ $0 <= 3 }) { return nil }  // a version or a date

        // Credit card: 13-19 digits, Luhn, an issuer prefix, printed as one run or in groups.
        if entities.contains(PIIEntity.creditCard), (13...19).contains(digits.count), endsCleanly, luhn(digits), issuer(digits),
           groups.count == 1 || (uniform && separator != "/" && sizes.first == 4 && sizes.dropFirst().allSatisfy({ (3...6).contains($0) }) || (uniform && sizes.dropLast().allSatisfy { $0 == 4 })) {
            return PIISpan(type: PIIEntity.creditCard, start: first.start, end: last.end)
        }

        if cardOnly { return nil }

        // US SSN: 3-2-4 with one separator, or nine digits next to "ssn"/"social security".
        let ssnShaped = groups.count == 3 && sizes == [3, 2, 4] && uniform && (separator == "-" || separator == " ")
        if entities.contains(PIIEntity.usSSN), digits.count == 9, endsCleanly,
           ssnShaped || (groups.count == 1 && (hasContext(text, before: first.start, words: ssnWords) || hasContext(text, after: last.end, words: ssnWords))) {
            // A dashed 3-2-4 number that breaks the SSN rules is an invalid SSN, not a phone number.
            guard validSSN(digits) else { return ssnShaped && separator == "-" ? nil : phoneOrNil(groups, digits, separators, text, entities) }
            return PIISpan(type: PIIEntity.usSSN, start: first.start, end: last.end)
        }

        return phoneOrNil(groups, digits, separators, text, entities)
    }

    static func phoneOrNil(
        _ groups: ArraySlice<Group>, _ digits: [UInt8], _ separators: [ArraySlice<Unicode.Scalar>], _ text: [Unicode.Scalar], _ entities: Set<String>
    ) -> PIISpan? {
        guard entities.contains(PIIEntity.phone), (7...15).contains(digits.count) else { return nil }
        return phone(groups, digits: digits, separators: separators, text)
    }

    static func phone(_ groups: ArraySlice<Group>, digits: [UInt8], separators: [ArraySlice<Unicode.Scalar>], _ text: [Unicode.Scalar]) -> PIISpan? {
        let first = groups.first!
        let last = groups.last!
        let sizes = groups.map(\.count)
        // Dates are not phone numbers: 2024-05-17, 17/05/2024, 17.05.2024 (also with a time after).
        if groups.count >= 3, Array(sizes.prefix(3)) == [4, 2, 2] || Array(sizes.prefix(3)) == [2, 2, 4] || (groups.count == 3 && sizes == [2, 2, 2]),
           separators.prefix(2).allSatisfy({ $0.count == 1 && "-./".unicodeScalars.contains($0.first!) }) { return nil }
        // Nor is a time: 10:30.
        if last.end + 1 < text.count, text[last.end] == ":", isDigit(text[last.end + 1]) { return nil }
        // A slash only after a national area code: 030/43713270, 0171/5797444.
        let slashes = separators.filter { $0.contains("/") }
        if !slashes.isEmpty {
            guard slashes.count == 1, separators.first?.contains("/") == true, digits[0] == 0, (3...5).contains(sizes[0]),
                  (9...12).contains(digits.count) else { return nil }
        }
        // National numbers do not start with 000 (identifiers do).
        if digits.count >= 3, digits[0] == 0, digits[1] == 0, digits[2] == 0 { return nil }
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
        if start > 0, joinsWord(text[start - 1]) { return nil }
        // 00 is the international prefix in a written-out number, not in a bare run of digits.
        if !international, digits.count >= 10, digits[0] == 0, digits[1] == 0, groups.count > 1 { international = true }
        if groups.count == 1, compactDate(digits) { return nil }
        // Parentheses must pair up inside the number.
        var depth = parenthesized ? 1 : 0
        for separator in separators {
            for s in separator {
                if s == "(" { depth += 1 } else if s == ")" { depth -= 1 }
                if depth < 0 || depth > 1 { return nil }
            }
        }
        if depth == 1, parenthesized, last.end < text.count, text[last.end] == ")" {
            // The whole number is in parentheses, "(06 43 57 44 39)": not an area code.
            parenthesized = false
            start += 1
            if start > 0, text[start - 1] == "+" { international = true }
            depth = 0
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
                if probe > digitsStart, probe == text.count || !joinsWord(text[probe]) { end = probe }
            }
        }
        if end == last.end, end < text.count, joinsWord(text[end]) { return nil }
        let nanp = digits.count == 10 && groups.count == 3 && sizes == [3, 3, 4] && digits[0] >= 2
            && Set(separators.map { String(String.UnicodeScalarView($0)) }).count == 1
        let nanpParenthesized = digits.count == 10 && parenthesized && sizes.first == 3
        let national = digits[0] == 0 && (9...12).contains(digits.count) && !(digits.count <= 12 && groups.count == 1 && digits.count < 10)
        let dotted = separators.contains { $0.contains(".") }
        // French style: five pairs, with spaces, dots or dashes (01 23 45 67 89).
        let pairs = groups.count == 5 && sizes.allSatisfy { $0 == 2 }
        // North American with the country code: 1-800-555-0199.
        let nanpWithCountry = digits.count == 11 && digits[0] == 1 && sizes == [1, 3, 3, 4]
            && Set(separators.map { String(String.UnicodeScalarView($0)) }).count == 1
        let formatted = international || nanp || nanpParenthesized || nanpWithCountry || parenthesized
        // Right after "order", "case ID", "tracking", an unformatted number is that, not a phone.
        if !formatted, hasVeto(text, before: start) { return nil }
        let accepted = (international && (8...15).contains(digits.count))
            || nanp || nanpParenthesized || nanpWithCountry
            || (parenthesized && (7...12).contains(digits.count))
            || (national && (!dotted || pairs))
            || ((7...13).contains(digits.count) && (!dotted || pairs)
                && (hasPhoneContext(text, before: start) || hasContext(text, after: end, words: phoneWords)))
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

    static let ssnWords: ContextWords = ["ssn", "social security", "soc sec", "ss#", "ss no", "tax id", "itin"]
    /// Words that make the number after their "#" an SSN or a phone number, not an order's.
    static let hashLabels: ContextWords = ["ss", "ssn", "soc sec", "tel", "ph", "phone", "cell", "mobile", "fax"]
    static let phoneWords: ContextWords = [
        "call", "phone", "tel", "mobile", "cell", "reach", "contact", "whatsapp", "fax", "sms", "text me", "number",
        "ring", "dial", "handy", "telefon", "téléphone", "portable", "móvil", "celular", "llam", "número", "numéro", "numero",
        "joindre", "rappel", "appel", "anruf", "rückruf", "erreichbar", "teléfono", "telefono", "nummer", "llám", "tél",
        "coordonn", "contacto", "kontakt", "móvil", "movil",
        // Chinese, Japanese, Korean: phone, mobile, contact, number.
        "电话", "電話", "手机", "手機", "联系", "聯絡", "聯繫", "携帯", "ケータイ", "連絡先", "전화", "휴대폰", "핸드폰", "연락처",
        "号码", "號碼", "番号", "번호",
    ]
    /// Words that make a nearby number something else; the nearest of these and the phone
    /// words decides.
    static let nonPhoneWords: ContextWords = [
        "order", "ticket", "reference", "ref", "tracking", "invoice", "booking", "case", "customer", "account", "claim",
        "policy", "serial", "commande", "pedido", "bestell", "kunden", "rechnung", "factura", "facture", "code", "pin",
        "iban", "card", "karte", "tarjeta", "carte", "ssn", "social security", "return", "id", "status", "parcel", "package",
        "sendung", "pedido", "expediente", "dossier", "référence", "referencia", "nº", "no.",
        // Chinese, Japanese, Korean: order, card, account, member, tracking, waybill, booking.
        "订单", "訂單", "注文", "주문", "卡号", "卡號", "カード", "카드", "账号", "帐号", "帳號", "账户", "口座", "계좌",
        "会员", "會員", "会員", "회원", "快递", "单号", "單號", "追跡", "伝票", "운송장", "预订", "予約", "예약",
    ]

    /// The short `nonPhoneWords` count as whole words only: "ref" is no "refund", "id" no
    /// "idea", "pin" no "ping" ("please refund, call 5551234567").
    static let nonPhoneWholeWordsUpTo = 3

    /// One of `nonPhoneWords` in the 24 scalars before the number, nearer than any phone word.
    static func hasVeto(_ text: [Unicode.Scalar], before position: Int) -> Bool {
        let from = max(0, position - 24)
        guard lastWordStart(text, from: from, to: position, words: nonPhoneWords, wholeWordsUpTo: nonPhoneWholeWordsUpTo) != nil else { return false }
        return phoneWordStart(text, from: from, to: position) == nil
    }

    /// Eight digits that read as a date: 20240517, 19991231.
    static func compactDate(_ digits: [UInt8]) -> Bool {
        guard digits.count == 8 else { return false }
        let year = digits[0..<4].reduce(0) { $0 * 10 + Int($1) }
        let month = Int(digits[4]) * 10 + Int(digits[5])
        let day = Int(digits[6]) * 10 + Int(digits[7])
        return (1900...2099).contains(year) && (1...12).contains(month) && (1...31).contains(day)
    }
    /// Whole words only: "verify 192.168.1.20" and "the building's 10.0.0.5" are addresses.
    static let versionWords: ContextWords = ["version", "ver", "build", "firmware", "v"]

    /// One of `words`, starting at a word start, in the `within` scalars before `position`
    /// (ASCII case ignored). Compares scalars in place: no strings are built, so a text with
    /// many candidates stays cheap.
    static func hasContext(_ text: [Unicode.Scalar], before position: Int, words: ContextWords, within: Int = 40, wholeWordsUpTo: Int = 1) -> Bool {
        lastWordStart(text, from: max(0, position - within), to: position, words: words, wholeWordsUpTo: wholeWordsUpTo) != nil
    }

    /// A phone word in the 40 scalars before `position`, not outweighed by a nearer word that
    /// makes the number something else ("order number", "ticket").
    static func hasPhoneContext(_ text: [Unicode.Scalar], before position: Int) -> Bool {
        phoneWordStart(text, from: max(0, position - 40), to: position) != nil
    }

    /// "number" and its translations say "phone" only on their own: "order number",
    /// "reference number" and "customer number" are something else.
    static let weakPhoneWords = ["number", "nummer", "número", "numéro", "numero", "号码", "號碼", "番号", "번호"]

    /// Where the nearest phone word starts, unless a word that makes the number something
    /// else is nearer (or qualifies a weak "number").
    static func phoneWordStart(_ text: [Unicode.Scalar], from: Int, to: Int) -> Int? {
        guard let nearest = lastWordStart(text, from: from, to: to, words: phoneWords) else { return nil }
        let veto = lastWordStart(text, from: from, to: to, words: nonPhoneWords, wholeWordsUpTo: nonPhoneWholeWordsUpTo) ?? -1
        if veto > nearest { return nil }
        let nearestIsWeak = lastWordStart(text, from: from, to: to, words: strongPhoneWords) != nearest
        if nearestIsWeak, veto >= 0, nearest - veto <= 16 { return nil }
        return nearest
    }

    static let strongPhoneWords = phoneWords.filter { !weakPhoneWords.contains($0) }

    /// One of `words`, at a word start, in the 30 scalars after `position`.
    static func hasContext(_ text: [Unicode.Scalar], after position: Int, words: ContextWords) -> Bool {
        lastWordStart(text, from: position, to: min(text.count, position + 30), words: words) != nil
    }

    /// Where the last of `words` starts in `from..<to`, only at a word start; words of at most
    /// `wholeWordsUpTo` scalars also only where a word ends (longer ones also begin a longer word:
    /// "call" in "calling").
    static func lastWordStart(_ text: [Unicode.Scalar], from: Int, to: Int, words: ContextWords, wholeWordsUpTo: Int = 1) -> Int? {
        guard from < to else { return nil }
        // No letters, no words: digits and separators are skipped at once; words of other
        // scripts are looked for only where there are such letters.
        var letters = false
        var nonASCII = false
        for s in text[from..<to] {
            if !s.isASCII {
                nonASCII = true
                break
            }
            if isASCIILetter(s) { letters = true }
        }
        guard letters || nonASCII else { return nil }
        var best: Int?
        for word in words.words where word.isASCII || nonASCII {
            let pattern = word.scalars
            guard pattern.count <= to - from else { continue }
            var start = to - pattern.count
            while start >= from {
                // A word of a script written without spaces starts and ends anywhere.
                if start == 0 || word.isUnspaced || !isWordCharacter(text[start - 1]) {
                    var matches = true
                    for k in 0..<pattern.count where lowered(text[start + k]) != pattern[k] {
                        matches = false
                        break
                    }
                    // Short words ("v") must stand alone.
                    let end = start + pattern.count
                    if matches, word.isUnspaced || pattern.count > wholeWordsUpTo || end >= text.count || !isWordCharacter(text[end]) {
                        best = max(best ?? start, start)
                        break
                    }
                }
                start -= 1
            }
        }
        return best
    }

    @inline(__always) static func lowered(_ s: Unicode.Scalar) -> Unicode.Scalar {
        s.value >= 65 && s.value <= 90 ? Unicode.Scalar(s.value + 32)! : s
    }
}

/// Context words ("call", "order", "手机"), split into scalars once: a scan looks for them
/// around every candidate number.
struct ContextWords: ExpressibleByArrayLiteral, Sendable {
    struct Word: Sendable {
        let scalars: [Unicode.Scalar]
        let isASCII: Bool
        /// Of a script written without spaces: found anywhere, not only at word starts.
        let isUnspaced: Bool
    }

    let texts: [String]
    let words: [Word]

    init(_ texts: [String]) {
        self.texts = texts
        words = texts.compactMap { text in
            let scalars = Array(text.unicodeScalars)
            guard let first = scalars.first else { return nil }
            return Word(scalars: scalars, isASCII: scalars.allSatisfy(\.isASCII), isUnspaced: PIIScanner.isUnspacedLetter(first))
        }
    }

    init(arrayLiteral elements: String...) { self.init(elements) }

    func filter(_ keep: (String) -> Bool) -> ContextWords { ContextWords(texts.filter(keep)) }
}
