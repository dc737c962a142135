public import ChatEvents
public import Crypto

/// An endpoint's data-protection settings (Cognigy's "Data Protection & Analytics" and ours),
/// applied where each one belongs: logs, analytics records, the flow's input.
public struct DataProtectionPolicy: Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        /// Find the personal data inside texts and hide only it.
        case entities
        /// Hide whole fields, as Cognigy does: every character becomes `*`.
        case fields
    }

    /// No log line carries unmasked user text, user id or data.
    public var maskLogging: Bool
    /// Analytics records carry masked text and data.
    public var maskAnalytics: Bool
    /// `input.ip` is null and IP addresses in records are masked.
    public var maskIPAddress: Bool
    /// Off: no analytics records.
    public var collectAnalytics: Bool
    /// HTML removed from user text before the flow sees it.
    public var sanitizeInput: Bool
    public var mode: Mode
    public var scanner: PIIScanner
    public var masking: MaskingOperator

    public init(
        maskLogging: Bool = true, maskAnalytics: Bool = true, maskIPAddress: Bool = true, collectAnalytics: Bool = true,
        sanitizeInput: Bool = false, mode: Mode = .entities, scanner: PIIScanner = PIIScanner(),
        masking: MaskingOperator = .replace
    ) {
        self.maskLogging = maskLogging
        self.maskAnalytics = maskAnalytics
        self.maskIPAddress = maskIPAddress
        self.collectAnalytics = collectAnalytics
        self.sanitizeInput = sanitizeInput
        self.mode = mode
        self.scanner = scanner
        self.masking = masking
    }

    /// The text with its personal data hidden (entities mode) or entirely starred (fields mode).
    public func mask(_ text: String) -> String {
        switch mode {
        case .fields: String(repeating: "*", count: text.count)
        case .entities: masking.apply(text, spans: scanner.scan(text))
        }
    }

    /// Every string inside a JSON value masked; numbers and booleans in fields mode too.
    public func mask(_ value: JSONValue) -> JSONValue {
        switch value {
        case .string(let text): .string(mask(text))
        case .array(let items): .array(items.map(mask))
        case .object(let members): .object(members.mapValues(mask))
        case .number:
            if mode == .fields { .string("***") }
            else if let digits = value.stringValue, digits.count >= 7, !scanner.scan(digits).isEmpty { .string(mask(digits)) }
            else { value }
        case .bool: mode == .fields ? .string("***") : value
        case .null: value
        }
    }

    /// IP addresses inside a text starred (for `maskIPAddress` where the rest stays readable).
    public func maskIPs(_ text: String) -> String {
        let spans = PIIScanner(entities: [PIIEntity.ipAddress]).scan(text)
        return MaskingOperator.mask().apply(text, spans: spans)
    }

    /// IP addresses inside every string of a JSON value starred.
    public func maskIPs(_ value: JSONValue) -> JSONValue {
        switch value {
        case .string(let text): .string(maskIPs(text))
        case .array(let items): .array(items.map(maskIPs))
        case .object(let members): .object(members.mapValues(maskIPs))
        default: value
        }
    }

    /// An IP address as records may carry it: starred under `maskIPAddress` or `maskAnalytics`.
    public func maskIP(_ ip: String?) -> String? {
        guard let ip else { return nil }
        return maskIPAddress || maskAnalytics ? String(repeating: "*", count: ip.count) : ip
    }

    /// A text for an analytics record.
    public func analyticsText(_ text: String) -> String {
        maskAnalytics ? mask(text) : maskIPAddress ? maskIPs(text) : text
    }

    /// Data for an analytics record.
    public func analyticsData(_ value: JSONValue) -> JSONValue {
        maskAnalytics ? mask(value) : maskIPAddress ? maskIPs(value) : value
    }
}

/// A configuration that cannot be applied.
public struct DataProtectionError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension DataProtectionPolicy {
    /// Builds the policy from configuration values (see `ConnectorConfig.DataProtectionSettings`).
    public init(
        maskLogging: Bool?, maskAnalytics: Bool?, maskIPAddress: Bool?, collectAnalytics: Bool?, sanitizeInput: Bool?,
        mode: String?, entities: [String]?, operator name: String?, maskCharacter: String?, keepLast: Int?, hashKey: String?,
        custom: [(type: String, pattern: String, validator: String?, contextWords: [String]?)]
    ) throws {
        let recognizers = try custom.map { recognizer in
            try CustomRecognizer(
                type: recognizer.type, pattern: recognizer.pattern,
                validator: CustomRecognizer.Validator(rawValue: recognizer.validator ?? "none") ?? .none,
                contextWords: recognizer.contextWords ?? [])
        }
        let known = Set(PIIEntity.all + recognizers.map(\.type))
        if let entities {
            guard !entities.isEmpty else { throw DataProtectionError("entities is empty (leave it out to look for all)") }
            for entity in entities where !known.contains(entity) {
                throw DataProtectionError("unknown entity \(entity) (known: \(known.sorted().joined(separator: ", ")))")
            }
            for recognizer in recognizers where !entities.contains(recognizer.type) {
                throw DataProtectionError("custom recognizer \(recognizer.type) is not in entities")
            }
        }
        let wanted = Set(entities ?? Array(known))
        let masking: MaskingOperator
        switch name ?? "replace" {
        case "mask": masking = .mask(character: maskCharacter?.first ?? "*", keepLast: keepLast ?? 0)
        case "hash":
            guard let hashKey, hashKey.utf8.count >= 16 else { throw DataProtectionError("the hash operator needs a key of at least 16 bytes") }
            masking = .hash(key: SymmetricKey(data: Array(hashKey.utf8)))
        case "replace": masking = .replace
        default: throw DataProtectionError("unknown operator \(name ?? "")")
        }
        self.init(
            maskLogging: maskLogging ?? true, maskAnalytics: maskAnalytics ?? true, maskIPAddress: maskIPAddress ?? true,
            collectAnalytics: collectAnalytics ?? true, sanitizeInput: sanitizeInput ?? false,
            mode: Mode(rawValue: mode ?? "entities") ?? .entities,
            scanner: PIIScanner(entities: wanted, custom: recognizers), masking: masking)
    }
}
