import ChatEvents
import EightByEight
import Foundation
import Simulator
import Testing
import TestSupport

/// Thousands of random and mutated webhooks through the real server: no crash, only
/// documented statuses, and nothing published that differs from what 8x8 signed.
@Suite("Ingress fuzzing", .serialized)
struct IngressFuzzTests {
    /// SplitMix64: reproducible cases from a seed (FUZZ_SEED overrides it).
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    struct Case: Sendable {
        var label: String
        var eventId: String
        var body: [UInt8]
        var headers: [(String, String)]
        var path: String
        /// The body 8x8 signed for this event id; nil when nothing was signed.
        var signedBody: [UInt8]?
        /// Sent exactly as signed, as a well-formed event: must be accepted.
        var mustBeAccepted: Bool
    }

    static let caseCount = 3000

    @Test func randomAndMutatedWebhooks() async throws {
        let seed = ProcessInfo.processInfo.environment["FUZZ_SEED"].flatMap(UInt64.init) ?? 0x8_8C0_FFEE
        let fixtures = try fixtureNames().map { try fixture($0) }

        try await IngressHarness.run { h in
            // Thousands of RSA signatures: computed on a thread of their own, not the cooperative pool.
            let cases = try await onOwnThread {
                var rng = SeededGenerator(state: seed)
                return try (0..<Self.caseCount).map { try Self.makeCase($0, fixtures: fixtures, harness: h, rng: &rng) }
            }
            // Warm up (first key fetch, producer id): the cases then measure the pipeline, not a cold start.
            let warmUp = fixtures[0]
            #expect(try await h.post(warmUp, headers: h.signedHeaders(warmUp, eventId: "warm-up")) == 200)
            let allCases = cases
            let answered = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                var statuses = Array(repeating: 0, count: allCases.count)
                var next = 0
                func submit(_ index: Int) {
                    let item = allCases[index]
                    group.addTask { (index, try await h.post(item.body, headers: item.headers, to: h.baseURL + item.path)) }
                }
                while next < min(16, allCases.count) { submit(next); next += 1 }
                while let (index, status) = try await group.next() {
                    statuses[index] = status
                    if next < allCases.count { submit(next); next += 1 }
                }
                return statuses
            }

            var accepted = 0
            for (item, status) in zip(cases, answered) {
                #expect(documentedStatuses.contains(status), "case \(item.label) answered \(status) (seed \(seed))")
                #expect(status != 503, "case \(item.label): nothing here should make Kafka or the JWK endpoint unavailable")
                if item.mustBeAccepted {
                    #expect(status == 200, "case \(item.label) was authentic but answered \(status) (seed \(seed))")
                }
                if status == 200 { accepted += 1 }
            }

            // Every published record is exactly what was signed for its event id, once.
            let count = Int(try await h.publishedCount())
            let records = try await h.published(count)
            var byId = Dictionary(cases.map { ($0.eventId, $0) }, uniquingKeysWith: { a, _ in a })
            byId["warm-up"] = Case(label: "warm-up", eventId: "warm-up", body: warmUp, headers: [], path: Self.path, signedBody: warmUp, mustBeAccepted: true)
            var seen = Set<String>()
            for record in records {
                let id = record.event.eventId
                #expect(seen.insert(id).inserted, "event \(id) published twice")
                let signed = try #require(byId[id]?.signedBody, "published event \(id) was never signed")
                #expect(record.event.raw == (try? JSONDecoder().decode(JSONValue.self, from: Data(signed))), "event \(id) differs from what was signed")
                #expect(record.event.signatureVerified)
            }
            let mustPublish = cases.filter(\.mustBeAccepted).filter { !Self.isVerify($0.body) }.count
            #expect(records.count >= mustPublish + 1, "the warm-up and every authentic event")
            #expect(accepted + 1 >= records.count)
        }
    }

    static func isVerify(_ body: [UInt8]) -> Bool {
        (try? JSONDecoder().decode(WebhookEvent.self, from: Data(body)))?.kind == .webHookVerify
    }

    static let path = "/endpoint/\(IngressHarness.urlToken)"

    static func makeCase(_ index: Int, fixtures: [[UInt8]], harness h: IngressHarness, rng: inout SeededGenerator) throws -> Case {
        let eventId = "fuzz-\(index)"
        let fixture = fixtures.randomElement(using: &rng)!
        switch Int.random(in: 0..<100, using: &rng) {
        case 0..<15:
            // Authentic: a real event, signed, untouched.
            return Case(label: "\(index) authentic", eventId: eventId, body: fixture, headers: try h.signedHeaders(fixture, eventId: eventId), path: path, signedBody: fixture, mustBeAccepted: true)
        case 15..<25:
            // Authentic but random JSON: signed, so it is ours to judge (200 or 400).
            let body = Array(randomJSON(depth: 0, rng: &rng).utf8)
            return Case(label: "\(index) signed random JSON", eventId: eventId, body: body, headers: try h.signedHeaders(body, eventId: eventId), path: path, signedBody: body, mustBeAccepted: false)
        case 25..<30:
            // Header names in another case are the same headers.
            let headers = try h.signedHeaders(fixture, eventId: eventId).map { ($0.0.uppercased(), $0.1) }
            return Case(label: "\(index) uppercase header names", eventId: eventId, body: fixture, headers: headers, path: path, signedBody: fixture, mustBeAccepted: true)
        case 30..<55:
            let headers = try h.signedHeaders(fixture, eventId: eventId)
            return Case(label: "\(index) mutated body", eventId: eventId, body: mutate(fixture, rng: &rng), headers: headers, path: path, signedBody: fixture, mustBeAccepted: false)
        case 55..<75:
            var headers = try h.signedHeaders(fixture, eventId: eventId)
            let victim = headers.indices.randomElement(using: &rng)!
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: headers.remove(at: victim)
            case 1: headers[victim].1 = randomPrintable(rng: &rng)
            case 2: headers[victim].1 = String(decoding: mutate(Array(headers[victim].1.utf8), rng: &rng).filter { $0 >= 0x20 && $0 < 0x7F }, as: UTF8.self)
            default: headers.append((headers[victim].0, randomPrintable(rng: &rng)))
            }
            return Case(label: "\(index) mutated header", eventId: eventId, body: fixture, headers: headers, path: path, signedBody: fixture, mustBeAccepted: false)
        case 75..<90:
            // Unsigned noise: random bytes with 8x8-looking headers and a random token.
            let body = (0..<Int.random(in: 0..<600, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var headers = try h.signedHeaders(fixture, eventId: eventId)
            if Bool.random(using: &rng) { headers = headers.replacing(WebhookHeaders.signature, with: randomPrintable(rng: &rng)) }
            return Case(label: "\(index) random bytes", eventId: eventId, body: body, headers: headers, path: path, signedBody: nil, mustBeAccepted: false)
        default:
            // Transport-level oddities: content types, sizes, paths.
            var headers = try h.signedHeaders(fixture, eventId: eventId)
            var body = fixture
            var path = self.path
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: headers = headers.replacing("content-type", with: ["text/plain", "application/xml", "", "multipart/form-data", "application/json-patch"].randomElement(using: &rng)!)
            case 1: body += Array(repeating: UInt8(ascii: " "), count: 5000)
            case 2: path = "/endpoint/" + randomPrintable(rng: &rng).filter { $0.isLetter || $0.isNumber }
            default: path = "/handover/eightByEight"; return Case(label: "\(index) handover", eventId: eventId, body: body, headers: headers, path: path, signedBody: fixture, mustBeAccepted: true)
            }
            return Case(label: "\(index) transport", eventId: eventId, body: body, headers: headers, path: path, signedBody: fixture, mustBeAccepted: false)
        }
    }

    static func mutate(_ input: [UInt8], rng: inout SeededGenerator) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            guard !bytes.isEmpty else { bytes.append(UInt8.random(in: 0...255, using: &rng)); continue }
            let at = Int.random(in: 0..<bytes.count, using: &rng)
            switch Int.random(in: 0..<5, using: &rng) {
            case 0: bytes[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            case 1: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: at)
            case 2: bytes.remove(at: at)
            case 3: bytes = Array(bytes[..<at])
            default: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + 16)], at: at)
            }
        }
        return bytes == input ? input + [UInt8(ascii: "x")] : bytes
    }

    static func randomPrintable(rng: inout SeededGenerator) -> String {
        String((0..<Int.random(in: 0..<40, using: &rng)).map { _ in Character(UnicodeScalar(UInt8.random(in: 0x21...0x7E, using: &rng))) })
    }

    static func randomJSON(depth: Int, rng: inout SeededGenerator) -> String {
        let types = ["MESSAGE", "ACTIVITY", "QUEUED", "TRANSFER", "MEMBERS_CHANGED", "CONVERSATION_UPDATE", "TEXT", "AGENT_JOINED", "WHATEVER", ""]
        func scalar() -> String {
            switch Int.random(in: 0..<6, using: &rng) {
            case 0: return "null"
            case 1: return Bool.random(using: &rng) ? "true" : "false"
            case 2: return String(Int.random(in: -1_000_000...1_000_000, using: &rng))
            case 3: return String(Double.random(in: -1e6...1e6, using: &rng))
            case 4: return "\"\(randomPrintable(rng: &rng).replacingOccurrences(of: "\\", with: "").replacingOccurrences(of: "\"", with: ""))\""
            default: return "\"\u{00e9}\u{1F600}\""
            }
        }
        if depth == 0 {
            var fields = [#""eventType":"\#(types.randomElement(using: &rng)!)""#]
            if Bool.random(using: &rng) { fields.append(#""conversationId":\#(Bool.random(using: &rng) ? "\"c-\(Int.random(in: 0..<50, using: &rng))\"" : scalar())"#) }
            if Bool.random(using: &rng) { fields.append(#""timestamp":\#(scalar())"#) }
            fields.append(#""data":\#(randomJSON(depth: 1, rng: &rng))"#)
            return "{" + fields.shuffled(using: &rng).joined(separator: ",") + "}"
        }
        guard depth < 4 else { return scalar() }
        switch Int.random(in: 0..<3, using: &rng) {
        case 0:
            let keys = ["text", "sender", "isEcho", "name", "value", "users", "state", "user", "attachments", "cards", "type", "id", "data"]
            let members = (0..<Int.random(in: 0..<5, using: &rng)).map { _ in "\"\(keys.randomElement(using: &rng)!)\":\(randomJSON(depth: depth + 1, rng: &rng))" }
            return "{" + members.joined(separator: ",") + "}"
        case 1:
            return "[" + (0..<Int.random(in: 0..<4, using: &rng)).map { _ in randomJSON(depth: depth + 1, rng: &rng) }.joined(separator: ",") + "]"
        default:
            return scalar()
        }
    }
}
