public import Foundation

/// Base64url without padding (RFC 4648 section 5), as JOSE uses it.
public enum Base64URL {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Nil for anything that is not canonical base64url (padding, `+`, `/`, whitespace).
    public static func decode(_ text: Substring) -> Data? {
        decode(bytes: text.utf8).map { Data($0) }
    }

    /// Decodes base64url bytes; nil for any character outside the alphabet or an impossible
    /// length.
    public static func decode<Bytes: Collection<UInt8>>(bytes text: Bytes) -> [UInt8]? {
        if let decoded = text.withContiguousStorageIfAvailable({ decode(buffer: $0) }) { return decoded }
        return Array(text).withUnsafeBufferPointer { decode(buffer: $0) }
    }

    static func decode(buffer text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        let count = text.count
        guard count % 4 != 1 else { return nil }
        return table.withUnsafeBufferPointer { table -> [UInt8]? in
            var accumulator: UInt32 = 0
            var bits: UInt32 = 0
            var valid = true
            let decoded = [UInt8](unsafeUninitializedCapacity: count * 3 / 4) { out, written in
                written = 0
                for byte in text {
                    let value = table[Int(byte)]
                    guard value != 0xFF else { valid = false; return }
                    accumulator = accumulator << 6 | UInt32(value)
                    bits += 6
                    if bits >= 8 {
                        bits -= 8
                        out[written] = UInt8(truncatingIfNeeded: accumulator >> bits)
                        written += 1
                    }
                }
            }
            // Leftover bits must be zero in canonical encodings.
            guard valid, accumulator & ((1 << bits) - 1) == 0 else { return nil }
            return decoded
        }
    }

    private static let table: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, character) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8.enumerated() {
            table[Int(character)] = UInt8(index)
        }
        return table
    }()
}
