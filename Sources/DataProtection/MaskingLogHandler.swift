public import Logging

/// A log handler in front of another that hides personal data in everything it passes on:
/// the fields Cognigy masks (`userId`, `text`, `data`, and any key ending in them) become
/// asterisks, every other message and metadata value goes through the endpoint's masking.
/// Installed on a service's logger when `maskLogging` is on, so no code path can log user
/// data by accident.
public struct MaskingLogHandler: LogHandler {
    public var base: any LogHandler
    let mask: @Sendable (String) -> String

    public static let starredKeys: Set<String> = ["userId", "text", "data", "user.id", "message.text", "input.text", "input.data"]

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
        set { base.metadata = newValue.mapValues { masked($0) } }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue.map { Self.isStarred(key) ? .string("***") : masked($0) } }
    }

    public func log(event: LogEvent) {
        var event = event
        event.message = Logger.Message(stringLiteral: mask(event.message.description))
        if let metadata = event.metadata {
            event.metadata = Dictionary(uniqueKeysWithValues: metadata.map { key, value in
                (key, Self.isStarred(key) ? Logger.MetadataValue.string("***") : masked(value))
            })
        }
        base.log(event: event)
    }

    static func isStarred(_ key: String) -> Bool {
        starredKeys.contains(key) || starredKeys.contains { key.hasSuffix("." + $0) }
    }

    private func masked(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let text): .string(mask(text))
        case .stringConvertible(let value): .string(mask(value.description))
        case .array(let items): .array(items.map(masked))
        case .dictionary(let members):
            .dictionary(Dictionary(uniqueKeysWithValues: members.map { ($0.key, Self.isStarred($0.key) ? .string("***") : masked($0.value)) }))
        }
    }
}
