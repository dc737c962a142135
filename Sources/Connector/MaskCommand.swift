import ArgumentParser
import ChatEvents
import DataProtection
import Foundation

struct MaskCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mask",
        abstract: "Finds and hides personal data in JSON lines read from stdin ({\"text\": ...}); writes the spans and the masked text.",
        discussion: """
            Each output line is the input object without "text", plus "spans" (type, start, end in \
            code points of the input text) and "masked". Lines that are not JSON objects with a \
            string "text" get an "error" instead, and the run goes on.
            """)

    @Option(help: "Entity types to look for, comma-separated (default: all: \(PIIEntity.all.joined(separator: ","))).")
    var entities: String?
    @Option(name: .customLong("operator"), help: "mask, replace or hash.") var maskOperator: String = "replace"
    @Option(help: "The mask operator's character.") var maskCharacter: String = "*"
    @Option(help: "The mask operator keeps this many last characters.") var keepLast: Int = 0
    @Option(help: "The hash operator's key (default: the environment variable MASK_HASH_KEY).") var hashKey: String?
    @Option(help: "entities (hide what is found) or fields (star the whole text).") var mode: String = "entities"

    func run() async throws {
        guard ["entities", "fields"].contains(mode), ["mask", "replace", "hash"].contains(maskOperator) else {
            throw fail("--mode must be entities or fields, --operator mask, replace or hash")
        }
        let policy: DataProtectionPolicy
        do {
            policy = try DataProtectionPolicy(
                maskLogging: true, maskAnalytics: true, maskIPAddress: true, collectAnalytics: true, sanitizeInput: false,
                mode: mode, entities: entities.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } },
                operator: maskOperator, maskCharacter: maskCharacter, keepLast: keepLast,
                hashKey: hashKey ?? ProcessInfo.processInfo.environment["MASK_HASH_KEY"], custom: [])
        } catch {
            throw fail("\(error)")
        }
        let known = Set(PIIEntity.all)
        for entity in policy.scanner.entities where !known.contains(entity) {
            throw fail("unknown entity \(entity) (known: \(PIIEntity.all.joined(separator: ", ")))")
        }
        var output = [UInt8]()
        output.reserveCapacity(1 << 16)
        while let line = readLine(strippingNewline: true) {
            if line.allSatisfy(\.isWhitespace) { continue }
            var json = JSONWriter(capacity: line.utf8.count * 2 + 64)
            json.beginObject()
            if let value = try? JSONParser.parse(Array(line.utf8)), case .object(var members) = value, case .string(let text)? = members["text"] {
                // The output's own fields replace any input fields of the same name.
                for name in ["text", "spans", "masked", "error"] { members[name] = nil }
                for (key, member) in members.sorted(by: { $0.key < $1.key }) {
                    json.key(dynamic: key)
                    json.value(member)
                }
                let spans = policy.mode == .fields ? [] : policy.scanner.scan(text)
                json.key("spans")
                json.beginArray()
                for span in spans {
                    json.element(span) { json, span in
                        json.field("type", span.type)
                        json.field("start", span.start)
                        json.field("end", span.end)
                    }
                }
                json.endArray()
                json.field("masked", policy.mode == .fields ? policy.mask(text) : policy.masking.apply(text, spans: spans))
            } else {
                json.field("error", "not a JSON object with a string \"text\"")
            }
            json.endObject()
            output += json.bytes
            output.append(UInt8(ascii: "\n"))
            if output.count > 60_000 {
                FileHandle.standardOutput.write(Data(output))
                output.removeAll(keepingCapacity: true)
            }
        }
        FileHandle.standardOutput.write(Data(output))
    }
}
