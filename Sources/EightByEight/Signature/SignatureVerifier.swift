public import Foundation
public import _CryptoExtras
import Crypto
import Synchronization
import ChatEvents

/// Why a webhook's signature was not accepted. Each case says what failed, never a secret.
public enum SignatureError: Error, Sendable, Hashable, CustomStringConvertible {
    case missingHeader(String)
    case malformedHeader(String)
    case malformedToken(String)
    case unsupportedAlgorithm(String)
    case missingCriticalB64
    case staleTransmissionTime(skewSeconds: Int64)
    case unknownKey(kid: String)
    /// The JWK endpoint failed or was too slow; the webhook may be fine, so 8x8 should retry.
    case keyServiceUnavailable(String)
    /// The signature does not match the headers and the body (a changed byte anywhere).
    case invalidSignature

    public var description: String {
        switch self {
        case .missingHeader(let name): "missing header \(name)"
        case .malformedHeader(let name): "malformed header \(name)"
        case .malformedToken(let reason): "malformed x-8x8-signature: \(reason)"
        case .unsupportedAlgorithm(let alg): "unsupported JWS algorithm '\(LogSafe.text(alg, maxBytes: 16))' (only RS256 is accepted)"
        case .missingCriticalB64: "JWS header must have b64:false and crit:[\"b64\"]"
        case .staleTransmissionTime(let skew): "x-8x8-transmission-time is \(skew) s away from now"
        case .unknownKey(let kid): "unknown signing key '\(kid)'"
        case .keyServiceUnavailable(let reason): "signing key unavailable: \(reason)"
        case .invalidSignature: "signature does not match the body and headers"
        }
    }

    /// A short stable label for metrics.
    public var reason: String {
        switch self {
        case .missingHeader: "missing_header"
        case .malformedHeader: "malformed_header"
        case .malformedToken: "malformed_token"
        case .unsupportedAlgorithm: "unsupported_alg"
        case .missingCriticalB64: "missing_crit"
        case .staleTransmissionTime: "stale"
        case .unknownKey: "unknown_key"
        case .keyServiceUnavailable: "key_unavailable"
        case .invalidSignature: "invalid"
        }
    }

    /// True when the failure is ours (the key could not be fetched), not the sender's.
    public var isTransient: Bool {
        if case .keyServiceUnavailable = self { return true }
        return false
    }
}

/// Looks up the RSA public key that signed a webhook.
public protocol WebhookKeyProvider: Sendable {
    func publicKey(kid: String) async throws(SignatureError) -> _RSA.Signing.PublicKey
}

/// Verifies `x-8x8-signature` (spec 3.3): a detached JWS, RS256, RFC 7797 unencoded payload,
/// over the compact JSON `{"checksum","cid","eid","retry","tid","tt"}` where `checksum` is the
/// CRC32 of the body. Cheap checks (headers, token shape, algorithm, clock skew) come before
/// the key lookup, so garbage never reaches the JWK endpoint.
public struct SignatureVerifier: Sendable {
    public var keys: any WebhookKeyProvider
    public var maxClockSkewMilliseconds: Int64

    public init(keys: any WebhookKeyProvider, maxClockSkewSeconds: Int) {
        self.keys = keys
        self.maxClockSkewMilliseconds = Int64(maxClockSkewSeconds) * 1000
    }

    public struct Verified: Sendable, Hashable {
        public var kid: String
        public var transmissionTime: Int64
        public var retry: Int
        /// True when the signature matched the body's compact re-serialization rather than its
        /// raw bytes (spec 3.3: 8x8's Node sample checksums `JSON.stringify(body)`).
        public var matchedCompactBody: Bool
    }

    public func verify<Body: Collection<UInt8>>(body: Body, headers: WebhookHeaders, nowMilliseconds: Int64) async throws(SignatureError) -> Verified {
        guard let token = headers.signature else { throw .missingHeader(WebhookHeaders.signature) }
        guard let eventId = headers.eventId else { throw .missingHeader(WebhookHeaders.eventID) }
        guard let tenantId = headers.tenantId else { throw .missingHeader(WebhookHeaders.tenantID) }
        guard let customerId = headers.customerId else { throw .missingHeader(WebhookHeaders.customerID) }
        guard headers.transmissionTime != nil else { throw .missingHeader(WebhookHeaders.transmissionTime) }
        guard headers.retry != nil else { throw .missingHeader(WebhookHeaders.retry) }
        guard let transmissionTime = headers.transmissionTimeMilliseconds else { throw .malformedHeader(WebhookHeaders.transmissionTime) }
        guard let retry = headers.retryCount, retry >= 0 else { throw .malformedHeader(WebhookHeaders.retry) }

        let jws = try Self.parse(token)
        let skew = nowMilliseconds &- transmissionTime
        guard skew.magnitude <= maxClockSkewMilliseconds.magnitude else {
            throw .staleTransmissionTime(skewSeconds: skew / 1000)
        }

        let key = try await keys.publicKey(kid: jws.header.kid ?? "")
        let signature = _RSA.Signing.RSASignature(rawRepresentation: jws.signature)
        func signs(_ checksum: UInt32) -> Bool {
            var digest = SHA256()
            digest.update(data: jws.signingPrefix)
            digest.update(data: WebhookSigningPayload.make(
                checksum: checksum, customerId: customerId, eventId: eventId, retry: retry,
                tenantId: tenantId, transmissionTime: transmissionTime
            ))
            return key.isValidSignature(signature, for: digest.finalize(), padding: .insecurePKCS1v1_5)
        }
        let verified = { (compact: Bool) in
            Verified(kid: jws.header.kid ?? "", transmissionTime: transmissionTime, retry: retry, matchedCompactBody: compact)
        }
        if signs(Self.withBytes(of: body, CRC32.checksum)) { return verified(false) }
        // Only a body that fails as received is tried in its compact form.
        if let compact = Self.withBytes(of: body, { CompactJSON.minified($0) }), signs(compact.withUnsafeBytes(CRC32.checksum)) {
            return verified(true)
        }
        throw .invalidSignature
    }

    struct ParsedJWS {
        var header: JOSEHeader
        /// `BASE64URL(header) + "."`: the signing input up to the payload.
        var signingPrefix: [UInt8]
        var signature: [UInt8]
    }

    static let maxTokenLength = 4096

    /// A protected header already validated, by its encoded form.
    struct KnownHeader {
        var header: JOSEHeader
        /// The encoded header and the dot after it.
        var signingPrefix: [UInt8]
    }

    /// Protected headers already validated: 8x8 signs every webhook with the same header per
    /// key, so each is decoded once. Matched byte for byte (String equality is
    /// Unicode-canonical, and a header segment must match exactly); a handful at most, so a
    /// scan beats hashing the segment.
    static let knownHeaders = Mutex<[KnownHeader]>([])

    static func parse(_ token: String) throws(SignatureError) -> ParsedJWS {
        var token = token
        return try token.withUTF8 { bytes in Result { () throws(SignatureError) in try parse(bytes) } }.get()
    }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(SignatureError) -> ParsedJWS {
        guard bytes.count <= maxTokenLength else { throw .malformedToken("too long") }
        var start = 0
        var end = bytes.count
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        var firstDot = -1
        var secondDot = -1
        for index in start..<end where bytes[index] == UInt8(ascii: ".") {
            if firstDot < 0 { firstDot = index } else if secondDot < 0 { secondDot = index } else {
                throw .malformedToken("expected three dot-separated parts")
            }
        }
        guard secondDot >= 0 else { throw .malformedToken("expected three dot-separated parts") }
        guard secondDot == firstDot + 1 else { throw .malformedToken("payload must be detached") }
        // The header segment with its dot: the signing input's prefix.
        let prefix = UnsafeBufferPointer(rebasing: bytes[start...firstDot])

        let known: KnownHeader
        if let found = knownHeaders.withLock({ $0.first { $0.signingPrefix.elementsEqual(prefix) } }) {
            known = found
        } else {
            let headerSegment = UnsafeBufferPointer(rebasing: bytes[start..<firstDot])
            guard let headerBytes = Base64URL.decode(buffer: headerSegment) else { throw .malformedToken("header is not base64url") }
            guard let decoded = try? JSONDecoder().decode(JOSEHeader.self, from: Data(headerBytes)) else {
                throw .malformedToken("header is not a JSON object")
            }
            try validate(decoded)
            known = KnownHeader(header: decoded, signingPrefix: Array(prefix))
            knownHeaders.withLock { headers in
                if headers.count >= 64 { headers.removeAll() }
                headers.append(known)
            }
        }
        guard let signature = Base64URL.decode(buffer: UnsafeBufferPointer(rebasing: bytes[(secondDot + 1)..<end])), !signature.isEmpty else {
            throw .malformedToken("signature is not base64url")
        }
        return ParsedJWS(header: known.header, signingPrefix: known.signingPrefix, signature: signature)
    }

    static func validate(_ header: JOSEHeader) throws(SignatureError) {
        guard header.alg == "RS256" else { throw .unsupportedAlgorithm(header.alg ?? "none") }
        guard header.b64 == false, let crit = header.crit, crit.contains("b64") else { throw .missingCriticalB64 }
        // RFC 7515 4.1.11: a critical extension we do not understand must fail verification.
        guard crit.allSatisfy({ $0 == "b64" }) else { throw .malformedToken("unsupported critical extension") }
        guard let kid = header.kid, isSafeKeyID(kid) else { throw .malformedToken("missing or invalid kid") }
    }

    /// Key ids go into the JWK URL's path: only unreserved URL characters are accepted, and
    /// not the dot segments `.` and `..`, which would move the path.
    static func isSafeKeyID(_ kid: String) -> Bool {
        !kid.isEmpty && kid != "." && kid != ".." && kid.utf8.count <= 128 && kid.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                true
            default: false
            }
        }
    }

    /// Runs `body` on the collection's bytes, copying them only when they are not contiguous.
    static func withBytes<Body: Collection<UInt8>, T>(of bytes: Body, _ body: (UnsafeRawBufferPointer) -> T) -> T {
        if let result = bytes.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return Array(bytes).withUnsafeBytes(body)
    }
}

/// Whitespace outside JSON strings removed, which is what `JSON.stringify(JSON.parse(body))`
/// yields for the bodies 8x8 sends. Nil when the body has no such whitespace.
enum CompactJSON {
    static func minified(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        var inString = false
        var escaped = false
        var firstWhitespace: Int?
        for (index, byte) in bytes.enumerated() {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else if byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D {
                firstWhitespace = index
                break
            }
        }
        guard let start = firstWhitespace else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        out.append(contentsOf: bytes[..<start])
        // Still outside a string at `start`.
        inString = false
        escaped = false
        for byte in bytes[start...] {
            if inString {
                out.append(byte)
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            } else if byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D {
                continue
            } else {
                if byte == UInt8(ascii: "\"") { inString = true }
                out.append(byte)
            }
        }
        return out
    }
}
