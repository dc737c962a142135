/// Ranks a flow's intents for an input text: TF-IDF weighted cosine similarity between the
/// text and each example phrase, over normalized words (case and accents folded, light
/// stemming, stop words dropped) plus their character trigrams at a lower weight, so a typo
/// still lands near its word. An intent scores its best example; below `threshold` nothing
/// matches.
public struct IntentMatcher: Sendable {
    public struct Intent: Sendable {
        public var name: String
        public var examples: [String]
        public init(name: String, examples: [String]) {
            self.name = name
            self.examples = examples
        }
    }

    public struct Score: Sendable, Hashable {
        public var intent: String
        public var score: Double
    }

    public let intents: [Intent]
    public let threshold: Double
    private var vocabulary: [String: Int] = [:]
    private var idf: [Double] = []
    /// One normalized sparse vector per example, with its intent's index.
    private var examples: [(intent: Int, vector: [Int: Double])] = []

    static let trigramWeight = 0.35
    public static let defaultThreshold = 0.45

    public init(intents: [Intent], threshold: Double = IntentMatcher.defaultThreshold) {
        self.intents = intents
        self.threshold = threshold
        var documents: [(Int, [String: Double])] = []
        var documentFrequency: [String: Int] = [:]
        for (index, intent) in intents.enumerated() {
            for example in intent.examples {
                let features = Self.features(example)
                guard !features.isEmpty else { continue }
                documents.append((index, features))
                for feature in features.keys { documentFrequency[feature, default: 0] += 1 }
            }
        }
        let count = Double(documents.count)
        for (feature, frequency) in documentFrequency.sorted(by: { $0.key < $1.key }) {
            vocabulary[feature] = idf.count
            idf.append(1 + log((1 + count) / (1 + Double(frequency))))
        }
        examples = documents.map { intent, features in
            var vector: [Int: Double] = [:]
            for (feature, weight) in features {
                let id = vocabulary[feature]!
                vector[id] = weight * idf[id]
            }
            return (intent, Self.normalized(vector))
        }
    }

    /// Every intent with its score, best first.
    public func rank(_ text: String) -> [Score] {
        var query: [Int: Double] = [:]
        var unknownMass = 0.0
        let maxIDF = idf.max() ?? 1
        for (feature, weight) in Self.features(text) {
            if let id = vocabulary[feature] {
                query[id] = weight * idf[id]
            } else {
                // Words no example has still make the text less like every example.
                unknownMass += (weight * maxIDF) * (weight * maxIDF)
            }
        }
        guard !query.isEmpty else { return intents.map { Score(intent: $0.name, score: 0) } }
        let norm = (query.values.reduce(0) { $0 + $1 * $1 } + unknownMass).squareRoot()
        var best = [Double](repeating: 0, count: intents.count)
        for example in examples {
            var dot = 0.0
            for (id, weight) in query { if let other = example.vector[id] { dot += weight * other } }
            best[example.intent] = max(best[example.intent], dot / norm)
        }
        return zip(intents, best).map { Score(intent: $0.name, score: min(1, $1)) }
            .sorted { $0.score != $1.score ? $0.score > $1.score : $0.intent < $1.intent }
    }

    /// The best intent when it reaches the threshold.
    public func match(_ text: String) -> Score? {
        guard !intents.isEmpty, let top = rank(text).first, top.score >= threshold else { return nil }
        return top
    }

    // MARK: - Normalization

    static func features(_ text: String) -> [String: Double] {
        let words = TextNormalizer.words(text)
        let content = words.filter { !TextNormalizer.stopWords.contains($0) }
        var features: [String: Double] = [:]
        for word in (content.isEmpty ? words : content) {
            let stem = TextNormalizer.stem(word)
            features["w:" + stem, default: 0] += 1
            let padded = Array("^" + stem + "$")
            if padded.count >= 3 {
                for start in 0...(padded.count - 3) {
                    features["t:" + String(padded[start..<start + 3]), default: 0] += trigramWeight
                }
            }
        }
        return features
    }

    private static func normalized(_ vector: [Int: Double]) -> [Int: Double] {
        let norm = vector.values.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? vector.mapValues { $0 / norm } : vector
    }
}

import Foundation

/// Word splitting and folding shared by the intent matcher and `textContains`.
enum TextNormalizer {
    /// Lower-cased, accent-free words of letters and digits.
    static func words(_ text: String) -> [String] {
        asciiWords(text) ?? foldedWords(text)
    }

    /// `words` for any text, through Foundation's folding.
    static func foldedWords(_ text: String) -> [String] {
        let folded = text.folding(options: [.caseInsensitive, .diacriticInsensitive, .widthInsensitive], locale: nil)
        var words: [String] = []
        var current = ""
        for character in folded {
            if character.isLetter || character.isNumber {
                current.append(character)
            } else if character == "'" || character == "\u{2019}" {
                continue  // "what's" -> "whats", "don't" -> "dont"
            } else if !current.isEmpty {
                words.append(current)
                current = ""
            }
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    /// `words` for ASCII text, without Foundation's folding (which costs microseconds per
    /// call): for ASCII, folding is lower-casing, and letters and digits are `A-Z`, `a-z`,
    /// `0-9`. Nil when the text has other characters.
    static func asciiWords(_ text: String) -> [String]? {
        var text = text
        return text.withUTF8 { bytes -> [String]? in
            var words: [String] = []
            var current: [UInt8] = []
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): current.append(byte)
                case UInt8(ascii: "A")...UInt8(ascii: "Z"): current.append(byte | 0x20)
                case UInt8(ascii: "'"): continue  // "what's" -> "whats", "don't" -> "dont"
                case 0x80...: return nil
                default:
                    if !current.isEmpty {
                        words.append(String(decoding: current, as: UTF8.self))
                        current.removeAll(keepingCapacity: true)
                    }
                }
            }
            if !current.isEmpty { words.append(String(decoding: current, as: UTF8.self)) }
            return words
        }
    }

    /// Whether `words` holds the words of `phrase` consecutively (an empty phrase is nowhere).
    static func contains(_ words: [String], phrase needle: [String]) -> Bool {
        guard !needle.isEmpty, needle.count <= words.count else { return false }
        search: for start in 0...(words.count - needle.count) {
            for (offset, word) in needle.enumerated() where words[start + offset] != word { continue search }
            return true
        }
        return false
    }

    /// A light English suffix stripper: plural and verb endings only, so "balances",
    /// "balance" and "balancing" meet.
    static func stem(_ word: String) -> String {
        var w = word
        if w.count > 4, w.hasSuffix("ies") { w = String(w.dropLast(3)) + "y" }
        else if w.count > 5, w.hasSuffix("ing") { w = String(w.dropLast(3)) }
        else if w.count > 4, w.hasSuffix("ed") { w = String(w.dropLast(2)) }
        else if w.count > 3, w.hasSuffix("s"), !w.hasSuffix("ss"), !w.hasSuffix("us") { w = String(w.dropLast()) }
        if w.count > 4, w.hasSuffix("e") { w = String(w.dropLast()) }
        return w
    }

    static let stopWords: Set<String> = [
        "a", "an", "the", "i", "me", "my", "you", "your", "we", "our", "it", "is", "are", "was", "be", "to", "of",
        "and", "or", "in", "on", "at", "for", "with", "please", "can", "could", "would", "do", "does", "what",
        "whats", "how", "this", "that", "there", "some", "want", "like", "id", "im", "just", "so",
    ]
}
