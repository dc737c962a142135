// Ingress benchmark: webhooks per second accepted end to end (signed by the simulator's key,
// verified, normalized, published to the embedded cluster and acknowledged), next to the same
// server answering a trivial 200 on the same port, then latency at a fixed request rate.
// The load comes from wrk (Debian's package) with `webhooks.lua`, which sends pre-signed
// webhooks, each once, and lookalikes of them, also each once, to the trivial endpoint.
// See BENCHMARKS.md.
//
//   swift build -c release --product IngressBenchmark
//   .build/release/IngressBenchmark [--duration 5] [--slices 3] [--rate 2000] [--rate-duration 10] [--threads 2] [--connections 32,128]
//   CONNECTOR_NIO_EXECUTOR=0 .build/release/IngressBenchmark    # Swift's default executor
//   CONNECTOR_EVENT_LOOPS=2 .build/release/IngressBenchmark     # as many event loops as cores
//   .build/release/IngressBenchmark --skip-capacity 1 --rate 2000    # only the fixed-rate runs
//   .build/release/IngressBenchmark --linger-ms 1      # librdkafka's linger instead of adaptive batching
//   .build/release/IngressBenchmark --skip-rate 1 --partitions 1 --properties linger.ms=1,enable.idempotence=false
//   .build/release/IngressBenchmark --bootstrap "$(cat bootstrap.txt)"   # after `connector broker --bootstrap-file bootstrap.txt`
import ChatEvents
import ConnectorConfiguration
import EightByEight
import Foundation
import Hummingbird
import IngressService
import Kafka
import Logging
import MemoryAllocator
import NIOCore
import NIOPosix
import Simulator

struct Options {
    /// Seconds of each wrk run.
    var duration = 5
    /// Trivial and ingress runs per connection count, alternating.
    var slices = 3
    /// Seconds of each fixed-rate run.
    var rateDuration = 10
    var rate = 2000
    var threads = 2
    /// Connection counts of the maximum-throughput runs, each with the trivial endpoint and
    /// then the ingress; the capacity of each is its best rate over them.
    var connections = [32, 128]
    var rateConnections = 16
    /// Unique webhooks per wrk thread for the maximum-throughput run; 0 sizes it from the trivial run.
    var requests = 0
    /// Skip the fixed-rate runs.
    var skipRate = 0
    /// Skip the maximum-throughput runs (only the warm-up and the fixed-rate runs).
    var skipCapacity = 0
    /// librdkafka properties for the ingress producer, `name=value,...` (default: the ingress's).
    var properties = ""
    /// `ingress.lingerMs`: 0 (the default) batches adaptively, above 0 is librdkafka's linger.
    var lingerMs = 0
    /// Partitions of the inbound topic.
    var partitions = 6
    /// Brokers of the embedded cluster.
    var brokers = 1
    /// An embedded cluster in another process (`connector broker`, whose topics have
    /// `partitions` partitions) instead of one in this process.
    var bootstrap = ""

    /// `properties` by name; each value split at its first `=`.
    var producerProperties: [String: String] {
        Dictionary(properties.split(separator: ",").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1)
            return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }) { _, last in last }
    }

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let flag = iterator.next() {
            if flag == "--properties" { properties = iterator.next() ?? ""; continue }
            if flag == "--bootstrap" { bootstrap = iterator.next() ?? ""; continue }
            if flag == "--connections" {
                connections = (iterator.next() ?? "").split(separator: ",").compactMap { Int($0) }
                if connections.isEmpty { fatalError("--connections needs numbers, e.g. 32,128") }
                continue
            }
            guard let value = iterator.next().flatMap(Int.init) else { fatalError("\(flag) needs a number") }
            switch flag {
            case "--duration": duration = value
            case "--slices": slices = max(1, value)
            case "--rate-duration": rateDuration = value
            case "--rate": rate = value
            case "--threads": threads = value
            case "--rate-connections": rateConnections = value
            case "--requests": requests = value
            case "--skip-rate": skipRate = value
            case "--skip-capacity": skipCapacity = value
            case "--partitions": partitions = value
            case "--linger-ms": lingerMs = value
            case "--brokers": brokers = value
            default: fatalError("unknown option \(flag)")
            }
        }
    }
}

struct WrkResult {
    var requests = 0
    /// CPU time of this process (servers and embedded cluster) and of wrk during the run.
    var serverCPU: Duration = .zero
    var wrkCPU: Duration = .zero
    /// Context switches of this process and of wrk during the run.
    var serverSwitches = 0
    var wrkSwitches = 0
    var perSecond = 0.0
    var non2xx = 0
    var socketErrors = ""
    var wrapped = 0
    var percentiles: [String: Double] = [:]  // "50%" -> milliseconds

    init(_ output: String) {
        for line in output.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if line.hasPrefix("Requests/sec:"), let value = fields.last.flatMap({ Double($0) }) { perSecond = value }
            if line.contains("requests in"), let value = fields.first.flatMap({ Int($0) }) { requests = value }
            if line.hasPrefix("Non-2xx or 3xx responses:"), let value = fields.last.flatMap({ Int($0) }) { non2xx = value }
            if line.hasPrefix("Socket errors:") { socketErrors = line }
            if line.hasPrefix("wrapped"), let value = fields.last.flatMap({ Int($0) }) { wrapped = value }
            if fields.count == 2, fields[0].hasSuffix("%"), let ms = Self.milliseconds(String(fields[1])) { percentiles[String(fields[0])] = ms }
        }
    }

    static func milliseconds(_ text: String) -> Double? {
        for (unit, factor) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60_000.0)] where text.hasSuffix(unit) {
            return Double(text.dropLast(unit.count)).map { $0 * factor }
        }
        return nil
    }
}

/// Runs wrk on a Dispatch thread: waiting for it must not hold a thread of the executor the
/// servers run on.
func runWrk(_ arguments: [String]) async throws -> (WrkResult, String) {
    try await onDispatch { try runWrkBlocking(arguments) }
}

/// Runs `work` on one of Dispatch's threads. Blocking work must not hold an event loop, and
/// CPU-bound work meant for every core must not queue on one: a task group's child tasks
/// run on the event loop that started them.
func onDispatch<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
    }
}

/// CPU time and context switches (voluntary and not) of this process or its waited-for children.
func usage(_ who: Int32) -> (cpu: Duration, switches: Int) {
    var usage = rusage()
    getrusage(__rusage_who_t(who), &usage)
    func duration(_ t: timeval) -> Duration { .seconds(t.tv_sec) + .microseconds(t.tv_usec) }
    return (duration(usage.ru_utime) + duration(usage.ru_stime), usage.ru_nvcsw + usage.ru_nivcsw)
}

func runWrkBlocking(_ arguments: [String]) throws -> (WrkResult, String) {
    let serverBefore = usage(RUSAGE_SELF.rawValue)
    let wrkBefore = usage(RUSAGE_CHILDREN.rawValue)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/wrk")
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    var result = WrkResult(text)
    let serverAfter = usage(RUSAGE_SELF.rawValue), wrkAfter = usage(RUSAGE_CHILDREN.rawValue)
    (result.serverCPU, result.serverSwitches) = (serverAfter.cpu - serverBefore.cpu, serverAfter.switches - serverBefore.switches)
    (result.wrkCPU, result.wrkSwitches) = (wrkAfter.cpu - wrkBefore.cpu, wrkAfter.switches - wrkBefore.switches)
    return (result, text)
}

/// Writes `perThread` webhooks for each wrk thread into `folder/requests-N.tsv`, on every core:
/// signed for the ingress, or, with `signed: false`, lookalikes for the trivial endpoint.
/// A lookalike has the same headers, body and sizes, and its own event id and signature like
/// a signed one, so wrk does the same work for either endpoint (its Lua part costs more for
/// strings it has not seen before); only its signature is not valid, which the trivial endpoint
/// does not check. Signing is slow (about 1 ms of a core each), lookalikes are not.
func presign(folder: URL, threads: Int, perThread: Int, signer: WebhookSigner, prefix: String, signed: Bool = true) async throws {
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let cores = ProcessInfo.processInfo.activeProcessorCount
    for thread in 1...threads {
        let chunks = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            let size = (perThread + cores - 1) / cores
            for chunk in 0..<cores {
                group.addTask { try await onDispatch {
                    var text = ""
                    let now = Int64(Date().timeIntervalSince1970 * 1000)
                    var model = ""
                    for i in (chunk * size)..<min(perThread, (chunk + 1) * size) {
                        let eventId = "\(prefix)-\(thread)-\(i)"
                        let body = #"{"eventType":"MESSAGE","conversationId":"conv-\#(i % 1000)","timestamp":\#(now),"data":{"isEcho":false,"sender":{"id":"user-\#(i % 1000)","type":"user"},"text":"Hello, I would like to know where my order is. Thanks!"}}"#
                        let headers = WebhookHeaders(tenantId: "bench-tenant", eventId: eventId, transmissionTime: String(now), retry: "0", customerId: "bench-customer")
                        let signature: String
                        if signed {
                            signature = try signer.signature(body: Array(body.utf8), headers: headers)
                        } else {
                            if model.isEmpty { model = try signer.signature(body: Array(body.utf8), headers: headers) }
                            signature = lookalike(model, unique: i)
                        }
                        text += "\(eventId)\t\(now)\t\(signature)\t\(body)\n"
                    }
                    return (chunk, text)
                } }
            }
            return try await group.reduce(into: [(Int, String)]()) { $0.append($1) }
        }
        let text = chunks.sorted { $0.0 < $1.0 }.map(\.1).joined()
        try Data(text.utf8).write(to: folder.appendingPathComponent("requests-\(thread).tsv"))
    }
}

/// `signature` with its last 8 characters replaced by the low 6 bytes of `unique` in base64url:
/// a token of the same length and alphabet, different for every `unique` below 2^48.
func lookalike(_ signature: String, unique: Int) -> String {
    signature.dropLast(8) + Base64URL.encode((0..<6).map { UInt8(truncatingIfNeeded: unique >> ($0 * 8)) })
}

/// Ratios of paired slices (an ingress slice over the trivial slice just before it), whose
/// pairing cancels most of the VM's drift: their mean, standard deviation and a 95% confidence
/// interval for the mean (Student's t).
struct PairedRatios: CustomStringConvertible {
    var ratios: [Double]

    init(_ ratios: [Double]) { self.ratios = ratios }

    var mean: Double { ratios.reduce(0, +) / Double(ratios.count) }
    var standardDeviation: Double {
        guard ratios.count > 1 else { return .nan }
        let mean = mean
        return (ratios.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(ratios.count - 1)).squareRoot()
    }
    /// Half the width of the 95% interval: t(0.975, n - 1) times the standard error.
    var halfWidth: Double {
        let t: [Double] = [.nan, 12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13, 2.12, 2.11, 2.10, 2.09,
                           2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05]
        let degrees = ratios.count - 1
        let critical = degrees < t.count ? t[degrees] : 2.0
        return critical * standardDeviation / Double(ratios.count).squareRoot()
    }
    var description: String {
        String(format: "mean %.3f, 95%% interval %.3f to %.3f, sd %.3f, %d pairs: ", mean, mean - halfWidth, mean + halfWidth, standardDeviation, ratios.count)
            + ratios.map { String(format: "%.2f", $0) }.joined(separator: " ")
    }
}

func format(_ result: WrkResult) -> String {
    let p = result.percentiles
    let requests = Double(max(result.requests, 1))
    func perRequest(_ cpu: Duration) -> Double { Double(cpu / .nanoseconds(1)) / 1000 / requests }
    return String(format: "%8.0f req/s   p50 %6.2f ms   p90 %6.2f ms   p99 %6.2f ms   per request: CPU %5.1f us + wrk %4.1f us, switches %4.2f + wrk %4.2f   (%d requests, %d non-2xx%@)",
                  result.perSecond, p["50%"] ?? .nan, p["90%"] ?? .nan, p["99%"] ?? .nan, perRequest(result.serverCPU), perRequest(result.wrkCPU),
                  Double(result.serverSwitches) / requests, Double(result.wrkSwitches) / requests,
                  result.requests, result.non2xx, result.socketErrors.isEmpty ? "" : ", \(result.socketErrors)")
}

let logger: Logger = {
    var logger = Logger(label: "ingress-benchmark")
    logger.logLevel = .error
    return logger
}()

@main
struct IngressBenchmark {
    static func main() async throws {
        // As `connector` does (ConnectorCommand.main); CONNECTOR_NIO_EXECUTOR=0 compares without,
        // CONNECTOR_EVENT_LOOPS=N with N loops.
        print("tasks run on \(EventLoopExecutor.install()); memory from \(MemoryAllocator.description)")
        try await run()
    }

    /// Off the main actor: the servers' closures run on the cooperative pool.
    nonisolated static func run() async throws {
        let options = Options(CommandLine.arguments)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("webhooks.lua").path
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/wrk") else {
            fatalError("wrk is not installed: scripts/setup.sh --bench (or apt-get install wrk)")
        }

        let cluster = options.bootstrap.isEmpty ? try EmbeddedKafkaCluster(brokers: options.brokers, logger: logger) : nil
        let bootstrapServers = cluster?.bootstrapServers ?? options.bootstrap
        let signer = try WebhookSigner(kid: "bench-key")
        let simulator = EightByEightSimulator(signer: signer)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("ingress-benchmark-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }

        try await withRunningApplication({ simulator.application(logger: logger, onRunning: $0) }) { jwkPort in
            var config = try ConnectorConfig.parse("""
                kafka:
                  brokers: embedded
                  partitions: \(options.partitions)
                ingress:
                  listen: 127.0.0.1:0
                  dedupeCapacity: 2000000
                  lingerMs: \(options.lingerMs)
                  signature:
                    jwkBaseURL: http://127.0.0.1:\(jwkPort)
                    maxClockSkewSeconds: 3600
                endpoints:
                  - name: bench
                    urlToken: benchmark-token
                    flow: flows/demo.yaml
                    eightByEight:
                      baseURL: http://127.0.0.1:\(jwkPort)
                      apiKey: bench-key
                """)
            // Set after the checks: an experiment may turn off what the connector relies on
            // (`enable.idempotence=false`), which a configuration file may not.
            config.kafka.properties.merge(options.producerProperties) { _, given in given }
            try cluster?.createTopic(config.topicName(.inbound), partitions: Int32(options.partitions), replicationFactor: Int32(min(options.brokers, 3)))
            let service = try IngressService.make(config: config, bootstrapServers: bootstrapServers, logger: logger)
            try await withRunningApplication({ onRunning in
                service.application(host: "127.0.0.1", port: 0, extraRoutes: { router in
                    // The trivial endpoint: same server, requests like the webhooks (lookalikes,
                    // see `presign`), reads the body and answers 200.
                    router.post("/trivial") { request, _ in
                        _ = try await request.body.collect(upTo: 1 << 20)
                        return Response(status: .ok)
                    }
                }, onRunning: onRunning)
            }) { port in
                let url = "http://127.0.0.1:\(port)"
                let endpoint = "/endpoint/benchmark-token"
                print("ingress on \(url), inbound batching \(service.producer.batching), kafka \(bootstrapServers)\(cluster == nil ? " (another process)" : ""); wrk -t\(options.threads) -c\(options.connections.map(String.init).joined(separator: ",")) -d\(options.duration)s")

                // Warm up: the key fetch and the producer's first metadata happen before measuring.
                try await presign(folder: work.appendingPathComponent("warm"), threads: options.threads, perThread: 2000, signer: signer, prefix: "warm")
                _ = try await runWrk(["-t\(options.threads)", "-c\(options.connections[0])", "-d2s", "-s", script, url, "--", work.appendingPathComponent("warm").path, endpoint, "0"])
                // The trivial endpoint's requests: lookalikes of the webhooks, each sent once per
                // run like them (every wrk run starts afresh, so all trivial runs share them),
                // enough for 50,000 requests/s; a run that wraps around says so.
                let lookalikes = work.appendingPathComponent("lookalikes")
                let lookalikesPerThread = 50_000 * options.duration * 11 / 10 / options.threads
                try await presign(folder: lookalikes, threads: options.threads, perThread: lookalikesPerThread, signer: signer, prefix: "trivial", signed: false)

                // Maximum throughput at each connection count: trivial and ingress slices
                // alternate (T I T I ...), so that the VM's speed, which drifts by 10-20% over
                // minutes here, weighs on both alike. With few connections the ingress is bound
                // by its acknowledgement round trip rather than by the cores (they idle), so its
                // capacity shows only with more connections; each endpoint's capacity is its
                // best rate.
                var bestTrivial = 0.0
                var bestIngress = 0.0
                var bestIngressPairs: PairedRatios?
                for connections in options.skipCapacity != 0 ? [] : options.connections {
                    let common = ["-t\(options.threads)", "-c\(connections)", "-d\(options.duration)s", "--latency", "-s", script, url, "--"]
                    var trivial: [WrkResult] = []
                    var ingress: [WrkResult] = []
                    var pools: [URL] = []
                    func signPool(_ pool: Int, perThread: Int) async throws -> URL {
                        let folder = work.appendingPathComponent("max-\(connections)-\(pool)")
                        try await presign(folder: folder, threads: options.threads, perThread: perThread, signer: signer, prefix: "max-\(connections)-\(pool)")
                        return folder
                    }
                    for slice in 0..<options.slices {
                        let (t, _) = try await runWrk(common + [lookalikes.path, "/trivial", "0"])
                        print("trivial 200, \(connections) connections  " + format(t))
                        if t.wrapped > 0 { print("  the trivial run went through its lookalikes more than once (\(t.wrapped) wraps)") }
                        trivial.append(t)
                        if slice == 0 {
                            // Unique webhooks for the first ingress slice, signed once the first
                            // trivial slice gave an estimate: the ingress cannot be faster than
                            // trivial, and signing is slow, so it is capped at 20,000/s; the
                            // result reports repeats if that was ever too few.
                            let expected = min(t.perSecond, 20_000) * Double(options.duration) * 1.1
                            pools.append(try await signPool(0, perThread: options.requests > 0 ? options.requests : Int(expected) / options.threads + 1000))
                        }
                        let before = try await publishedCount(bootstrapServers: bootstrapServers, topic: config.topicName(.inbound), partitions: options.partitions)
                        let (i, raw) = try await runWrk(common + [pools[slice].path, endpoint, "0"])
                        let published = try await publishedCount(bootstrapServers: bootstrapServers, topic: config.topicName(.inbound), partitions: options.partitions) - before
                        try? FileManager.default.removeItem(at: pools[slice])
                        print("ingress, \(connections) connections      " + format(i))
                        print(String(format: "  ingress / trivial = %.2f; published %d of %d requests; repeated %d", i.perSecond / t.perSecond, published, i.requests, i.wrapped))
                        if i.wrapped > 0 || i.non2xx > 0 { print(raw) }
                        ingress.append(i)
                        if slice == 0, options.slices > 1 {
                            // The other slices' webhooks, sized from the first ingress slice with
                            // room for the VM's drift (signing them from the trivial estimate took
                            // minutes per slice), and signed between pairs, not inside one.
                            let expected = min(i.perSecond * 2, 20_000) * Double(options.duration)
                            let perThread = options.requests > 0 ? options.requests : Int(expected) / options.threads + 1000
                            print("signing \(options.slices - 1) x \(perThread * options.threads) webhooks ...")
                            for pool in 1..<options.slices { pools.append(try await signPool(pool, perThread: perThread)) }
                        }
                    }
                    let trivialRate = trivial.map(\.perSecond).reduce(0, +) / Double(trivial.count)
                    let ingressRate = ingress.map(\.perSecond).reduce(0, +) / Double(ingress.count)
                    print(String(format: "%d connections, %d alternating slices: trivial %.0f req/s, ingress %.0f req/s, ingress / trivial = %.2f",
                                 connections, options.slices, trivialRate, ingressRate, ingressRate / trivialRate))
                    let paired = PairedRatios(zip(ingress, trivial).map { $0.perSecond / $1.perSecond })
                    print("  paired slices (ingress / the trivial slice before it): \(paired)")
                    if ingress.allSatisfy({ $0.wrapped == 0 && $0.non2xx == 0 }), ingressRate > bestIngress { (bestIngress, bestIngressPairs) = (ingressRate, paired) }
                    bestTrivial = max(bestTrivial, trivialRate)
                }
                if options.skipCapacity == 0 {
                    print(String(format: "capacity: trivial %.0f req/s, ingress %.0f req/s, ingress / trivial = %.2f", bestTrivial, bestIngress, bestIngress / bestTrivial))
                    if let pairs = bestIngressPairs { print("  paired slices at the ingress's best count: \(pairs)") }
                }

                if options.skipRate != 0 { return }
                // Fixed rate: each wrk thread sends on its own schedule.
                let ratePerThread = Int(Double(options.rate * options.rateDuration) * 1.05) / options.threads + 1000
                try await presign(folder: work.appendingPathComponent("rate"), threads: options.threads, perThread: ratePerThread, signer: signer, prefix: "rate")
                let rateLookalikes = work.appendingPathComponent("rate-lookalikes")
                try await presign(folder: rateLookalikes, threads: options.threads, perThread: ratePerThread, signer: signer, prefix: "rate-trivial", signed: false)
                let interval = String(Double(options.threads) * 1000 / Double(options.rate))
                let paced = ["-t\(options.threads)", "-c\(options.rateConnections)", "-d\(options.rateDuration)s", "--latency", "-s", script, url, "--"]
                let (trivialRate, _) = try await runWrk(paced + [rateLookalikes.path, "/trivial", interval])
                print("trivial @\(options.rate)/s  " + format(trivialRate))
                let (ingressRate, rawRate) = try await runWrk(paced + [work.appendingPathComponent("rate").path, endpoint, interval])
                print("ingress @\(options.rate)/s  " + format(ingressRate))
                if ingressRate.wrapped > 0 || ingressRate.non2xx > 0 { print(rawRate) }
            }
        }
    }
}

func publishedCount(bootstrapServers: String, topic: String, partitions: Int) async throws -> Int {
    let admin = try KafkaAdmin(bootstrapServers: bootstrapServers, logger: logger)
    var total: Int64 = 0
    for partition in 0..<partitions { total += try await admin.watermarks(TopicPartition(topic: topic, partition: Int32(partition))).high }
    return Int(total)
}
