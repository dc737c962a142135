public import Foundation

/// Whole numbers as JSON carries them: most readers hold a JSON number in a Double, exact for
/// whole numbers below 2^53 in magnitude. The connector writes and reads whole numbers only
/// within that range, so every reader of a record sees the same value.
public enum JSONInteger {
    /// 2^53: the first whole number a Double does not tell from its neighbour.
    public static let limit: Int64 = 1 << 53

    /// `value` as a whole number within the limit, or nil (a fraction, too large, not finite).
    @inlinable public static func exact(_ value: Double) -> Int64? {
        value.rounded() == value && value.magnitude < Double(limit) ? Int64(value) : nil
    }

    /// Whether a whole number is within the limit.
    @inlinable public static func holds(_ value: some BinaryInteger) -> Bool {
        value.magnitude < limit.magnitude
    }
}

/// Any JSON value, for the parts of an event whose shape the sender decides (card content,
/// submitted form data, channel-specific activity values, the raw 8x8 body).
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else if let value = try? container.decode([String: JSONValue].self) {
            self = .object(value)
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a JSON value")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value):
            // Integers stay integers on the wire (ids, timestamps); JSONEncoder would print 1.0.
            if let whole = JSONInteger.exact(value) {
                try container.encode(whole)
            } else {
                try container.encode(value)
            }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    public var stringValue: String? {
        switch self {
        case .string(let value): value
        // Whole numbers print without ".0" while Double holds them exactly (below 2^53); larger
        // ones, which a sender controls, print as Double does rather than trap in Int64().
        case .number(let value): JSONInteger.exact(value).map(String.init) ?? String(value)
        case .bool(let value): String(value)
        default: nil
        }
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let object) = self { return object }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let array) = self { return array }
        return nil
    }
}
