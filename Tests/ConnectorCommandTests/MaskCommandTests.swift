import Foundation
import Testing

@Suite struct MaskCommandTests {
    func mask(_ arguments: [String], input: String, environment: [String: String] = [:]) throws -> (status: Int32, output: String, error: String) {
        let process = Process()
        process.executableURL = BrokerCommandTests.binary
        process.arguments = ["mask"] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let stdin = Pipe(), out = Pipe(), err = Pipe()
        process.standardInput = stdin
        process.standardOutput = out
        process.standardError = err
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let error = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: error, as: UTF8.self))
    }

    @Test func masksEachLineAndKeepsOtherFields() throws {
        let result = try mask(["--operator", "mask", "--keep-last", "4"], input: """
            {"id": 7, "text": "card 4111 1111 1111 1111, mail jane@example.com"}
            not json
            {"text": "nothing here"}

            """)
        #expect(result.status == 0, "\(result.error)")
        let lines = result.output.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.count == 3)
        #expect(lines[0]?["id"] as? Int == 7)
        #expect(lines[0]?["masked"] as? String == "card ***************1111, mail ************.com")
        let spans = lines[0]?["spans"] as? [[String: Any]]
        #expect(spans?.map { $0["type"] as? String } == ["CREDIT_CARD", "EMAIL"])
        #expect(spans?.first?["start"] as? Int == 5 && spans?.first?["end"] as? Int == 24)
        #expect(lines[1]?["error"] != nil)
        #expect(lines[2]?["masked"] as? String == "nothing here" && (lines[2]?["spans"] as? [Any])?.isEmpty == true)
        #expect(!result.output.contains("4111 1111"))
    }

    @Test func entitiesAndHashOperator() throws {
        let result = try mask(["--entities", "EMAIL", "--operator", "hash"], input: #"{"text": "card 4111111111111111 mail jane@example.com"}"# + "\n", environment: ["MASK_HASH_KEY": "sixteen-byte-key-1"])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("card 4111111111111111 mail <EMAIL:"))
        let again = try mask(["--entities", "EMAIL", "--operator", "hash", "--hash-key", "sixteen-byte-key-1"], input: #"{"text": "card 4111111111111111 mail jane@example.com"}"# + "\n")
        #expect(again.output == result.output, "the same key gives the same pseudonym")
    }

    @Test func badOptionsFailWithOneLine() throws {
        let noKey = try mask(["--operator", "hash"], input: "")
        #expect(noKey.status == 1 && noKey.error.hasPrefix("connector: ") && noKey.error.split(separator: "\n").count == 1)
        let unknown = try mask(["--entities", "PASSPORT"], input: "")
        #expect(unknown.status == 1 && unknown.error.contains("unknown entity PASSPORT"))
    }
}
