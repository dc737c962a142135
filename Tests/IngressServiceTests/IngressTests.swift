import AsyncHTTPClient
import ChatEvents
import ConnectorConfiguration
import EightByEight
import Foundation
import IngressService
import Kafka
import NIOCore
import NIOPosix
import Simulator
import Testing

@Suite("Ingress on the embedded cluster", .serialized)
struct IngressTests {
    @Test func aSignedWebhookIsPublishedKeyedByConversationThenAnswered() async throws {
        try await IngressHarness.run { h in
            let body = try fixture("message-user")
            let headers = try h.signedHeaders(body, eventId: "evt-100", retry: 0, transmissionTime: Int64(Date().timeIntervalSince1970 * 1000))
            #expect(try await h.post(body, headers: headers) == 200)
            // Answered only after the write was acknowledged: the record is there already.
            #expect(try await h.publishedCount() == 1)
            let record = try #require(try await h.published(1).first)
            #expect(record.key == "ID-0")
            let event = record.event
            #expect(event.schema == InboundEvent.schemaVersion)
            #expect(event.eventId == "evt-100")
            #expect(event.tenantId == "acme")
            #expect(event.customerId == "customer-1")
            #expect(event.endpoint == "support")
            #expect(event.route == .endpoint)
            #expect(event.retry == 0)
            #expect(event.signatureVerified)
            #expect(event.transmissionTime == Int64(headers.first { $0.0 == WebhookHeaders.transmissionTime }!.1))
            #expect(event.receivedAt >= event.transmissionTime!)
            #expect(event.eventType == "MESSAGE")
            #expect(event.conversationId == "ID-0")
            #expect(event.eventTimestamp == 1_713_100_000_000)
            #expect(event.normalized.kind == .userMessage)
            #expect(event.normalized.text == "I need help with my order")
            #expect(event.raw == (try JSONDecoder().decode(JSONValue.self, from: Data(body))), "raw is 8x8's body")
        }
    }

    @Test func inboundEventsAreBatchedAdaptivelyUnlessALingerIsConfigured() async throws {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        // The default (`ingress.lingerMs` 0): no linger, the producer's partition gates.
        try await IngressHarness.run { h in
            #expect(h.service.producer.batching == .adaptive)
            let body = try fixture("message-user")
            #expect(try await h.post(body, headers: try h.signedHeaders(body, eventId: "evt-adaptive", retry: 0, transmissionTime: now)) == 200)
            #expect(try await h.publishedCount() == 1)
            #expect(h.service.producer.gateStatistics(topic: h.config.topicName(.inbound)) != nil)
        }
        // A linger above 0 is librdkafka's own batching.
        try await IngressHarness.run(configure: { $0.ingress.lingerMs = 2 }) { h in
            #expect(h.service.producer.batching == .linger)
            let body = try fixture("message-user")
            #expect(try await h.post(body, headers: try h.signedHeaders(body, eventId: "evt-linger", retry: 0, transmissionTime: now)) == 200)
            #expect(try await h.publishedCount() == 1)
            #expect(h.service.producer.gateStatistics(topic: h.config.topicName(.inbound)) == nil)
        }
    }

    @Test func everyEventTypeAndLegacyShapeIsAcceptedAndNormalized() async throws {
        try await IngressHarness.run { h in
            var expected: [String: NormalizedEvent.Kind] = [:]
            for name in try fixtureNames() {
                let body = try fixture(name)
                let event = try JSONDecoder().decode(WebhookEvent.self, from: Data(body))
                #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: name)) == 200, "\(name)")
                if event.kind != .webHookVerify { expected[name] = event.normalized.kind }
            }
            // WEB_HOOK_VERIFY is answered without touching Kafka.
            let records = try await h.published(expected.count)
            #expect(try await h.publishedCount() == Int64(expected.count))
            #expect(Dictionary(uniqueKeysWithValues: records.map { ($0.event.eventId, $0.event.normalized.kind) }) == expected)
        }
    }

    @Test func tamperedSignaturesAreRejectedAndNothingIsPublished() async throws {
        try await IngressHarness.run { h in
            let body = try fixture("message-user")
            let good = try h.signedHeaders(body, eventId: "evt-1")
            var changedBody = body
            changedBody[changedBody.count / 2] ^= 0x20
            let otherKeySameKid = try WebhookSigner(kid: IngressHarness.signer.kid)
            let unknownKid = try WebhookSigner(kid: "not-served")
            func forged(_ protected: String) throws -> String {
                let map = Dictionary(good, uniquingKeysWith: { a, _ in a })
                return try IngressHarness.signer.signature(body: body, headers: WebhookHeaders(lookup: { map[$0] }), protectedHeader: protected)
            }
            let stale = Int64(Date().timeIntervalSince1970 * 1000) - 10 * 60 * 1000
            let cases: [(String, [UInt8], [(String, String)])] = [
                ("body byte changed", changedBody, good),
                ("event id changed", body, good.replacing(WebhookHeaders.eventID, with: "evt-2")),
                ("tenant changed", body, good.replacing(WebhookHeaders.tenantID, with: "other")),
                ("customer changed", body, good.replacing(WebhookHeaders.customerID, with: "someone")),
                ("retry changed", body, good.replacing(WebhookHeaders.retry, with: "3")),
                ("wrong key", body, try h.signedHeaders(body, signer: otherKeySameKid)),
                ("alg none", body, good.replacing(WebhookHeaders.signature, with: try forged(WebhookSigner.protectedHeader(kid: "sim-key", alg: "none")))),
                ("alg HS256", body, good.replacing(WebhookHeaders.signature, with: try forged(WebhookSigner.protectedHeader(kid: "sim-key", alg: "HS256")))),
                ("missing crit", body, good.replacing(WebhookHeaders.signature, with: try forged(WebhookSigner.protectedHeader(kid: "sim-key", crit: nil)))),
                ("stale transmission time", body, try h.signedHeaders(body, transmissionTime: stale)),
                ("unknown kid", body, try h.signedHeaders(body, signer: unknownKid)),
                ("no signature", body, good.replacing(WebhookHeaders.signature, with: nil)),
                ("garbage signature", body, good.replacing(WebhookHeaders.signature, with: "abc.def.ghi")),
            ]
            for (name, body, headers) in cases {
                #expect(try await h.post(body, headers: headers) == 401, "\(name)")
            }
            #expect(try await h.publishedCount() == 0)
            let metrics = try await h.get("/metrics").body
            #expect(metrics.contains(#"connector_ingress_requests_total{endpoint="support",status="401"} \#(cases.count)"#), "\(metrics)")
            #expect(metrics.contains(#"connector_ingress_signature_failures_total{reason="unknown_key"} 1"#))
        }
    }

    @Test("a flood of webhooks with bad signatures, made-up key ids or unsigned verifications writes a few lines per window; the metrics count every one")
    func aFloodOfRejectedWebhooksStaysWithinTheLogBudget() async throws {
        let log = LogCapture()
        try await IngressHarness.run(logger: log.logger) { h in
            let body = try fixture("message-user")
            var changedBody = body
            changedBody[changedBody.count / 2] ^= 0x20
            let started = ContinuousClock.now
            for index in 0..<30 {
                #expect(try await h.post(changedBody, headers: try h.signedHeaders(body, eventId: "evt-flood-\(index)")) == 401)
                let madeUp = try WebhookSigner(kid: "made-up-\(index)", privateKey: IngressHarness.signer.privateKey)
                #expect(try await h.post(body, headers: try h.signedHeaders(body, eventId: "evt-kid-\(index)", signer: madeUp)) == 401)
            }
            // Unsigned verification webhooks (answered 200, as 8x8 may not sign them) likewise.
            let verify = try fixture("web-hook-verify")
            for _ in 0..<30 { #expect(try await h.post(verify, headers: [("content-type", "application/json")]) == 200) }
            let lines = log.text.split(separator: "\n")
            // 10 lines of each kind per 10-second window: one window, unless this machine was
            // slow enough for the flood to reach the next.
            let windows = Int(((ContinuousClock.now - started) / .seconds(10)).rounded(.up))
            let budget = 10...(10 * max(1, windows))
            #expect(budget.contains(lines.filter { $0.hasPrefix("webhook verification answered") }.count))
            let rejected = lines.filter { $0.hasPrefix("webhook signature rejected") }
            #expect(budget.contains(rejected.count), "\(rejected.count) lines in \(windows) windows")
            #expect(budget.contains(lines.filter { $0.hasPrefix("signing key fetch failed") }.count))
            let metrics = try await h.get("/metrics").body
            #expect(metrics.contains(#"connector_ingress_requests_total{endpoint="support",status="401"} 60"#), "\(metrics)")
            #expect(metrics.contains(#"connector_ingress_signature_failures_total{reason="unknown_key"} 30"#), "\(metrics)")
        }
    }

    @Test func badRequestsGetTheirDocumentedStatus() async throws {
        try await IngressHarness.run { h in
            let malformed = Array(#"{"eventType":"MESSAGE","conversationId":"c1","data":{"#.utf8)
            #expect(try await h.post(malformed, headers: h.signedHeaders(malformed)) == 400, "malformed JSON")
            let notAnEvent = Array(#"{"hello":"world"}"#.utf8)
            #expect(try await h.post(notAnEvent, headers: h.signedHeaders(notAnEvent)) == 400, "JSON without eventType")
            let oversize = Array(#"{"eventType":"MESSAGE","conversationId":"c1","data":{"text":""#.utf8) + Array(repeating: UInt8(ascii: "a"), count: 5000) + Array(#""}}"#.utf8)
            #expect(try await h.post(oversize, headers: h.signedHeaders(oversize)) == 413, "oversize")
            // Without a content-length (chunked), the limit applies while reading.
            var chunked = HTTPClientRequest(url: h.endpointURL)
            chunked.method = .POST
            for (name, value) in try h.signedHeaders(oversize) { chunked.headers.add(name: name, value: value) }
            let chunks = stride(from: 0, to: oversize.count, by: 1000).map { ByteBuffer(bytes: oversize[$0..<min($0 + 1000, oversize.count)]) }
            let stream = AsyncStream<ByteBuffer> { continuation in
                for chunk in chunks { continuation.yield(chunk) }
                continuation.finish()
            }
            chunked.body = .stream(stream, length: .unknown)
            let answer = try await HTTPClient.shared.execute(chunked, timeout: .seconds(10))
            #expect(answer.status.code == 413, "chunked oversize")
            let body = try fixture("message-user")
            let headers = try h.signedHeaders(body)
            #expect(try await h.post(body, headers: headers.replacing("content-type", with: "text/plain")) == 415, "wrong content type")
            #expect(try await h.post(body, headers: headers.replacing("content-type", with: nil)) == 415, "no content type")
            #expect(try await h.post(body, headers: headers, to: "\(h.baseURL)/endpoint/not-a-known-token") == 404, "unknown url token")
            #expect(try await h.publishedCount() == 0)
            // Charset parameters and case do not matter.
            #expect(try await h.post(body, headers: headers.replacing("content-type", with: "Application/JSON; charset=utf-8")) == 200)
        }
    }

    @Test func hostileUnsignedAndExtremeBodiesNeverCrashTheIngress() async throws {
        try await IngressHarness.run { h in
            let json = [("content-type", "application/json")]
            let huge = Array(#"{"eventType":1e19}"#.utf8)
            #expect(try await h.post(huge, headers: json, to: "\(h.baseURL)/handover/eightByEight") == 401)
            let large = Array(#"{"eventType":"MESSAGE","data":{"text":""#.utf8) + Array(repeating: UInt8(ascii: "a"), count: 2000) + Array(#""}}"#.utf8)
            #expect(try await h.post(large, headers: json) == 401, "an unsigned body over 1 KiB is refused unread")
            let signed = Array(#"{"eventType":"MESSAGE","conversationId":-1e19,"timestamp":1e300,"data":{"text":12345678901234567890}}"#.utf8)
            #expect(try await h.post(signed, headers: h.signedHeaders(signed)) == 200)
            let event = try #require(try await h.published(1).first?.event)
            #expect(event.conversationId == "-1e+19")
            #expect(event.eventTimestamp == nil, "out of range for a timestamp")
            #expect(try await h.get("/health/live").status == 200)
        }
    }

    @Test("a body at the parser's limits is published as a record the worker reads: nesting 64 deep, whole numbers past 2^53")
    func bodiesAtTheLimitsMakeReadableRecords() async throws {
        try await IngressHarness.run { h in
            // The top object, `data` and 62 arrays: 64 levels, the most the ingress takes.
            let deep = String(repeating: "[", count: 62) + String(repeating: "]", count: 62)
            let body = Array(#"{"eventType":"MESSAGE","conversationId":"conv-deep","timestamp":"9223372036854775807","data":{"isEcho":false,"sender":{"id":"u1","type":"user"},"text":"hi","timezoneOffset":-9007199254740993,"extra":\#(deep)}}"#.utf8)
            #expect(try await h.post(body, headers: h.signedHeaders(body)) == 200)
            let tooDeep = Array(#"{"eventType":"MESSAGE","conversationId":"conv-deep","data":{"extra":[\#(deep)]}}"#.utf8)
            #expect(try await h.post(tooDeep, headers: h.signedHeaders(tooDeep)) == 400)
            // `published` reads the records with the worker's reader (`InboundEvent.decode`).
            let event = try #require(try await h.published(1).first?.event)
            #expect(event.conversationId == "conv-deep")
            #expect(event.normalized.text == "hi")
            #expect(event.eventTimestamp == nil, "past 2^53: not kept as a number")
        }
    }

    @Test("an event whose record would exceed Kafka's message.max.bytes gets 413, not a 503 that 8x8 would retry for ever")
    func anEventTooLargeForKafkaGets413() async throws {
        try await IngressHarness.run(configure: { $0.kafka.properties["message.max.bytes"] = "3000" }) { h in
            // A 2,000-byte text fits the 4 KiB body limit; the record holds it twice.
            let text = String(repeating: "a", count: 2_000)
            let body = Array(#"{"eventType":"MESSAGE","conversationId":"conv-big","data":{"isEcho":false,"sender":{"id":"u1","type":"user"},"text":"\#(text)"}}"#.utf8)
            #expect(try await h.post(body, headers: h.signedHeaders(body)) == 413)
            let small = try fixture("message-user")
            #expect(try await h.post(small, headers: h.signedHeaders(small)) == 200)
            #expect(try await h.publishedCount() == 1)
        }
    }

    @Test("the record key counts toward Kafka's size limit: an event under a conversation id of kilobytes gets 413, not a 503 at every retry")
    func aLongKeyCountsTowardTheRecordSize() async throws {
        try await IngressHarness.run(configure: { $0.kafka.properties["message.max.bytes"] = "6000" }) { h in
            // The record (the id twice, in the body and the conversation field) fits the limit
            // less its room for the key; with the 2,000-byte key it does not fit Kafka's.
            let longId = String(repeating: "c", count: 2_000)
            let body = Array(#"{"eventType":"TRANSFER","conversationId":"\#(longId)","data":{}}"#.utf8)
            #expect(try await h.post(body, headers: h.signedHeaders(body)) == 413)
            #expect(try await h.post(body, headers: h.signedHeaders(body)) == 413, "8x8's retry gets the same answer")
            let small = try fixture("message-user")
            #expect(try await h.post(small, headers: h.signedHeaders(small)) == 200)
            #expect(try await h.publishedCount() == 1)
        }
    }

    @Test func webhookVerificationIsAnsweredWithoutPublishing() async throws {
        try await IngressHarness.run { h in
            let body = try fixture("web-hook-verify")
            #expect(try await h.post(body, headers: [("content-type", "application/json")]) == 200, "unsigned verify")
            #expect(try await h.post(body, headers: h.signedHeaders(body)) == 200, "signed verify")
            var badlySigned = try h.signedHeaders(body)
            badlySigned = badlySigned.replacing(WebhookHeaders.eventID, with: "changed")
            #expect(try await h.post(body, headers: badlySigned) == 401, "a signature that is sent must be valid")
            #expect(try await h.publishedCount() == 0)
        }
    }

    @Test func aRetriedWebhookIsPublishedOnce() async throws {
        try await IngressHarness.run { h in
            let body = try fixture("message-user")
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-dup", retry: 0)) == 200)
            // 8x8's retry: same event id, new transmission time and retry count, new signature.
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-dup", retry: 1)) == 200)
            // Many concurrent deliveries of one new event.
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for retry in 0..<20 {
                    group.addTask { try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-burst", retry: retry)) }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 20))
            #expect(try await h.publishedCount() == 2)
            let ids = try await h.published(2).map(\.event.eventId).sorted()
            #expect(ids == ["evt-burst", "evt-dup"])
        }
    }

    @Test("an unsigned webhook without an event id, or with an empty one, is published each time under an id of its own; its negative or huge retry count or time is not written down")
    func emptyEventIdsAreNotDeduplicated() async throws {
        try await IngressHarness.run(configure: { $0.ingress.signature.required = false }) { h in
            let first = try fixture("message-user"), second = try fixture("message-agent")
            let headers = [("content-type", "application/json"), (WebhookHeaders.eventID, ""), (WebhookHeaders.retry, "-3"), (WebhookHeaders.transmissionTime, "-5")]
            // Beyond 2^53 a JSON number is not exact, and the worker's reader refuses it.
            let huge = [("content-type", "application/json"), (WebhookHeaders.retry, "9007199254740993"), (WebhookHeaders.transmissionTime, "9223372036854775807")]
            #expect(try await h.post(first, headers: headers) == 200)
            #expect(try await h.post(second, headers: headers) == 200)
            #expect(try await h.post(second, headers: [("content-type", "application/json")]) == 200)
            #expect(try await h.post(first, headers: huge) == 200)
            let events = try await h.published(4).map(\.event)
            #expect(events.count == 4)
            #expect(Set(events.map(\.eventId)).count == 4 && events.allSatisfy { !$0.eventId.isEmpty })
            #expect(events.allSatisfy { $0.retry == 0 && $0.transmissionTime == nil })
        }
    }

    @Test("one event id sent to an endpoint's webhook and to the handover webhook is published for each; a retry to either is not")
    func deduplicationIsPerWebhook() async throws {
        try await IngressHarness.run { h in
            let body = try fixture("members-changed-joined")
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-both", retry: 0)) == 200)
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-both", retry: 0), to: "\(h.baseURL)/handover/eightByEight") == 200)
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-both", retry: 1)) == 200)
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-both", retry: 1), to: "\(h.baseURL)/handover/eightByEight") == 200)
            #expect(try await h.publishedCount() == 2)
            #expect(try await h.published(2).map(\.event.route).sorted { "\($0)" < "\($1)" } == [.endpoint, .handover])
        }
    }

    @Test func handoverWebhooksAreAcceptedAndAttributed() async throws {
        try await IngressHarness.run { h in
            let body = try fixture("members-changed-joined")
            #expect(try await h.post(body, headers: h.signedHeaders(body), to: "\(h.baseURL)/handover/eightByEight") == 200)
            let event = try #require(try await h.published(1).first?.event)
            #expect(event.route == .handover)
            #expect(event.endpoint == "support", "the endpoint of tenant acme")
            #expect(event.normalized.kind == .memberJoined)
        }
    }

    @Test("a handover webhook of a tenant two endpoints share names no endpoint (the worker goes by the conversation's session); a tenant of one endpoint names it; another tenant gets 403")
    func handoverWebhooksOfASharedTenant() async throws {
        try await IngressHarness.run(configure: { config in
            var sales = config.endpoints[0]
            sales.name = "sales"
            sales.urlToken = "sales-token"
            var globex = config.endpoints[0]
            globex.name = "globex-support"
            globex.urlToken = "globex-token"
            globex.eightByEight.tenant = "globex"
            config.endpoints += [sales, globex]
        }) { h in
            let body = try fixture("members-changed-joined")
            let handover = "\(h.baseURL)/handover/eightByEight"
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-acme"), to: handover) == 200)
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-globex", tenantId: "globex"), to: handover) == 200)
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-initech", tenantId: "initech"), to: handover) == 403)
            let events = Dictionary(uniqueKeysWithValues: try await h.published(2).map { ($0.event.eventId, $0.event) })
            #expect(events["evt-acme"]?.route == .handover)
            #expect(events["evt-acme"].map { $0.endpoint == nil } == true, "support and sales share tenant acme: \(String(describing: events["evt-acme"]?.endpoint))")
            #expect(events["evt-globex"]?.endpoint == "globex-support")
            #expect(try await h.publishedCount() == 2)
        }
    }

    @Test("a connection left silent, or a request whose body stops coming, is closed after ingress.idleTimeoutSeconds; the ingress goes on answering")
    func silentConnectionsAreClosed() async throws {
        try await IngressHarness.run(configure: { $0.ingress.idleTimeoutSeconds = 1 }) { h in
            let url = try #require(URL(string: h.endpointURL))
            let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            let silent = try await bootstrap.connect(host: "127.0.0.1", port: try #require(url.port)).get()
            let stalled = try await bootstrap.connect(host: "127.0.0.1", port: try #require(url.port)).get()
            let head = "POST \(url.path) HTTP/1.1\r\nhost: ingress\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
            try await stalled.writeAndFlush(ByteBuffer(string: head + #"{"eventType":"#)).get()
            // Polled: a wait on closeFuture could not be given up when the time is over.
            try await within(30, "the silent connection closed") { while silent.isActive { try await Task.sleep(for: .milliseconds(20)) } }
            try await within(30, "the stalled request's connection closed") { while stalled.isActive { try await Task.sleep(for: .milliseconds(20)) } }
            let body = try fixture("message-user")
            #expect(try await h.post(body, headers: h.signedHeaders(body)) == 200)
            #expect(try await h.publishedCount() == 1)
        }
    }

    @Test("a correctly signed webhook of another 8x8 tenant gets 403 and is not published, on either route")
    func webhooksOfAnotherTenantAreRefused() async throws {
        try await IngressHarness.run { h in
            let body = try fixture("message-user")
            let handover = try fixture("members-changed-joined")
            #expect(try await h.post(body, headers: h.signedHeaders(body, tenantId: "globex")) == 403)
            #expect(try await h.post(handover, headers: h.signedHeaders(handover, tenantId: "globex"), to: "\(h.baseURL)/handover/eightByEight") == 403)
            // The endpoint's own tenant still gets through, and only its webhook was written.
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-acme")) == 200)
            #expect(try await h.publishedCount() == 1)
            #expect(try await h.published(1).first?.event.eventId == "evt-acme")
            let metrics = try await h.get("/metrics").body
            #expect(metrics.contains(#"connector_ingress_signature_failures_total{reason="tenant"} 2"#), "\(metrics)")
        }
        // An endpoint without a tenant takes any tenant's webhooks, as before.
        try await IngressHarness.run(configure: { $0.endpoints[0].eightByEight.tenant = nil }) { h in
            let body = try fixture("message-user")
            #expect(try await h.post(body, headers: h.signedHeaders(body, tenantId: "globex")) == 200)
        }
    }

    @Test func brokerDownGives503AndTheRetryIsPublishedExactlyOnce() async throws {
        try await IngressHarness.run(configure: { $0.ingress.publishTimeoutMs = 1500 }) { h in
            let body = try fixture("message-user")
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "warm-up")) == 200)
            #expect(try await h.get("/health/ready").status == 200)

            try h.cluster.setBrokerDown(1)
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-outage", retry: 0)) == 503)
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-outage", retry: 1)) == 503)
            try await waitUntil("not ready") { try await h.get("/health/ready").status == 503 }
            try h.cluster.setBrokerUp(1)
            try await waitUntil("ready") { try await h.get("/health/ready").status == 200 }

            // 8x8 retries until it gets a 2xx; the event lands once, whether the first attempt's
            // queued write went through late or not.
            #expect(try await h.retryUntilAccepted(body, eventId: "evt-outage", firstRetry: 2) == 200)
            let records = try await h.published(2)
            #expect(records.map(\.event.eventId).sorted() == ["evt-outage", "warm-up"])
            #expect(try await h.publishedCount() == 2)
        }
    }

    @Test func aWriteThatKafkaGaveUpOnIsPublishedByTheRetry() async throws {
        // librdkafka drops the queued record after message.timeout.ms: the first attempt fails
        // for good, so the retry must publish it.
        try await IngressHarness.run(configure: { config in
            config.kafka.properties["message.timeout.ms"] = "1000"
            config.ingress.publishTimeoutMs = 3000
        }) { h in
            let body = try fixture("message-user")
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "warm-up")) == 200)
            try h.cluster.setBrokerDown(1)
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-lost", retry: 0)) == 503)
            try h.cluster.setBrokerUp(1)
            try await waitUntil("ready") { try await h.get("/health/ready").status == 200 }
            #expect(try await h.retryUntilAccepted(body, eventId: "evt-lost", firstRetry: 1, attempts: 19) == 200)
            #expect(try await h.published(2).map(\.event.eventId).sorted() == ["evt-lost", "warm-up"])
            #expect(try await h.publishedCount() == 2)
        }
    }

    @Test("a Kafka producer failed for good (a fatal error) ends the ingress, so its supervisor starts a new one; no webhook is accepted after it")
    func aFatalProducerErrorEndsTheIngress() async throws {
        try await IngressHarness.run { h in
            let body = try fixture("message-user")
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-before")) == 200)
            h.service.producer.raiseFatalErrorForTesting(reason: "test")
            // Right after: refused by the failed producer (503), or no answer once the ingress ended.
            let after = try? await h.post(body, headers: h.signedHeaders(body, eventId: "evt-after"))
            #expect(after != 200)
            // Without the check the ingress would go on answering 503 for ever while live and ready.
            try await waitUntil("the ingress to end") { (try? await h.get("/health/live")) == nil }
            #expect(try await h.publishedCount() == 1)
        }
    }

    @Test func aFailingOrSlowJWKEndpointGives503NeverACrash() async throws {
        try await IngressHarness.run(configure: { $0.ingress.signature.jwkFetchTimeoutMs = 300 }) { h in
            let body = try fixture("message-user")
            h.simulator.jwkBehavior = .failing(status: 500)
            let failing = try await h.sender.post(body: body, headers: h.signedHeaders(body, eventId: "evt-jwk"), to: h.endpointURL)
            #expect(failing.status == 503)
            // The answer says what 8x8 needs (try again later), not how the key fetch failed.
            #expect(!failing.body.contains("JWK") && !failing.body.contains("500"), "\(failing.body)")
            h.simulator.jwkBehavior = .slow(.seconds(3))
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-jwk", retry: 1)) == 503)
            #expect(try await h.publishedCount() == 0)
            h.simulator.jwkBehavior = .normal
            #expect(try await h.post(body, headers: h.signedHeaders(body, eventId: "evt-jwk", retry: 2)) == 200)
            #expect(try await h.publishedCount() == 1)
            #expect(try await h.get("/health/live").status == 200)
        }
    }

    @Test func healthAndMetricsAreServed() async throws {
        try await IngressHarness.run { h in
            #expect(try await h.get("/health/live").status == 200)
            try await waitUntil("ready") { try await h.get("/health/ready").status == 200 }
            let body = try fixture("message-user")
            #expect(try await h.post(body, headers: h.signedHeaders(body)) == 200)
            let metrics = try await h.get("/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.body.contains(#"connector_ingress_requests_total{endpoint="support",status="200"} 1"#))
            #expect(metrics.body.contains("connector_ingress_request_duration_seconds_bucket"))
            #expect(metrics.body.contains("connector_ingress_published_total 1"))
        }
    }
}

/// Polls `condition` until it holds; fails after `seconds` (a guard against hanging).
func waitUntil(_ what: String, seconds: Int = 30, _ condition: @escaping @Sendable () async throws -> Bool) async throws {
    try await within(seconds, what) {
        while try await !condition() { try await Task.sleep(for: .milliseconds(100)) }
    }
}
