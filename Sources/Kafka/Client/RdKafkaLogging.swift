import CRdKafka
import Logging

/// State every librdkafka handle carries as its opaque: the logger its callbacks write to.
/// Subclasses add the producer's or consumer's own callback state.
class RdKafkaHandleContext: @unchecked Sendable {
    let logger: Logger
    init(logger: Logger) { self.logger = logger }
}

/// Installs librdkafka's log and error callbacks so its messages go through swift-log with the
/// client's logger instead of stderr. librdkafka never logs message payloads.
func installLogCallbacks(on conf: OpaquePointer) {
    rd_kafka_conf_set_log_cb(conf) { rk, level, facility, buffer in
        guard let rk, let opaque = rd_kafka_opaque(rk) else { return }
        let context = Unmanaged<RdKafkaHandleContext>.fromOpaque(opaque).takeUnretainedValue()
        let text = buffer.map { String(cString: $0) } ?? ""
        let facilityName = facility.map { String(cString: $0) } ?? ""
        let swiftLevel: Logger.Level
        switch level {
        case 0...3: swiftLevel = .error
        case 4: swiftLevel = .warning
        case 5, 6: swiftLevel = .info
        default: swiftLevel = .debug
        }
        context.logger.log(level: swiftLevel, "\(text)", metadata: ["kafka.facility": "\(facilityName)"])
    }
    rd_kafka_conf_set_error_cb(conf) { rk, err, reason, opaque in
        guard let opaque else { return }
        let context = Unmanaged<RdKafkaHandleContext>.fromOpaque(opaque).takeUnretainedValue()
        let code = KafkaErrorCode(rawValue: err)
        let text = reason.map { String(cString: $0) } ?? ""
        // Broker-down and transport errors are transient and retried by librdkafka itself.
        let level: Logger.Level = (err == RD_KAFKA_RESP_ERR__FATAL.rawValue) ? .critical : .warning
        context.logger.log(level: level, "librdkafka: \(text)", metadata: ["kafka.error": "\(code.name)"])
    }
}

/// Creates a librdkafka handle whose callbacks see `context` as their opaque and log through
/// its logger. `configure` adds the handle's own callbacks before creation.
func makeRdKafkaHandle(
    _ type: rd_kafka_type_t, properties: [String: String], context: RdKafkaHandleContext,
    errorKind: KafkaError.Kind = .configuration, configure: (OpaquePointer) -> Void = { _ in }
) throws(KafkaError) -> OpaquePointer {
    let conf = try RdKafkaConfiguration.make(properties)
    rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
    installLogCallbacks(on: conf)
    KafkaThreadScheduling.install(on: conf)
    configure(conf)
    var errstr = [CChar](repeating: 0, count: 512)
    guard let handle = rd_kafka_new(type, conf, &errstr, errstr.count) else {
        rd_kafka_conf_destroy(conf)
        throw KafkaError(kind: errorKind, code: .invalidArgument, message: String(errorBuffer: errstr), isRetriable: false)
    }
    return handle
}
