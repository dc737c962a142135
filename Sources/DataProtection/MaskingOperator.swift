public import Crypto

/// How found personal data is hidden.
public enum MaskingOperator: Sendable {
    /// Every character of the finding becomes `character`, except the last `keepLast` (at most
    /// half of the finding).
    case mask(character: Character = "*", keepLast: Int = 0)
    /// The finding becomes its type: `<CREDIT_CARD>`.
    case replace
    /// The finding becomes its type and a keyed hash (HMAC-SHA256, first 16 hex digits):
    /// `<EMAIL:3f2a9c0d11b4e877>`. The same value under the same key always gives the same
    /// pseudonym, so analytics can count distinct customers without holding their data.
    case hash(key: SymmetricKey)

    /// `text` with each span (scalar offsets, not overlapping) hidden.
    public func apply(_ text: String, spans: [PIISpan]) -> String {
        guard !spans.isEmpty else { return text }
        let scalars = Array(text.unicodeScalars)
        var result = String.UnicodeScalarView()
        result.reserveCapacity(scalars.count)
        var position = 0
        for span in spans.sorted(by: { $0.start < $1.start }) where span.end > position && span.end <= scalars.count {
            // A span overlapping the previous one is hidden from where that one ended.
            let start = max(span.start, position)
            result.append(contentsOf: scalars[position..<start])
            let value = scalars[start..<span.end]
            switch self {
            case .mask(let character, let keepLast):
                // At most half of a finding stays readable: `keepLast: 8`, meant for cards, would
                // keep a whole short one ("1.2.3.4", "jo@x.de").
                let kept = min(max(0, keepLast), value.count / 2)
                for _ in 0..<(value.count - kept) { result.append(contentsOf: character.unicodeScalars) }
                result.append(contentsOf: value.suffix(kept))
            case .replace:
                result.append(contentsOf: "<\(span.type)>".unicodeScalars)
            case .hash(let key):
                let mac = HMAC<SHA256>.authenticationCode(for: Array(Self.canonical(value, type: span.type).utf8), using: key)
                let hex = mac.prefix(8).map { byte in
                    let digits = Array("0123456789abcdef".unicodeScalars)
                    return String(String.UnicodeScalarView([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]]))
                }.joined()
                result.append(contentsOf: "<\(span.type):\(hex)>".unicodeScalars)
            }
            position = span.end
        }
        result.append(contentsOf: scalars[position...])
        return String(result)
    }

    /// One spelling per value, so a pseudonym counts a customer once: digits of any script as
    /// ASCII (`PIIScanner.folded`), card, phone, SSN and
    /// IBAN numbers without separators (IBAN upper-cased), email addresses lower-cased.
    static func canonical(_ value: ArraySlice<Unicode.Scalar>, type: String) -> String {
        // "４１１１…" and "4111…" are one card.
        let text = String(String.UnicodeScalarView(value.map { $0.isASCII ? $0 : PIIScanner.folded($0) }))
        switch type {
        case PIIEntity.creditCard, PIIEntity.usSSN:
            return String(text.unicodeScalars.filter { $0.value >= 48 && $0.value <= 57 }.map(Character.init))
        case PIIEntity.phone:
            return String(text.unicodeScalars.filter { ($0.value >= 48 && $0.value <= 57) || $0 == "+" }.map(Character.init))
        case PIIEntity.iban:
            return text.uppercased().filter { $0 != " " && $0 != "-" }
        case PIIEntity.email, PIIEntity.ipAddress:
            return text.lowercased()
        default:
            return text
        }
    }
}
