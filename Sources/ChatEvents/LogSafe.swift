/// Sender-controlled text (ids, algorithm names) made safe for one log line.
public enum LogSafe {
    /// Printable ASCII only (any other byte becomes `?`), at most `maxBytes` bytes: no line
    /// breaks, terminal controls or bidirectional overrides, and no unbounded length.
    public static func text(_ text: String, maxBytes: Int) -> String {
        String(decoding: text.utf8.prefix(maxBytes).map { (0x20..<0x7F).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
    }
}
