import CRdKafka

/// Builds an `rd_kafka_conf_t` from string properties. An unknown property or an invalid value
/// fails here, at startup, with librdkafka's own message.
enum RdKafkaConfiguration {
    static func make(_ properties: [String: String]) throws(KafkaError) -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else {
            throw KafkaError(kind: .configuration, code: .invalidArgument, message: "rd_kafka_conf_new failed")
        }
        // Sorted so that the first error reported is stable.
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            var errstr = [CChar](repeating: 0, count: 512)
            let result = rd_kafka_conf_set(conf, key, value, &errstr, errstr.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let text = String(errorBuffer: errstr)
                throw KafkaError(kind: .configuration, code: .invalidArgument, message: text, isRetriable: false)
            }
        }
        return conf
    }

    /// Properties whose values must never reach a log.
    static func isSecret(_ key: String) -> Bool {
        let lowered = key.lowercased()
        return lowered.contains("password") || lowered.contains("secret") || lowered.hasSuffix(".key")
            || lowered.contains("sasl.jaas") || lowered.contains("oauthbearer.config")
    }
}

extension String {
    /// Reads librdkafka's NUL-terminated error buffer.
    init(errorBuffer: [CChar]) {
        self = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
