public import Logging
import Foundation

/// A log handler in front of another that hides personal data in everything it passes on:
/// the fields Cognigy masks (`userId`, `text`, `data`, and any key ending in them) become
/// asterisks, every other message and metadata value goes through the endpoint's masking.
/// Installed on a service's logger when `maskLogging` is on, so no code path can log user
/// data by accident.
public struct MaskingLogHandler: LogHandler {
    public var base: any LogHandler
    let mask: @Sendable (String) -> String

    /// Keys whose values are always starred, compared without case, dots, dashes and underscores.
    static let starredKeys: Set<String> = ["userid", "text", "data", "inputtext", "inputdata", "messagetext", "userdata"]

    /// The user id, text and data of the turn being processed: any log line that mentions
    /// them (in the message, under any key, in an error) gets `***` in their place, whether or
    /// not the scanner would recognize them.
    @TaskLocal public static var turnValues: [String] = []

    public init(wrapping base: any LogHandler, mask: @escaping @Sendable (String) -> String) {
        self.base = base
        self.mask = mask
    }

    public var logLevel: Logger.Level {
        get { base.logLevel }
        set { base.logLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = Dictionary(uniqueKeysWithValues: newValue.map { ($0.key, maskedValue(key: $0.key, $0.value)) }) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue.map { maskedValue(key: key, $0) } }
    }

    public func log(event: LogEvent) {
        var event = event
        event.message = Logger.Message(stringLiteral: mask(blank(event.message.description)))
        var metadata = event.metadata ?? [:]
        if let error = event.error {
            // An error's description may quote what it failed on.
            metadata["error"] = .string(mask(blank(String(describing: error))))
            event.error = nil
        }
        if !metadata.isEmpty {
            event.metadata = Dictionary(uniqueKeysWithValues: metadata.map { ($0.key, maskedValue(key: $0.key, $0.value)) })
        }
        base.log(event: event)
    }

    static func isStarred(_ key: String) -> Bool {
        let normalized = String(key.lowercased().unicodeScalars.filter { $0 != "." && $0 != "_" && $0 != "-" })
        return starredKeys.contains(normalized) || starredKeys.contains { normalized.hasSuffix($0) && $0.count >= 4 }
    }

    /// The turn's own values replaced, longest first.
    private func blank(_ text: String) -> String {
        var result = text
        for value in Self.turnValues.sorted(by: { $0.count > $1.count }) where value.count >= 3 {
            result = result.replacingOccurrences(of: value, with: "***")
        }
        return result
    }

    /// A value under `key`: starred for the user's fields, masked otherwise.
    private func maskedValue(key: String, _ value: Logger.MetadataValue) -> Logger.MetadataValue {
        Self.isStarred(key) ? .string("***") : masked(value)
    }

    private func masked(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let text): .string(mask(blank(text)))
        case .stringConvertible(let value): .string(mask(blank(value.description)))
        case .array(let items): .array(items.map(masked))
        case .dictionary(let members):
            .dictionary(Dictionary(uniqueKeysWithValues: members.map { ($0.key, maskedValue(key: $0.key, $0.value)) }))
        }
    }
}
