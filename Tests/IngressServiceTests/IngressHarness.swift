import AsyncHTTPClient
import ChatEvents
import ConnectorConfiguration
import EightByEight
import Foundation
import IngressService
import Kafka
import Logging
import NIOCore
import Simulator
@_exported import TestSupport

let documentedStatuses: Set<Int> = [200, 400, 401, 403, 404, 413, 415, 503]

/// One running ingress on the embedded cluster, with the simulator serving its JWKs.
struct IngressHarness: Sendable {
    static let signer = try! WebhookSigner(kid: "sim-key")
    static let urlToken = "support-token-1"
    static let partitions: Int32 = 3

    let cluster: EmbeddedKafkaCluster
    let simulator: EightByEightSimulator
    let config: ConnectorConfig
    let service: IngressService
    let baseURL: String
    var sender: WebhookSender

    var endpointURL: String { "\(baseURL)/endpoint/\(Self.urlToken)" }
    var topic: String { config.topicName(.inbound) }

    /// Starts everything, runs `body`, stops everything.
    static func run(
        configure: (inout ConnectorConfig) -> Void = { _ in }, logger: Logger = quietLogger,
        _ body: @Sendable (IngressHarness) async throws -> Void
    ) async throws {
        let cluster = try EmbeddedKafkaCluster(logger: quietLogger)
        let simulator = EightByEightSimulator(signer: signer)
        try await withRunningApplication({ simulator.application(logger: quietLogger, onRunning: $0) }) { simulatorPort in
            var config = try ConnectorConfig.parse("""
                kafka:
                  brokers: embedded
                ingress:
                  listen: 127.0.0.1:0
                  maxBodyBytes: 4096
                  publishTimeoutMs: 15000
                  signature:
                    required: true
                    jwkBaseURL: http://127.0.0.1:\(simulatorPort)
                    jwkFetchTimeoutMs: 15000
                endpoints:
                  - name: support
                    urlToken: \(urlToken)
                    flow: flows/demo.yaml
                    eightByEight:
                      baseURL: http://127.0.0.1:\(simulatorPort)
                      apiKey: test-key
                      tenant: acme
                """)
            configure(&config)
            try cluster.createTopic(config.topicName(.inbound), partitions: partitions)
            let service = try IngressService.make(config: config, bootstrapServers: cluster.bootstrapServers, logger: logger)
            try await withRunningApplication({ service.application(host: "127.0.0.1", port: 0, onRunning: $0) }) { port in
                var sender = simulator.webhookSender(logger: quietLogger)
                sender.tenantId = "acme"
                sender.customerId = "customer-1"
                let harness = IngressHarness(
                    cluster: cluster, simulator: simulator, config: config, service: service,
                    baseURL: "http://127.0.0.1:\(port)", sender: sender
                )
                try await body(harness)
            }
        }
    }

    /// How many records the inbound topic holds (acknowledged writes only).
    func publishedCount() async throws -> Int64 {
        let admin = try KafkaAdmin(bootstrapServers: cluster.bootstrapServers, requestTimeout: .seconds(5), logger: quietLogger)
        var total: Int64 = 0
        for partition in 0..<Self.partitions {
            total += try await admin.watermarks(TopicPartition(topic: topic, partition: partition)).high
        }
        return total
    }

    /// Every record of the inbound topic (exactly `count` of them).
    func published(_ count: Int) async throws -> [(key: String?, event: InboundEvent, value: [UInt8])] {
        guard count > 0 else { return [] }
        var configuration = KafkaConsumerConfiguration(
            bootstrapServers: cluster.bootstrapServers, groupID: "reader-\(UUID().uuidString)",
            subscription: .partitions(Dictionary(uniqueKeysWithValues: (0..<Self.partitions).map {
                (TopicPartition(topic: topic, partition: $0), Int64?.some(0))
            }))
        )
        configuration.clientID = "test-reader"
        let consumer = try KafkaConsumer(configuration: configuration, logger: quietLogger)
        defer { Task { await consumer.shutdown() } }
        return try await within(30, "\(count) records") {
            var records: [(key: String?, event: InboundEvent, value: [UInt8])] = []
            for await message in consumer.messages {
                records.append((message.keyString, try InboundEvent.decode(message.value), message.value))
                if records.count == count { break }
            }
            return records
        }
    }

    func get(_ path: String) async throws -> (status: Int, body: String) {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: baseURL + path), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: body))
    }

    /// Signed headers for `body`, as a mutable dictionary (tests tamper with it).
    func signedHeaders(_ body: [UInt8], eventId: String = UUID().uuidString, retry: Int = 0, signer: WebhookSigner? = nil,
                       tenantId: String = "acme",
                       transmissionTime: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) throws -> [(String, String)] {
        try (signer ?? Self.signer).signedHeaders(body: body, tenantId: tenantId, customerId: "customer-1", eventId: eventId, retry: retry, transmissionTime: transmissionTime)
    }

    /// Sends the webhook as 8x8 retries it (same event id, growing retry count, fresh
    /// signature) until it is accepted or `attempts` are used; returns the last status.
    func retryUntilAccepted(_ body: [UInt8], eventId: String, firstRetry: Int, attempts: Int = 18) async throws -> Int {
        var status = 0
        for retry in firstRetry..<(firstRetry + attempts) where status != 200 {
            status = try await post(body, headers: signedHeaders(body, eventId: eventId, retry: retry))
        }
        return status
    }

    func post(_ body: [UInt8], headers: [(String, String)], to url: String? = nil) async throws -> Int {
        try await sender.post(body: body, headers: headers, to: url ?? endpointURL).status
    }
}

extension [(String, String)] {
    func replacing(_ name: String, with value: String?) -> [(String, String)] {
        var copy = filter { $0.0.lowercased() != name.lowercased() }
        if let value { copy.append((name, value)) }
        return copy
    }
}


func fixture(_ name: String) throws -> [UInt8] {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    return Array(try Data(contentsOf: root.appendingPathComponent("EightByEightTests/Webhooks/\(name).json")))
}

func fixtureNames() throws -> [String] {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    return try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("EightByEightTests/Webhooks").path)
        .filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
}
