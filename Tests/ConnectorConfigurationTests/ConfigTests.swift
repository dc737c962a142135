import ChatEvents
import Foundation
@testable import ConnectorConfiguration
import Testing

@Suite struct ConfigTests {
    let full = """
    kafka:
      brokers: embedded
      partitions: 6
      properties:
        linger.ms: 5
        enable.ssl.certificate.verification: false
    ingress:
      listen: 0.0.0.0:8080
      maxBodyBytes: 1048576
      signature:
        required: true
        jwkBaseURL: https://api.8x8.com
        maxClockSkewSeconds: 300
    endpoints:
      - name: support
        urlToken: 3f0c2b7e9d1a4c55
        flow: flows/demo.yaml
        eightByEight:
          baseURL: https://api.8x8.com
          apiKey: ${EIGHTBYEIGHT_API_KEY}
          tenant: acme
          acceptConversationActiveEvent: false
        dataProtection:
          maskLogging: true
        session:
          ttlMinutes: 30
        handover:
          queueId: "101"
    """

    @Test func readsTheArchitectureExampleWithEnvironmentInterpolation() throws {
        let config = try ConnectorConfig.parse(full, environment: ["EIGHTBYEIGHT_API_KEY": "k-123"])
        #expect(config.kafka.isEmbedded)
        #expect(config.kafka.properties == ["linger.ms": "5", "enable.ssl.certificate.verification": "false"])
        #expect(config.endpoints.first?.eightByEight.apiKey.value == "k-123")
        #expect("\(config.endpoints[0].eightByEight.apiKey)" == "<redacted>", "secrets print redacted")
        #expect(config.topicName(.inbound) == "eightbyeight.inbound.v1")
    }

    @Test func missingEnvironmentVariableIsNamedNotGuessed() {
        #expect {
            _ = try ConnectorConfig.parse(full, source: "c.yaml", environment: [:])
        } throws: { "\($0)" == "c.yaml: environment variable EIGHTBYEIGHT_API_KEY is not set" }
    }

    @Test("a librdkafka property that comes out empty (${PASSWORD:-} with PASSWORD unset) is left to librdkafka, never the text ~")
    func emptyPropertiesAreLeftOut() throws {
        let config = try ConnectorConfig.parse("kafka:\n  properties:\n    sasl.password: ${PASSWORD:-}\n    linger.ms: 2\n", environment: [:])
        #expect(config.kafka.properties == ["linger.ms": "2"])
    }

    @Test("a reserved librdkafka property may be written with the connector's own value")
    func reservedPropertiesWithTheConnectorsValue() throws {
        let config = try ConnectorConfig.parse("kafka:\n  properties: {acks: all, enable.idempotence: true, enable.auto.commit: true}\n")
        #expect(config.kafka.properties["acks"] == "all")
    }

    @Test func defaultValueAfterColonDash() throws {
        let config = try ConnectorConfig.parse("kafka:\n  brokers: ${BROKERS:-localhost:9092}\n")
        #expect(config.kafka.brokers == "localhost:9092")
        #expect(config.topicName(.sessions) == "bot.sessions.v1")
        // A default may hold a '$' (a password), not a brace.
        let password = try ConnectorConfig.parse("kafka:\n  properties:\n    sasl.password: ${PASSWORD:-pa$word}\n")
        #expect(password.kafka.properties["sasl.password"] == "pa$word")
    }

    @Test(arguments: [
        ("kafka:\n  partitons: 3\n", "c.yaml: unknown key 'kafka.partitons'"),
        ("kafka:\n  partitions: 0\n", "c.yaml: kafka.partitions must be between 1 and 10000"),
        ("kafka:\n  partitions: 3000000000\n", "c.yaml: kafka.partitions must be between 1 and 10000"),
        ("kafka:\n  replicationFactor: 40000\n", "c.yaml: kafka.replicationFactor must be between 1 and 32"),
        ("kafka:\n  properties:\n    metadata.broker.list: x:9092\n", "c.yaml: kafka.properties.metadata.broker.list is set by the connector (use kafka.brokers)"),
        ("kafka:\n  properties:\n    request.required.acks: 1\n", "c.yaml: kafka.properties.request.required.acks is set by the connector"),
        ("ingress:\n  signature:\n    required: false\n    jwkBaseURL: simulator:8088\n",
         "c.yaml: ingress.signature.jwkBaseURL must be an http or https URL, e.g. https://api.8x8.com"),
        ("endpoints:\n  - {name: a, urlToken: abcdefgh1, flow: f, eightByEight: {baseURL: 'https://x', apiKey: k}}\nendpoints:\n  - {name: b, urlToken: abcdefgh2, flow: f, eightByEight: {baseURL: 'https://x', apiKey: k}}\n",
         "c.yaml: line 3: key 'endpoints' appears twice in one mapping"),
        ("kafka:\n  brokers: a:1\n  partitions: 3\n  brokers: b:2\n", "c.yaml: line 4: key 'brokers' appears twice in one mapping"),
        ("endpoints:\n  - name: a\n    urlToken: abcdefgh1\n    flow: f\n    eightByEight: {baseURL: 'https://x', apiKey: '${KEY:-${OLD}}'}\n",
         "c.yaml: the default of ${KEY:-...} may not hold '{' (nested defaults are not supported)"),
        ("kafka:\n  partitions: many\n", "c.yaml: kafka.partitions must be a whole number"),
        ("endpoints:\n  - name: a\n    flow: f\n    urlToken: 12345678\n", "c.yaml: endpoints[0].eightByEight is required"),
        ("endpoints:\n  - name: a\n    urlToken: short\n    flow: f\n    eightByEight: {baseURL: 'https://x', apiKey: k}\n",
         "c.yaml: endpoint 'a': urlToken must have at least 8 characters (it is the webhook's secret path)"),
        ("endpoints:\n  - name: a\n    urlToken: abcdefgh1\n    flow: f\n    eightByEight: {baseURL: 'https://x', apiKey: ''}\n",
         "c.yaml: endpoint 'a': eightByEight.apiKey is empty"),
        ("endpoints:\n  - name: a\n    urlToken: abcdefgh1\n    flow: f\n    eightByEight:\n      baseURL: 'https://x'\n      apiKey: |\n        k-secret-1\n",
         "c.yaml: endpoint 'a': eightByEight.apiKey contains a control character (a line break from a YAML block scalar?)"),
        ("endpoints:\n  - name: a\n    urlToken: abcdefgh1\n    flow: f\n    eightByEight: {baseURL: 'https://x', apiKey: k, tenant: \"acme\\t\"}\n",
         "c.yaml: endpoint 'a': eightByEight.tenant contains a control character (a line break from a YAML block scalar?)"),
        ("endpoints:\n  - name: a\n    urlToken: abcdefgh1\n    flow: f\n    eightByEight: {baseURL: 'https://x', apiKey: k}\n    session: {ttlMinutes: 9223372036854775807}\n",
         "c.yaml: endpoint 'a': session.ttlMinutes must be between 0 (never) and 525600 (a year)"),
        ("endpoints:\n  - name: a\n    urlToken: abcdefgh1\n    flow: f\n    eightByEight: {baseURL: 'https://x', apiKey: ${KEY:-}}\n",
         "c.yaml: endpoint 'a': eightByEight.apiKey is empty"),
        ("endpoints:\n  - name: a\n    urlToken: abcdefgh1\n    flow: f\n    eightByEight: {baseURL: 'https://x', apiKey: k}\n    session: {ttlMinute: 0}\n",
         "c.yaml: unknown key 'endpoints[].session.ttlMinute'"),
        ("endpoints:\n  - name: a\n    urlToken: abcdefgh1\n    flow: f\n    eightByEight: {baseURL: 'https://x', apiKey: k}\n    dataProtection:\n      customRecognizers:\n        - {type: ORDER, pattern: 'ORD-[0-9]+', validators: luhn}\n",
         "c.yaml: unknown key 'endpoints[].dataProtection.customRecognizers[].validators'"),
        ("endpoints:\n  - name: a\n    urlToken: café12345\n    flow: f\n    eightByEight: {baseURL: 'https://x', apiKey: k}\n",
         "c.yaml: endpoint 'a': urlToken may contain only ASCII letters, digits, '-' and '_'"),
        ("endpoints:\n  - name: a\n    urlToken: abcdefgh1\n    flow: f\n    eightByEight: {baseURL: 'localhost:8090', apiKey: k}\n",
         "c.yaml: endpoint 'a': eightByEight.baseURL must be an http or https URL, e.g. https://api.8x8.com"),
        ("kafka:\n  properties:\n    enable.auto.offset.store: true\n", "c.yaml: kafka.properties.enable.auto.offset.store is set by the connector"),
        ("kafka:\n  properties:\n    group.id: x\n", "c.yaml: kafka.properties.group.id is set by the connector (use kafka.groupPrefix)"),
        ("egress:\n  rateLimit: {requestsPerSecond: 1e-20}\n", "c.yaml: egress.rateLimit.requestsPerSecond must be between 0.001 and 100000"),
        ("egress:\n  retry: {maxBackoffMs: 99999999999}\n", "c.yaml: egress.retry.maxBackoffMs must be at most 3600000 (an hour)"),
        ("egress:\n  dedupeWindow: 2000\n", "c.yaml: egress.dedupeWindow must be 0 (off) or at least twice egress.maxBufferedPerPartition (4000)"),
    ])
    func badConfigurationGetsOneClearLine(yaml: String, message: String) {
        #expect {
            _ = try ConnectorConfig.parse(yaml, source: "c.yaml")
        } throws: { "\($0)" == message }
    }

    @Test func commentsAreNotInterpolated() throws {
        let config = try ConnectorConfig.parse("""
            # ${NOT_SET} in a comment is text
            kafka:
              brokers: "a#b:9092" # ${ALSO_NOT_SET}
              topicPrefix: ${PREFIX:-x.}
            """, environment: [:])
        #expect(config.kafka.brokers == "a#b:9092")
        #expect(config.kafka.topicPrefix == "x.")
    }

    @Test("a value from the environment is taken as it is, whatever YAML would make of it, and typed like the text it replaced")
    func environmentValuesAreNotReadAsYAML() throws {
        let secret = #"*K9: a #b "c' &d !e [f] {g}"#
        let config = try ConnectorConfig.parse("""
            kafka:
              partitions: ${PARTITIONS}
              properties: {sasl.password: ${PASSWORD}, client.rack: "${RACK}"}
            endpoints:
              - name: a
                urlToken: abcdefgh1
                flow: f
                eightByEight: {baseURL: 'https://x', apiKey: ${KEY}}
            """, environment: ["PARTITIONS": "3", "PASSWORD": secret, "RACK": "null", "KEY": "12345"])
        #expect(config.kafka.partitions == 3)
        #expect(config.kafka.properties["sasl.password"] == secret)
        #expect(config.kafka.properties["client.rack"] == "null")
        #expect(config.endpoints[0].eightByEight.apiKey.value == "12345")
    }

    @Test("a YAML error says where and what, without quoting the file or a value from the environment")
    func yamlErrorsQuoteNothing() {
        #expect {
            _ = try ConnectorConfig.parse(
                "kafka:\n  brokers: ${BROKERS}\n  properties: {sasl.password: hunter2\n", source: "c.yaml",
                environment: ["BROKERS": "secret-host:9092"])
        } throws: { error in
            let message = "\(error)"
            return message.hasPrefix("c.yaml: not valid YAML: line ") && !message.contains("hunter2") && !message.contains("secret-host")
        }
    }

    @Test("a lone ${ stays on its line, a trailing line break of a variable is dropped, an empty plain value is no value")
    func interpolationEdges() throws {
        let config = try ConnectorConfig.parse("""
            # set ${KAFKA_BROKERS for real Kafka
            kafka:
              brokers: b:9092
              properties: {}
            endpoints:
              - name: a
                urlToken: abcdefgh1
                flow: f
                eightByEight: {baseURL: 'https://x', apiKey: ${KEY}, tenant: ${TENANT:-}}
            """, environment: ["KEY": "from-a-file\n"])
        #expect(config.kafka.brokers == "b:9092")
        #expect(config.endpoints[0].eightByEight.apiKey.value == "from-a-file")
        #expect(config.endpoints[0].eightByEight.tenant == nil)
        #expect {
            _ = try ConnectorConfig.parse("kafka:\n  brokers: ${BROKERS\n  partitions: 2\n", source: "c.yaml")
        } throws: { "\($0)" == "c.yaml: unterminated ${ in the configuration" }
    }

    @Test("an empty tenant, written or from an unset variable, is no tenant: no empty X-8x8-Tenant header")
    func emptyTenantIsNone() throws {
        for tenant in ["\"\"", "\"${TENANT:-}\"", "${TENANT:-}"] {
            let config = try ConnectorConfig.parse("endpoints:\n  - {name: a, urlToken: abcdefgh1, flow: f, eightByEight: {baseURL: 'https://x', apiKey: k, tenant: \(tenant)}}\n")
            #expect(config.endpoints[0].eightByEight.tenant == nil, "\(tenant)")
        }
    }

    @Test func topicPrefixAppliesToEveryTopic() throws {
        let config = try ConnectorConfig.parse("kafka:\n  topicPrefix: staging.\n")
        #expect(ConnectorTopic.allCases.map { config.topicName($0) }.allSatisfy { $0.hasPrefix("staging.") })
        // Not to the consumer groups: a deployment that already ran keeps its committed offsets.
        #expect(config.groupName(.worker) == "connector-worker")
        // Those take their own prefix: two deployments on one cluster do not share (and rebalance) groups.
        let shared = try ConnectorConfig.parse("kafka:\n  topicPrefix: staging.\n  groupPrefix: staging.\n")
        #expect(ConnectorConsumerGroup.allCases.map { shared.groupName($0) } == ["staging.connector-worker", "staging.connector-egress"])
    }

    @Test func theShippedConfigurationIsValid() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("connector.yaml").path
        let config = try ConnectorConfig.load(path: path, environment: [:])
        #expect(config.kafka.isEmbedded)
        #expect(config.endpoints.map(\.name) == ["support"])
        #expect(config.ingress.listenAddress?.port == 8080)
    }

    @Test func ingressSettingsHaveDefaultsAndBounds() throws {
        let config = try ConnectorConfig.parse("ingress:\n  listen: '[::1]:9090'\n")
        #expect(config.ingress.listenAddress?.host == "::1")
        #expect(config.ingress.listenAddress?.port == 9090)
        #expect(config.ingress.publishTimeoutMs == 5_000)
        #expect(config.ingress.dedupeCapacity == 100_000)
        #expect(config.ingress.lingerMs == 0)
        #expect(config.ingress.idleTimeoutSeconds == 75)
        #expect(try ConnectorConfig.parse("ingress:\n  idleTimeoutSeconds: 0\n").ingress.idleTimeoutSeconds == 0)
        #expect(throws: (any Error).self) { try ConnectorConfig.parse("ingress:\n  idleTimeoutSeconds: -1\n") }
        #expect(try ConnectorConfig.parse("ingress:\n  lingerMs: 2\n").ingress.lingerMs == 2)
        #expect(config.worker.lingerMs == 0)
        #expect(config.ingress.signature.jwkCacheTTLSeconds == 86_400)
        #expect(config.ingress.signature.jwkFetchTimeoutMs == 2_000)
        #expect(throws: (any Error).self) { try ConnectorConfig.parse("ingress:\n  listen: 8080\n") }
        #expect(throws: (any Error).self) { try ConnectorConfig.parse("ingress:\n  signature:\n    jwkFetchTimeoutMs: 0\n") }
    }
}

@Suite struct ReadmeConfigurationReferenceTests {
    /// The README's configuration reference is a valid configuration and names every key.
    @Test func theReferenceParsesAndNamesEveryKey() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let section = try #require(readme.range(of: "## Configuration reference"))
        let rest = readme[section.upperBound...]
        let start = try #require(rest.range(of: "```yaml\n"))
        let end = try #require(rest[start.upperBound...].range(of: "```"))
        let yaml = String(rest[start.upperBound..<end.lowerBound])
        let config = try ConnectorConfig.parse(yaml, source: "README", environment: ["EIGHTBYEIGHT_API_KEY": "k"])
        #expect(config.endpoints.first?.dataProtection?.entities?.count == 6)
        typealias C = ConnectorConfig
        let keys: [String] = C.CodingKeys.allCases.map(\.rawValue) + C.KafkaSettings.CodingKeys.allCases.map(\.rawValue)
            + C.IngressSettings.CodingKeys.allCases.map(\.rawValue) + C.SignatureSettings.CodingKeys.allCases.map(\.rawValue)
            + C.WorkerSettings.CodingKeys.allCases.map(\.rawValue) + C.EgressSettings.CodingKeys.allCases.map(\.rawValue)
            + C.RateLimitSettings.CodingKeys.allCases.map(\.rawValue) + C.RetrySettings.CodingKeys.allCases.map(\.rawValue)
            + C.EndpointSettings.CodingKeys.allCases.map(\.rawValue) + C.EightByEightSettings.CodingKeys.allCases.map(\.rawValue)
            + C.DataProtectionSettings.CodingKeys.allCases.map(\.rawValue) + C.HandoverSettings.CodingKeys.allCases.map(\.rawValue)
            + ["ttlMinutes", "type", "pattern", "validator", "contextWords"]
        for key in keys {
            #expect(yaml.contains("\(key):") || yaml.contains("\(key) ") || yaml.contains("{ \(key)") || yaml.contains("[{\(key),"), "the README's reference lacks \(key)")
        }
    }
}
