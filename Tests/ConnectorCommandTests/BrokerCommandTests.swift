import AsyncHTTPClient
import ChatEvents
import Foundation
import Kafka
import Logging
import Testing

/// Drives the built `connector` executable as an operator would.
@Suite(.serialized) struct BrokerCommandTests {
    static let binary = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/connector")

    /// Starts the connector with `arguments`, its output and errors in pipes.
    static func launch(_ arguments: [String], environment: [String: String] = [:]) throws -> (process: Process, out: Pipe, err: Pipe) {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        return (process, out, err)
    }

    func run(_ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:]) throws -> (status: Int32, output: String, error: String) {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let error = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: error, as: UTF8.self))
    }

    @Test func brokerServesTopicsAndLagUntilSIGTERM() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build the connector first")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("bootstrap-\(UUID().uuidString)").path
        let broker = Process()
        broker.executableURL = Self.binary
        broker.arguments = ["broker", "--bootstrap-file", file, "--partitions", "2"]
        broker.standardOutput = Pipe()
        try broker.run()
        defer { if broker.isRunning { broker.terminate() } }
        var waited = 0
        while !FileManager.default.fileExists(atPath: file) && waited < 300 {
            try await Task.sleep(for: .milliseconds(100))
            waited += 1
        }
        let address = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(address.hasPrefix("127.0.0.1:"))

        let topics = try run(["topics", "create", "--bootstrap-file", file])
        #expect(topics.status == 0, "\(topics.error)")
        #expect(topics.output.split(separator: "\n").count == 7)
        #expect(topics.output.contains("eightbyeight.inbound.v1: exists"))

        // Each report judges the group over a window of samples (here 3, 0.2 s apart).
        func lag(json: Bool) throws -> (text: String, group: [String: Any]?) {
            let lag = try run(["lag", "--bootstrap-file", file, "--group", "connector-worker", "--window", "3", "--interval", "0.2"] + (json ? ["--json"] : []))
            #expect(lag.status == 0, "\(lag.error)")
            guard json else { return (lag.output, nil) }
            let parsed = try JSONSerialization.jsonObject(with: Data(lag.output.utf8)) as? [String: Any]
            let groups = parsed?["groups"] as? [[String: Any]]
            #expect(groups?.count == 1 && groups?.first?["group"] as? String == "connector-worker", "\(lag.output)")
            return (lag.output, groups?.first)
        }
        let idle = try lag(json: true).group
        #expect(idle?["sumLag"] as? Int == 0)
        #expect(idle?["status"] as? String == "OK")

        // Records nobody consumes: the worker's group has lag that does not move, so it stalls.
        var producerConfig = KafkaProducerConfiguration(bootstrapServers: address)
        producerConfig.clientID = "cli-test"
        let producer = try KafkaProducer(configuration: producerConfig, logger: Logger(label: "cli-test", factory: { _ in SwiftLogNoOpLogHandler() }))
        for n in 0..<3 {
            _ = try await producer.send(KafkaProducerMessage(topic: "eightbyeight.inbound.v1", partition: 0, key: "c-\(n)", value: "{}"))
        }
        await producer.shutdown()
        let stalled = try lag(json: true).group
        #expect(stalled?["sumLag"] as? Int == 3)
        #expect(stalled?["status"] as? String == "STALL")
        let partitions = stalled?["partitions"] as? [[String: Any]] ?? []
        #expect(partitions.first { $0["partition"] as? Int == 0 && $0["topic"] as? String == "eightbyeight.inbound.v1" }?["status"] as? String == "STALL", "\(partitions)")
        #expect(partitions.filter { $0["status"] as? String == "OK" }.count == partitions.count - 1, "the other partitions have no lag")
        let table = try lag(json: false).text
        #expect(table.contains("connector-worker        STALL: max 3, total 3"), "\(table)")

        // Without broker options, the working directory's connector.yaml names the brokers (as
        // in the container image, where KAFKA_BROKERS is set).
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lag-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "kafka:\n  brokers: ${KAFKA_BROKERS:-embedded}\n".write(to: directory.appendingPathComponent("connector.yaml"), atomically: true, encoding: .utf8)
        let bare = try run(["lag", "--json", "--window", "2", "--interval", "0.1"], in: directory, environment: ["KAFKA_BROKERS": address])
        #expect(bare.status == 0, "\(bare.error)")
        #expect(bare.output.contains(#""status" : "STALL""#), "\(bare.output)")

        broker.terminate()  // SIGTERM
        broker.waitUntilExit()
        #expect(broker.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: file), "bootstrap file removed on shutdown")
    }

    @Test("topics create checks topics that exist already: one with fewer partitions than the topic it follows fails the command")
    func topicsCreateChecksExistingTopics() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build the connector first")
        let cluster = try EmbeddedKafkaCluster(logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        // A sessions topic a broker auto-created with its default of 1 partition.
        for topic in ChatEvents.ConnectorTopic.allCases {
            try cluster.createTopic(topic.rawValue, partitions: topic == .sessions ? 1 : 2)
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("bootstrap-\(UUID().uuidString)").path
        try cluster.bootstrapServers.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let topics = try run(["topics", "create", "--bootstrap-file", file])
        #expect(topics.status != 0)
        #expect(topics.output.contains("bot.sessions.v1: exists with 1 partitions, not 6 (kafka.partitions)"), "\(topics.output)")
        #expect(topics.output.contains("bot.sessions.v1 has 1 partition, fewer than the 2 of eightbyeight.inbound.v1, whose partition numbers it follows: recreate it with 2"), "\(topics.output)")
        #expect(!topics.output.contains("eightbyeight.delivery.v1 has"), "the egress's pair is fine")
    }

    @Test func embeddedBrokersInTheConfigurationGetAClearLine() throws {
        // Where there is no connector.yaml, and where there is one that says "embedded".
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("lag-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        let result = try run(["lag"], in: empty)
        #expect(result.status == 1)
        #expect(result.error.hasPrefix("connector: kafka.brokers is 'embedded', which"), "\(result.error)")
        #expect(result.error.split(separator: "\n").count == 1)
        try "kafka:\n  brokers: embedded\n".write(to: empty.appendingPathComponent("connector.yaml"), atomically: true, encoding: .utf8)
        let configured = try run(["lag"], in: empty)
        #expect(configured.status == 1)
        #expect(configured.error.hasPrefix("connector: kafka.brokers is 'embedded' (./connector.yaml), which"), "\(configured.error)")
        #expect(configured.error.split(separator: "\n").count == 1)
    }

    @Test func simulatorServesItsConsoleAndKeysUntilSIGTERM() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build the connector first")
        let (process, out, _) = try Self.launch(["simulator", "--config", "connector.yaml", "--host", "127.0.0.1", "--port", "0", "--webhook-url", "http://127.0.0.1:9/endpoint/x"])
        defer { if process.isRunning { process.terminate() } }
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        let start = try #require(text.firstRange(of: "http://127.0.0.1:"), "\(text)")
        let base = "http://127.0.0.1:" + text[start.upperBound...].prefix { $0.isNumber }
        func get(_ path: String) async throws -> String {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: base + path), timeout: .seconds(30))
            return String(buffer: try await response.body.collect(upTo: 1 << 20))
        }
        let page = try await get("/console")
        #expect(page.contains("<title>8x8 connector — dev console</title>"))
        let kid = try #require(text.firstRange(of: "signed with key ").map { text[$0.upperBound...].prefix { $0 != ")" } }, "\(text)")
        #expect(kid.hasPrefix("connector-simulator-"))
        let key = try await get("/chat-gateway/v1/jwk/\(kid)/public")
        #expect(key.contains(#""kty":"RSA""#))
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
    }

    @Test("dev names the port another program holds, and where to change it")
    func devNamesAPortInUse() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && listen(descriptor, 1) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        try #require(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let result = try run(["dev", "--config", "connector.yaml", "--port", "\(port)"])
        #expect(result.status != 0)
        #expect(result.error.contains("127.0.0.1:\(port), for the simulator (--port), is in use by another program"), "\(result.error)")
    }

    @Test("numbers out of range on the command line are refused before anything starts", arguments: [
        (["dev", "--port", "70000"], "--port must be between 1 and 65535"),
        (["dev", "--port", "0"], "--port must be between 1 and 65535"),
        (["simulator", "--config", "connector.yaml", "--port", "65536"], "--port must be between 0 and 65535"),
        (["broker", "--brokers", "0"], "--brokers must be between 1 and 16"),
        (["broker", "--partitions", "20000"], "--partitions must be between 1 and 10000"),
    ])
    func outOfRangeNumbersAreRefused(_ arguments: [String], _ message: String) throws {
        let result = try run(arguments)
        #expect(result.status != 0)
        #expect(result.error.contains(message), "\(result.error)")
    }

    @Test("LOG_LEVEL is read in any case; a value that is no level stops the connector with one line instead of logging at the default")
    func logLevelIsChecked() throws {
        let wrong = try run(["flow", "validate", "flows/demo.yaml"], environment: ["LOG_LEVEL": "verbose"])
        #expect(wrong.status == 1)
        #expect(wrong.error == "connector: LOG_LEVEL 'verbose' is not a log level; use one of trace, debug, info, notice, warning, error or critical\n")
        #expect(wrong.output.isEmpty, "nothing ran")
        // Help is shown whatever LOG_LEVEL says.
        for help in [["--help"], ["flow", "validate", "-h"], ["help", "flow"]] {
            let result = try run(help, environment: ["LOG_LEVEL": "verbose"])
            #expect(result.status == 0 && result.output.contains("USAGE:"), "\(help): \(result.error)")
        }
        // A "-h" that is an option's value asks for no help.
        let value = try run(["flow", "validate", "--", "-h"], environment: ["LOG_LEVEL": "verbose"])
        #expect(value.status == 1 && value.error.hasPrefix("connector: LOG_LEVEL 'verbose'"), "\(value.error)")
        for level in ["DEBUG", "Warning", " error ", ""] {
            let result = try run(["flow", "validate", "flows/demo.yaml"], environment: ["LOG_LEVEL": level])
            #expect(result.status == 0, "\(level): \(result.error)")
        }
    }

    @Test func flowValidateAcceptsTheDemoFlow() throws {
        let result = try run(["flow", "validate", "flows/demo.yaml"])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.hasPrefix("flows/demo.yaml: ok"))
    }

    @Test func flowValidateReportsEveryProblemWithItsLine() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("broken-\(UUID().uuidString).yaml").path
        try """
            nodes:
              - id: a
                type: say
                text: "{{#open}}"
                next: missing
              - id: b
                type: teleport
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try run(["flow", "validate", file])
        #expect(result.status == 1)
        let lines = result.error.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines[0].hasPrefix("\(file):4:"))
        #expect(lines[1].hasPrefix("\(file):5:") && lines[1].contains("target 'missing'"))
        #expect(lines[2].hasPrefix("\(file):7:") && lines[2].contains("unknown node type 'teleport'"))
    }

    @Test func workerWithAnUnreadableFlowFailsWithAClearMessage() throws {
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("worker-\(UUID().uuidString).yaml").path
        try """
            kafka:
              brokers: 127.0.0.1:1
            endpoints:
              - name: support
                urlToken: support-token-1
                flow: does/not/exist.yaml
                eightByEight: { baseURL: "https://api.8x8.com", apiKey: k }
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let result = try run(["worker", "--config", config])
        #expect(result.status == 1)
        #expect(result.error.hasPrefix("connector: endpoint 'support': flow does/not/exist.yaml has problems"))
    }
}
