public import Foundation

/// A Kafka record value that names its schema version; a reader refuses another version
/// rather than misreading it.
public protocol VersionedRecord: Decodable {
    static var schemaVersion: String { get }
    var schema: String { get }
}

extension VersionedRecord {
    /// Reads a record, refusing one written under another schema version.
    public static func decode(_ bytes: some Collection<UInt8>, decoder: JSONDecoder = JSONDecoder()) throws -> Self {
        let record = try decoder.decode(Self.self, from: Data(bytes))
        guard record.schema == schemaVersion else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "schema \(record.schema) is not \(schemaVersion)"))
        }
        return record
    }
}
