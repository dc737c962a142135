// The cost of each step the ingress takes for one webhook, on one thread, without HTTP or
// Kafka: signature verification (and the RSA operation inside it), decoding and normalizing
// the body, and writing the Kafka record. See BENCHMARKS.md ("Ingress: where the time goes").
//
//   swift build -c release --product IngressStepsBenchmark
//   .build/release/IngressStepsBenchmark [iterations per round, default 20000]
import ChatEvents
import Crypto
import EightByEight
import Foundation
import Simulator
import _CryptoExtras

/// The key the webhooks were signed with, without the JWK endpoint (a cached key costs a lookup).
struct InMemoryKeys: WebhookKeyProvider {
    let key: _RSA.Signing.PublicKey
    func publicKey(kid: String) async throws(SignatureError) -> _RSA.Signing.PublicKey { key }
}

/// Median over five rounds of the time per call, in microseconds. Runs off the main actor so
/// that awaiting `body` is a call, not a hop between executors.
nonisolated func measure(_ label: String, iterations: Int, _ body: () async throws -> Void) async rethrows {
    var rounds: [Double] = []
    for _ in 0..<5 {
        let start = ContinuousClock.now
        for _ in 0..<iterations { try await body() }
        rounds.append(Double((ContinuousClock.now - start) / .nanoseconds(1)) / Double(iterations) / 1000)
    }
    let label = label.padding(toLength: 34, withPad: " ", startingAt: 0)
    print(label + String(format: "%7.2f µs", rounds.sorted()[2]))
}

nonisolated func run(iterations: Int) async throws {
    let signer = try WebhookSigner(kid: "steps-key")
    let now = Int64(Date().timeIntervalSince1970 * 1000)
    // The body of IngressBenchmark's webhooks.
    let body = Array(#"{"eventType":"MESSAGE","conversationId":"conv-1","timestamp":\#(now),"data":{"isEcho":false,"sender":{"id":"user-1","type":"user"},"text":"Hello, I would like to know where my order is. Thanks!"}}"#.utf8)
    var headers = WebhookHeaders(tenantId: "bench-tenant", eventId: "event-1", transmissionTime: String(now), retry: "0", customerId: "bench-customer")
    headers.signature = try signer.signature(body: body, headers: headers)
    let verifier = SignatureVerifier(keys: InMemoryKeys(key: signer.privateKey.publicKey), maxClockSkewSeconds: 3600)
    guard (try? await verifier.verify(body: body, headers: headers, nowMilliseconds: now)) != nil else { fatalError("the signature does not verify") }

    let key = signer.privateKey.publicKey
    let signature = try signer.privateKey.signature(for: SHA256.hash(data: body), padding: .insecurePKCS1v1_5)
    let digest = SHA256.hash(data: body)
    let event = try WebhookEvent.decode(body)

    print("per webhook, \(iterations) iterations per round, median of 5 rounds")
    try await measure("signature verification", iterations: iterations) {
        _ = try await verifier.verify(body: body, headers: headers, nowMilliseconds: now)
    }
    await measure("  of which RSA-2048 (swift-crypto)", iterations: iterations) {
        precondition(key.isValidSignature(signature, for: digest, padding: .insecurePKCS1v1_5))
    }
    try await measure("decode and normalize the body", iterations: iterations) {
        _ = try WebhookEvent.decode(body)
    }
    await measure("inbound event and Kafka record", iterations: iterations) {
        let inbound = InboundEvent(
            eventId: "event-1", retry: 0, tenantId: "bench-tenant", customerId: "bench-customer", endpoint: "bench",
            route: .endpoint, receivedAt: now, transmissionTime: now, eventType: event.eventType,
            conversationId: event.conversationId, eventTimestamp: event.timestamp, signatureVerified: true,
            normalized: event.normalized
        )
        _ = inbound.encodedRecord(rawBody: body)
    }
}

let iterations = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 20000
try await run(iterations: iterations)
