public import Foundation
public import _CryptoExtras
import Crypto
public import EightByEight

/// Signs webhooks exactly as 8x8 does (spec 3.3): RS256 over the `b64:false` detached payload
/// built from the body's CRC32 and the `x-8x8-*` headers.
public struct WebhookSigner: Sendable {
    public let kid: String
    public let privateKey: _RSA.Signing.PrivateKey

    public init(kid: String = "simulator-key-1", privateKey: _RSA.Signing.PrivateKey? = nil) throws {
        self.kid = kid
        self.privateKey = try privateKey ?? _RSA.Signing.PrivateKey(keySize: .bits2048)
    }

    /// A new key whose id is `prefix` and the key's RFC 7638 thumbprint (its first 16
    /// characters): a restarted simulator signs under a new id, which an ingress that cached
    /// the previous key (for `jwkCacheTTLSeconds`) fetches instead of refusing every webhook.
    public init(kidPrefix prefix: String) throws {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        try self.init(kid: "\(prefix)-\(Self.thumbprint(of: key.publicKey).prefix(16))", privateKey: key)
    }

    /// RFC 7638: SHA-256 over `{"e":…,"kty":"RSA","n":…}`, base64url.
    public static func thumbprint(of key: _RSA.Signing.PublicKey) throws -> String {
        let primitives = try key.getKeyPrimitives()
        let json = #"{"e":""# + Base64URL.encode(primitives.publicExponent) + #"","kty":"RSA","n":""# + Base64URL.encode(primitives.modulus) + #""}"#
        return Base64URL.encode(Array(SHA256.hash(data: Array(json.utf8))))
    }

    /// The public key as the JWK endpoint serves it.
    public var publicJWK: [String: String] {
        let primitives = try! privateKey.publicKey.getKeyPrimitives()
        return ["kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                "n": Base64URL.encode(primitives.modulus), "e": Base64URL.encode(primitives.publicExponent)]
    }

    /// The protected header 8x8 sends; `alg`, `b64` and `crit` can be overridden to forge bad
    /// tokens in tests.
    public static func protectedHeader(kid: String, alg: String = "RS256", b64: Bool? = false, crit: [String]? = ["b64"]) -> String {
        var fields: [String] = []
        if let b64 { fields.append("\"b64\":\(b64)") }
        if let crit { fields.append("\"crit\":[\(crit.map { "\"\($0)\"" }.joined(separator: ","))]") }
        fields.append("\"kid\":\"\(kid)\"")
        fields.append("\"alg\":\"\(alg)\"")
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// `x-8x8-signature` for a body and its headers.
    public func signature(body: some Collection<UInt8>, headers: WebhookHeaders, protectedHeader: String? = nil) throws -> String {
        let header = Base64URL.encode(Array((protectedHeader ?? Self.protectedHeader(kid: kid)).utf8))
        var input = Array(header.utf8)
        input.append(UInt8(ascii: "."))
        input.append(contentsOf: WebhookSigningPayload.make(
            checksum: CRC32.checksum(body), customerId: headers.customerId ?? "", eventId: headers.eventId ?? "",
            retry: headers.retryCount ?? 0, tenantId: headers.tenantId ?? "",
            transmissionTime: headers.transmissionTimeMilliseconds ?? 0
        ))
        let signature = try privateKey.signature(for: input, padding: .insecurePKCS1v1_5)
        return header + ".." + Base64URL.encode(signature.rawRepresentation)
    }

    /// All headers of a signed webhook, as 8x8 sends them.
    public func signedHeaders(
        body: some Collection<UInt8>, tenantId: String, customerId: String, eventId: String,
        retry: Int = 0, transmissionTime: Int64 = Int64(Date().timeIntervalSince1970 * 1000)
    ) throws -> [(String, String)] {
        var headers = WebhookHeaders(tenantId: tenantId, eventId: eventId, transmissionTime: String(transmissionTime), retry: String(retry), customerId: customerId)
        headers.signature = try signature(body: body, headers: headers)
        return [
            ("content-type", "application/json"),
            ("cache-control", "no-cache"),
            (WebhookHeaders.tenantID, tenantId),
            (WebhookHeaders.eventID, eventId),
            (WebhookHeaders.signature, headers.signature!),
            (WebhookHeaders.transmissionTime, String(transmissionTime)),
            (WebhookHeaders.retry, String(retry)),
            (WebhookHeaders.customerID, customerId),
        ]
    }
}
