public import ChatEvents
public import Foundation
public import Kafka
public import Logging

/// `connector replay`: re-publishes dead letters to the outbound topic, each once.
///
/// A replayed command keeps its conversation and body, is created anew (the retry policy's
/// maximum age counts from the replay), and gets the id
/// `{commandId}/replay/{partition}/{offset}` (the dead letter's place; `{commandId}` is the
/// original command's, also when a replay failed again), so a replay that is interrupted and
/// run again publishes the same id and the egress delivers it once. After publishing, the
/// replay writes a mark (`replayOf`) to the dead-letter topic; the next replay skips marked
/// dead letters.
///
/// One command can have two dead letters (an egress that stopped between writing a dead letter
/// and its result, whose successor gave up on the command again): a run replays it once, from
/// its newest dead letter, and marks the others. Typing and thinking indicators are not
/// replayed: by then they would announce nothing. Nor is a queue move (a handover), unless
/// its conversation is named: its flow heard that the handover failed and went on.
public struct DeadLetterReplay: Sendable {
    public let bootstrapServers: String
    public let properties: [String: String]
    public let deadLetterTopic: String
    public let outboundTopic: String
    public let logger: Logger

    public init(bootstrapServers: String, properties: [String: String], deadLetterTopic: String, outboundTopic: String, logger: Logger) {
        self.bootstrapServers = bootstrapServers
        self.properties = properties
        self.deadLetterTopic = deadLetterTopic
        self.outboundTopic = outboundTopic
        self.logger = logger
    }

    /// One dead letter the replay chose, and what it did with it.
    public struct Entry: Sendable, Hashable {
        /// The id of the command the dead letter's command replays or is: the first part of
        /// `{commandId}/replay/{partition}/{offset}`.
        public static func originalId(of commandId: String) -> Substring {
            commandId.range(of: "/replay/").map { commandId[..<$0.lowerBound] } ?? commandId[...]
        }

        /// `partition/offset` in the dead-letter topic.
        public var place: String
        public var command: OutboundCommand
        public var replayedAs: String
        public var reason: String
        public var deadLetteredAt: Int64
    }

    public struct Report: Sendable {
        /// Replayed now (or, with `dryRun`, that would be).
        public var entries: [Entry] = []
        /// Dead letters replayed by an earlier run.
        public var alreadyReplayed = 0
        /// Dead letters left out by the filters, and typing indicators.
        public var filteredOut = 0
        /// Queue moves left out (their flows heard the handover failed): replayed only when
        /// `conversation` names theirs.
        public var queueMovesLeftOut: [OutboundCommand] = []
        /// Dead letters of a command another dead letter of this run stands for (marked too).
        public var sameCommand: [(place: String, replayedAs: String)] = []
        /// Records that hold no command (unreadable outbound records): nothing to replay.
        public var notReplayable = 0
    }

    /// Reads the whole dead-letter topic and re-publishes the dead letters that match
    /// (`conversation`, dead-lettered at or after `since`, milliseconds since 1970).
    public func run(conversation: String?, since: Int64?, dryRun: Bool) async throws -> Report {
        let admin = try KafkaAdmin(bootstrapServers: bootstrapServers, properties: properties, logger: logger)
        let partitions = try await admin.listTopics().first { $0.name == deadLetterTopic }?.partitions ?? []
        let ranges = try await PartitionReader.ranges(partitions.map { TopicPartition(topic: deadLetterTopic, partition: $0) }, admin: admin)
        let reader = PartitionReader(bootstrapServers: bootstrapServers, properties: properties, clientID: "connector-replay", logger: logger)
        var letters: [(place: String, letter: DeadLetter)] = []
        var replayed = Set<String>()
        var unreadable = 0
        let incomplete = try await reader.read(ranges) { message in
            guard let letter = try? DeadLetter.decode(message.value) else {
                unreadable += 1
                return
            }
            if let place = letter.replayOf {
                replayed.insert(place)
            } else {
                letters.append(("\(message.partition)/\(message.offset)", letter))
            }
        }
        if !incomplete.partitions.isEmpty {
            throw KafkaError(kind: .consumer, code: .timedOut, message: "the dead-letter topic was not read to the end", isRetriable: true)
        }
        var report = Report()
        report.notReplayable = unreadable
        // A command's dead letters together (more than one when an egress stopped between a
        // dead letter and its result), in the order read, the order they were written in.
        var order: [String] = []
        var byCommand: [String: [(place: String, letter: DeadLetter, command: OutboundCommand)]] = [:]
        for (place, letter) in letters {
            guard let command = letter.command else {
                report.notReplayable += 1
                continue
            }
            if byCommand[command.commandId] == nil { order.append(command.commandId) }
            byCommand[command.commandId, default: []].append((place, letter, command))
        }
        for commandId in order {
            let all = byCommand[commandId] ?? []
            // Replayed once, whichever of its dead letters a run marked.
            if all.contains(where: { replayed.contains($0.place) }) {
                report.alreadyReplayed += all.count
                continue
            }
            // The newest stands for the others; the filters judge it.
            guard let newest = all.enumerated().max(by: { ($0.element.letter.deadLetteredAt, $0.offset) < ($1.element.letter.deadLetteredAt, $1.offset) })?.element
            else { continue }
            let command = newest.command
            if let conversation, command.conversationId != conversation {
                report.filteredOut += all.count
                continue
            }
            if let since, newest.letter.deadLetteredAt < since {
                report.filteredOut += all.count
                continue
            }
            // Stale by now: an indicator announces nothing; a refused queue move was reported to
            // its flow, which went on (replayed only for a conversation named on purpose).
            if command.action == .typing || command.action == .thinking || (command.action == .patchConversation && conversation == nil) {
                if command.action == .patchConversation { report.queueMovesLeftOut.append(command) }
                report.filteredOut += all.count
                continue
            }
            let entry = Entry(
                place: newest.place, command: command, replayedAs: "\(Entry.originalId(of: command.commandId))/replay/\(newest.place)",
                reason: newest.letter.reason ?? "", deadLetteredAt: newest.letter.deadLetteredAt)
            report.entries.append(entry)
            for other in all where other.place != newest.place { report.sameCommand.append((other.place, entry.replayedAs)) }
        }
        guard !dryRun, !report.entries.isEmpty else { return report }
        let now = { Int64(Date().timeIntervalSince1970 * 1000) }
        var producerConfig = KafkaProducerConfiguration(bootstrapServers: bootstrapServers)
        producerConfig.clientID = "connector-replay"
        producerConfig.properties = properties.filter { !$0.key.hasPrefix("session.") && !$0.key.hasPrefix("heartbeat.") }
        let producer = try KafkaProducer(configuration: producerConfig, logger: logger)
        do {
            for entry in report.entries {
                var command = entry.command
                command.commandId = entry.replayedAs
                // A new chance: the retry policy's maximum age counts from the replay.
                command.createdAt = now()
                // The command first, then the marks (one mark stands for all the command's dead
                // letters): an interruption before the first mark replays the same id again.
                _ = try await producer.send(KafkaProducerMessage(topic: outboundTopic, key: command.conversationId, value: command.encodedRecord))
                let places = [entry.place] + report.sameCommand.filter { $0.replayedAs == entry.replayedAs }.map(\.place)
                for place in places {
                    let mark = DeadLetter(replayOf: place, replayedAs: entry.replayedAs, at: now())
                    _ = try await producer.send(KafkaProducerMessage(topic: deadLetterTopic, key: command.conversationId, value: mark.encodedRecord))
                }
            }
        } catch {
            await producer.shutdown()
            throw error
        }
        await producer.shutdown()
        return report
    }

    /// `--since`: an ISO 8601 time, milliseconds since 1970, or an age such as `90m`, `2h`, `7d`.
    public static func parseSince(_ text: String, now: Date = Date()) -> Int64? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        if let unit = text.last, let factor = units[unit], let amount = Double(text.dropLast()), amount >= 0 {
            return Int64((now.timeIntervalSince1970 - amount * factor) * 1000)
        }
        if let millis = Int64(text) { return millis }
        let formatter = ISO8601DateFormatter()
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime], [.withFullDate]] {
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return Int64(date.timeIntervalSince1970 * 1000) }
        }
        return nil
    }
}
