import ArgumentParser
import Foundation
import IngressService
import Logging
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
        do {
            logLevel = try Self.logLevel(ProcessInfo.processInfo.environment["LOG_LEVEL"])
        } catch where !asksForHelp(Array(CommandLine.arguments.dropFirst())) {
            FileHandle.standardError.write(Data("connector: \(error)\n".utf8))
            Foundation.exit(1)
        } catch {
            // Help logs nothing: it is shown whatever LOG_LEVEL says.
        }
        await main(nil)
    }

    /// Whether the command line asks for help (`help` first, or `-h` or `--help` where the
    /// parser takes it as such: not as an option's value, nor after `--`). ArgumentParser
    /// answers a help flag with its own `HelpCommand`, a type it does not export.
    static func asksForHelp(_ arguments: [String]) -> Bool {
        if arguments.first == "help" { return true }
        do {
            return String(describing: type(of: try parseAsRoot(arguments))) == "HelpCommand"
        } catch {
            return exitCode(for: error) == .success
        }
    }

    /// Where `main` put Swift's tasks.
    nonisolated(unsafe) static var executor = EventLoopExecutor.Setup(onEventLoops: false, loops: 0)
    /// The level LOG_LEVEL asks for; nil for each command's own (services `info`, the other
    /// commands `warning`). Set by `main` before any command runs.
    nonisolated(unsafe) static var logLevel: Logger.Level?

    /// LOG_LEVEL's level, in any case (`DEBUG`, `debug`); nil when it is unset or empty. Any
    /// other value stops the connector with one line, so a mistyped level does not quietly log
    /// at the default.
    static func logLevel(_ text: String?) throws(CommandFailure) -> Logger.Level? {
        guard let text = text?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        if let level = Logger.Level(rawValue: text.lowercased()) { return level }
        let names = Logger.Level.allCases.map(\.rawValue)
        throw CommandFailure(message: "LOG_LEVEL '\(text.prefix(40))' is not a log level; use one of \(names.dropLast().joined(separator: ", ")) or \(names.last!)")
    }

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
