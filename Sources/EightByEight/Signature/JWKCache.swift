public import AsyncHTTPClient
public import Logging
public import _CryptoExtras
import ChatEvents
import Foundation
import NIOCore
import Synchronization

/// 8x8's public signing keys by `kid`, fetched from
/// `{baseURL}/chat-gateway/v1/jwk/{kid}/public` (falling back to the legacy
/// `/vcc/us/chat/v2/jwk/{kid}/public` when the gateway path does not know the key).
///
/// - A key is cached for `ttl`; a failure is never cached, so the next webhook asks again.
/// - An unknown `kid` is fetched (8x8 rotates keys by issuing new ids).
/// - Concurrent requests for one `kid` share one fetch.
/// - A fetch is bounded by `fetchTimeout`, and at most `maxConcurrentFetches` keys never seen
///   before are fetched at once, so a flood of made-up key ids cannot flood the JWK endpoint.
///   Refreshing a key that expired is not limited by that, so such a flood cannot keep the
///   real key from being refreshed.
/// - When the refresh of an expired key fails for a transient reason (timeout, 5xx), the key
///   it had is used for `staleGrace` more and the refresh is tried again after that; a 404
///   (the key was withdrawn) drops it.
public final class JWKCache: WebhookKeyProvider {
    public static let paths = ["/chat-gateway/v1/jwk/{kid}/public", "/vcc/us/chat/v2/jwk/{kid}/public"]

    let baseURL: String
    let httpClient: HTTPClient
    let ttl: Duration
    let fetchTimeout: Duration
    let maxKeys: Int
    let maxConcurrentFetches: Int
    let logger: Logger
    let logBudget = LogBudget()
    let clock = ContinuousClock()
    private let entries = Mutex<[String: Entry]>([:])

    enum Entry {
        case ready(_RSA.Signing.PublicKey, expires: ContinuousClock.Instant)
        /// `stale` is the expired key a refresh replaces.
        case fetching(Task<_RSA.Signing.PublicKey, any Error>, stale: _RSA.Signing.PublicKey?)
    }

    /// How long an expired key stays in use while its refresh fails for a transient reason.
    let staleGrace: Duration = .seconds(60)

    public init(
        baseURL: String, httpClient: HTTPClient, ttl: Duration = .seconds(86_400), fetchTimeout: Duration = .seconds(2),
        maxKeys: Int = 64, maxConcurrentFetches: Int = 8, logger: Logger
    ) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.httpClient = httpClient
        self.ttl = ttl
        self.fetchTimeout = fetchTimeout
        self.maxKeys = maxKeys
        self.maxConcurrentFetches = maxConcurrentFetches
        self.logger = logger
    }

    enum Lookup {
        case key(_RSA.Signing.PublicKey)
        case wait(Task<_RSA.Signing.PublicKey, any Error>)
        case busy
    }

    public func publicKey(kid: String) async throws(SignatureError) -> _RSA.Signing.PublicKey {
        let now = clock.now
        let lookup: Lookup = entries.withLock { entries in
            switch entries[kid] {
            case .ready(let key, let expires) where expires > now:
                return .key(key)
            case .fetching(let task, _):
                return .wait(task)
            case .ready(let stale, _):
                let task = Task { try await self.fetchAndStore(kid: kid, stale: stale) }
                entries[kid] = .fetching(task, stale: stale)
                return .wait(task)
            case nil:
                let inFlight = entries.values.count { if case .fetching(_, nil) = $0 { true } else { false } }
                guard inFlight < maxConcurrentFetches else { return .busy }
                let task = Task { try await self.fetchAndStore(kid: kid, stale: nil) }
                entries[kid] = .fetching(task, stale: nil)
                return .wait(task)
            }
        }
        switch lookup {
        case .key(let key):
            return key
        case .busy:
            throw .keyServiceUnavailable("too many signing keys being fetched at once")
        case .wait(let task):
            do {
                return try await task.value
            } catch let error as SignatureError {
                throw error
            } catch {
                throw .keyServiceUnavailable("\(error)")
            }
        }
    }

    private func fetchAndStore(kid: String, stale: _RSA.Signing.PublicKey?) async throws -> _RSA.Signing.PublicKey {
        do {
            let key = try await fetch(kid: kid)
            let expires = clock.now + ttl
            entries.withLock { entries in
                entries[kid] = .ready(key, expires: expires)
                evictIfNeeded(&entries)
            }
            return key
        } catch {
            if let stale, error.isTransient {
                let retryAt = clock.now + staleGrace
                entries.withLock { $0[kid] = .ready(stale, expires: retryAt) }
                if let held = logBudget.admit("refresh") {
                    logger.warning("signing key refresh failed; using the expired key a while longer", metadata: [
                        "kid": "\(kid)", "error": "\(error)", "held_back": "\(held)",
                    ])
                }
                return stale
            }
            _ = entries.withLock { $0.removeValue(forKey: kid) }
            // Key ids are the sender's: a flood of made-up ones writes a few lines per window.
            if let held = logBudget.admit("fetch") {
                logger.warning("signing key fetch failed", metadata: ["kid": "\(kid)", "error": "\(error)", "held_back": "\(held)"])
            }
            throw error
        }
    }

    private func evictIfNeeded(_ entries: inout [String: Entry]) {
        guard entries.count > maxKeys else { return }
        // Drop the keys closest to expiry: the oldest fetched.
        let ready = entries.compactMap { item -> (String, ContinuousClock.Instant)? in
            if case .ready(_, let expires) = item.value { return (item.key, expires) }
            return nil
        }.sorted { $0.1 < $1.1 }
        for (kid, _) in ready.prefix(entries.count - maxKeys) { entries.removeValue(forKey: kid) }
    }

    private func fetch(kid: String) async throws(SignatureError) -> _RSA.Signing.PublicKey {
        let result = try? await withTimeLimit(fetchTimeout) { () async -> Result<_RSA.Signing.PublicKey, SignatureError> in
            do throws(SignatureError) { return .success(try await self.fetchFromPaths(kid: kid)) } catch { return .failure(error) }
        }
        guard let result else { throw .keyServiceUnavailable("JWK endpoint did not answer within \(fetchTimeout)") }
        return try result.get()
    }

    /// The gateway path first, the legacy path when the gateway path does not have the key: a
    /// 404, or another 4xx (an API gateway answers 403 or 400 for a path it does not route).
    /// The key is unknown only when every path answered 404.
    private func fetchFromPaths(kid: String) async throws(SignatureError) -> _RSA.Signing.PublicKey {
        var refused: UInt?
        for path in Self.paths {
            let url = baseURL + path.replacingOccurrences(of: "{kid}", with: kid)
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "accept", value: "application/json")
            let response: HTTPClientResponse
            let body: ByteBuffer
            do {
                response = try await httpClient.execute(request, timeout: .nanoseconds(Int64(fetchTimeout / .nanoseconds(1))))
                body = try await response.body.collect(upTo: 64 * 1024)
            } catch {
                throw .keyServiceUnavailable("JWK request failed: \(ChatGatewayClient.describe(error))")
            }
            switch response.status.code {
            case 200:
                return try Self.publicKey(fromJWK: body, kid: kid)
            case 404:
                continue
            case 400..<500:
                refused = refused ?? response.status.code
            default:
                throw .keyServiceUnavailable("JWK endpoint answered \(response.status.code)")
            }
        }
        if let refused { throw .keyServiceUnavailable("JWK endpoint answered \(refused)") }
        throw .unknownKey(kid: kid)
    }

    struct JWK: Decodable {
        var kty: String?
        var kid: String?
        var n: String?
        var e: String?
    }

    static func publicKey(fromJWK body: ByteBuffer, kid: String) throws(SignatureError) -> _RSA.Signing.PublicKey {
        guard let jwk = try? JSONDecoder().decode(JWK.self, from: Data(body.readableBytesView)) else {
            throw .keyServiceUnavailable("JWK endpoint answered something that is not a JWK")
        }
        guard jwk.kty == "RSA", let n = jwk.n.flatMap({ Base64URL.decode(Substring($0)) }), let e = jwk.e.flatMap({ Base64URL.decode(Substring($0)) }) else {
            throw .keyServiceUnavailable("JWK endpoint answered a key that is not RSA")
        }
        if let returned = jwk.kid, returned != kid { throw .unknownKey(kid: kid) }
        do {
            return try _RSA.Signing.PublicKey(n: n, e: e)
        } catch {
            throw .keyServiceUnavailable("JWK endpoint answered an unusable RSA key")
        }
    }
}
