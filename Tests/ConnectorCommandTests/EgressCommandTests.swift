import AsyncHTTPClient
import ChatEvents
import Foundation
import Kafka
import Logging
import Simulator
import Testing
import TestSupport

/// `connector egress` and `connector replay` as an operator runs them: against a broker, with a
/// config file, 8x8 played by the simulator.
@Suite(.serialized) struct EgressCommandTests {
    static let logger = Logger(label: "command-tests") { _ in SwiftLogNoOpLogHandler() }

    static func command(_ id: String, author: String, text: String) -> [UInt8] {
        Array(#"{"schema":"eightbyeight.outbound.v1","commandId":"\#(id)/0","conversationId":"c-cli","endpoint":"support","tenantId":"acme","causationEventId":"\#(id)","sequence":0,"createdAt":1,"receivedAt":1,"action":"sendMessage","body":{"authorType":"\#(author)","text":"\#(text)"}}"#.utf8)
    }

    @Test func egressDeliversDeadLettersStopsOnSIGTERMAndReplayRepublishesOnce() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: BrokerCommandTests.binary.path), "build the connector first")
        let cluster = try EmbeddedKafkaCluster(logger: Self.logger)
        for topic in ["eightbyeight.outbound.v1", "eightbyeight.delivery.v1", "eightbyeight.dlq.v1"] {
            try cluster.createTopic(topic, partitions: 2)
        }
        let simulator = EightByEightSimulator(signer: try WebhookSigner(kid: "cli"), credentials: .init(apiKey: "secret-api-key-value", tenant: "acme"))
        try await withRunningApplication({ simulator.application(logger: Self.logger, onRunning: $0) }) { port in
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("connector-\(UUID().uuidString).yaml").path
            try """
                kafka:
                  brokers: embedded
                  partitions: 2
                egress:
                  listen: 127.0.0.1:0
                endpoints:
                  - name: support
                    urlToken: cli-token
                    flow: flows/demo.yaml
                    eightByEight:
                      baseURL: http://127.0.0.1:\(port)
                      apiKey: secret-api-key-value
                      tenant: acme
                """.write(toFile: path, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: path) }
            var producerConfig = KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
            producerConfig.clientID = "cli-test"
            let producer = try KafkaProducer(configuration: producerConfig, logger: Self.logger)
            for value in [Self.command("e-bad", author: "customer", text: "rejected"), Self.command("e-good", author: "bot", text: "hello there")] {
                _ = try await producer.send(KafkaProducerMessage(topic: "eightbyeight.outbound.v1", key: "c-cli", value: value))
            }

            let (process, out, err) = try BrokerCommandTests.launch(["egress", "--config", path, "--brokers", cluster.bootstrapServers])
            defer { if process.isRunning { process.terminate() } }
            let gateway = simulator.gateway!
            try await within(60, "the good command delivered") {
                while !gateway.acceptedCommandIds.contains("e-good/0") { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(gateway.acceptedCommandIds == ["e-good/0"])
            #expect(gateway.received.first?.status == 400, "the bad command was tried first, in order")
            process.terminate()  // SIGTERM: graceful
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            let firstLine = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(firstLine.hasPrefix("egress serving health and metrics on http://127.0.0.1:"), "\(firstLine)")
            let logs = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(!logs.contains("secret-api-key-value"), "no secret in the logs")
            #expect(!logs.contains("rejected") && !logs.contains("hello there"), "no message text in the logs")

            let broker = ["--config", path, "--brokers", cluster.bootstrapServers]
            let dryRun = try BrokerCommandTests().run(["replay"] + broker + ["--dry-run", "--since", "1h"])
            #expect(dryRun.status == 0, "\(dryRun.error)")
            #expect(dryRun.output.contains("would replay sendMessage e-bad/0 of conversation c-cli"), "\(dryRun.output)")
            #expect(dryRun.output.hasSuffix("1 would replay, 0 replayed before, 0 duplicate dead letters, 0 filtered out, 0 not replayable\n"))
            let replay = try BrokerCommandTests().run(["replay"] + broker)
            #expect(replay.output.contains("replayed sendMessage e-bad/0") && replay.output.contains("as e-bad/0/replay/"), "\(replay.output)")
            let again = try BrokerCommandTests().run(["replay"] + broker)
            #expect(again.output == "0 replayed, 1 replayed before, 0 duplicate dead letters, 0 filtered out, 0 not replayable\n", "\(again.output)")
            let badSince = try BrokerCommandTests().run(["replay"] + broker + ["--since", "yesterday"])
            #expect(badSince.status != 0 && badSince.error.contains("--since yesterday is not a time"))
            await producer.shutdown()
        }
    }

    @Test("replay masks personal data an 8x8 error message quoted in a dead letter's reason")
    func replayMasksTheReason() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: BrokerCommandTests.binary.path), "build the connector first")
        let cluster = try EmbeddedKafkaCluster(logger: Self.logger)
        for topic in ["eightbyeight.outbound.v1", "eightbyeight.dlq.v1"] { try cluster.createTopic(topic, partitions: 1) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("connector-\(UUID().uuidString).yaml").path
        try """
            kafka:
              brokers: embedded
              partitions: 1
            endpoints:
              - name: support
                urlToken: cli-token
                flow: flows/demo.yaml
                eightByEight:
                  baseURL: http://127.0.0.1:9
                  apiKey: key
            """.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let command = try OutboundCommand.decode(Self.command("e-quoted", author: "bot", text: "mail jane.doe@example.com"))
        let letter = DeadLetter(
            command: command, reason: "8x8 answered 400: bad_request jane.doe@example.com is not allowed", status: 400,
            errorBody: nil, attempts: 1, firstAttemptAt: 1, deadLetteredAt: Int64(Date().timeIntervalSince1970 * 1000), source: "test")
        var producerConfig = KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
        producerConfig.clientID = "cli-test"
        let producer = try KafkaProducer(configuration: producerConfig, logger: Self.logger)
        _ = try await producer.send(KafkaProducerMessage(topic: "eightbyeight.dlq.v1", key: "c-cli", value: letter.encodedRecord))
        await producer.shutdown()
        let dryRun = try BrokerCommandTests().run(["replay", "--config", path, "--brokers", cluster.bootstrapServers, "--dry-run"])
        #expect(dryRun.status == 0, "\(dryRun.error)")
        #expect(dryRun.output.contains("would replay sendMessage e-quoted/0") && dryRun.output.contains("is not allowed"), "\(dryRun.output)")
        #expect(!dryRun.output.contains("jane.doe@example.com"), "\(dryRun.output)")
    }
}
