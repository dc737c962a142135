import ArgumentParser
import ConnectorConfiguration
import Foundation
import IngressService
import Kafka
import Logging
import MemoryAllocator
import ServiceLifecycle

struct IngressCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingress",
        abstract: "Receives and verifies 8x8 webhooks and writes them to Kafka (until SIGTERM or SIGINT)."
    )

    @OptionGroup var brokerOptions: BrokerOptions

    func validate() throws {
        guard brokerOptions.config != nil else { throw ValidationError("--config is required") }
    }

    func run() async throws {
        let (config, bootstrap) = try brokerOptions.loadOrFail()
        guard let listen = config.ingress.listenAddress else { throw fail("ingress.listen must be host:port") }
        let logger = serviceLogger("connector.ingress")
        logger.info("tasks run on \(ConnectorCommand.executor); memory from \(MemoryAllocator.description); \(KafkaThreadScheduling.current.description)")
        let service: IngressService
        do {
            service = try IngressService.make(config: config, bootstrapServers: bootstrap, logger: logger)
        } catch {
            throw fail("cannot start the ingress: \(error)")
        }
        logger.info(service.producer.batching == .adaptive
            ? "inbound events go to Kafka at once, batched only while their partition has 5 in flight"
            : "inbound events wait librdkafka's linger of \(config.ingress.lingerMs) ms")
        let application = service.application(host: listen.host, port: listen.port, onRunning: { port in
            print("ingress listening on http://\(listen.host):\(port) (\(config.endpoints.count) endpoint\(config.endpoints.count == 1 ? "" : "s"), kafka \(bootstrap))")
            fflush(nil)
        })
        try await runUntilSignal(application, logger: logger, name: "ingress")
    }
}

/// Runs a service's application until SIGTERM or SIGINT, then shuts it down gracefully.
func runUntilSignal(_ application: some Service, logger: Logger, name: String) async throws {
    let group = ServiceGroup(configuration: .connector(services: [.init(service: application)], logger: logger))
    do {
        try await group.run()
    } catch {
        throw fail("\(name) stopped: \(error)")
    }
}

/// Services log at `info` unless LOG_LEVEL says otherwise.
func serviceLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = ConnectorCommand.logLevel ?? .info
    return logger
}

extension ServiceGroupConfiguration {
    /// Stops gracefully on SIGTERM or SIGINT (which the group then ignores, so a second Ctrl-C
    /// does nothing); a stop that takes longer than `gracefulStop` (something held up: a
    /// connection that does not end) is turned into cancellation, so the process ends.
    static func connector(services: [ServiceGroupConfiguration.ServiceConfiguration], logger: Logger, gracefulStop: Duration = .seconds(30)) -> Self {
        var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = gracefulStop
        return configuration
    }
}
