public import Foundation

/// Bytes a Kafka key or value can be made of without an intermediate copy.
public protocol KafkaBytes: Sendable {
    func withUnsafeKafkaBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: KafkaBytes where Element == UInt8 {
    public func withUnsafeKafkaBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(body)
    }
}

extension ArraySlice: KafkaBytes where Element == UInt8 {
    public func withUnsafeKafkaBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(body)
    }
}

extension Data: KafkaBytes {
    public func withUnsafeKafkaBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(body)
    }
}

/// `nil` is Kafka's null value: a tombstone, which a compacted topic keeps only until it has
/// removed the key's older records (an empty value is a record like any other).
extension Optional: KafkaBytes where Wrapped: KafkaBytes {
    public func withUnsafeKafkaBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        guard let self else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try self.withUnsafeKafkaBytes(body)
    }
}

extension String: KafkaBytes {
    public func withUnsafeKafkaBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var copy = self
        return try copy.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
    }
}

/// A record header. Kafka allows a null value.
public struct KafkaHeader: Sendable, Hashable {
    public var key: String
    public var value: [UInt8]?

    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }

    public init(key: String, string: String) {
        self.init(key: key, value: Array(string.utf8))
    }

    public var stringValue: String? { value.map { String(decoding: $0, as: UTF8.self) } }
}

extension Array where Element == KafkaHeader {
    /// The value of the last header named `key`, as Kafka clients conventionally read it.
    public func last(_ key: String) -> KafkaHeader? { last { $0.key == key } }
}
