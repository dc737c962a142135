@testable import BotWorker
import ChatEvents
import Foundation
import ConnectorConfiguration
import Kafka
import Logging
import ServiceSupport
import Synchronization
import Testing

@Suite("Bot worker on the embedded cluster", .serialized)
struct WorkerTests {
    @Test("a demo conversation: greeting, balance, email with reprompt, handover, agent, handback, goodbye")
    func demoConversation() async throws {
        let harness = try WorkerHarness()
        let outbound = try harness.reader(.outbound)
        let sessions = try harness.reader(.sessions)
        let running = try harness.start()
        let producer = try harness.producer()
        var chat = EventFactory(conversation: "conv-demo")
        var events = [
            chat.user("hello"),
            chat.make(.postback, eventType: "ACTIVITY") { $0.postback = .init(title: "My balance", payload: "what is my balance") },
            chat.user("update my email"),
            chat.user("my email is nope"),
            chat.user("jane@example.com"),
            chat.user("I want a human"),
            chat.make(.queued, eventType: "QUEUED") { $0.queue = .init(id: "101", name: "Support") },
            chat.user("hello?"),
            chat.make(.memberJoined, eventType: "MEMBERS_CHANGED") { $0.member = .init(id: "agent-1", type: "agent") },
            chat.user("hi agent"),
            chat.make(.agentMessage) { $0.text = "Hello, how can I help?" },
        ]
        events += [
            chat.make(.memberLeft, eventType: "MEMBERS_CHANGED") { $0.member = .init(id: "agent-1", type: "agent") },
            chat.user("bye"),
        ]
        try await harness.publish(events, with: producer)
        let records = try await outbound.wait(90, "the demo conversation's commands") { $0.count >= 15 }
        let commands = try records.map { try OutboundCommand.decode($0.value) }
        #expect(commands.count == 15)
        #expect(Set(records.map(\.keyString)) == ["conv-demo"])
        let summary = commands.map { command -> String in
            switch command.action {
            case .sendMessage: "say:" + (command.body["text"]?.stringValue ?? "<card>")
            default: command.action.rawValue
            }
        }
        #expect(summary == [
            "say:Hi! I'm the demo bot. I can tell you your balance or take your email address.",
            "say:What would you like to do?",
            "say:Your balance is 1,234.56 EUR.",
            "say:Anything else?",
            "say:What is your email address?",
            "say:That does not look like an email address. Please type it like name@example.com.",
            "say:Thanks, I saved jane@example.com.",
            "say:Anything else?",
            "say:I'm connecting you with a colleague. Please wait a moment.",
            "patchConversation",
            "say:You are in the queue; a colleague will be with you shortly.",
            "say:I'm back. Was your question answered?",
            "say:What would you like to do?",
            "say:Goodbye, and thanks for chatting!",
            "endConversation",
        ])
        #expect(commands[9].body == .object(["assignment": .object(["type": .string("queue"), "id": .string("101")])]))
        #expect(commands.allSatisfy { $0.endpoint == "support" && $0.tenantId == "acme" && $0.conversationId == "conv-demo" })
        #expect(commands[1].commandId == OutboundCommand.commandId(eventId: "conv-demo-e1", sequence: 1))
        #expect(commands[1].body["cards"]?.arrayValue?.first?["contentType"] == .string("application/8x8.quick.replies"))

        // Session records went to the inbound record's partition number, and the last one
        // holds the finished conversation.
        let inboundPartition = try await harness.partition(of: "conv-demo")
        let stored = try await sessions.wait(30, "session records") { records in
            records.contains { (try? FlowEngineSession.decode($0.value))?.processedEventIds.contains("conv-demo-e13") == true }
        }
        #expect(Set(stored.map(\.partition)) == [inboundPartition])
        await running.stop()
        await outbound.close()
        await sessions.close()
        try await producer.shutdown()
    }

    /// A handover webhook (`/handover/eightByEight`) names the endpoint that claims its tenant,
    /// which need not be the conversation's: an endpoint without `eightByEight.tenant` shares
    /// the tenant's handover webhooks. The conversation's session decides.
    @Test("a handover webhook goes to the endpoint of the conversation's session, not the one its tenant names")
    func handoverWebhookFollowsTheSession() async throws {
        let flows = FileManager.default.temporaryDirectory.appendingPathComponent("flows-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: flows, withIntermediateDirectories: true)
        let salesFlow = flows.appendingPathComponent("sales.yaml")
        try "nodes:\n  - { id: hello, type: say, text: Sales here. }\n".write(to: salesFlow, atomically: true, encoding: .utf8)
        let harness = try WorkerHarness(moreEndpoints: """
              - name: sales
                urlToken: sales-token-1
                flow: \(salesFlow.path)
                eightByEight:
                  baseURL: http://127.0.0.1:9
                  apiKey: test-key
            """)
        let outbound = try harness.reader(.outbound)
        let sessions = try harness.reader(.sessions)
        let running = try harness.start()
        let producer = try harness.producer()
        var chat = EventFactory(conversation: "conv-sales")
        chat.endpoint = "sales"
        let hello = chat.user("hi")
        // As the ingress writes it: tenant acme is claimed by the support endpoint alone.
        var joined = chat.member(.memberJoined, type: "agent", id: "agent-1")
        joined.route = .handover
        joined.endpoint = "support"
        try await harness.publish([hello, joined], with: producer)
        let joinedId = joined.eventId

        let replies = try await outbound.wait(60, "the sales flow's reply") { !$0.isEmpty }
        let reply = try OutboundCommand.decode(replies[0].value)
        #expect(reply.endpoint == "sales" && reply.body["text"]?.stringValue == "Sales here.")
        let stored = try await sessions.wait(60, "the session after the agent joined") { records in
            records.contains { (try? FlowEngineSession.decode($0.value))?.processedEventIds.contains(joinedId) == true }
        }
        let session = try #require(stored.compactMap { try? FlowEngineSession.decode($0.value) }.last { $0.processedEventIds.contains(joinedId) })
        #expect(session.endpoint == "sales", "the sales conversation stays the sales endpoint's")
        #expect(session.handover?.phase == .agent)
        #expect(session.processedEventIds.contains(hello.eventId))
        await running.stop()
        await outbound.close()
        await sessions.close()
        try await producer.shutdown()
    }

    @Test("a flow that fails on after the agent left: the event is dead-lettered, the handover ends all the same, and the bot answers the next message")
    func flowErrorAfterHandover() async throws {
        let flow = FileManager.default.temporaryDirectory.appendingPathComponent("handback-loop-\(UUID().uuidString).yaml")
        try TestFlows.handbackIntoLoop.write(to: flow, atomically: true, encoding: .utf8)
        let harness = try WorkerHarness(flow: flow.path)
        let outbound = try harness.reader(.outbound)
        let deadLetters = try harness.reader(.inboundDeadLetters)
        let running = try harness.start()
        let producer = try harness.producer()
        let topic = harness.config.topicName(.inbound)
        var chat = EventFactory(conversation: "conv-handback-error")
        let asked = chat.user("agent please")
        let joined = chat.member(.memberJoined, type: "agent", id: "a1")
        let left = chat.member(.memberLeft, type: "agent", id: "a1")
        let events = [asked, joined, left, chat.user("are you back")]
        try await producer.sendBatch(events.map {
            KafkaProducerMessage(topic: topic, key: "conv-handback-error", value: $0.encodedRecord(rawBody: Array("{}".utf8)))
        })
        let dead = try await deadLetters.wait(60, "the dead letter") { !$0.isEmpty }
        #expect(dead.count == 1)
        #expect(String(decoding: dead[0].headers.first { $0.key == "x-dead-letter-reason" }?.value ?? [], as: UTF8.self) == "flow-error")
        #expect(try InboundEvent.decode(dead[0].value).eventId == left.eventId)
        // The handover ended: the user's next message is the bot's again, from the flow's start.
        let commands = try await outbound.wait(60, "the answer after the handover") { messages in
            messages.contains { (try? OutboundCommand.decode($0.value))?.body["text"]?.stringValue == "hello are you back" }
        }
        #expect(try commands.compactMap { try OutboundCommand.decode($0.value).body["text"]?.stringValue } == ["Connecting.", "hello are you back"])
        await running.stop()
        await outbound.close()
        await deadLetters.close()
        try await producer.shutdown()
    }

    @Test("poison records go to the dead-letter topic with the reason and the partition goes on")
    func poisonRecords() async throws {
        let loopFlow = FileManager.default.temporaryDirectory.appendingPathComponent("loop-\(UUID().uuidString).yaml")
        try """
            nodes:
              - { id: start, type: if, condition: { textContains: loop }, then: a, else: hello }
              - { id: a, type: if, condition: { textContains: loop }, then: b, else: b }
              - { id: b, type: goto, target: a }
              - { id: hello, type: say, text: "hello {{input.text}}" }
            """.write(to: loopFlow, atomically: true, encoding: .utf8)
        let harness = try WorkerHarness(flow: loopFlow.path)
        let outbound = try harness.reader(.outbound)
        let deadLetters = try harness.reader(.inboundDeadLetters)
        let running = try harness.start()
        let producer = try harness.producer()
        let topic = harness.config.topicName(.inbound)
        var chat = EventFactory(conversation: "conv-poison")
        var stale = chat.user("old schema")
        stale.schema = "eightbyeight.inbound.v0"
        var unknownEndpoint = chat.user("who am I")
        unknownEndpoint.endpoint = "nobody"
        // A message naming no conversation: its reply would go to /conversations/<event id>.
        var orphan = chat.user("hello")
        orphan.conversationId = nil
        let first = chat.user("first")
        let loop = chat.user("loop forever")
        let last = chat.user("last")
        try await producer.sendBatch([
            KafkaProducerMessage(topic: topic, key: "conv-poison", value: first.encodedRecord(rawBody: Array("{}".utf8))),
            KafkaProducerMessage(topic: topic, key: "conv-poison", value: Array("not json {".utf8)),
            KafkaProducerMessage(topic: topic, key: "conv-poison", value: stale.encodedRecord(rawBody: Array("{}".utf8))),
            KafkaProducerMessage(topic: topic, key: "conv-poison", value: unknownEndpoint.encodedRecord(rawBody: Array("{}".utf8))),
            KafkaProducerMessage(topic: topic, key: "conv-poison", value: orphan.encodedRecord(rawBody: Array("{}".utf8))),
            KafkaProducerMessage(topic: topic, key: "conv-poison", value: loop.encodedRecord(rawBody: Array("{}".utf8))),
            KafkaProducerMessage(topic: topic, key: "conv-poison", value: last.encodedRecord(rawBody: Array("{}".utf8))),
        ])
        let dead = try await deadLetters.wait(60, "5 dead letters") { $0.count >= 5 }
        let reasons = dead.map { message in
            String(decoding: message.headers.first { $0.key == "x-dead-letter-reason" }?.value ?? [], as: UTF8.self)
        }
        #expect(reasons == ["undecodable", "undecodable", "unknown-endpoint", "no-conversation", "flow-error"])
        // One counter per reason, there from the start (the alert on them sees the first one).
        let counted = Self.counterLines("connector_worker_dead_letters_total", running.worker.metrics).sorted()
        #expect(counted == [
            #"connector_worker_dead_letters_total{reason="flow-error"} 1"#, #"connector_worker_dead_letters_total{reason="no-conversation"} 1"#,
            #"connector_worker_dead_letters_total{reason="too-large"} 0"#,
            #"connector_worker_dead_letters_total{reason="undecodable"} 2"#, #"connector_worker_dead_letters_total{reason="unknown-endpoint"} 1"#,
        ], "\(counted)")
        let fresh = Self.counterLines("connector_worker_dead_letters_total", WorkerMetrics())
        #expect(fresh.count == 5 && fresh.allSatisfy { $0.hasSuffix(" 0") }, "\(fresh)")
        #expect(dead[0].value == Array("not json {".utf8))
        #expect(dead.allSatisfy { $0.headers.contains { $0.key == "x-dead-letter-source" } })
        let detail = String(decoding: dead[4].headers.first { $0.key == "x-dead-letter-detail" }?.value ?? [], as: UTF8.self)
        #expect(detail.contains("loop"))
        let commands = try await outbound.wait(60, "replies around the poison") { $0.count >= 2 }
        #expect(try commands.map { try OutboundCommand.decode($0.value).body["text"]?.stringValue } == ["hello first", "hello last"])
        await running.stop()
        await outbound.close()
        await deadLetters.close()
        try await producer.shutdown()
    }

    @Test("an event whose reply Kafka would refuse for its size is dead-lettered, one whose analytics record would be is answered without it; the partition goes on")
    func recordsTooLargeForKafka() async throws {
        let flow = FileManager.default.temporaryDirectory.appendingPathComponent("echo-\(UUID().uuidString).yaml")
        try """
            nodes:
              - { id: start, type: if, condition: { textContains: long }, then: short, else: echo }
              - { id: short, type: say, text: "ok" }
              - { id: echo, type: say, text: "{{input.text}} {{input.text}}" }
            """.write(to: flow, atomically: true, encoding: .utf8)
        // Records up to 4,976 bytes (message.max.bytes 6,000 less the margin).
        let harness = try WorkerHarness(flow: flow.path, kafkaProperties: "    message.max.bytes: 6000")
        let outbound = try harness.reader(.outbound)
        let analytics = try harness.reader(.analytics)
        let deadLetters = try harness.reader(.inboundDeadLetters)
        let log = LogCapture()
        let running = try harness.start(logger: log.logger)
        let producer = try harness.producer()
        var chat = EventFactory(conversation: "conv-large")
        let first = chat.user("first")
        let echoed = chat.user(String(repeating: "y", count: 3_000))  // its reply: 6,001 characters
        let long = chat.user("long " + String(repeating: "z", count: 4_900))  // "ok", and an analytics record over the limit
        let last = chat.user("last")
        try await harness.publish([first, echoed, long, last], with: producer)
        let commands = try await outbound.wait(60, "the replies") { $0.count >= 3 }
        #expect(try commands.map { try OutboundCommand.decode($0.value).body["text"]?.stringValue } == ["first first", "ok", "last last"])
        let dead = try await deadLetters.wait(60, "the dead letter") { !$0.isEmpty }
        #expect(dead.count == 1)
        #expect(dead.first.map { String(decoding: $0.headers.first { $0.key == "x-dead-letter-reason" }?.value ?? [], as: UTF8.self) } == "too-large")
        #expect(dead.first?.value == echoed.encodedRecord(rawBody: Array("{}".utf8)), "the inbound record as it was")
        let records = try await analytics.wait(60, "the last event's analytics") { records in
            records.contains { String(decoding: $0.value, as: UTF8.self).contains(last.eventId) }
        }
        #expect(records.count == 2)
        #expect(records.first.map { String(decoding: $0.value, as: UTF8.self).contains(first.eventId) } == true)
        #expect(log.text.contains("analytics record left out: too large for Kafka"))
        #expect(!log.text.contains("restarts from the committed offsets"), "\(log.text)")
        await running.stop()
        await outbound.close()
        await analytics.close()
        await deadLetters.close()
        await producer.shutdown()
    }

    @Test("a flow condition whose regular expression runs out of its CPU budget counts as no match and shows in the worker's metrics; other events do not count")
    func exhaustedRegexBudgetIsCounted() async throws {
        let flow = FileManager.default.temporaryDirectory.appendingPathComponent("regex-\(UUID().uuidString).yaml")
        // `(a|a)*b` backtracks exponentially on a run of a's without a b (the check at load
        // time refuses only a repeated group that holds a repetition).
        try """
            nodes:
              - { id: start, type: if, condition: { textMatches: "(a|a)*b" }, then: matched, else: other }
              - { id: matched, type: say, text: "matched" }
              - { id: other, type: say, text: "no match" }
            """.write(to: flow, atomically: true, encoding: .utf8)
        let harness = try WorkerHarness(flow: flow.path)
        let outbound = try harness.reader(.outbound)
        let running = try harness.start()
        let producer = try harness.producer()
        var chat = EventFactory(conversation: "conv-regex")
        try await harness.publish([chat.user("ab"), chat.user(String(repeating: "a", count: 4_000)), chat.user("aab")], with: producer)
        let commands = try await outbound.wait(60, "the replies") { $0.count >= 3 }
        #expect(try commands.map { try OutboundCommand.decode($0.value).body["text"]?.stringValue } == ["matched", "no match", "matched"])
        let metrics = String(decoding: running.worker.metrics.render(), as: UTF8.self)
        #expect(metrics.contains("connector_worker_regex_budget_exhausted_total 1\n"), "\(metrics)")
        await running.stop()
        await outbound.close()
        await producer.shutdown()
    }

    @Test("an analytics topic Kafka refuses (no write access) costs the analytics records, not the replies: no restart, the sessions go on")
    func analyticsRefusedByKafka() async throws {
        // librdkafka 2.0 holds records of a topic it may not write until message.timeout.ms.
        let harness = try WorkerHarness(kafkaProperties: "    message.timeout.ms: 4000")
        harness.cluster.setTopicError(harness.config.topicName(.analytics), .topicAuthorizationFailed)
        let outbound = try harness.reader(.outbound)
        let sessions = try harness.reader(.sessions)
        let log = LogCapture()
        let running = try harness.start(logger: log.logger)
        let producer = try harness.producer()
        let events = (0..<3).map { n in
            var chat = EventFactory(conversation: "conv-no-analytics-\(n)")
            return chat.user("hi \(n)")
        }
        try await harness.publish(events, with: producer)
        let commands = try await outbound.wait(60, "the replies") { $0.count >= 2 * events.count }
        #expect(Set(commands.compactMap { try? OutboundCommand.decode($0.value).causationEventId }) == Set(events.map(\.eventId)))
        // A session record waits for all of its event's records: its analytics one was given up.
        let saved = try await sessions.wait(60, "each conversation's session") { Set($0.compactMap(\.keyString)).count >= events.count }
        #expect(Set(saved.compactMap(\.keyString)) == Set(events.map { $0.conversationId ?? "" }))
        let metrics = running.worker.metrics
        #expect(Self.counter("connector_worker_analytics_dropped_total", metrics) == Double(events.count), "\(Self.counterLines("connector_worker_analytics_dropped_total", metrics))")
        #expect(Self.counter("connector_worker_restarts_total", metrics) == 0, "\(log.text)")
        #expect(log.text.contains("analytics record left out: Kafka refused it"))
        await running.stop()
        await outbound.close()
        await sessions.close()
        try await producer.shutdown()
    }

    @Test("an analytics topic Kafka does not know costs the analytics records, refused after a wait or at once: no restart")
    func analyticsTopicMissing() async throws {
        // librdkafka waits topic.metadata.propagation.max.ms for a topic to appear, failing the
        // first records after it, and refuses later ones at once.
        let harness = try WorkerHarness(kafkaProperties: "    topic.metadata.propagation.max.ms: 1000")
        harness.cluster.setTopicError(harness.config.topicName(.analytics), .unknownTopicOrPartition)
        let sessions = try harness.reader(.sessions)
        let log = LogCapture()
        let running = try harness.start(logger: log.logger)
        let producer = try harness.producer()
        var chat = EventFactory(conversation: "conv-analytics-missing")
        let events = (0..<3).map { chat.user("hi \($0)") }
        for (n, event) in events.enumerated() {
            try await harness.publish([event], with: producer)
            // Each event in turn, once the one before it finished (its session record written).
            _ = try await sessions.wait(60, "session \(n + 1)") { $0.count >= n + 1 }
        }
        let dropped = Self.counterLines("connector_worker_analytics_dropped_total", running.worker.metrics)
        #expect(Self.counter("connector_worker_analytics_dropped_total", running.worker.metrics) == Double(events.count), "\(dropped)")
        #expect(dropped.contains { $0.contains("_UNKNOWN_TOPIC") }, "refused at once: \(dropped)")
        #expect(Self.counter("connector_worker_restarts_total", running.worker.metrics) == 0, "\(log.text)")
        await running.stop()
        await sessions.close()
        try await producer.shutdown()
    }

    @Test("a backlog larger than librdkafka's queue goes through without a restart: session records and dead letters wait for room")
    func backlogLargerThanTheQueue() async throws {
        // A queue of 8 messages: the commands of a few events fill it.
        let harness = try WorkerHarness(kafkaProperties: "    queue.buffering.max.messages: 8")
        let producer = try harness.producer()
        let topic = harness.config.topicName(.inbound)
        let hellos = (0..<60).map { n in
            var chat = EventFactory(conversation: "conv-backlog-\(n)")
            return chat.user("hello")
        }
        var records = hellos.map { KafkaProducerMessage(topic: topic, key: $0.recordKey, value: $0.encodedRecord(rawBody: Array("{}".utf8))) }
        for n in 0..<6 { records.insert(KafkaProducerMessage(topic: topic, key: "conv-backlog-\(n)", value: Array("not json {".utf8)), at: n * 10) }
        try await producer.sendBatch(records)
        let outbound = try harness.reader(.outbound)
        let sessions = try harness.reader(.sessions)
        let deadLetters = try harness.reader(.inboundDeadLetters)
        let log = LogCapture()
        let running = try harness.start(logger: log.logger)
        let commands = try await outbound.wait(90, "two replies to each hello") { $0.count >= 2 * hellos.count }
        #expect(Set(commands.compactMap { try? OutboundCommand.decode($0.value).causationEventId }) == Set(hellos.map(\.eventId)))
        #expect(commands.count == 2 * hellos.count, "each reply once")
        let saved = try await sessions.wait(60, "every conversation's session") { $0.count >= hellos.count }
        #expect(Set(saved.compactMap(\.keyString)).count == hellos.count)
        #expect(try await deadLetters.wait(60, "the poison records") { $0.count >= 6 }.count == 6)
        #expect(Self.counter("connector_worker_restarts_total", running.worker.metrics) == 0, "\(log.text)")
        await running.stop()
        await outbound.close()
        await sessions.close()
        await deadLetters.close()
        await producer.shutdown()
    }

    @Test("a consumer librdkafka failed for good (a fatal error) restarts the worker with a new one; every event is answered once")
    func fatalConsumerErrorRestarts() async throws {
        let harness = try WorkerHarness()
        let outbound = try harness.reader(.outbound)
        let sessions = try harness.reader(.sessions)
        let running = try harness.start()
        let producer = try harness.producer()
        var chat = EventFactory(conversation: "conv-fatal")
        let first = chat.user("before")
        try await harness.publish([first], with: producer)
        // Its session record follows its replies' acknowledgements: the event is finished.
        _ = try await sessions.wait(60, "the first event's session") { !$0.isEmpty }
        running.worker.raiseFatalConsumerErrorForTesting()
        try await within(60, "a restart") {
            while Self.counter("connector_worker_restarts_total", running.worker.metrics) < 1 { try await Task.sleep(for: .milliseconds(50)) }
        }
        let second = chat.user("after")
        try await harness.publish([second], with: producer)
        let commands = try await outbound.wait(60, "the second reply") { records in
            records.contains { (try? OutboundCommand.decode($0.value).causationEventId) == second.eventId }
        }
        let decoded = try commands.map { try OutboundCommand.decode($0.value) }
        #expect(Set(decoded.map(\.causationEventId)) == [first.eventId, second.eventId])
        #expect(Set(decoded.map(\.commandId)).count == decoded.count, "each reply once")
        await running.stop()
        await outbound.close()
        await sessions.close()
        try await producer.shutdown()
    }

    /// A counter's lines in the worker's metrics, one per set of labels.
    static func counterLines(_ name: String, _ metrics: WorkerMetrics) -> [Substring] {
        String(decoding: metrics.render(), as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }
    }

    /// A counter's value in the worker's metrics, summed over its labels (0 when not yet exported).
    static func counter(_ name: String, _ metrics: WorkerMetrics) -> Double {
        counterLines(name, metrics).compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
    }

    @Test("a worker that takes over restores the sessions before it processes the partition")
    func sessionsSurviveHandOver() async throws {
        let harness = try WorkerHarness()
        let outbound = try harness.reader(.outbound)
        let producer = try harness.producer()
        var chat = EventFactory(conversation: "conv-move")
        let first = try harness.start()
        try await harness.publish([chat.user("update my email")], with: producer)
        try await outbound.wait(60, "the question") { $0.count >= 1 }
        await first.stop()

        let second = try harness.start()
        try await harness.publish([chat.user("jane@example.com")], with: producer)
        let records = try await outbound.wait(60, "the answer") { $0.count >= 3 }
        #expect(try OutboundCommand.decode(records[1].value).body["text"] == .string("Thanks, I saved jane@example.com."))
        await second.stop()
        await outbound.close()
        try await producer.shutdown()
    }
}

extension WorkerTests {
    @Test("transactional mode: commands and sessions commit together; a restart repeats nothing")
    func transactionalMode() async throws {
        let harness = try WorkerHarness(worker: "  transactional: true\n  transactionalId: worker-test-tx")
        let outbound = try harness.reader(.outbound)
        let producer = try harness.producer()
        var chat = EventFactory(conversation: "conv-tx")
        var worker = try harness.start()
        try await harness.publish([chat.user("hello"), chat.user("update my email")], with: producer)
        try await outbound.wait(60, "greeting and question") { $0.count >= 3 }
        await worker.stop()

        // The embedded broker drops offsets sent in a transaction, so the new worker reads the
        // two events again; the committed sessions make it skip them.
        worker = try harness.start()
        try await harness.publish([chat.user("jane@example.com")], with: producer)
        let records = try await outbound.wait(60, "the answer") { $0.count >= 5 }
        try await Task.sleep(for: .milliseconds(500))
        let commands = try outbound.commands()
        #expect(commands.count == 5)
        #expect(Set(commands.map(\.commandId)).count == 5)
        #expect(commands[3].body["text"] == .string("Thanks, I saved jane@example.com."))
        #expect(records.count == 5)
        await worker.stop()
        await outbound.close()
        try await producer.shutdown()
    }
}

extension WorkerTests {
    @Test("after a takeover, a conversation past its TTL starts over and a recent one goes on")
    func expiredSessionsAreNotRestored() async throws {
        let harness = try WorkerHarness()
        let outbound = try harness.reader(.outbound)
        let producer = try harness.producer()
        // Two conversations in one partition (same key twice would be the same conversation,
        // so both wait at the email question, 41 minutes of event time apart).
        var old = EventFactory(conversation: "conv-old")
        var recent = EventFactory(conversation: "conv-recent")
        recent.clock = old.clock + 41 * 60_000
        var worker = try harness.start()
        try await harness.publish([old.user("update my email"), recent.user("update my email")], with: producer)
        try await outbound.wait(60, "two questions") { $0.count >= 2 }
        await worker.stop()

        worker = try harness.start()
        recent.clock += 1_000
        old.clock = recent.clock
        try await harness.publish([recent.user("jane@example.com"), old.user("jane@example.com")], with: producer)
        let records = try await outbound.wait(60, "the answers") { $0.count >= 5 }
        let texts = try records.map { try OutboundCommand.decode($0.value) }.filter { $0.causationEventId.hasSuffix("e2") }
            .map { "\($0.conversationId): \($0.body["text"]?.stringValue ?? "")" }
        // The recent one was still waiting for its answer; the old one (past 30 + 10 minutes)
        // starts over: its "email" is a first message that the demo flow greets.
        #expect(texts.contains("conv-recent: Thanks, I saved jane@example.com."))
        #expect(texts.contains { $0.hasPrefix("conv-old: Hi!") })
        await worker.stop()
        await outbound.close()
        try await producer.shutdown()
    }
}

@Suite("Worker and egress producers")
struct ProducerSettingsTests {
    @Test("a linger of 0 (the worker's and the egress's default) batches adaptively, above 0 it is librdkafka's linger")
    func batching() async throws {
        let config = try ConnectorConfig.parse("kafka:\n  brokers: embedded\n")
        #expect(config.worker.lingerMs == 0)
        #expect(try ConnectorConfig.parse("worker:\n  lingerMs: 2\n").worker.lingerMs == 2)
        let adaptive = ConsumingService.producerConfiguration(config, bootstrapServers: "127.0.0.1:9", clientID: "w", lingerMilliseconds: 0)
        #expect(adaptive.batching == .adaptive)
        let linger = ConsumingService.producerConfiguration(config, bootstrapServers: "127.0.0.1:9", clientID: "w", lingerMilliseconds: 3)
        #expect(linger.batching == .linger && linger.lingerMilliseconds == 3)
        let producer = try KafkaProducer(configuration: adaptive, logger: Logger(label: "test"))
        #expect(producer.batching == .adaptive)
        await producer.shutdown()
    }
}

@Suite("Session eviction")
struct EvictionTests {
    @Test("sessions are forgotten ten minutes past their TTL, a handover or a session of an unknown endpoint only after a week")
    func forgettable() throws {
        let harness = try WorkerHarness()
        let worker = try harness.makeWorker()
        let start: Int64 = 1_700_000_000_000
        var session = FlowEngine.SessionState(conversationId: "c", endpoint: "support", tenantId: nil, now: start)
        #expect(!worker.isForgettable(session, now: start + 39 * 60_000))
        #expect(worker.isForgettable(session, now: start + 41 * 60_000))
        session.handover = HandoverState(phase: .agent, transferring: false, requestedByBot: true)
        #expect(!worker.isForgettable(session, now: start + 400 * 60_000))
        // A handover whose end never came is given up after a week without the user writing.
        #expect(!worker.isForgettable(session, now: start + 7 * 24 * 3_600_000))
        #expect(worker.isForgettable(session, now: start + 7 * 24 * 3_600_000 + 1))
        // A session of an endpoint this worker does not know (removed, renamed, or new in a
        // rolling deploy) goes by no TTL but is given up after a week too.
        session.handover = nil
        session.endpoint = "unknown"
        #expect(!worker.isForgettable(session, now: start + 400 * 60_000))
        #expect(!worker.isForgettable(session, now: start + 7 * 24 * 3_600_000))
        #expect(worker.isForgettable(session, now: start + 7 * 24 * 3_600_000 + 1))
    }
}

typealias FlowEngineSession = FlowEngine.SessionState

import FlowEngine

extension WorkerHarness {
    /// The partition the ingress's partitioner puts a conversation in (read back from the topic).
    func partition(of conversation: String) async throws -> Int32 {
        let reader = try reader(.inbound)
        let records = try await reader.wait(30, "the inbound records") { $0.contains { $0.keyString == conversation } }
        await reader.close()
        return records.first { $0.keyString == conversation }!.partition
    }
}

import AsyncHTTPClient
import Simulator

extension WorkerTests {
    @Test("the worker serves health and metrics, and reports each event whose records are acknowledged")
    func healthAndMetrics() async throws {
        let harness = try WorkerHarness()
        let acknowledged = Mutex<[AcknowledgedEvent]>([])
        let worker = try harness.makeWorker { event in acknowledged.withLock { $0.append(event) } }
        let producer = try harness.producer()
        try await withRunningApplication({ worker.application(host: "127.0.0.1", port: 0, onRunning: $0) }) { port in
            @Sendable func get(_ path: String) async throws -> (Int, String) {
                let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"), timeout: .seconds(10))
                return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
            }
            #expect(try await get("/health/live").0 == 200)
            try await within(30, "ready") { while try await get("/health/ready").0 != 200 { try await Task.sleep(for: .milliseconds(50)) } }
            var chat = EventFactory(conversation: "conv-metrics")
            let hello = chat.user("hello")
            try await harness.publish([hello, chat.make(.echo) { $0.text = "Hi!" }], with: producer)
            let metrics = try await within(60, "metrics of both events") {
                while true {
                    let (_, body) = try await get("/metrics")
                    if body.contains(#"outcome="echo""#) && body.contains("connector_worker_event_latency_seconds_count 1") { return body }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            #expect(metrics.contains(#"connector_worker_events_total{kind="userMessage",outcome="executed"} 1"#))
            #expect(metrics.contains(#"connector_worker_events_total{kind="echo",outcome="echo"} 1"#))
            #expect(metrics.contains(#"connector_worker_commands_total{action="sendMessage"} 2"#))
            #expect(metrics.contains("connector_worker_turn_duration_seconds_bucket"))
            #expect(metrics.contains(#"connector_worker_event_latency_seconds_bucket{le="+Inf"} 1"#))
            // Only the event with records is reported (the echo has none), once, with the
            // inbound record's timestamp; its two commands are in the outbound topic.
            let reported = acknowledged.withLock { $0 }
            #expect(reported.map(\.eventId) == [hello.eventId])
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            #expect(reported.first?.inboundTimestamp.map { (now - 60_000...now).contains($0) } == true)
            let reader = try harness.reader(.outbound)
            let commands = try await reader.wait(30, "hello's commands") { $0.count >= 2 }
            await reader.close()
            #expect(commands.compactMap { try? OutboundCommand.decode($0.value).causationEventId } == [hello.eventId, hello.eventId])
        }
        #expect(!worker.isReady)
        try await producer.shutdown()
    }
}
