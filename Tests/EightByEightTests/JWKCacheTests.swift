import AsyncHTTPClient
@testable import EightByEight
import Foundation
import Logging
import Simulator
import Testing

/// The JWK cache against the simulator's JWK endpoint over real HTTP.
@Suite struct JWKCacheTests {
    static let signer = try! WebhookSigner(kid: "key-a")
    static let logger = Logger(label: "test.jwk") { _ in SwiftLogNoOpLogHandler() }

    func withSimulator(_ body: (EightByEightSimulator, String) async throws -> Void) async throws {
        let simulator = EightByEightSimulator(signer: Self.signer)
        try await withRunningApplication({ simulator.application(logger: Self.logger, onRunning: $0) }) { port in
            try await body(simulator, "http://127.0.0.1:\(port)")
        }
    }

    func cache(_ baseURL: String, ttl: Duration = .seconds(3600), timeout: Duration = .seconds(15)) -> JWKCache {
        JWKCache(baseURL: baseURL, httpClient: .shared, ttl: ttl, fetchTimeout: timeout, logger: Self.logger)
    }

    @Test func fetchesOnceAndServesFromCache() async throws {
        try await withSimulator { simulator, url in
            let cache = cache(url)
            let key = try await cache.publicKey(kid: "key-a")
            #expect(key.derRepresentation == Self.signer.privateKey.publicKey.derRepresentation)
            _ = try await cache.publicKey(kid: "key-a")
            _ = try await cache.publicKey(kid: "key-a")
            #expect(simulator.jwkRequestCount == 1)
        }
    }

    @Test func concurrentLookupsOfOneKeyShareOneFetch() async throws {
        try await withSimulator { simulator, url in
            simulator.jwkBehavior = .slow(.milliseconds(300))
            let cache = cache(url)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<50 { group.addTask { _ = try await cache.publicKey(kid: "key-a") } }
                try await group.waitForAll()
            }
            #expect(simulator.jwkRequestCount == 1)
        }
    }

    @Test func unknownKeyIsReportedAndNeverCached() async throws {
        try await withSimulator { simulator, url in
            let cache = cache(url)
            await #expect(throws: SignatureError.unknownKey(kid: "nope")) { try await cache.publicKey(kid: "nope") }
            let afterFirst = simulator.jwkRequestCount
            #expect(afterFirst == 1, "the gateway path (the legacy fallback path is not the simulator's)")
            await #expect(throws: SignatureError.unknownKey(kid: "nope")) { try await cache.publicKey(kid: "nope") }
            #expect(simulator.jwkRequestCount == 2 * afterFirst, "asked again: failures are not cached")
        }
    }

    @Test func aRotatedKeyIsFetchedWhenItsKidFirstAppears() async throws {
        try await withSimulator { simulator, url in
            let cache = cache(url)
            _ = try await cache.publicKey(kid: "key-a")
            let rotated = try WebhookSigner(kid: "key-b")
            simulator.addKey(rotated)
            let key = try await cache.publicKey(kid: "key-b")
            #expect(key.derRepresentation == rotated.privateKey.publicKey.derRepresentation)
        }
    }

    @Test("a gateway path that answers 403 or 400 (an API gateway not routing it) falls back to the legacy path; a key neither has is unavailable (503), not unknown")
    func legacyPathAfterARefusal() async throws {
        try await withSimulator { simulator, url in
            for status in [403, 400] {
                simulator.jwkBehavior = .legacyPathOnly(gatewayStatus: status)
                let key = try await cache(url).publicKey(kid: "key-a")
                #expect(key.derRepresentation == Self.signer.privateKey.publicKey.derRepresentation)
                await #expect(throws: SignatureError.keyServiceUnavailable("JWK endpoint answered \(status)")) { try await cache(url).publicKey(kid: "nope") }
            }
            #expect(simulator.jwkRequestCount == 8, "both paths asked for each key")
        }
    }

    @Test func failuresAreNotCachedAndRecover() async throws {
        try await withSimulator { simulator, url in
            let cache = cache(url)
            simulator.jwkBehavior = .failing(status: 500)
            await #expect(throws: SignatureError.keyServiceUnavailable("JWK endpoint answered 500")) { try await cache.publicKey(kid: "key-a") }
            simulator.jwkBehavior = .normal
            _ = try await cache.publicKey(kid: "key-a")
            #expect(simulator.jwkRequestCount == 2)
        }
    }

    @Test func aSlowEndpointIsBoundedByTheFetchTimeout() async throws {
        try await withSimulator { simulator, url in
            simulator.jwkBehavior = .slow(.seconds(5))
            let cache = cache(url, timeout: .milliseconds(200))
            do {
                _ = try await cache.publicKey(kid: "key-a")
                Issue.record("a slow JWK endpoint must not produce a key")
            } catch {
                #expect((error as? SignatureError)?.isTransient == true, "\(error)")
            }
        }
    }

    @Test func anExpiredKeyIsFetchedAgain() async throws {
        try await withSimulator { simulator, url in
            let cache = cache(url, ttl: .milliseconds(50))
            _ = try await cache.publicKey(kid: "key-a")
            try await Task.sleep(for: .milliseconds(120))
            _ = try await cache.publicKey(kid: "key-a")
            #expect(simulator.jwkRequestCount == 2)
        }
    }

    @Test func anExpiredKeyWhoseRefreshFailsIsUsedAWhileLonger() async throws {
        try await withSimulator { simulator, url in
            let cache = cache(url, ttl: .milliseconds(50))
            let key = try await cache.publicKey(kid: "key-a")
            try await Task.sleep(for: .milliseconds(120))
            simulator.jwkBehavior = .failing(status: 503)
            let served = try await cache.publicKey(kid: "key-a")
            #expect(served.derRepresentation == key.derRepresentation)
            #expect(simulator.jwkRequestCount == 2, "the refresh was tried")
            _ = try await cache.publicKey(kid: "key-a")
            #expect(simulator.jwkRequestCount == 2, "and is not retried at once")
        }
    }

    @Test func anUnreachableEndpointIsTransient() async throws {
        // Port 1 on loopback: connection refused.
        let cache = cache("http://127.0.0.1:1")
        do {
            _ = try await cache.publicKey(kid: "key-a")
            Issue.record("expected a failure")
        } catch {
            #expect(error.isTransient, "\(error)")
        }
    }
}
