// What one acknowledged Kafka write costs when few are in flight, as in the ingress: a closed
// loop of `concurrency` messages, each sent again from an event loop as soon as its delivery
// report arrives, optionally after burning `work` µs of CPU there (standing in for the rest of
// a webhook). Reports the process's CPU time and context switches per message, the mock broker
// included, with delivery reports served by the producer's polling thread or by polls
// scheduled on an event loop (`KafkaCallbackExecution.scheduled`, what the ingress uses).
//
//   swift build -c release --product KafkaRoundTripBenchmark
//   .build/release/KafkaRoundTripBenchmark [--concurrency 1] [--work 0] [--seconds 4] [--partitions 6] [--reports thread|loop] [--properties name=value,...]
import Foundation
import Glibc
import Kafka
import Logging
import NIOCore
import NIOPosix
import Synchronization

struct Options {
    var concurrency = 1
    var work = 0
    var seconds = 4.0
    var partitions: Int32 = 6
    var reports = "loop"
    /// librdkafka properties for the producer, `name=value,...`.
    var properties: [String: String] = [:]

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let flag = iterator.next() {
            guard let value = iterator.next() else { fatalError("\(flag) needs a value") }
            switch flag {
            case "--concurrency": concurrency = Int(value)!
            case "--work": work = Int(value)!
            case "--seconds": seconds = Double(value)!
            case "--partitions": partitions = Int32(value)!
            case "--reports": reports = value
            case "--properties":
                for pair in value.split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    properties[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
                }
            default: fatalError("unknown option \(flag)")
            }
        }
    }
}

/// Process CPU seconds (user + system) and context switches so far.
func usage() -> (cpu: Double, switches: Int) {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    let cpu = Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
    return (cpu, u.ru_nvcsw + u.ru_nivcsw)
}

final class Loop: Sendable {
    let producer: KafkaProducer
    let work: UInt64
    let value = [UInt8](repeating: UInt8(ascii: "x"), count: 1400)
    let delivered = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    let sent = Atomic<Int>(0)
    let running = Atomic<Bool>(true)

    init(producer: KafkaProducer, workMicroseconds: Int) {
        self.producer = producer
        self.work = UInt64(workMicroseconds) * 1000
    }

    func send(on loop: any EventLoop) {
        guard running.load(ordering: .relaxed) else { return }
        let n = sent.add(1, ordering: .relaxed).newValue
        let message = KafkaProducerMessage(topic: "round-trip", key: Array("conversation-\(n % 1000)".utf8), value: value)
        do {
            try producer.send(message) { [self] result in
                if case .success = result { delivered.add(1, ordering: .relaxed) } else { failed.add(1, ordering: .relaxed) }
                let next = { [self] in
                    if work > 0 {
                        let end = DispatchTime.now().uptimeNanoseconds + work
                        while DispatchTime.now().uptimeNanoseconds < end {}
                    }
                    send(on: loop)
                }
                if loop.inEventLoop { next() } else { loop.execute(next) }
            }
        } catch {
            failed.add(1, ordering: .relaxed)
        }
    }
}

@main
struct KafkaRoundTripBenchmark {
    static func main() async throws {
        let options = Options(CommandLine.arguments)
        var logger = Logger(label: "round-trip")
        logger.logLevel = .error
        let cluster = try EmbeddedKafkaCluster(logger: logger)
        try cluster.createTopic("round-trip", partitions: options.partitions)
        let group = MultiThreadedEventLoopGroup.singleton
        var configuration = KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers)
        configuration.lingerMilliseconds = 0
        configuration.properties = options.properties
        if options.reports == "loop" {
            let reportLoop = group.next()
            configuration.callbacks = .scheduled { reportLoop.execute($0) }
        }
        let producer = try KafkaProducer(configuration: configuration, logger: logger)
        let loop = Loop(producer: producer, workMicroseconds: options.work)
        for _ in 0..<options.concurrency {
            let eventLoop = group.next()
            eventLoop.execute { loop.send(on: eventLoop) }
        }
        try await Task.sleep(for: .seconds(1.5))  // connections, metadata, the producer id

        let (cpu0, switches0) = usage()
        let count0 = loop.delivered.load(ordering: .relaxed)
        let started = ContinuousClock.now
        try await Task.sleep(for: .seconds(options.seconds))
        let (cpu1, switches1) = usage()
        let count1 = loop.delivered.load(ordering: .relaxed)
        let elapsed = ContinuousClock.now - started
        loop.running.store(false, ordering: .relaxed)

        let messages = Double(count1 - count0)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(String(
            format: "reports on %@, %d in flight, %d µs work: %.0f messages/s; per message %.1f µs CPU besides the work, %.2f context switches; %.2f cores busy; %d failed",
            options.reports == "loop" ? "an event loop" : "the polling thread", options.concurrency, options.work,
            messages / seconds, (cpu1 - cpu0) / messages * 1e6 - Double(options.work), Double(switches1 - switches0) / messages,
            (cpu1 - cpu0) / seconds, loop.failed.load(ordering: .relaxed)
        ))
        await producer.shutdown()
    }
}
