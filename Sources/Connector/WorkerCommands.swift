import ArgumentParser
import BotWorker
import ConnectorConfiguration
import FlowEngine
import Foundation
import Logging
import ServiceLifecycle

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Runs the endpoints' conversation flows on the inbound events (until SIGTERM or SIGINT)."
    )

    @OptionGroup var brokerOptions: BrokerOptions

    func validate() throws {
        guard brokerOptions.config != nil else { throw ValidationError("--config is required") }
    }

    func run() async throws {
        let (config, bootstrap) = try brokerOptions.loadOrFail()
        guard let listen = config.worker.listenAddress else { throw fail("worker.listen must be host:port") }
        let endpoints: [String: BotWorker.Endpoint]
        do {
            let directory = brokerOptions.config.map { ($0 as NSString).deletingLastPathComponent }
            endpoints = try BotWorker.loadEndpoints(config: config, baseDirectory: directory)
        } catch {
            throw fail("\(error)")
        }
        let logger = serviceLogger("connector.worker")
        let worker = BotWorker(config: config, bootstrapServers: bootstrap, endpoints: endpoints, logger: logger)
        let application = worker.application(host: listen.host, port: listen.port, onRunning: { port in
            print("worker serving health and metrics on http://\(listen.host):\(port) (\(endpoints.count) endpoint\(endpoints.count == 1 ? "" : "s"), kafka \(bootstrap))")
            fflush(nil)
        })
        try await runUntilSignal(application, logger: logger, name: "worker")
    }
}

struct FlowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "flow", abstract: "Flow files.", subcommands: [Validate.self])

    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "validate",
            abstract: "Checks a flow file (and the flows it executes) and prints every problem with its line.")
        @Argument(help: "Flow file.") var file: String

        func run() async throws {
            do {
                let library = try FlowLibrary.load(path: file)
                let nodes = library.flows.values.reduce(0) { $0 + $1.nodes.count }
                print("\(file): ok (\(library.flows.count) flow\(library.flows.count == 1 ? "" : "s"), \(nodes) nodes, \(library.main.intents.intents.count) intents)")
            } catch {
                for problem in error.problems { FileHandle.standardError.write(Data("\(problem)\n".utf8)) }
                throw ExitCode(1)
            }
        }
    }
}
