public import Foundation
import ChatEvents

/// The `x-8x8-*` headers of a webhook (spec 3.2), as far as they were sent.
public struct WebhookHeaders: Sendable, Hashable {
    public static let tenantID = "x-8x8-tenant-id"
    public static let eventID = "x-8x8-event-id"
    public static let signature = "x-8x8-signature"
    public static let transmissionTime = "x-8x8-transmission-time"
    public static let retry = "x-8x8-retry"
    public static let customerID = "x-8x8-customer-id"

    public var tenantId: String?
    public var eventId: String?
    public var signature: String?
    /// Raw header values; parsed when the payload is built, so a malformed number is a
    /// signature failure rather than a silently different payload.
    public var transmissionTime: String?
    public var retry: String?
    public var customerId: String?

    public init(tenantId: String? = nil, eventId: String? = nil, signature: String? = nil, transmissionTime: String? = nil, retry: String? = nil, customerId: String? = nil) {
        self.tenantId = tenantId
        self.eventId = eventId
        self.signature = signature
        self.transmissionTime = transmissionTime
        self.retry = retry
        self.customerId = customerId
    }

    /// Reads the headers through a case-insensitive lookup (HTTP header names are).
    public init(lookup: (String) -> String?) {
        self.init(
            tenantId: lookup(Self.tenantID), eventId: lookup(Self.eventID), signature: lookup(Self.signature),
            transmissionTime: lookup(Self.transmissionTime), retry: lookup(Self.retry), customerId: lookup(Self.customerID)
        )
    }

    /// Keeps `value` when `name` (lowercase, as HTTP field names are canonicalized) is one of
    /// these headers and none was kept for it yet: a repeated header counts by its first
    /// value. False for any other name.
    @discardableResult
    public mutating func record(name: String, value: String) -> Bool {
        switch name {
        case Self.tenantID: tenantId = tenantId ?? value
        case Self.eventID: eventId = eventId ?? value
        case Self.signature: signature = signature ?? value
        case Self.transmissionTime: transmissionTime = transmissionTime ?? value
        case Self.retry: retry = retry ?? value
        case Self.customerID: customerId = customerId ?? value
        default: return false
        }
        return true
    }

    public var hasSignatureHeaders: Bool { signature != nil }

    public var transmissionTimeMilliseconds: Int64? { transmissionTime.flatMap(Self.integer) }
    public var retryCount: Int? { retry.flatMap(Self.integer).flatMap { Int(exactly: $0) } }

    /// A decimal integer as `Int64(_:)` reads it, with spaces around it allowed. The standard
    /// library parses the trimmed substring in place: no string is made (Foundation's trimming
    /// is slow on Linux, and a trimmed copy would cost a string per header).
    static func integer(_ text: String) -> Int64? {
        let utf8 = text.utf8
        guard let first = utf8.firstIndex(where: { $0 != 0x20 }), let last = utf8.lastIndex(where: { $0 != 0x20 }) else { return nil }
        return Int64(Substring(utf8[first...last]))
    }
}

/// The detached JWS payload 8x8 signs (spec 3.3): a compact JSON object with the keys in
/// this exact order. Built by hand: JSONEncoder guarantees neither the order nor the escaping.
public enum WebhookSigningPayload {
    public static func make(checksum: UInt32, customerId: String, eventId: String, retry: Int, tenantId: String, transmissionTime: Int64) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(128 + customerId.utf8.count + eventId.utf8.count + tenantId.utf8.count)
        out.append(contentsOf: #"{"checksum":"#.utf8)
        out.append(contentsOf: String(checksum).utf8)
        out.append(contentsOf: #","cid":"#.utf8)
        JSONWriter.appendQuoted(customerId, to: &out)
        out.append(contentsOf: #","eid":"#.utf8)
        JSONWriter.appendQuoted(eventId, to: &out)
        out.append(contentsOf: #","retry":"#.utf8)
        out.append(contentsOf: String(retry).utf8)
        out.append(contentsOf: #","tid":"#.utf8)
        JSONWriter.appendQuoted(tenantId, to: &out)
        out.append(contentsOf: #","tt":"#.utf8)
        out.append(contentsOf: String(transmissionTime).utf8)
        out.append(UInt8(ascii: "}"))
        return out
    }
}

/// The protected header of 8x8's JWS: `{"b64":false,"crit":["b64"],"kid":"...","alg":"RS256"}`.
public struct JOSEHeader: Sendable, Hashable, Codable {
    public var alg: String?
    public var kid: String?
    public var b64: Bool?
    public var crit: [String]?

    public init(alg: String?, kid: String?, b64: Bool?, crit: [String]?) {
        self.alg = alg
        self.kid = kid
        self.b64 = b64
        self.crit = crit
    }
}
