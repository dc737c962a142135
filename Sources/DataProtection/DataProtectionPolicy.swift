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

    /// Every string inside a JSON value masked; numbers and booleans in fields mode too. A
    /// member's name is read as the context of its value: `{"ssn": "123456789"}` and
    /// `{"phone": 5551234567}` say what their digits are as "SSN 123456789" would.
    public func mask(_ value: JSONValue) -> JSONValue {
        mask(value, field: nil)
    }

    private func mask(_ value: JSONValue, field: String?) -> JSONValue {
        switch value {
        case .string(let text): .string(mask(text, field: field))
        case .array(let items): .array(items.map { mask($0, field: field) })
        case .object(let members): .object(Dictionary(uniqueKeysWithValues: members.map { ($0.key, mask($0.value, field: $0.key)) }))
        case .number:
            if mode == .fields { .string("***") }
            else if let digits = value.stringValue, digits.count >= 7, case let masked = mask(digits, field: field), masked != digits { .string(masked) }
            else { value }
        case .bool: mode == .fields ? .string("***") : value
        case .null: value
        }
    }

    /// `text` masked as the value of a member named `field`: what is found in it alone, and
    /// what is found after "field: " (a name can also veto: `{"customer": "5551234567, my
    /// mobile"}` keeps the phone number the value alone shows).
    private func mask(_ text: String, field: String?) -> String {
        guard mode == .entities else { return mask(text) }
        return masking.apply(text, spans: spans(text, field: field))
    }

    /// What the scanner finds in `text` as the value of a member named `field`.
    private func spans(_ text: String, field: String?) -> [PIISpan] {
        guard let field, !field.isEmpty, field.utf8.count <= 64 else { return scanner.scan(text) }
        let label = field + ": "
        let offset = label.unicodeScalars.count
        let labeled = scanner.scan(label + text).compactMap { span in
            span.end > offset ? PIISpan(type: span.type, start: max(0, span.start - offset), end: span.end - offset) : nil
        }
        return scanner.scan(text) + labeled
    }

    /// Finds the IP addresses that `maskIPAddress` stars where the rest stays readable.
    static let ipScanner = PIIScanner(entities: [PIIEntity.ipAddress])

    /// An IP address as records may carry it: starred under `maskIPAddress` or `maskAnalytics`.
    public func maskIP(_ ip: String?) -> String? {
        guard let ip else { return nil }
        return maskIPAddress || maskAnalytics ? String(repeating: "*", count: ip.count) : ip
    }

    /// A text for an analytics record, cut to its first `keep` scalars. A cut text is scanned
    /// `analyticsMargin` further (the longest finding, an email address, is under 320), so a
    /// finding the cut goes through is still recognized and hidden as far as it is kept; a
    /// long message costs no scan of its whole length.
    public func analyticsText(_ text: String, keep: Int = .max) -> String {
        var budget = keep
        return forAnalytics.analyticsString(text, field: nil, budget: &budget)
    }

    static let analyticsMargin = 320

    /// A user id for an analytics record. Under `maskAnalytics` the personal data found in it
    /// (the e-mail address or phone number some channels use as the user's id) is masked with
    /// the endpoint's operator, in either mode; an opaque id stays as it is, so distinct users
    /// can still be counted.
    public func analyticsUserId(_ id: String) -> String {
        guard maskAnalytics else { return id }
        let spans = forAnalytics.scanner.scan(id)
        return spans.isEmpty ? id : masking.apply(id, spans: spans)
    }

    /// Data for an analytics record.
    ///
    /// At most `keep` Unicode scalars of its strings are kept, in all, members in the order of
    /// their names; each string is cut as `analyticsText` cuts a text (scanned only a margin
    /// past its cut, so a finding the cut goes through is still masked), and the strings past
    /// the budget are left empty. A card's data is the user's to fill: a field of a megabyte
    /// cost as many scans as a megabyte of text.
    public func analyticsData(_ value: JSONValue, keep: Int = .max) -> JSONValue {
        var budget = keep
        return forAnalytics.analyticsData(value, field: nil, budget: &budget)
    }

    private func analyticsData(_ value: JSONValue, field: String?, budget: inout Int) -> JSONValue {
        switch value {
        case .string(let text):
            return .string(analyticsString(text, field: field, budget: &budget))
        case .array(let items):
            var kept: [JSONValue] = []
            kept.reserveCapacity(items.count)
            for item in items { kept.append(analyticsData(item, field: field, budget: &budget)) }
            return .array(kept)
        case .object(let members):
            var kept: [String: JSONValue] = [:]
            for name in members.keys.sorted() { kept[name] = analyticsData(members[name]!, field: name, budget: &budget) }
            return .object(kept)
        case .number, .bool, .null:
            return maskAnalytics ? mask(value, field: field) : value
        }
    }

    private func analyticsString(_ text: String, field: String?, budget: inout Int) -> String {
        let scalars = text.unicodeScalars
        let count = scalars.count
        let keep = min(count, budget)
        budget -= keep
        guard keep > 0 else { return "" }
        let cut = keep < count
        let kept = cut ? String(String.UnicodeScalarView(scalars.prefix(keep))) : text
        guard maskAnalytics || maskIPAddress else { return kept }
        if maskAnalytics, mode == .fields { return mask(kept) }
        let scanned = cut ? String(String.UnicodeScalarView(scalars.prefix(keep + Self.analyticsMargin))) : text
        let found = maskAnalytics ? spans(scanned, field: field) : Self.ipScanner.scan(scanned)
        let clipped = found.compactMap { span in
            span.start < keep ? PIISpan(type: span.type, start: span.start, end: min(span.end, keep)) : nil
        }
        return (maskAnalytics ? masking : MaskingOperator.mask()).apply(kept, spans: clipped)
    }

    /// This policy, also finding IP addresses under `maskIPAddress` when `entities` leaves them
    /// out (an endpoint looking only for emails and cards still keeps IPs out of analytics).
    var forAnalytics: DataProtectionPolicy {
        guard maskIPAddress, mode == .entities, !scanner.entities.contains(PIIEntity.ipAddress) else { return self }
        var policy = self
        policy.scanner.entities.insert(PIIEntity.ipAddress)
        return policy
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
