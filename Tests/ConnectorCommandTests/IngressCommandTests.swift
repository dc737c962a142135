import AsyncHTTPClient
import Foundation
import Kafka
import Logging
import Simulator
import TestSupport
import Testing

/// `connector ingress` as an operator runs it: against a broker process, with a config file.
@Suite(.serialized) struct IngressCommandTests {
    static let binary = BrokerCommandTests.binary
    static let logger = Logger(label: "command-tests") { _ in SwiftLogNoOpLogHandler() }

    func temporaryFile(_ contents: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("connector-\(UUID().uuidString).yaml").path
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func config(listen: String = "127.0.0.1:0", jwk: String = "http://127.0.0.1:1") -> String {
        """
        kafka:
          brokers: embedded
        ingress:
          listen: \(listen)
          signature:
            jwkBaseURL: \(jwk)
            # The simulator answers from the test process, which shares the cores with every
            # other suite running: 8x8's default bound (2 s) is too tight for it under load.
            jwkFetchTimeoutMs: 15000
        endpoints:
          - name: support
            urlToken: command-test-token
            flow: flows/demo.yaml
            eightByEight:
              baseURL: https://api.8x8.com
              apiKey: secret-api-key-value
        """
    }

    @Test(arguments: [
        ("listen: nowhere", "ingress.listen must be host:port"),
        ("publishTimeoutMs: 0", "ingress.publishTimeoutMs must be between 1 and 600000"),
        ("lingerMs: -1", "ingress.lingerMs must be between 0 and 1000"),
        ("dedupeCapacity: 9223372036854775807", "ingress.dedupeCapacity must be between 0 and 10000000"),
        ("maxBodyBytes: lots", "ingress.maxBodyBytes must be a whole number"),
        ("listeners: 3", "unknown key 'ingress.listeners'"),
    ])
    func badConfigurationFailsAtStartupWithOneLine(_ line: String, _ message: String) throws {
        let path = try temporaryFile("ingress:\n  \(line)\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try BrokerCommandTests().run(["ingress", "--config", path, "--brokers", "127.0.0.1:9"])
        #expect(result.status == 1)
        #expect(result.error.contains(message), "\(result.error)")
        #expect(result.error.split(separator: "\n").count == 1)
    }

    @Test func missingConfigurationIsAClearError() throws {
        let missing = try BrokerCommandTests().run(["ingress", "--config", "/nonexistent/connector.yaml", "--brokers", "127.0.0.1:9"])
        #expect(missing.status == 1)
        #expect(missing.error == "connector: /nonexistent/connector.yaml: cannot read the configuration file\n")
        let none = try BrokerCommandTests().run(["ingress"])
        #expect(none.status != 0)
        #expect(none.error.contains("--config is required"))
    }

    @Test func ingressAcceptsASignedWebhookAndStopsOnSIGTERM() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build the connector first")
        let cluster = try EmbeddedKafkaCluster(logger: Self.logger)
        try cluster.createTopic("eightbyeight.inbound.v1", partitions: 2)
        let simulator = try EightByEightSimulator()
        try await withRunningApplication({ simulator.application(logger: Self.logger, onRunning: $0) }) { jwkPort in
            let path = try temporaryFile(config(jwk: "http://127.0.0.1:\(jwkPort)"))
            defer { try? FileManager.default.removeItem(atPath: path) }
            let (process, out, err) = try BrokerCommandTests.launch(
                ["ingress", "--config", path, "--brokers", cluster.bootstrapServers], environment: ["CONNECTOR_EVENT_LOOPS": "3", "CONNECTOR_KAFKA_THREADS": "batch"])
            defer { if process.isRunning { process.terminate() } }

            // The first line says where it listens.
            let line = try await Task.detached {
                var bytes = Data()
                while !bytes.contains(UInt8(ascii: "\n")) {
                    let chunk = out.fileHandleForReading.availableData
                    if chunk.isEmpty { break }
                    bytes.append(chunk)
                }
                return String(decoding: bytes, as: UTF8.self)
            }.value
            let match = try #require(line.firstRange(of: "http://127.0.0.1:"), "\(line)")
            let port = try #require(Int(line[match.upperBound...].prefix { $0.isNumber }))
            let base = "http://127.0.0.1:\(port)"

            let live = try await HTTPClient.shared.execute(HTTPClientRequest(url: base + "/health/live"), timeout: .seconds(10))
            #expect(live.status.code == 200)
            var sender = simulator.webhookSender(logger: Self.logger)
            sender.tenantId = "acme"
            let body = Array(#"{"eventType":"MESSAGE","conversationId":"c-1","timestamp":1713100000000,"data":{"text":"hello"}}"#.utf8)
            let answer = try await sender.send(body: body, to: base + "/endpoint/command-test-token", eventId: "evt-cli")
            #expect(answer.status == 200, "\(answer.body)")
            let admin = try KafkaAdmin(bootstrapServers: cluster.bootstrapServers, logger: Self.logger)
            let high = try await admin.watermarks(TopicPartition(topic: "eightbyeight.inbound.v1", partition: 0)).high
                + admin.watermarks(TopicPartition(topic: "eightbyeight.inbound.v1", partition: 1)).high
            #expect(high == 1)
            #if os(Linux)
            // librdkafka's threads in the connector process are batch-scheduled (SCHED_BATCH, 3).
            let kafkaThreads = threadPolicies(pid: process.processIdentifier).filter { $0.name.hasPrefix("rdk:") }
            #expect(kafkaThreads.contains { $0.name.hasPrefix("rdk:broker") }, "\(kafkaThreads)")
            #expect(kafkaThreads.allSatisfy { $0.policy == 3 }, "\(kafkaThreads)")
            #endif

            process.terminate()  // SIGTERM: graceful
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            let logs = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(!logs.contains("secret-api-key-value"), "no secret in the logs")
            // The executable links mimalloc ahead of the C library, so it serves the process's malloc.
            #expect(logs.contains("memory from mimalloc"), "\(logs)")
            // Swift's tasks run on NIO's event loops, as many as CONNECTOR_EVENT_LOOPS says.
            #expect(logs.contains("tasks run on 3 of NIO's event loops"), "\(logs)")
            #expect(logs.contains("librdkafka's threads batch-scheduled"), "\(logs)")
            // `ingress.lingerMs` 0, the default, reaches the producer: adaptive batching.
            #expect(logs.contains("inbound events go to Kafka at once"), "\(logs)")
            #expect(!logs.contains("hello"), "no user text in the logs")
        }
    }
}
