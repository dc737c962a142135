/// Removes HTML from user text in one pass: tags go, the contents of `script`, `style`,
/// `iframe`, `object` and `template` elements go with them, comments go, the common entities
/// are decoded. What is left is the text a person would read. Linear in the input (each tag's
/// end is found in one backward pass beforehand).
public enum HTMLSanitizer {
    static let droppedElements: Set<String> = ["script", "style", "iframe", "object", "template", "noscript"]

    public static func strip(_ text: String) -> String {
        guard text.contains("<") || text.contains("&") else { return text }
        let scalars = Array(text.unicodeScalars)
        var output = String.UnicodeScalarView()
        output.reserveCapacity(scalars.count)
        let tagEnds = tagEnds(scalars)
        var i = 0
        var skipping: String?
        var endsWithInsertedSpace = false
        while i < scalars.count {
            let s = scalars[i]
            if s == "<", i + 1 < scalars.count, isTagStart(scalars[i + 1]) {
                // A comment runs to "-->".
                if scalars[(i + 1)...].starts(with: "!--".unicodeScalars) {
                    var j = i + 4
                    while j + 2 < scalars.count, !(scalars[j] == "-" && scalars[j + 1] == "-" && scalars[j + 2] == ">") { j += 1 }
                    i = min(scalars.count, j + 3)
                    continue
                }
                let j = tagEnds[i + 1]
                // No closing ">": not a tag ("a<b then"), the "<" is text.
                if j == scalars.count, skipping == nil {
                    output.append(s)
                    endsWithInsertedSpace = false
                    i += 1
                    continue
                }
                let name = tagName(scalars, from: i + 1)
                if let open = skipping {
                    if name == "/" + open { skipping = nil }
                } else if droppedElements.contains(name) {
                    skipping = name
                } else if ["br", "p", "/p", "div", "/div", "li"].contains(name), output.last.map({ $0 != " " }) ?? false {
                    output.append(" ")  // block boundaries separate words
                    endsWithInsertedSpace = true
                }
                i = min(scalars.count, j + 1)
                continue
            }
            if skipping != nil {
                i += 1
                continue
            }
            endsWithInsertedSpace = false
            if s == "&", let (decoded, length) = entity(scalars, at: i) {
                output.append(decoded)
                i += length
                continue
            }
            output.append(s)
            i += 1
        }
        if endsWithInsertedSpace { output.removeLast() }
        return String(output)
    }

    /// For each position, where a tag whose scan starts there ends: the first ">" outside
    /// quotes, or `scalars.count` for none. Read backwards in one pass, so that a text of many
    /// unclosed "<a" costs no scan to its end per "<" (which made such a message take minutes).
    static func tagEnds(_ scalars: [Unicode.Scalar]) -> [Int] {
        let n = scalars.count
        var ends = [Int](repeating: n, count: n + 1)
        // Where the scan from the next position ends when it starts inside double or single quotes.
        var inDouble = n, inSingle = n
        for j in stride(from: n - 1, through: 0, by: -1) {
            let c = scalars[j]
            let plainAfter = ends[j + 1]
            ends[j] = c == ">" ? j : c == "\"" ? inDouble : c == "'" ? inSingle : plainAfter
            inDouble = c == "\"" ? plainAfter : inDouble
            inSingle = c == "'" ? plainAfter : inSingle
        }
        return ends
    }

    static func isTagStart(_ s: Unicode.Scalar) -> Bool {
        s == "/" || s == "!" || (s.value >= 65 && s.value <= 90) || (s.value >= 97 && s.value <= 122)
    }

    static func tagName(_ scalars: [Unicode.Scalar], from start: Int) -> String {
        var name = ""
        var j = start
        while j < scalars.count, name.unicodeScalars.count < 12 {
            let c = scalars[j]
            guard c == "/" && j == start || (c.value >= 65 && c.value <= 90) || (c.value >= 97 && c.value <= 122) || (c.value >= 48 && c.value <= 57) else { break }
            name.unicodeScalars.append(c.value >= 65 && c.value <= 90 ? Unicode.Scalar(c.value + 32)! : c)
            j += 1
        }
        return name
    }

    /// Entities decoded to their character. `&lt;`, `&gt;` and `&amp;` stay as they are:
    /// decoding them after the tags are gone would turn escaped markup into live markup.
    static let entities: [String: Unicode.Scalar] = ["quot": "\"", "apos": "'", "nbsp": " "]
    static let keptEncoded: Set<Unicode.Scalar> = ["<", ">", "&"]

    static func entity(_ scalars: [Unicode.Scalar], at start: Int) -> (Unicode.Scalar, Int)? {
        var name = ""
        var j = start + 1
        while j < scalars.count, j - start <= 10, scalars[j] != ";" {
            name.unicodeScalars.append(scalars[j])
            j += 1
        }
        guard j < scalars.count, scalars[j] == ";" else { return nil }
        if let named = entities[name] { return (named, j - start + 1) }
        var scalar: Unicode.Scalar?
        if name.hasPrefix("#x") || name.hasPrefix("#X") {
            scalar = UInt32(name.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init)
        } else if name.hasPrefix("#") {
            scalar = UInt32(name.dropFirst()).flatMap(Unicode.Scalar.init)
        }
        guard let scalar, !keptEncoded.contains(scalar) else { return nil }
        return (scalar, j - start + 1)
    }
}
