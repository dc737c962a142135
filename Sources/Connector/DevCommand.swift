import ArgumentParser
import BotWorker
import ChatEvents
import ConnectorConfiguration
import EgressService
import Foundation
import IngressService
import Kafka
import Logging
import ServiceLifecycle
import Simulator
import Synchronization

/// `connector dev`: the embedded cluster, the ingress, the worker, the egress and the 8x8
/// simulator with its console, in one process, from the repository's `connector.yaml`.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Everything in one process on the embedded broker, with the 8x8 simulator and its chat console (until Ctrl-C).")

    @Option(help: "Configuration file (its endpoints talk to the simulator instead of 8x8).") var config = "connector.yaml"
    @Option(help: "Port of the simulator and its console.") var port = 8088

    func validate() throws {
        try validatePort(port)
    }

    func run() async throws {
        var config: ConnectorConfig
        do { config = try ConnectorConfig.load(path: self.config) } catch { throw fail("\(error)") }
        guard let first = config.endpoints.first else { throw fail("\(self.config): no endpoints configured") }
        let logger = serviceLogger("connector.dev")
        let simulatorURL = "http://127.0.0.1:\(port)"
        // Everything local: 8x8 is the simulator, the services listen on loopback.
        config.ingress.signature.jwkBaseURL = simulatorURL
        for index in config.endpoints.indices { config.endpoints[index].eightByEight.baseURL = simulatorURL }
        config.kafka.lagIntervalMs = 1_000
        // The configured ports, on loopback (validation guarantees host:port).
        let ingressAddress = (host: "127.0.0.1", port: config.ingress.listenAddress!.port)
        let workerAddress = (host: "127.0.0.1", port: config.worker.listenAddress!.port)
        let egressAddress = (host: "127.0.0.1", port: config.egress.listenAddress!.port)
        // Which port is taken, and where to change it: the servers' own error names neither.
        for (port, owner) in [(port, "the simulator (--port)"), (ingressAddress.port, "the ingress (ingress.listen in \(self.config))"),
                              (workerAddress.port, "the worker (worker.listen in \(self.config))"), (egressAddress.port, "the egress (egress.listen in \(self.config))")]
        where PortCheck.isInUse(host: "127.0.0.1", port: port) {
            throw fail("127.0.0.1:\(port), for \(owner), is in use by another program")
        }

        let cluster: EmbeddedKafkaCluster
        let endpoints: [String: BotWorker.Endpoint]
        let ingress: IngressService
        do {
            cluster = try EmbeddedKafkaCluster(brokers: 1, logger: logger)
            for topic in ConnectorTopic.allCases {
                try cluster.createTopic(config.topicName(topic), partitions: Int32(config.kafka.partitions))
            }
            endpoints = try BotWorker.loadEndpoints(config: config, baseDirectory: (self.config as NSString).deletingLastPathComponent)
            ingress = try IngressService.make(config: config, bootstrapServers: cluster.bootstrapServers, logger: logger)
        } catch {
            throw fail("cannot start: \(error)")
        }
        let bootstrap = cluster.bootstrapServers
        let simulator = EightByEightSimulator(
            signer: try WebhookSigner(kidPrefix: "connector-dev"),
            credentials: .init(apiKey: first.eightByEight.apiKey.value, tenant: first.eightByEight.tenant))
        let webhookURL = "http://127.0.0.1:\(ingressAddress.port)/endpoint/\(first.urlToken)"
        simulator.sendEchoes(to: webhookURL, logger: logger)
        let stats = LiveStats(bootstrapServers: bootstrap, config: config, logger: logger)
        let console = SimulatorConsole(simulator: simulator, tenantId: first.eightByEight.tenant ?? "simulated-tenant", logger: logger) {
            await stats.json()
        }
        console.setWebhookURL(webhookURL)
        let worker = BotWorker(config: config, bootstrapServers: bootstrap, endpoints: endpoints, logger: logger)
        let egress = Egress(config: config, bootstrapServers: bootstrap, logger: logger)
        let ready = Mutex(0)
        let partitions = config.kafka.partitions
        let announce: @Sendable () -> Void = {
            guard ready.withLock({ $0 += 1; return $0 }) == 4 else { return }
            // The console is announced once the worker and the egress own their partitions, so
            // the first message does not wait for the consumer groups to form.
            Task {
                let deadline = ContinuousClock.now + .seconds(30)
                while worker.assignment.count + egress.assignment.count < 2 * partitions, ContinuousClock.now < deadline {
                    try? await Task.sleep(for: .milliseconds(50))
                }
                print("""
                connector dev is running (embedded Kafka at \(bootstrap)):
                  console    \(simulatorURL)/console
                  webhooks   \(webhookURL)
                  worker     http://127.0.0.1:\(workerAddress.port)/metrics
                  egress     http://127.0.0.1:\(egressAddress.port)/metrics
                Ctrl-C stops everything.
                """)
                fflush(nil)
            }
        }
        let group = ServiceGroup(configuration: .connector(
            services: [
                .init(service: simulator.application(host: "127.0.0.1", port: port, logger: logger, console: console) { _ in announce() }),
                .init(service: ingress.application(host: ingressAddress.host, port: ingressAddress.port) { _ in announce() }),
                .init(service: worker.application(host: workerAddress.host, port: workerAddress.port) { _ in announce() }),
                .init(service: egress.application(host: egressAddress.host, port: egressAddress.port) { _ in announce() }),
                // Last, so it stops first: it ends the console pages' event streams.
                .init(service: console),
            ],
            logger: logger))
        do {
            try await group.run()
        } catch {
            throw fail("connector dev stopped: \(error)")
        }
        print("connector dev stopped")
    }
}

/// `connector simulator`: the 8x8 stand-in on its own (docker-compose runs it beside the
/// services): the JWK endpoint, the Chat Gateway REST paths for the first endpoint's API key,
/// and the console, whose webhooks go to `--webhook-url`.
struct SimulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulator", abstract: "A local stand-in for 8x8 with its chat console (until SIGTERM or SIGINT).")

    @OptionGroup var brokerOptions: BrokerOptions
    @Option(help: "Address to listen on.") var host = "0.0.0.0"
    @Option(help: "Port of the simulator and its console.") var port = 8088
    @Option(help: "Where the webhooks go (default: the configured ingress's port on this host, first endpoint).") var webhookURL: String?

    func validate() throws {
        guard brokerOptions.config != nil else { throw ValidationError("--config is required") }
        try validatePort(port, anyFree: true)
    }

    func run() async throws {
        let config: ConnectorConfig
        do { config = try ConnectorConfig.load(path: brokerOptions.config!) } catch { throw fail("\(error)") }
        guard let first = config.endpoints.first else { throw fail("no endpoints configured") }
        let logger = serviceLogger("connector.simulator")
        let bootstrap = try? brokerOptions.load().bootstrap
        let target = webhookURL ?? "http://127.0.0.1:\(config.ingress.listenAddress?.port ?? 8080)/endpoint/\(first.urlToken)"
        let simulator = EightByEightSimulator(
            signer: try WebhookSigner(kidPrefix: "connector-simulator"),
            credentials: .init(apiKey: first.eightByEight.apiKey.value, tenant: first.eightByEight.tenant))
        simulator.sendEchoes(to: target, logger: logger)
        let stats = bootstrap.map { LiveStats(bootstrapServers: $0, config: config, logger: logger) }
        let console = SimulatorConsole(simulator: simulator, tenantId: first.eightByEight.tenant ?? "simulated-tenant", logger: logger) {
            await stats?.json() ?? .object([:])
        }
        console.setWebhookURL(target)
        let application = simulator.application(host: host, port: port, logger: logger, console: console) { port in
            print("simulator serving 8x8's JWK and Chat Gateway paths and the console on http://\(host):\(port)/console (webhooks to \(target), signed with key \(simulator.signer.kid))")
            fflush(nil)
        }
        let group = ServiceGroup(configuration: .connector(services: [.init(service: application), .init(service: console)], logger: logger))
        do {
            try await group.run()
        } catch {
            throw fail("simulator stopped: \(error)")
        }
    }
}

/// Lag and status per consumer group for the console's live panel.
final class LiveStats: Sendable {
    let bootstrapServers: String
    let config: ConnectorConfig
    let logger: Logger
    private let evaluator = Mutex(LagEvaluator(window: 5, stopAfter: 30))
    private let admin = Mutex<KafkaAdmin?>(nil)

    init(bootstrapServers: String, config: ConnectorConfig, logger: Logger) {
        self.bootstrapServers = bootstrapServers
        self.config = config
        self.logger = logger
    }

    func json() async -> JSONValue {
        let admin: KafkaAdmin
        if let existing = self.admin.withLock({ $0 }) {
            admin = existing
        } else if let created = try? KafkaAdmin(bootstrapServers: bootstrapServers, properties: config.kafka.properties, logger: logger) {
            self.admin.withLock { $0 = created }
            admin = created
        } else {
            return .object([:])
        }
        var groups: [JSONValue] = []
        for group in ConnectorConsumerGroup.allCases {
            let name = config.groupName(group)
            guard let lag = try? await admin.lag(group: name, topics: group.topics.map(config.topicName)) else { continue }
            let status = evaluator.withLock { evaluator in
                evaluator.add(lag)
                return evaluator.status(of: name)
            }
            groups.append(.object([
                "group": .string(name), "status": .string(status.rawValue),
                "maxLag": .number(Double(lag.maxLag)), "sumLag": .number(Double(lag.sumLag)),
                "unmeasuredPartitions": .number(Double(lag.unmeasured.count)),
            ]))
        }
        return .object(["groups": .array(groups)])
    }
}

/// Whether a TCP port can be bound (a check before starting, to name the port that is taken).
enum PortCheck {
    static func isInUse(host: String, port: Int) -> Bool {
        guard port > 0 else { return false }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let info = found else { return false }
        defer { freeaddrinfo(found) }
        let descriptor = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        // As the servers bind: a port whose last connection lingers in TIME_WAIT is free.
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        return bind(descriptor, info.pointee.ai_addr, info.pointee.ai_addrlen) != 0 && errno == EADDRINUSE
    }
}

/// A TCP port a server can listen on (with `anyFree`, 0 too: a free port the system picks);
/// anything else would fail later, or trap when the number is converted for the socket.
func validatePort(_ port: Int, option: String = "--port", anyFree: Bool = false) throws {
    let lowest = anyFree ? 0 : 1
    guard (lowest...65535).contains(port) else { throw ValidationError("\(option) must be between \(lowest) and 65535") }
}
