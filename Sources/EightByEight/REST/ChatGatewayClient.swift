public import AsyncHTTPClient
public import ChatEvents
import Foundation
import NIOCore
import NIOPosix
import NIOHTTP1
import NIOSSL

/// One call to the Chat Gateway REST API.
public struct ChatGatewayRequest: Sendable, Hashable {
    public var method: String
    /// The path below the base URL, e.g. `/chat-gateway/v1/conversations/ID/messages`.
    public var path: String
    public var body: [UInt8]?
    public var contentType: String

    public init(method: String, path: String, body: [UInt8]?, contentType: String = "application/json") {
        self.method = method
        self.path = path
        self.body = body
        self.contentType = contentType
    }

    static func conversationPath(_ id: String, _ suffix: String = "") -> String {
        let allowed = CharacterSet.urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))
        return "/chat-gateway/v1/conversations/\(id.addingPercentEncoding(withAllowedCharacters: allowed) ?? id)\(suffix)"
    }

    static func json(_ value: JSONValue) -> [UInt8] {
        var writer = JSONWriter(capacity: 256)
        writer.value(value)
        return writer.bytes
    }

    /// The request for a command; nil for `sendAttachment`, which takes several calls
    /// (`ChatGatewayClient.deliver`).
    public init?(command: OutboundCommand) {
        let id = command.conversationId
        switch command.action {
        case .sendMessage: self.init(method: "POST", path: Self.conversationPath(id, "/messages"), body: Self.json(command.body))
        case .typing: self.init(method: "POST", path: Self.conversationPath(id, "/typing"), body: Self.json(command.body))
        case .thinking: self.init(method: "POST", path: Self.conversationPath(id, "/thinking"), body: Self.json(command.body))
        case .patchConversation: self.init(method: "PATCH", path: Self.conversationPath(id), body: Self.json(command.body))
        case .endConversation: self.init(method: "PATCH", path: Self.conversationPath(id, "/participants/user"), body: Self.json(command.body))
        case .postAgentAssignment: self.init(method: "POST", path: Self.conversationPath(id, "/post-agent-assignment"), body: Self.json(command.body))
        case .createConversation: self.init(method: "POST", path: "/chat-gateway/v1/conversations", body: Self.json(command.body))
        case .sendAttachment: return nil
        }
    }
}

/// What 8x8 answered.
public struct ChatGatewayResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
    public var json: JSONValue? { body.isEmpty ? nil : try? JSONParser.parse(body) }
}

/// Why a call failed, with what the retry policy needs.
public enum ChatGatewayError: Error, Sendable, CustomStringConvertible {
    /// 8x8 answered with an error status; `problem` is its problem+json (or gateway fault)
    /// read leniently, `retryAfter` its Retry-After header.
    case status(Int, problem: Problem?, retryAfter: Duration?)
    /// No answer: connection refused or reset. `reachedServer` is false when the request
    /// provably never got there (connect failure).
    case transport(String, reachedServer: Bool)
    /// No answer within the request timeout: the request reached 8x8, which may still be
    /// working on it.
    case timedOut(after: Duration)
    /// The command cannot be delivered as it is (an attachment without a URL, or one that is
    /// not http or https): nothing was sent, and trying again changes nothing.
    case invalid(String)

    public struct Problem: Sendable, Hashable {
        public var message: String?
        public var code: String?
        public var referenceId: String?

        /// 8x8's problem+json (`errors` as an array or an object) or an API gateway fault.
        public init?(body: [UInt8]) {
            guard let json = try? JSONParser.parse(body), json.objectValue != nil else { return nil }
            if let fault = json["fault"] {
                message = fault["faultstring"]?.stringValue
                code = fault["detail"]?["errorcode"]?.stringValue
                referenceId = nil
                return
            }
            message = json["message"]?.stringValue ?? json["title"]?.stringValue ?? json["detail"]?.stringValue
            let errors = json["errors"]
            code = errors?.arrayValue?.first?["code"]?.stringValue ?? errors?["code"]?.stringValue
            referenceId = json["referenceId"]?.stringValue
        }
    }

    /// The request may have taken effect at 8x8 although the call failed: no answer after it
    /// was sent, or a 5xx other than 502 and 503 (a server failing after it wrote, a gateway
    /// timing out while 8x8 went on). A 502 or 503 says the request was not handled (spec 5.5).
    public var mayHaveTakenEffect: Bool {
        switch self {
        case .status(let status, _, _): (500...599).contains(status) && status != 502 && status != 503
        case .transport(_, let reachedServer): reachedServer
        case .timedOut: true
        case .invalid: false
        }
    }

    /// How long a request that may have taken effect may still be running at 8x8: the timeout
    /// it ran into (ours, or for a 504 the gateway's, taken as `requestTimeout`); nil when it
    /// ended there.
    public func mayStillBeRunning(requestTimeout: Duration) -> Duration? {
        switch self {
        case .timedOut(let timeout): timeout
        case .status(504, _, _): requestTimeout
        case .status, .transport, .invalid: nil
        }
    }

    /// What failed, without 8x8's problem message (which may quote what was sent): for logs.
    public var summary: String {
        switch self {
        case .status(let status, let problem, _): "8x8 answered \(status)" + (problem?.code.map { " (\(LogSafe.text($0, maxBytes: 64)))" } ?? "")
        case .transport, .timedOut, .invalid: description
        }
    }

    public var statusCode: Int? {
        if case .status(let status, _, _) = self { return status }
        return nil
    }

    public var description: String {
        switch self {
        case .status(let status, let problem, _):
            "8x8 answered \(status)" + (problem.map { ": \($0.code ?? "")\($0.message.map { " \($0)" } ?? "")" } ?? "")
        case .transport(let reason, _): "no answer from 8x8: \(reason)"
        case .timedOut(let timeout): "no answer from 8x8 within \(timeout)"
        case .invalid(let reason): reason
        }
    }
}

/// The Chat Gateway REST client: `x-api-key` and `X-8x8-Tenant` from the endpoint's settings,
/// a bound on each whole request (the HTTP client's own connect timeout bounds the connect).
public struct ChatGatewayClient: Sendable {
    public let baseURL: String
    let apiKey: String
    let downloadClient: HTTPClient
    public let tenant: String?
    let httpClient: HTTPClient
    public let requestTimeout: Duration

    /// `downloadClient` fetches attachments' files (redirects allowed); `httpClient` calls 8x8.
    public init(
        baseURL: String, apiKey: String, tenant: String?, httpClient: HTTPClient = .shared, downloadClient: HTTPClient? = nil,
        requestTimeout: Duration = .seconds(10)
    ) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
        self.tenant = tenant
        self.httpClient = httpClient
        self.downloadClient = downloadClient ?? httpClient
        self.requestTimeout = requestTimeout
    }

    /// The header that carries the command id to 8x8 (which ignores it) and to the simulator
    /// (which counts deliveries by it).
    public static let commandIdHeader = "X-Connector-Command-Id"

    public func send(_ call: ChatGatewayRequest, commandId: String? = nil) async throws(ChatGatewayError) -> ChatGatewayResponse {
        var request = HTTPClientRequest(url: baseURL + call.path)
        request.method = HTTPMethod(rawValue: call.method)
        request.headers.add(name: "x-api-key", value: apiKey)
        if let commandId { request.headers.add(name: Self.commandIdHeader, value: commandId) }
        if let tenant { request.headers.add(name: "X-8x8-Tenant", value: tenant) }
        request.headers.add(name: "Accept", value: "application/hal+json, application/json")
        if let body = call.body {
            request.headers.add(name: "Content-Type", value: call.contentType)
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let answer: Answer
        do {
            // The whole call, body included, within the request timeout: AsyncHTTPClient's
            // deadline bounds it up to the answer's head (and says what happened: a refused
            // connection is not a timeout), the rest of it the body, so a connection that stalls
            // after the head cannot hold the conversation for ever.
            let deadline = ContinuousClock.now + requestTimeout
            let response = try await httpClient.execute(request, timeout: .nanoseconds(Int64(requestTimeout / .nanoseconds(1))))
            guard let body = try await withTimeLimit(Self.timeLeft(until: deadline), { try await response.body.collect(upTo: 4 << 20) }) else {
                throw HTTPClientError.deadlineExceeded
            }
            answer = Answer(status: response.status, headers: response.headers, body: body)
        } catch let error as HTTPClientError where error == .connectTimeout {
            throw .transport(Self.describe(error), reachedServer: false)
        } catch let error as HTTPClientError where error == .deadlineExceeded {
            throw .timedOut(after: requestTimeout)
        } catch {
            // A connection that was never made never carried the request; a reset or close
            // after it was made may have.
            throw .transport(Self.describe(error), reachedServer: !Self.isConnectFailure(error))
        }
        let bytes = Array(buffer: answer.body)
        let status = Int(answer.status.code)
        guard (200..<300).contains(status) else {
            let retryAfter = answer.headers.first(name: "retry-after").flatMap(Self.retryAfter)
            throw .status(status, problem: ChatGatewayError.Problem(body: bytes), retryAfter: retryAfter)
        }
        return ChatGatewayResponse(status: status, body: bytes)
    }

    /// What is left of a call's time for its body: at least a little, so that a body already
    /// in the buffers when the head came at the last moment is still read.
    static func timeLeft(until deadline: ContinuousClock.Instant) -> Duration {
        max(deadline - .now, .milliseconds(100))
    }

    /// An answer read whole.
    struct Answer: Sendable {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: ByteBuffer
    }

    /// An error for logs and dead letters. AsyncHTTPClient's own description carries its
    /// associated values, such as a header value it refused (the API key); its short one does not.
    public static func describe(_ error: any Error) -> String {
        (error as? HTTPClientError)?.shortDescription ?? "\(error)"
    }

    /// The connection was never made, so it never carried the request: a refused or timed-out
    /// connect, a TLS or proxy handshake that failed or timed out (AsyncHTTPClient fails a
    /// request that waited for a connection until its deadline with the last such error, or
    /// with "no connection from the pool in time").
    static func isConnectFailure(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let error = error as? HTTPClientError,
           [.connectTimeout, .socksHandshakeTimeout, .tlsHandshakeTimeout, .httpProxyHandshakeTimeout, .getConnectionFromPoolTimeout].contains(error) {
            return true
        }
        if let error = error as? NIOSSLError {
            switch error {
            case .handshakeFailed, .unableToValidateCertificate, .noCertificateToValidate, .cannotMatchULabel: return true
            default: return false  // after the handshake (an unclean shutdown): the request may have gone
            }
        }
        if let error = error as? NIOSSLExtraError,
           [.failedToValidateHostname, .serverHostnameImpossibleToMatch, .cannotUseIPAddressInSNI, .invalidSNIHostname].contains(error) {
            return true
        }
        if let error = error as? ChannelError, case .connectPending = error { return true }
        if let error = error as? IOError, [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH].contains(error.errnoCode) { return true }
        return false
    }

    /// Retry-After as seconds or an HTTP date.
    static func retryAfter(_ value: String) -> Duration? {
        if let seconds = Int(value.trimmingCharacters(in: .whitespaces)), seconds >= 0 { return .seconds(seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return .milliseconds(max(0, Int64(date.timeIntervalSinceNow * 1000)))
    }

    /// Delivers one command: one call, or for `sendAttachment` the download, the upload and
    /// the message with the attachment's id. `proceed` is asked before the upload and before
    /// the message: a caller that lost the command (its partition was revoked) stops there
    /// (`transport`, not reached), so a late copy cannot follow the next owner's.
    public func deliver(_ command: OutboundCommand, proceed: @Sendable () -> Bool = { true }) async throws(ChatGatewayError) -> ChatGatewayResponse {
        if let call = ChatGatewayRequest(command: command) { return try await send(call, commandId: command.commandId) }
        // sendAttachment
        guard let url = command.body["url"]?.stringValue else { throw .invalid("an attachment command without a url") }
        // Only web addresses: the client also speaks to unix sockets (`http+unix://`), which no
        // flow's attachment has a reason to reach.
        guard let parsed = WebAddress.parse(url) else {
            throw .invalid("the attachment's url is not an http or https address")
        }
        let file: [UInt8]
        var fileType = "application/octet-stream"
        do {
            let deadline = ContinuousClock.now + requestTimeout
            let response = try await downloadClient.execute(HTTPClientRequest(url: url), timeout: .nanoseconds(Int64(requestTimeout / .nanoseconds(1))))
            let status = Int(response.status.code)
            // A file that is not there (or not for us) stays so: given up at once. A server's
            // trouble (5xx, 408, 429) may pass: tried again.
            if (400..<500).contains(status), status != 408, status != 429 {
                throw ChatGatewayError.invalid("downloading the attachment answered \(status)")
            }
            guard (200..<300).contains(status) else {
                throw ChatGatewayError.transport("downloading the attachment answered \(status)", reachedServer: false)
            }
            if let type = response.headers.first(name: "content-type"), Self.isHeaderSafe(type), !type.isEmpty { fileType = type }
            let download: ByteBuffer?
            do {
                download = try await withTimeLimit(Self.timeLeft(until: deadline), { try await response.body.collect(upTo: Self.maxAttachmentBytes) })
            } catch is NIOTooManyBytesError {
                throw ChatGatewayError.invalid("the attachment is larger than \(Self.maxAttachmentBytes >> 20) MiB")
            }
            guard let download else {
                throw ChatGatewayError.transport("downloading the attachment took longer than \(requestTimeout)", reachedServer: false)
            }
            file = Array(buffer: download)
        } catch let error as ChatGatewayError {
            throw error
        } catch {
            throw .transport("downloading the attachment: \(Self.describe(error))", reachedServer: false)
        }
        guard proceed() else { throw .transport("stopped before the attachment's upload", reachedServer: false) }
        let name = Self.fileName(command.body["fileName"]?.stringValue ?? parsed.lastPathComponent)
        let boundary = "connector-\(command.commandId.hashValue.magnitude)"
        var multipart = [UInt8]()
        func append(_ text: String) { multipart += Array(text.utf8) }
        append("--\(boundary)\r\nContent-Disposition: form-data; name=\"authorType\"\r\n\r\nbot\r\n")
        append("--\(boundary)\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"\(name)\"\r\nContent-Type: \(fileType)\r\n\r\n")
        multipart += file
        append("\r\n--\(boundary)--\r\n")
        let upload = try await send(ChatGatewayRequest(
            method: "POST", path: ChatGatewayRequest.conversationPath(command.conversationId, "/attachments"), body: multipart,
            contentType: "multipart/form-data; boundary=\(boundary)"), commandId: command.commandId)
        guard let id = upload.json?["id"]?.stringValue else { throw .status(502, problem: nil, retryAfter: nil) }
        guard proceed() else { throw .transport("stopped before the attachment's message", reachedServer: false) }
        var message: [String: JSONValue] = ["authorType": .string("bot"), "attachments": .array([.object(["id": .string(id)])])]
        if let text = command.body["text"]?.stringValue, !text.isEmpty { message["text"] = .string(text) }
        return try await send(ChatGatewayRequest(
            method: "POST", path: ChatGatewayRequest.conversationPath(command.conversationId, "/messages"), body: ChatGatewayRequest.json(.object(message))),
            commandId: command.commandId)
    }

    static let maxAttachmentBytes = 25 << 20

    /// A file name for the upload's part header: no line breaks or other control characters
    /// (a user's text in the url could add header lines), no quotes or backslashes, no path;
    /// `attachment` when nothing is left.
    static func fileName(_ proposed: String?) -> String {
        let last = (proposed ?? "").split(separator: "/").last.map(String.init) ?? ""
        let cleaned = String(String.UnicodeScalarView(last.unicodeScalars.filter { scalar in
            scalar.properties.generalCategory != .control && scalar != "\"" && scalar != "\\"
        })).trimmingCharacters(in: .whitespaces)
        return cleaned.isEmpty || cleaned == "." || cleaned == ".." ? "attachment" : String(cleaned.prefix(200))
    }

    /// A header value without control characters.
    static func isHeaderSafe(_ value: String) -> Bool {
        !value.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// A message as 8x8 lists it (`MessageResult`).
    public struct ListedMessage: Sendable, Hashable {
        public var authorType: String?
        public var fingerprint: MessageFingerprint
        /// Milliseconds since 1970; nil when 8x8's value could not be read.
        public var createdAt: Int64?
    }

    /// The newest messages of a conversation, newest first.
    public func recentMessages(conversationId: String, count: Int = 20) async throws(ChatGatewayError) -> [ListedMessage] {
        let response = try await send(ChatGatewayRequest(
            method: "GET", path: ChatGatewayRequest.conversationPath(conversationId, "/messages") + "?sort=createdAt:desc&size=\(count)", body: nil))
        let messages = response.json?["_embedded"]?["messages"]?.arrayValue ?? []
        return messages.map { message in
            ListedMessage(
                authorType: message["author"]?["type"]?.stringValue,
                fingerprint: MessageFingerprint(
                    text: message["text"]?.stringValue ?? "", cards: message["cards"]?.arrayValue?.count ?? 0,
                    attachments: message["attachments"]?.arrayValue?.count ?? 0),
                createdAt: message["createdAt"].flatMap(Self.milliseconds))
        }
    }

    /// The conversation (`ConversationResult`).
    public func conversation(_ id: String) async throws(ChatGatewayError) -> JSONValue? {
        try await send(ChatGatewayRequest(method: "GET", path: ChatGatewayRequest.conversationPath(id), body: nil)).json
    }

    /// A time as 8x8 writes it: milliseconds since 1970 or an ISO 8601 date.
    static func milliseconds(_ value: JSONValue) -> Int64? {
        if case .number(let number) = value { return number.isFinite && abs(number) < 9.2e18 ? Int64(number) : nil }
        guard let text = value.stringValue else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return Int64(date.timeIntervalSince1970 * 1000) }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text).map { Int64($0.timeIntervalSince1970 * 1000) }
    }
}
