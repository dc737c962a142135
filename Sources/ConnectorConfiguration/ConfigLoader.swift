public import Foundation
import Yams
public import ChatEvents

/// A configuration problem, worded for the operator: where it is and what to do.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension ConnectorConfig {
    /// Reads, interpolates (`${VAR}`, `${VAR:-default}`), decodes and validates a YAML file.
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ConnectorConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError("\(path): cannot read the configuration file")
        }
        return try parse(String(decoding: data, as: UTF8.self), source: path, environment: environment)
    }

    /// `${...}` is replaced in the parsed values, not in the text: a value from the environment
    /// (a generated password starting with `*`, holding `: ` or ` #`) is taken as it is,
    /// never read as YAML, and a YAML error never quotes it.
    public static func parse(_ yaml: String, source: String = "configuration", environment: [String: String] = [:]) throws -> ConnectorConfig {
        let text: String
        do {
            let (marked, expressions) = markExpressions(yaml)
            let document = try Yams.compose(yaml: marked)
            if let document { try checkDuplicateKeys(document, source: source) }
            text = try document.map {
                try Yams.serialize(node: interpolate($0, expressions: expressions, source: source, environment: environment))
            } ?? ""
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError("\(source): not valid YAML: \(describe(yaml: error))")
        }
        let tree: Any?
        do {
            tree = try Yams.load(yaml: text)
        } catch {
            throw ConfigurationError("\(source): not valid YAML: \(describe(yaml: error))")
        }
        if let tree { try checkKeys(tree, source: source) }
        let config: ConnectorConfig
        do {
            config = try YAMLDecoder().decode(ConnectorConfig.self, from: text.isEmpty ? "{}" : text)
        } catch let error as DecodingError {
            throw ConfigurationError("\(source): \(describe(error))")
        }
        try config.validate(source: source)
        return config
    }

    /// Each `${...}` of the text replaced by a marker YAML reads as plain text anywhere (in a
    /// flow mapping too), with the expression each marker stands for.
    static func markExpressions(_ text: String) -> (text: String, expressions: [String: String]) {
        var result = ""
        var expressions: [String: String] = [:]
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            // On its line only: a lone `${` (in a comment, say) is left as it is.
            let line = rest[start.upperBound...].prefix { !$0.isNewline }
            guard let end = line.firstIndex(of: "}") else {
                result += rest[..<start.upperBound]
                rest = rest[start.upperBound...]
                continue
            }
            let marker = "zzConnectorEnv\(expressions.count)zz"
            result += rest[..<start.lowerBound] + marker
            expressions[marker] = String(rest[start.lowerBound...end])
            rest = rest[rest.index(after: end)...]
        }
        return (result + rest, expressions)
    }

    /// Replaces the markers of `${NAME}` and `${NAME:-default}` in every scalar of the document
    /// (those in comments are gone by then). A variable that is unset and has no default is an
    /// error naming the variable (never its value). A quoted scalar stays quoted; a plain one is
    /// typed by what it became (`${PORT}` can be a number).
    static func interpolate(_ node: Node, expressions: [String: String], source: String, environment: [String: String]) throws -> Node {
        func each(_ node: Node) throws -> Node {
            try interpolate(node, expressions: expressions, source: source, environment: environment)
        }
        switch node {
        case .scalar(var scalar):
            var text = scalar.string
            for (marker, expression) in expressions where text.contains(marker) {
                text = text.replacingOccurrences(of: marker, with: expression)
            }
            guard text.contains("${") else { return node }
            let quoted = scalar.style == .singleQuoted || scalar.style == .doubleQuoted
            let value = try interpolateValues(text, source: source, environment: environment)
            // A plain value that came out empty is no value, as it was when written so.
            scalar.string = value.isEmpty && !quoted ? "~" : value
            scalar.style = quoted ? .doubleQuoted : value.isEmpty ? .plain : .any
            return .scalar(scalar)
        case .mapping(let mapping):
            return .mapping(Node.Mapping(try mapping.map { (try each($0.key), try each($0.value)) }, mapping.tag, mapping.style, mapping.mark))
        case .sequence(let sequence):
            return .sequence(Node.Sequence(try sequence.map(each), sequence.tag, sequence.style, sequence.mark))
        }
    }

    /// YAML allows no key twice in a mapping, but Yams keeps the last one: a second `endpoints:`
    /// pasted at the end of the file would drop the first one's bots without a word.
    static func checkDuplicateKeys(_ node: Node, source: String) throws {
        switch node {
        case .mapping(let mapping):
            var seen = Set<String>()
            for (key, value) in mapping {
                if let name = key.string, !seen.insert(name).inserted {
                    let line = key.mark.map { "line \($0.line): " } ?? ""
                    throw ConfigurationError("\(source): \(line)key '\(LogSafe.text(name, maxBytes: 80))' appears twice in one mapping")
                }
                try checkDuplicateKeys(value, source: source)
            }
        case .sequence(let sequence):
            for item in sequence { try checkDuplicateKeys(item, source: source) }
        case .scalar:
            break
        }
    }

    /// Where and what, without the excerpt of the text a YAML error carries.
    static func describe(yaml error: any Error) -> String {
        switch error as? YamlError {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            return "line \(mark.line), column \(mark.column): \(problem)" + (context.map { " (\($0.text))" } ?? "")
        case .reader(let problem, _, _, _):
            return problem
        default:
            return "the text cannot be read as YAML"
        }
    }

    static func interpolateValues(_ text: String, source: String, environment: [String: String]) throws -> String {
        var result = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            result += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw ConfigurationError("\(source): unterminated ${ in the configuration")
            }
            let expression = rest[start.upperBound..<end]
            let name: Substring
            let fallback: Substring?
            if let separator = expression.range(of: ":-") {
                name = expression[..<separator.lowerBound]
                fallback = expression[separator.upperBound...]
                // `${A:-${B}}` (a compose form) or a default with braces would end at its first
                // `}` and leave a wrong value: only `${NAME}` and `${NAME:-text}` are read, the
                // text without braces.
                if fallback!.contains("{") {
                    throw ConfigurationError("\(source): the default of ${\(name):-...} may not hold '{' (nested defaults are not supported)")
                }
            } else {
                name = expression
                fallback = nil
            }
            if let value = environment[String(name)], !value.isEmpty {
                // A secret read from a file (a Kubernetes secret) usually ends in a line break
                // that is not part of it.
                result += value.trimmingSuffix(while: \.isNewline)
            } else if let fallback {
                result += fallback
            } else {
                throw ConfigurationError("\(source): environment variable \(name) is not set")
            }
            rest = rest[rest.index(after: end)...]
        }
        result += rest
        return result
    }

    private static let knownKeys: [String: Set<String>] = [
        "": Set(CodingKeys.allCases.map(\.rawValue)),
        "kafka": Set(KafkaSettings.CodingKeys.allCases.map(\.rawValue)),
        "ingress": Set(IngressSettings.CodingKeys.allCases.map(\.rawValue)),
        "ingress.signature": Set(SignatureSettings.CodingKeys.allCases.map(\.rawValue)),
        "worker": Set(WorkerSettings.CodingKeys.allCases.map(\.rawValue)),
        "egress": Set(EgressSettings.CodingKeys.allCases.map(\.rawValue)),
        "egress.rateLimit": Set(RateLimitSettings.CodingKeys.allCases.map(\.rawValue)),
        "egress.retry": Set(RetrySettings.CodingKeys.allCases.map(\.rawValue)),
        "endpoints[].handover": Set(HandoverSettings.CodingKeys.allCases.map(\.rawValue)),
        "endpoints[].dataProtection": Set(DataProtectionSettings.CodingKeys.allCases.map(\.rawValue)),
        "endpoints[]": Set(EndpointSettings.CodingKeys.allCases.map(\.rawValue)),
        "endpoints[].eightByEight": Set(EightByEightSettings.CodingKeys.allCases.map(\.rawValue)),
        "endpoints[].session": ["ttlMinutes"],
        "endpoints[].dataProtection.customRecognizers[]": ["type", "pattern", "validator", "contextWords"],
    ]

    /// Unknown keys are typos more often than not: reject them with their path.
    private static func checkKeys(_ node: Any, path: String = "", source: String) throws {
        guard let known = knownKeys[path] else { return }
        guard let map = node as? [String: Any] else {
            throw ConfigurationError("\(source): \(path.isEmpty ? "the document" : path) must be a mapping")
        }
        for (key, value) in map {
            guard known.contains(key) else {
                throw ConfigurationError("\(source): unknown key '\(path.isEmpty ? key : path + "." + key)'")
            }
            let childPath = path.isEmpty ? key : "\(path).\(key)"
            // A list whose items are mappings with known keys (endpoints, custom recognizers).
            if let list = value as? [Any], knownKeys[childPath + "[]"] != nil {
                for item in list { try checkKeys(item, path: childPath + "[]", source: source) }
            } else {
                try checkKeys(value, path: childPath, source: source)
            }
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
                .replacingOccurrences(of: ".[", with: "[").trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = path(context)
            return "\(parent.isEmpty ? "" : parent + ".")\(key.stringValue) is required"
        case .typeMismatch(let type, let context):
            return "\(path(context)) must be \(type == String.self ? "a string" : type == Int.self ? "a whole number" : type == Bool.self ? "true or false" : "\(type)")"
        case .valueNotFound(_, let context):
            return "\(path(context)) must not be empty"
        case .dataCorrupted(let context):
            return "\(path(context)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    /// Checks values that decode but cannot work.
    public func validate(source: String = "configuration") throws {
        func fail(_ message: String) -> ConfigurationError { ConfigurationError("\(source): \(message)") }
        if kafka.brokers.trimmingCharacters(in: .whitespaces).isEmpty { throw fail("kafka.brokers is empty (use \"embedded\" or host:port,...)") }
        if !(1...10_000).contains(kafka.partitions) { throw fail("kafka.partitions must be between 1 and 10000") }
        // The properties the services' guarantees rest on are the connector's to set: a pasted
        // `enable.auto.offset.store: true` would commit before processing, a `group.id` would
        // put worker and egress in one group.
        for (key, rule) in Self.reservedProperties {
            guard let value = kafka.properties[key], !rule.allowed.contains(value.lowercased()) else { continue }
            throw fail("kafka.properties.\(key) is set by the connector\(rule.instead.map { " (use \($0))" } ?? "")")
        }
        if !(1...32).contains(kafka.replicationFactor) { throw fail("kafka.replicationFactor must be between 1 and 32") }
        if !(100...3_600_000).contains(kafka.lagIntervalMs) { throw fail("kafka.lagIntervalMs must be between 100 and 3600000") }
        if ingress.maxBodyBytes < 1 { throw fail("ingress.maxBodyBytes must be positive") }
        if ingress.signature.maxClockSkewSeconds < 0 { throw fail("ingress.signature.maxClockSkewSeconds must not be negative") }
        if ingress.listenAddress == nil { throw fail("ingress.listen must be host:port, e.g. 0.0.0.0:8080") }
        if worker.listenAddress == nil { throw fail("worker.listen must be host:port, e.g. 0.0.0.0:8081") }
        if !(1...10_000).contains(worker.maxInFlightPerPartition) { throw fail("worker.maxInFlightPerPartition must be between 1 and 10000") }
        if !(0...1_000).contains(worker.lingerMs) { throw fail("worker.lingerMs must be between 0 and 1000") }
        if egress.listenAddress == nil { throw fail("egress.listen must be host:port, e.g. 0.0.0.0:8082") }
        if !(1...10_000).contains(egress.maxInFlight) { throw fail("egress.maxInFlight must be between 1 and 10000") }
        if !(1...10_000).contains(egress.maxConcurrentConversations) { throw fail("egress.maxConcurrentConversations must be between 1 and 10000") }
        if !(1...100_000).contains(egress.maxBufferedPerPartition) { throw fail("egress.maxBufferedPerPartition must be between 1 and 100000") }
        if !(1...600_000).contains(egress.requestTimeoutMs) { throw fail("egress.requestTimeoutMs must be between 1 and 600000") }
        if !(1...600_000).contains(egress.connectTimeoutMs) { throw fail("egress.connectTimeoutMs must be between 1 and 600000") }
        if !(0.001...100_000).contains(egress.rateLimit.requestsPerSecond) { throw fail("egress.rateLimit.requestsPerSecond must be between 0.001 and 100000") }
        if !(1...100_000).contains(egress.rateLimit.burst) { throw fail("egress.rateLimit.burst must be between 1 and 100000") }
        if !(1...100).contains(egress.retry.maxAttempts) { throw fail("egress.retry.maxAttempts must be between 1 and 100") }
        if !(1...604_800).contains(egress.retry.maxAgeSeconds) { throw fail("egress.retry.maxAgeSeconds must be between 1 and 604800 (a week)") }
        if egress.retry.baseBackoffMs < 1 || egress.retry.maxBackoffMs < egress.retry.baseBackoffMs {
            throw fail("egress.retry.baseBackoffMs must be positive and at most egress.retry.maxBackoffMs")
        }
        if egress.retry.maxBackoffMs > 3_600_000 { throw fail("egress.retry.maxBackoffMs must be at most 3600000 (an hour)") }
        if egress.dedupeWindow < 0 { throw fail("egress.dedupeWindow must not be negative") }
        // A command writes two results (attempting, then its end), and a new owner starts from
        // the committed offset, up to maxBufferedPerPartition commands back: a smaller window
        // would not see every finished one, and send it again.
        if egress.dedupeWindow > 0, egress.dedupeWindow < 2 * egress.maxBufferedPerPartition {
            throw fail("egress.dedupeWindow must be 0 (off) or at least twice egress.maxBufferedPerPartition (\(2 * egress.maxBufferedPerPartition))")
        }
        if !(1...600_000).contains(ingress.publishTimeoutMs) { throw fail("ingress.publishTimeoutMs must be between 1 and 600000") }
        if ingress.signature.maxClockSkewSeconds > 86_400 { throw fail("ingress.signature.maxClockSkewSeconds must be at most 86400") }
        if ingress.signature.jwkCacheTTLSeconds > 30 * 86_400 { throw fail("ingress.signature.jwkCacheTTLSeconds must be at most 2592000 (30 days)") }
        if ingress.signature.jwkFetchTimeoutMs > 600_000 { throw fail("ingress.signature.jwkFetchTimeoutMs must be at most 600000") }
        // The tables take their full size at start (a set and a ring of 16-byte hashes).
        if !(0...10_000_000).contains(ingress.dedupeCapacity) { throw fail("ingress.dedupeCapacity must be between 0 and 10000000") }
        if !(0...1_000).contains(ingress.lingerMs) { throw fail("ingress.lingerMs must be between 0 and 1000") }
        if !(0...86_400).contains(ingress.idleTimeoutSeconds) { throw fail("ingress.idleTimeoutSeconds must be between 0 and 86400") }
        if ingress.signature.jwkCacheTTLSeconds < 0 { throw fail("ingress.signature.jwkCacheTTLSeconds must not be negative") }
        if ingress.signature.jwkFetchTimeoutMs < 1 { throw fail("ingress.signature.jwkFetchTimeoutMs must be positive") }
        if ingress.maxBodyBytes > 64 * 1_048_576 { throw fail("ingress.maxBodyBytes must be at most 67108864") }
        // Also when signatures are not required: a webhook that is signed (8x8's always are) is
        // checked, and a key service that cannot be reached would answer each one 503.
        if WebAddress.parse(ingress.signature.jwkBaseURL) == nil {
            throw fail("ingress.signature.jwkBaseURL must be an http or https URL, e.g. https://api.8x8.com")
        }
        var names = Set<String>()
        var tokens = Set<String>()
        for endpoint in endpoints {
            let label = "endpoint '\(endpoint.name)'"
            if endpoint.name.isEmpty { throw fail("an endpoint has an empty name") }
            if !names.insert(endpoint.name).inserted { throw fail("\(label) is defined twice") }
            if endpoint.urlToken.count < 8 { throw fail("\(label): urlToken must have at least 8 characters (it is the webhook's secret path)") }
            // ASCII only: a path is matched as 8x8 sends it, percent-encoded.
            if !endpoint.urlToken.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x2D || $0 == 0x5F }) {
                throw fail("\(label): urlToken may contain only ASCII letters, digits, '-' and '_'")
            }
            if !tokens.insert(endpoint.urlToken).inserted { throw fail("\(label): urlToken is used by another endpoint") }
            if endpoint.eightByEight.apiKey.isEmpty { throw fail("\(label): eightByEight.apiKey is empty") }
            // Header values: a control character (a YAML block's line break) would make the HTTP
            // client refuse every call, with the value in its error.
            for (key, value) in [("apiKey", endpoint.eightByEight.apiKey.value), ("tenant", endpoint.eightByEight.tenant ?? "")]
            where value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                throw fail("\(label): eightByEight.\(key) contains a control character (a line break from a YAML block scalar?)")
            }
            if WebAddress.parse(endpoint.eightByEight.baseURL) == nil { throw fail("\(label): eightByEight.baseURL must be an http or https URL, e.g. https://api.8x8.com") }
            if let ttl = endpoint.session?.ttlMinutes, !(0...525_600).contains(ttl) {
                throw fail("\(label): session.ttlMinutes must be between 0 (never) and 525600 (a year)")
            }
            if let protection = endpoint.dataProtection {
                if let mode = protection.mode, !["entities", "fields"].contains(mode) { throw fail("\(label): dataProtection.mode must be entities or fields") }
                if let op = protection.operator, !["mask", "replace", "hash"].contains(op) { throw fail("\(label): dataProtection.operator must be mask, replace or hash") }
                if protection.operator == "hash", (protection.hashKey?.value.utf8.count ?? 0) < 16 { throw fail("\(label): dataProtection.operator hash needs dataProtection.hashKey of at least 16 bytes") }
                if let entities = protection.entities, entities.isEmpty { throw fail("\(label): dataProtection.entities is empty (leave it out to look for all)") }
                if let character = protection.maskCharacter, character.count != 1 { throw fail("\(label): dataProtection.maskCharacter must be one character") }
                if let keep = protection.keepLast, !(0...8).contains(keep) { throw fail("\(label): dataProtection.keepLast must be 0 to 8") }
                for recognizer in protection.customRecognizers ?? [] {
                    if (try? NSRegularExpression(pattern: recognizer.pattern)) == nil {
                        throw fail("\(label): custom recognizer \(recognizer.type): invalid pattern")
                    }
                    if let validator = recognizer.validator, !["none", "luhn", "mod97"].contains(validator) {
                        throw fail("\(label): custom recognizer \(recognizer.type): validator must be none, luhn or mod97")
                    }
                }
            }
            if let minutes = endpoint.handover?.maxTotalMinutes, !(20...600).contains(minutes) { throw fail("\(label): handover.maxTotalMinutes must be 20 to 600") }
            if let minutes = endpoint.handover?.userTimeoutInMinutes, !(10...300).contains(minutes) { throw fail("\(label): handover.userTimeoutInMinutes must be 10 to 300") }
        }
    }

    /// librdkafka properties the services set themselves: the values that may be written all
    /// the same (the connector's own), and the key to use instead.
    static let reservedProperties: [(String, (allowed: Set<String>, instead: String?))] = [
        // With librdkafka's other names for them (set later, an alias would win).
        ("bootstrap.servers", ([], "kafka.brokers")), ("metadata.broker.list", ([], "kafka.brokers")), ("group.id", ([], "kafka.groupPrefix")),
        ("transactional.id", ([], "worker.transactionalId")), ("isolation.level", ([], nil)), ("partitioner", ([], nil)),
        ("enable.auto.commit", (["true"], nil)), ("enable.auto.offset.store", (["false"], nil)),
        ("enable.partition.eof", (["false"], nil)), ("enable.idempotence", (["true"], nil)), ("acks", (["all", "-1"], nil)),
        ("request.required.acks", (["all", "-1"], nil)),
    ]

    /// The topic name with this deployment's prefix.
    public func topicName(_ topic: ConnectorTopic) -> String { topic.name(prefix: kafka.topicPrefix) }

    /// The consumer group with this deployment's `kafka.groupPrefix`: deployments that share a
    /// cluster keep their groups (and rebalances) apart.
    public func groupName(_ group: ConnectorConsumerGroup) -> String { kafka.groupPrefix + group.rawValue }
}


extension String {
    /// Without the trailing characters that match.
    func trimmingSuffix(while predicate: (Character) -> Bool) -> String {
        var end = endIndex
        while end > startIndex, predicate(self[index(before: end)]) { end = index(before: end) }
        return String(self[..<end])
    }
}
