import ArgumentParser
import ChatEvents
import ConnectorConfiguration
import DataProtection
import EgressService
import Foundation
import Logging
import ServiceLifecycle

struct EgressCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "egress",
        abstract: "Delivers the outbound commands to the 8x8 Chat Gateway REST API (until SIGTERM or SIGINT).")

    @OptionGroup var brokerOptions: BrokerOptions

    func validate() throws {
        guard brokerOptions.config != nil else { throw ValidationError("--config is required") }
    }

    func run() async throws {
        let (config, bootstrap) = try brokerOptions.loadOrFail()
        guard let listen = config.egress.listenAddress else { throw fail("egress.listen must be host:port") }
        guard !config.endpoints.isEmpty else { throw fail("no endpoints configured: the egress would have nowhere to deliver") }
        let logger = serviceLogger("connector.egress")
        let egress = Egress(config: config, bootstrapServers: bootstrap, logger: logger)
        let application = egress.application(host: listen.host, port: listen.port, onRunning: { port in
            print("egress serving health and metrics on http://\(listen.host):\(port) (\(config.endpoints.count) endpoint\(config.endpoints.count == 1 ? "" : "s"), kafka \(bootstrap))")
            fflush(nil)
        })
        try await runUntilSignal(application, logger: logger, name: "egress")
    }
}

struct ReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Re-publishes dead letters to the outbound topic, each once, and prints what it did.")

    @OptionGroup var brokerOptions: BrokerOptions
    @Option(help: "Only this conversation's dead letters.") var conversation: String?
    @Option(help: "Only dead letters from this time on: ISO 8601, milliseconds since 1970, or an age (90m, 2h, 7d).") var since: String?
    @Flag(help: "Print what would be replayed without publishing anything.") var dryRun = false

    func validate() throws {
        guard brokerOptions.config != nil else { throw ValidationError("--config is required") }
        if let since, DeadLetterReplay.parseSince(since) == nil {
            throw ValidationError("--since \(since) is not a time (ISO 8601, milliseconds, or an age like 2h)")
        }
    }

    func run() async throws {
        let (config, bootstrap) = try brokerOptions.loadOrFail()
        let replay = DeadLetterReplay(
            bootstrapServers: bootstrap, properties: config.kafka.properties, deadLetterTopic: config.topicName(.deadLetters),
            outboundTopic: config.topicName(.outbound), logger: commandLogger("connector.replay"))
        let report: DeadLetterReplay.Report
        do {
            report = try await replay.run(conversation: conversation, since: since.flatMap { DeadLetterReplay.parseSince($0) }, dryRun: dryRun)
        } catch {
            throw fail("replay failed: \(error)")
        }
        let verb = dryRun ? "would replay" : "replayed"
        let formatter = ISO8601DateFormatter()
        // A reason may quote 8x8's error message, which may quote what was sent: it is masked
        // as the egress masks its log lines.
        let protection = config.endpoints.contains { $0.dataProtection?.maskLogging ?? true } ? DataProtectionPolicy() : nil
        for entry in report.entries {
            let when = formatter.string(from: Date(timeIntervalSince1970: Double(entry.deadLetteredAt) / 1000))
            let reason = protection.map { $0.mask(entry.reason) } ?? entry.reason
            print("\(verb) \(entry.command.action.rawValue) \(LogSafe.text(entry.command.commandId, maxBytes: 120)) of conversation \(LogSafe.text(entry.command.conversationId, maxBytes: 120)) (dead letter \(entry.place), \(when): \(LogSafe.text(reason, maxBytes: 200))) as \(LogSafe.text(entry.replayedAs, maxBytes: 160))")
        }
        for command in report.queueMovesLeftOut {
            let conversation = LogSafe.text(command.conversationId, maxBytes: 120)
            print("left out patchConversation \(LogSafe.text(command.commandId, maxBytes: 120)) of conversation \(conversation): its flow heard that the handover failed; --conversation \(conversation) replays it")
        }
        print("\(report.entries.count) \(verb), \(report.alreadyReplayed) replayed before, \(report.sameCommand.count) duplicate dead letters, \(report.filteredOut) filtered out, \(report.notReplayable) not replayable")
    }
}
