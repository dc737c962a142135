@testable import EightByEight
import Foundation
import Simulator
import Testing
import _CryptoExtras

/// Keys from a fixed list: lets the verifier be tested without a network. The JWK cache,
/// which serves the ingress, has its own tests against the simulator's HTTP endpoint.
struct FixedKeys: WebhookKeyProvider {
    var keys: [String: _RSA.Signing.PublicKey]
    func publicKey(kid: String) async throws(SignatureError) -> _RSA.Signing.PublicKey {
        guard let key = keys[kid] else { throw .unknownKey(kid: kid) }
        return key
    }
}

@Suite struct SignatureTests {
    static let signer = try! WebhookSigner(kid: "key1")
    static let other = try! WebhookSigner(kid: "key1")
    let body = Array(#"{"eventType":"MESSAGE","conversationId":"c-1","timestamp":1713100000000,"data":{"text":"hi"}}"#.utf8)
    let now: Int64 = 1_713_100_000_000

    var verifier: SignatureVerifier {
        SignatureVerifier(keys: FixedKeys(keys: ["key1": Self.signer.privateKey.publicKey]), maxClockSkewSeconds: 300)
    }

    func headers(body: [UInt8]? = nil, transmissionTime: Int64? = nil, signer: WebhookSigner = Self.signer) throws -> WebhookHeaders {
        let list = try signer.signedHeaders(body: body ?? self.body, tenantId: "acme", customerId: "cust-1", eventId: "evt-1", retry: 0, transmissionTime: transmissionTime ?? now)
        let map = Dictionary(list, uniquingKeysWith: { a, _ in a })
        return WebhookHeaders(lookup: { map[$0] })
    }

    func rejection(_ body: [UInt8], _ headers: WebhookHeaders, now: Int64? = nil) async -> SignatureError? {
        do {
            _ = try await verifier.verify(body: body, headers: headers, nowMilliseconds: now ?? self.now)
            return nil
        } catch {
            return error
        }
    }

    @Test func headersAreRecordedByLowercaseNameFirstValueFirst() {
        var headers = WebhookHeaders()
        var recorded: [Bool] = []
        for (name, value) in [
            ("x-8x8-event-id", "first"), ("x-8x8-event-id", "second"), ("x-8x8-unknown", "x"), ("X-8x8-Tenant-Id", "not lowercase"),
            ("x-8x8-tenant-id", "t"), ("x-8x8-signature", "s"), ("x-8x8-transmission-time", "1"), ("x-8x8-retry", "0"), ("x-8x8-customer-id", "c"),
        ] {
            recorded.append(headers.record(name: name, value: value))
        }
        #expect(recorded == [true, true, false, false, true, true, true, true, true])
        #expect(headers == WebhookHeaders(tenantId: "t", eventId: "first", signature: "s", transmissionTime: "1", retry: "0", customerId: "c"))
    }

    @Test func headerIntegersReadAsInt64DoesWithSpacesAround() {
        let cases = ["0", "7", "+7", "-7", "1732900000000", "9223372036854775807", "-9223372036854775808",
                     "9223372036854775808", "-9223372036854775809", "99999999999999999999", "", " ", "+", "-", "--1",
                     "+-1", "1-", "12a", "a12", "1 2", "0x10", "1.5", "1e3", "٣", "1٣", "1\u{301}", "007"]
        for text in cases {
            #expect(WebhookHeaders.integer(text) == Int64(text), "\(text)")
            #expect(WebhookHeaders.integer("  \(text) ") == Int64(text), "spaces around \(text)")
        }
        #expect(WebhookHeaders.integer("\t5") == nil, "only spaces are trimmed")
    }

    @Test func crc32MatchesKnownVectorsAndABitwiseReference() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x414F_A339)
        #expect(CRC32.checksum([UInt8]()) == 0)
        func reference(_ bytes: [UInt8]) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
            }
            return ~crc
        }
        var generator = SystemRandomNumberGenerator()
        for length in [1, 7, 8, 9, 15, 16, 17, 1000, 4099] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(CRC32.checksum(bytes) == reference(bytes), "length \(length)")
        }
    }

    @Test func signingPayloadIsTheSpecsCompactJSON() {
        let payload = WebhookSigningPayload.make(
            checksum: 1_411_811_814, customerId: "vccC8ProdChecksUS", eventId: "g4nqGuj8TpCa6tiZ3DeeNw", retry: 0,
            tenantId: "vccC8ProdChecksUS", transmissionTime: 1_629_804_577_296
        )
        #expect(String(decoding: payload, as: UTF8.self) == #"{"checksum":1411811814,"cid":"vccC8ProdChecksUS","eid":"g4nqGuj8TpCa6tiZ3DeeNw","retry":0,"tid":"vccC8ProdChecksUS","tt":1629804577296}"#)
        let escaped = WebhookSigningPayload.make(checksum: 4_294_967_295, customerId: "a\"b\\c/d", eventId: "e\n", retry: 3, tenantId: "t", transmissionTime: 1)
        #expect(String(decoding: escaped, as: UTF8.self) == #"{"checksum":4294967295,"cid":"a\"b\\c/d","eid":"e\n","retry":3,"tid":"t","tt":1}"#)
    }

    @Test("the simulator's key id carries the key's RFC 7638 thumbprint (the RFC's own example), so a restarted simulator signs under a new id")
    func simulatorKeyIdsFollowTheKey() throws {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        let key = try _RSA.Signing.PublicKey(n: try #require(Base64URL.decode(Substring(n))), e: [1, 0, 1])
        #expect(try WebhookSigner.thumbprint(of: key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        let first = try WebhookSigner(kidPrefix: "connector-simulator"), second = try WebhookSigner(kidPrefix: "connector-simulator")
        #expect(first.kid.hasPrefix("connector-simulator-") && first.kid.count == "connector-simulator-".count + 16)
        #expect(first.kid != second.kid)
        #expect(first.kid == "connector-simulator-" + (try WebhookSigner.thumbprint(of: first.privateKey.publicKey)).prefix(16))
        #expect(SignatureVerifier.isSafeKeyID(first.kid))
    }

    @Test func acceptsACorrectlySignedWebhook() async throws {
        let verified = try await verifier.verify(body: body, headers: headers(), nowMilliseconds: now)
        #expect(verified.kid == "key1")
        #expect(!verified.matchedCompactBody)
        // The header as 8x8 documents it, decoded.
        let token = try headers().signature!
        let header = try JSONDecoder().decode(JOSEHeader.self, from: Base64URL.decode(token.split(separator: ".", omittingEmptySubsequences: false)[0])!)
        #expect(header == JOSEHeader(alg: "RS256", kid: "key1", b64: false, crit: ["b64"]))
        #expect(token.contains(".."), "detached payload")
    }

    @Test func everyBodyByteIsCovered() async throws {
        let good = try headers()
        for index in stride(from: 0, to: body.count, by: 7) {
            var tampered = body
            tampered[index] ^= 0x01
            #expect(await rejection(tampered, good) == .invalidSignature, "byte \(index)")
        }
        #expect(await rejection(body + [UInt8(ascii: "x")], good) == .invalidSignature, "appended byte")
        #expect(await rejection(Array(body.dropLast()), good) == .invalidSignature, "removed byte")
    }

    @Test func everySignedHeaderIsCovered() async throws {
        let good = try headers()
        var changed = good; changed.eventId = "evt-2"
        #expect(await rejection(body, changed) == .invalidSignature)
        changed = good; changed.tenantId = "other"
        #expect(await rejection(body, changed) == .invalidSignature)
        changed = good; changed.customerId = "cust-2"
        #expect(await rejection(body, changed) == .invalidSignature)
        changed = good; changed.retry = "1"
        #expect(await rejection(body, changed) == .invalidSignature)
        changed = good; changed.transmissionTime = String(now + 1)
        #expect(await rejection(body, changed) == .invalidSignature)
    }

    @Test func wrongKeyIsRejected() async throws {
        // Same kid, different private key.
        #expect(await rejection(body, try headers(signer: Self.other)) == .invalidSignature)
    }

    @Test func onlyRS256WithUnencodedPayloadIsAccepted() async throws {
        var good = try headers()
        func forged(_ protected: String) throws -> WebhookHeaders {
            var copy = good
            copy.signature = try Self.signer.signature(body: body, headers: good, protectedHeader: protected)
            return copy
        }
        #expect(await rejection(body, try forged(WebhookSigner.protectedHeader(kid: "key1", alg: "none"))) == .unsupportedAlgorithm("none"))
        #expect(await rejection(body, try forged(WebhookSigner.protectedHeader(kid: "key1", alg: "HS256"))) == .unsupportedAlgorithm("HS256"))
        #expect(await rejection(body, try forged(WebhookSigner.protectedHeader(kid: "key1", alg: "RS512"))) == .unsupportedAlgorithm("RS512"))
        #expect(await rejection(body, try forged(WebhookSigner.protectedHeader(kid: "key1", crit: nil))) == .missingCriticalB64)
        #expect(await rejection(body, try forged(WebhookSigner.protectedHeader(kid: "key1", crit: []))) == .missingCriticalB64)
        #expect(await rejection(body, try forged(WebhookSigner.protectedHeader(kid: "key1", b64: nil))) == .missingCriticalB64)
        #expect(await rejection(body, try forged(WebhookSigner.protectedHeader(kid: "key1", b64: true))) == .missingCriticalB64)
        if case .malformedToken = await rejection(body, try forged(WebhookSigner.protectedHeader(kid: "key1", crit: ["b64", "exp"]))) {} else {
            Issue.record("an unknown critical extension must be rejected")
        }
        // An HS256 token "signed" with the public key as HMAC secret (the classic confusion attack).
        let hsHeader = Base64URL.encode(Array(#"{"alg":"HS256","b64":false,"crit":["b64"],"kid":"key1"}"#.utf8))
        good.signature = hsHeader + ".." + Base64URL.encode(Array(repeating: UInt8(7), count: 32))
        #expect(await rejection(body, good) == .unsupportedAlgorithm("HS256"))
    }

    @Test func malformedTokensAndHeadersAreRejected() async throws {
        let good = try headers()
        let parts = good.signature!.split(separator: ".", omittingEmptySubsequences: false)
        for token in ["", "abc", "a.b", "a..b.c", "\(parts[0]).cGF5bG9hZA.\(parts[2])", "!!!..\(parts[2])", "\(parts[0])..", "\(parts[0])..***",
                      Base64URL.encode(Array("not json".utf8)) + "..\(parts[2])", String(repeating: "a", count: 5000)] {
            var copy = good
            copy.signature = token
            if case .malformedToken = await rejection(body, copy) {} else { Issue.record("token '\(token.prefix(40))' not rejected as malformed") }
        }
        var copy = good; copy.eventId = nil
        #expect(await rejection(body, copy) == .missingHeader(WebhookHeaders.eventID))
        copy = good; copy.transmissionTime = "yesterday"
        #expect(await rejection(body, copy) == .malformedHeader(WebhookHeaders.transmissionTime))
        copy = good; copy.retry = "-1"
        #expect(await rejection(body, copy) == .malformedHeader(WebhookHeaders.retry))
        var injected = good
        injected.signature = try Self.signer.signature(body: body, headers: good, protectedHeader: WebhookSigner.protectedHeader(kid: "../../admin"))
        if case .malformedToken = await rejection(body, injected) {} else { Issue.record("a kid with path characters must be rejected") }
        for segment in [".", ".."] {
            injected.signature = try Self.signer.signature(body: body, headers: good, protectedHeader: WebhookSigner.protectedHeader(kid: segment))
            if case .malformedToken = await rejection(body, injected) {} else { Issue.record("the kid '\(segment)' would move the JWK URL's path") }
        }
    }

    @Test func staleOrFutureTransmissionTimeIsRejected() async throws {
        let stale = try headers(transmissionTime: now - 301_000)
        #expect(await rejection(body, stale) == .staleTransmissionTime(skewSeconds: 301))
        let future = try headers(transmissionTime: now + 400_000)
        #expect(await rejection(body, future) == .staleTransmissionTime(skewSeconds: -400))
        let edge = try headers(transmissionTime: now - 299_000)
        #expect(await rejection(body, edge) == nil)
    }

    @Test func unknownKeyIsRejected() async throws {
        let stranger = try WebhookSigner(kid: "key2")
        #expect(await rejection(body, try headers(signer: stranger)) == .unknownKey(kid: "key2"))
    }

    @Test func aBodyReformattedAfterSigningStillVerifiesByItsCompactForm() async throws {
        // 8x8's Node sample checksums JSON.stringify(body): the compact form.
        let pretty = Array("{\n  \"eventType\": \"MESSAGE\",\n  \"data\": {\"text\": \"a  b\"}\n}".utf8)
        let compact = Array(#"{"eventType":"MESSAGE","data":{"text":"a  b"}}"#.utf8)
        let signedOverCompact = try headers(body: compact)
        let verified = try await verifier.verify(body: pretty, headers: signedOverCompact, nowMilliseconds: now)
        #expect(verified.matchedCompactBody)
        // Whitespace inside strings is content: changing it is tampering.
        let changed = Array("{\n  \"eventType\": \"MESSAGE\",\n  \"data\": {\"text\": \"a b\"}\n}".utf8)
        #expect(await rejection(changed, signedOverCompact) == .invalidSignature)
    }
}
