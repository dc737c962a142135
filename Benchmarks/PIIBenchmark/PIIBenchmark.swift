import DataProtection
import Foundation

/// Scores the PII scanner on a labeled corpus (JSON lines `{"text", "spans": [{type, start,
/// end}]}`, offsets in code points) and measures its throughput on one core.
///
/// `swift build -c release --product PIIBenchmark && .build/release/PIIBenchmark ../shared/pii/dev-corpus.jsonl`
@main
struct PIIBenchmark {
    struct Line: Decodable {
        var text: String
        var spans: [PIISpan]
    }

    static func main() throws {
        let arguments = CommandLine.arguments.dropFirst()
        guard let path = arguments.first else {
            print("usage: PIIBenchmark CORPUS.jsonl [--show-errors] [--hostile]")
            return
        }
        let showErrors = arguments.contains("--show-errors")
        if arguments.contains("--hostile") { hostile() }
        let data = try String(contentsOfFile: path, encoding: .utf8)
        let decoder = JSONDecoder()
        let lines = try data.split(separator: "\n").map { try decoder.decode(Line.self, from: Data($0.utf8)) }
        let scanner = PIIScanner()

        var truePositives: [String: Int] = [:]
        var falsePositives: [String: Int] = [:]
        var falseNegatives: [String: Int] = [:]
        for line in lines {
            let found = Set(scanner.scan(line.text))
            let expected = Set(line.spans)
            for span in found.intersection(expected) { truePositives[span.type, default: 0] += 1 }
            for span in found.subtracting(expected) {
                falsePositives[span.type, default: 0] += 1
                if showErrors { print("FP \(span.type) '\(slice(line.text, span))' in: \(line.text)") }
            }
            for span in expected.subtracting(found) {
                falseNegatives[span.type, default: 0] += 1
                if showErrors { print("FN \(span.type) '\(slice(line.text, span))' in: \(line.text)") }
            }
        }
        let types = Set(truePositives.keys).union(falsePositives.keys).union(falseNegatives.keys).sorted()
        print("entity        precision  recall   tp    fp   fn")
        func row(_ name: String, _ tp: Int, _ fp: Int, _ fn: Int) {
            let precision = tp + fp == 0 ? 1 : Double(tp) / Double(tp + fp)
            let recall = tp + fn == 0 ? 1 : Double(tp) / Double(tp + fn)
            print(String(format: "%@ %9.4f %8.4f %5d %5d %4d", name.padding(toLength: 12, withPad: " ", startingAt: 0), precision, recall, tp, fp, fn))
        }
        for type in types { row(type, truePositives[type] ?? 0, falsePositives[type] ?? 0, falseNegatives[type] ?? 0) }
        row("overall", truePositives.values.reduce(0, +), falsePositives.values.reduce(0, +), falseNegatives.values.reduce(0, +))

        // Throughput: the whole corpus, repeatedly, on this thread.
        let texts = lines.map(\.text)
        var total = 0
        var spans = 0
        let clock = ContinuousClock()
        let start = clock.now
        while clock.now - start < .seconds(3) {
            for text in texts { spans += scanner.scan(text).count }
            total += texts.count
        }
        let elapsed = clock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(String(format: "throughput: %.0f messages/s on one thread (%d messages, %d spans)", Double(total) / seconds, total, spans))
    }

    /// Time for hostile texts of 256 KiB and 1 MiB: linear cost shows as a ratio near 4.
    static func hostile() {
        let patterns = ["4111 1111 1111 1111 ", "1-", "9", "a@", "1:", "1.1.", "(1) ", "👋🏽4", "DE89 ", "+1 (", "x@y."]
        let scanner = PIIScanner()
        let clock = ContinuousClock()
        for pattern in patterns {
            var times: [Double] = []
            for size in [262_144, 1_048_576] {
                let text = String(repeating: pattern, count: size / pattern.utf8.count)
                let start = clock.now
                _ = scanner.scan(text)
                let elapsed = clock.now - start
                times.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
            }
            print(String(format: "hostile %@: 256 KiB %.1f ms, 1 MiB %.1f ms (ratio %.1f)", "\"\(pattern)\"" as NSString, times[0], times[1], times[1] / times[0]))
        }
    }

    static func slice(_ text: String, _ span: PIISpan) -> String {
        let scalars = Array(text.unicodeScalars)
        guard span.start >= 0, span.end <= scalars.count, span.start <= span.end else { return "?" }
        return String(String.UnicodeScalarView(scalars[span.start..<span.end]))
    }
}
