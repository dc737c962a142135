public import Foundation

/// What the egress did with one command, on `eightbyeight.delivery.v1` (schema
/// `schemas/delivery-result.v1.schema.json`). Written to the same partition number as the
/// command, so the egress that takes a partition over reads which commands are finished.
public struct DeliveryResult: Sendable, Hashable, Codable, VersionedRecord {
    public static let schemaVersion = "eightbyeight.delivery.v1"

    public enum Outcome: String, Sendable, Hashable, Codable {
        /// About to call 8x8 (written and acknowledged before the call): a result that stays
        /// at `attempting` after a crash marks the one command whose fate must be checked.
        case attempting
        /// 8x8 accepted it.
        case delivered
        /// Given up; the command is on the dead-letter topic.
        case deadLettered
        /// Not sent on purpose (a typing indicator whose fate a crash left unknown).
        case skipped
    }

    public var schema: String
    public var commandId: String
    public var conversationId: String
    public var endpoint: String
    public var action: OutboundCommand.Action
    public var outcome: Outcome
    /// 8x8's last status, when it answered.
    public var status: Int?
    public var attempts: Int
    /// When this result was written (milliseconds since 1970).
    public var at: Int64
    /// From the webhook's arrival at the ingress to 8x8's acceptance (delivered only).
    public var endToEndMillis: Int64?
    /// For messages, a digest of what was sent (text, cards, attachments), so a restarted
    /// egress can recognise its own message among 8x8's.
    public var fingerprint: String?
    public var error: String?
    /// Where the command was read: `topic/partition/offset`.
    public var source: String
    /// For a queue move left at `attempting`: the agent 8x8 named for the conversation before
    /// the move was first sent, so that a new owner asking 8x8 afterwards does not take an
    /// agent left from an earlier handover for the move's outcome. Absent when it had none.
    public var agentBefore: String?

    public init(
        command: OutboundCommand, outcome: Outcome, status: Int?, attempts: Int, at: Int64, endToEndMillis: Int64?,
        error: String?, source: String
    ) {
        schema = Self.schemaVersion
        commandId = command.commandId
        conversationId = command.conversationId
        endpoint = command.endpoint
        action = command.action
        self.outcome = outcome
        self.status = status
        self.attempts = attempts
        self.at = at
        self.endToEndMillis = endToEndMillis
        fingerprint = MessageFingerprint(command: command)?.digest
        self.error = error
        self.source = source
    }

    public var encodedRecord: [UInt8] {
        var json = JSONWriter(capacity: 256)
        json.beginObject()
        json.field("schema", schema)
        json.field("commandId", commandId)
        json.field("conversationId", conversationId)
        json.field("endpoint", endpoint)
        json.field("action", action.rawValue)
        json.field("outcome", outcome.rawValue)
        json.field("status", status)
        json.field("attempts", attempts)
        json.field("at", at)
        json.field("endToEndMillis", endToEndMillis)
        json.field("fingerprint", fingerprint)
        json.field("error", error)
        json.field("source", source)
        json.field("agentBefore", agentBefore)
        json.endObject()
        return json.bytes
    }

}

/// A command the egress could not deliver, on `eightbyeight.dlq.v1` (schema
/// `schemas/dead-letter.v1.schema.json`), or the mark `connector replay` leaves when it
/// re-published one (`replayOf` set, no command).
public struct DeadLetter: Sendable, Hashable, Codable, VersionedRecord {
    public static let schemaVersion = "eightbyeight.dlq.v1"

    public var schema: String
    /// The command as the worker wrote it; nil for a replay mark.
    public var command: OutboundCommand?
    public var reason: String?
    /// 8x8's last status, when it answered.
    public var status: Int?
    /// 8x8's error body (problem+json) as text, at most 4 KiB.
    public var errorBody: String?
    public var attempts: Int?
    public var firstAttemptAt: Int64?
    public var deadLetteredAt: Int64
    /// Where the command was read: `topic/partition/offset`.
    public var source: String?
    /// For a replay mark: the dead letter replayed, as `partition/offset` of this topic.
    public var replayOf: String?
    /// For a replay mark: the id the command was re-published under.
    public var replayedAs: String?
    /// A record that was not a readable command, as text (at most 64 KiB).
    public var raw: String?

    public init(
        command: OutboundCommand, reason: String, status: Int?, errorBody: String?, attempts: Int, firstAttemptAt: Int64,
        deadLetteredAt: Int64, source: String
    ) {
        schema = Self.schemaVersion
        self.command = command
        self.reason = reason
        self.status = status
        self.errorBody = errorBody.map { String(decoding: Array($0.utf8.prefix(4096)), as: UTF8.self) }
        self.attempts = attempts
        self.firstAttemptAt = firstAttemptAt
        self.deadLetteredAt = deadLetteredAt
        self.source = source
    }

    /// An outbound record that could not be read as a command.
    public init(undecodable value: [UInt8], reason: String, source: String, at: Int64) {
        schema = Self.schemaVersion
        self.reason = reason
        self.source = source
        raw = String(decoding: value.prefix(65_536), as: UTF8.self)
        deadLetteredAt = at
    }

    public init(replayOf: String, replayedAs: String, at: Int64) {
        schema = Self.schemaVersion
        self.replayOf = replayOf
        self.replayedAs = replayedAs
        deadLetteredAt = at
    }

    public var encodedRecord: [UInt8] {
        var json = JSONWriter(capacity: 512)
        json.beginObject()
        json.field("schema", schema)
        if let command {
            json.key("command")
            json.raw(command.encodedRecord)
        }
        json.field("reason", reason)
        json.field("status", status)
        json.field("errorBody", errorBody)
        json.field("attempts", attempts)
        json.field("firstAttemptAt", firstAttemptAt)
        json.field("deadLetteredAt", deadLetteredAt)
        json.field("source", source)
        json.field("replayOf", replayOf)
        json.field("replayedAs", replayedAs)
        json.field("raw", raw)
        json.endObject()
        return json.bytes
    }

}

/// What identifies a message among a conversation's messages at 8x8: its text and how many
/// cards and attachments it has (attachment ids are 8x8's, so only their number counts).
public struct MessageFingerprint: Sendable, Hashable {
    public var text: String
    public var cards: Int
    public var attachments: Int

    public init(text: String, cards: Int, attachments: Int) {
        self.text = text
        self.cards = cards
        self.attachments = attachments
    }

    /// The fingerprint of a message command; nil for other commands.
    public init?(command: OutboundCommand) {
        switch command.action {
        case .sendMessage:
            self.init(
                text: command.body["text"]?.stringValue ?? "", cards: command.body["cards"]?.arrayValue?.count ?? 0,
                attachments: command.body["attachments"]?.arrayValue?.count ?? 0)
        case .sendAttachment:
            self.init(text: command.body["text"]?.stringValue ?? "", cards: 0, attachments: 1)
        default:
            return nil
        }
    }

    /// FNV-1a (64 bit) over the parts, in hex: stable across processes and versions.
    public var digest: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: some Sequence<UInt8>) {
            for byte in bytes {
                hash ^= UInt64(byte)
                hash &*= 0x0000_0100_0000_01b3
            }
        }
        mix(text.utf8)
        mix([0])
        mix(String(cards).utf8)
        mix([0])
        mix(String(attachments).utf8)
        return String(hash, radix: 16)
    }
}
