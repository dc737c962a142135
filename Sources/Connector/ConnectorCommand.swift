import ArgumentParser
import Foundation
import IngressService
import NIOCore
import NIOPosix

@main
struct ConnectorCommand: AsyncParsableCommand {
    /// Swift concurrency runs on NIO's event loops instead of a separate thread pool, which
    /// saves a thread hand-off per request in the HTTP services (BENCHMARKS.md: about 16% more
    /// webhooks per second), with one loop more than the cores (`EventLoopExecutor`). It must
    /// happen before any task runs, hence here; it makes a call that blocks a thread stall an
    /// event loop, and the services make none (blocking librdkafka calls run on their own
    /// threads). `CONNECTOR_NIO_EXECUTOR=0` turns it off, `CONNECTOR_EVENT_LOOPS` sets the count.
    static func main() async {
        executor = EventLoopExecutor.install()
        await main(nil)
    }

    /// Where `main` put Swift's tasks.
    nonisolated(unsafe) static var executor = EventLoopExecutor.Setup(onEventLoops: false, loops: 0)

    static let configuration = CommandConfiguration(
        commandName: "connector",
        abstract: "8x8 Contact Center chat connector for conversational bots, built on Kafka.",
        subcommands: [
            DevCommand.self, BrokerCommand.self, IngressCommand.self, WorkerCommand.self, EgressCommand.self,
            SimulatorCommand.self, TopicsCommand.self, LagCommand.self, ReplayCommand.self, FlowCommand.self,
            MaskCommand.self,
        ]
    )
}

/// A clean one-line failure: message on stderr, non-zero exit.
struct CommandFailure: Error, CustomStringConvertible {
    var message: String
    var exitCode: Int32 = 1
    var description: String { message }
}

func fail(_ message: String, code: Int32 = 1) -> ExitCode {
    FileHandle.standardError.write(Data("connector: \(message)\n".utf8))
    return ExitCode(code)
}
