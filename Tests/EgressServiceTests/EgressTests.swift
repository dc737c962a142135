import AsyncHTTPClient
import ChatEvents
import EgressService
import Foundation
import Kafka
import Simulator
import Testing

@Suite("Egress on the embedded cluster against the 8x8 simulator", .serialized)
struct EgressTests {
    @Test("every command kind reaches its path with the endpoint's headers and body, in order, each with a delivery result")
    func everyCommandKind() async throws {
        try await EgressHarness.run { h in
            let conversation = "conv-kinds"
            let bot: JSONValue = .object(["authorType": .string("bot")])
            let commands = [
                EgressHarness.command(conversation, 0, .typing, bot),
                EgressHarness.message(conversation, 1, text: "Hello"),
                EgressHarness.command(conversation, 2, .sendMessage, .object([
                    "authorType": .string("bot"), "text": .string("Pick one"),
                    "cards": .array([.object(["contentType": .string("application/8x8.quick.replies"), "content": .object([
                        "options": .array([.object(["title": .string("Yes"), "data": .object(["postback": .string("yes")])])]),
                    ])])]),
                ])),
                EgressHarness.command(conversation, 3, .sendAttachment, .object([
                    "authorType": .string("bot"), "url": .string("\(h.baseURL)/files/terms.pdf"), "fileName": .string("terms.pdf"),
                ])),
                EgressHarness.command(conversation, 4, .thinking, .object(["authorType": .string("bot"), "maxThinkingTimeSeconds": .number(5)])),
                EgressHarness.command(conversation, 5, .patchConversation, .object(["assignment": .object(["type": .string("queue"), "id": .string("101")])])),
                EgressHarness.command(conversation, 6, .postAgentAssignment, .object([
                    "type": .string("webhook"), "id": .string("wh-1"), "configuration": .object(["notifyChannelWebhookIfExists": .string("false")]),
                ])),
                EgressHarness.command(conversation, 7, .endConversation, .object(["removed": .bool(true)])),
            ]
            let results = try h.reader(.delivery)
            let producer = try h.producer()
            try await h.publish(commands, with: producer)
            let egress = h.start()
            let accepted = try await h.waitForGateway(60, "every command accepted") { $0.count >= commands.count }
            #expect(accepted == commands.map(\.commandId), "one call per command, in the conversation's order")
            let calls = h.gateway.received.filter { $0.status != 0 && $0.method != "GET" }
            let paths = calls.map { "\($0.method) \($0.path.replacingOccurrences(of: "/chat-gateway/v1/conversations/conv-kinds", with: ""))" }
            #expect(paths == [
                "POST /typing", "POST /messages", "POST /messages", "POST /attachments", "POST /messages", "POST /thinking", "PATCH ",
                "POST /post-agent-assignment", "PATCH /participants/user",
            ])
            #expect(calls.allSatisfy { $0.headers["x-api-key"] == "egress-key" && $0.headers["x-8x8-tenant"] == "acme" && (200..<300).contains($0.status) })
            #expect(calls[2].json?["cards"]?.arrayValue?.first?["contentType"]?.stringValue == "application/8x8.quick.replies")
            #expect(calls[4].json?["attachments"]?.arrayValue?.first?["id"]?.stringValue != nil, "the message carries the uploaded attachment's id")
            // Per command: an attempting result, then delivered.
            let records = try await results.wait(30, "delivery results") { $0.count >= 2 * commands.count }
            let final = try records.map { try DeliveryResult.decode($0.value) }.filter { $0.outcome != .attempting }
            #expect(final.map(\.commandId) == commands.map(\.commandId))
            #expect(final.allSatisfy { $0.outcome == .delivered && $0.attempts == 1 && ($0.endToEndMillis ?? -1) >= 0 })
            #expect(Set(records.map(\.partition)).count == 1, "results go to the command's partition")
            let metrics = String(decoding: egress.egress.metrics.render(), as: UTF8.self)
            #expect(metrics.contains("connector_end_to_end_seconds_count 8"), "\(metrics)")
            #expect(metrics.contains(#"connector_egress_deliveries_total{command="sendMessage",outcome="delivered"} 2"#))
            await egress.stop()
            await results.close()
            await producer.shutdown()
        }
    }

    @Test("order within a conversation holds while another is throttled (429 Retry-After honored) or failing (5xx retried)")
    func orderUnderThrottlingAndFailures() async throws {
        try await EgressHarness.run { h in
            // Both conversations in one partition, so they share a partition's lanes.
            let throttled = "conv-a"
            let failing = Self.conversation("conv-b", sharingPartitionWith: throttled)
            // Retry-After well past the failing conversation's two backoffs (0.5 and 1 s, each
            // ±20%), so a loaded machine does not turn the order below around.
            h.gateway.inject(.status(429, retryAfter: 5), forPathEndingWith: "\(throttled)/messages")
            h.gateway.inject(.status(502), forPathEndingWith: "\(failing)/messages")
            h.gateway.inject(.status(503), forPathEndingWith: "\(failing)/messages")
            let commands = (0..<5).flatMap { [EgressHarness.message(throttled, $0), EgressHarness.message(failing, $0)] }
            let producer = try h.producer()
            try await h.publish(commands, with: producer)
            try await h.expectPartitions(1, holding: commands.count)
            let egress = h.start()
            let accepted = try await h.waitForGateway(60, "every command accepted") { $0.count >= commands.count }
            #expect(accepted.count == commands.count && Set(accepted).count == commands.count, "each once")
            #expect(accepted.filter { $0.contains(throttled) } == commands.filter { $0.conversationId == throttled }.map(\.commandId))
            #expect(accepted.filter { $0.contains(failing + "-") } == commands.filter { $0.conversationId == failing }.map(\.commandId))
            // The failing conversation did not wait for the throttled one's Retry-After.
            #expect(accepted.firstIndex(of: commands[9].commandId)! < accepted.firstIndex(of: commands[2].commandId)!)
            let received = h.gateway.received
            let tooMany = try #require(received.first { $0.status == 429 })
            let retried = try #require(received.first { $0.status == 202 && $0.path == tooMany.path })
            #expect(retried.at - tooMany.at >= .seconds(5), "the retry waited for Retry-After")
            #expect(received.filter { $0.path.contains(failing) && $0.status >= 500 }.count == 2)
            let metrics = String(decoding: egress.egress.metrics.render(), as: UTF8.self)
            #expect(metrics.contains("connector_egress_retries_total 3"))
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("a consumer librdkafka failed for good (a fatal error) restarts the egress with a new one; every command is delivered once")
    func fatalConsumerErrorRestarts() async throws {
        try await EgressHarness.run { h in
            let conversation = "conv-fatal"
            let producer = try h.producer()
            try await h.publish([EgressHarness.message(conversation, 0)], with: producer)
            let egress = h.start()
            _ = try await h.waitForGateway(60, "the first command") { $0.count >= 1 }
            egress.egress.raiseFatalConsumerErrorForTesting()
            _ = try await egress.metrics(containing: "connector_egress_restarts_total 1", "a restart")
            try await h.publish([EgressHarness.message(conversation, 1)], with: producer)
            let accepted = try await h.waitForGateway(60, "the second command") { $0.count >= 2 }
            #expect(accepted == [EgressHarness.message(conversation, 0).commandId, EgressHarness.message(conversation, 1).commandId], "each once, in order")
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("a 400 is dead-lettered at once with status, error body and attempts; the conversation goes on; replay delivers a dead letter once")
    func deadLettersAndReplay() async throws {
        try await EgressHarness.run(egress: "  retry:\n    maxAttempts: 2\n    baseBackoffMs: 10\n    maxBackoffMs: 20") { h in
            let conversation = "conv-dlq"
            let invalid = EgressHarness.command(conversation, 0, .sendMessage, .object(["authorType": .string("customer"), "text": .string("bad")]))
            let unavailable = EgressHarness.message(conversation, 1, text: "sent while 8x8 was down")
            let next = EgressHarness.message(conversation, 2)
            let letters = try h.reader(.deadLetters)
            let producer = try h.producer()
            try await h.publish([invalid], with: producer)
            var egress = h.start()
            try await letters.wait(60, "the 400 dead-lettered") { $0.count == 1 }
            h.gateway.inject(.status(503), forPathEndingWith: "\(conversation)/messages")
            h.gateway.inject(.status(503), forPathEndingWith: "\(conversation)/messages")
            try await h.publish([unavailable, next], with: producer)
            try await h.waitForGateway(60, "the next command delivered") { $0.contains(next.commandId) }
            let deadLetters = try await letters.wait(30, "two dead letters") { $0.count == 2 }.map { try DeadLetter.decode($0.value) }
            #expect(deadLetters[0].command == invalid && deadLetters[0].status == 400 && deadLetters[0].attempts == 1)
            #expect(deadLetters[0].errorBody?.contains("invalid_json_object") == true, "\(deadLetters[0].errorBody ?? "")")
            // 8x8's message (which may quote what was sent) is in the error body, not in the reason replay prints.
            #expect(deadLetters[0].errorBody?.contains("Invalid authorType") == true)
            #expect(deadLetters[0].reason?.contains("invalid_json_object") == true && deadLetters[0].reason?.contains("Invalid authorType") == false, "\(deadLetters[0].reason ?? "")")
            #expect(deadLetters[1].command == unavailable && deadLetters[1].status == 503 && deadLetters[1].attempts == 2)
            #expect(!h.gateway.acceptedCommandIds.contains(unavailable.commandId))
            await egress.stop()

            // Replay: only the conversation's dead letters since a time, once.
            let replay = DeadLetterReplay(
                bootstrapServers: h.cluster.bootstrapServers, properties: [:], deadLetterTopic: h.config.topicName(.deadLetters),
                outboundTopic: h.config.topicName(.outbound), logger: quietLogger)
            let dryRun = try await replay.run(conversation: conversation, since: nil, dryRun: true)
            #expect(dryRun.entries.map(\.command.commandId) == [invalid.commandId, unavailable.commandId])
            let none = try await replay.run(conversation: "another", since: nil, dryRun: false)
            #expect(none.entries.isEmpty && none.filteredOut == 2)
            let report = try await replay.run(conversation: nil, since: deadLetters[1].deadLetteredAt, dryRun: false)
            #expect(report.entries.map(\.command.commandId) == [unavailable.commandId] && report.filteredOut == 1)
            let again = try await replay.run(conversation: nil, since: deadLetters[1].deadLetteredAt, dryRun: false)
            #expect(again.entries.isEmpty && again.alreadyReplayed == 1)
            let replayedId = report.entries[0].replayedAs
            let outbound = try h.reader(.outbound)
            let replayed = try await outbound.wait(30, "the replayed command") { $0.contains { $0.value.count > 0 && (try? OutboundCommand.decode($0.value))?.commandId == replayedId } }
                .compactMap { try? OutboundCommand.decode($0.value) }.first { $0.commandId == replayedId }
            #expect(replayed?.body == unavailable.body && replayed?.conversationId == conversation)
            #expect((replayed?.createdAt ?? 0) >= deadLetters[1].deadLetteredAt, "the retry policy's age counts from the replay")
            await outbound.close()
            egress = h.start()
            try await h.waitForGateway(60, "the replayed command delivered") { $0.contains(replayedId) }
            try await Task.sleep(for: .milliseconds(500))  // nothing more arrives
            #expect(h.gateway.acceptedCommandIds.counts[replayedId] == 1)
            #expect(h.gateway.messages(of: conversation).map(\.text) == [next.body["text"]?.stringValue, "sent while 8x8 was down"])
            await egress.stop()
            await letters.close()
            await producer.shutdown()
        }
    }

    @Test("replay sends a command with two dead letters once, leaves typing out, and names the replay after the original command")
    func replayOncePerCommand() async throws {
        try await EgressHarness.run { h in
            let conversation = "conv-twice"
            let message = EgressHarness.message(conversation, 0, text: "once")
            let typing = EgressHarness.command(conversation, 1, .typing, .object(["authorType": .string("bot")]))
            let queueMove = EgressHarness.command(conversation, 2, .patchConversation, .object(["assignment": .object(["type": .string("queue"), "id": .string("9")])]))
            let producer = try h.producer()
            // An egress stopped between the dead letter and its result: its successor gave up on
            // the same command again. A typing indicator, stale by the time anyone replays, and a
            // queue move whose flow heard it failed.
            for (n, command) in [message, typing, queueMove, message].enumerated() {
                let letter = DeadLetter(
                    command: command, reason: "8x8 answered 503", status: 503, errorBody: nil, attempts: 5, firstAttemptAt: 1,
                    deadLetteredAt: 1_000 + Int64(n), source: "outbound/0/\(n)")
                _ = try await producer.send(KafkaProducerMessage(topic: h.config.topicName(.deadLetters), key: conversation, value: letter.encodedRecord))
            }
            let replay = DeadLetterReplay(
                bootstrapServers: h.cluster.bootstrapServers, properties: [:], deadLetterTopic: h.config.topicName(.deadLetters),
                outboundTopic: h.config.topicName(.outbound), logger: quietLogger)
            let report = try await replay.run(conversation: nil, since: nil, dryRun: false)
            #expect(report.entries.map(\.command.commandId) == [message.commandId])
            #expect(report.sameCommand.count == 1 && report.filteredOut == 2 && report.queueMovesLeftOut == [queueMove])
            let replayedId = try #require(report.entries.first?.replayedAs)
            #expect(replayedId.hasPrefix("\(message.commandId)/replay/"))
            #expect(replayedId.range(of: "^.+/[0-9]+$", options: .regularExpression) != nil, "the outbound schema's commandId pattern")
            let again = try await replay.run(conversation: nil, since: nil, dryRun: false)
            #expect(again.entries.isEmpty && again.alreadyReplayed == 2, "both dead letters are marked")
            // A run interrupted after marking one of a command's dead letters: the command counts as replayed.
            let other = EgressHarness.message(conversation, 3, text: "other")
            var places: [String] = []
            for n in 0..<2 {
                let letter = DeadLetter(
                    command: other, reason: "8x8 answered 503", status: 503, errorBody: nil, attempts: 5, firstAttemptAt: 1,
                    deadLetteredAt: 1_500 + Int64(n), source: "outbound/0/\(5 + n)")
                let delivery = try await producer.send(KafkaProducerMessage(topic: h.config.topicName(.deadLetters), key: conversation, value: letter.encodedRecord))
                places.append("\(delivery.topicPartition.partition)/\(delivery.offset)")
            }
            let mark = DeadLetter(replayOf: places[0], replayedAs: "\(other.commandId)/replay/\(places[1])", at: 1_600)
            _ = try await producer.send(KafkaProducerMessage(topic: h.config.topicName(.deadLetters), key: conversation, value: mark.encodedRecord))
            let afterInterruption = try await replay.run(conversation: nil, since: nil, dryRun: true)
            #expect(afterInterruption.entries.isEmpty && afterInterruption.alreadyReplayed == 4, "\(afterInterruption.entries.map(\.command.commandId))")
            let named = try await replay.run(conversation: conversation, since: nil, dryRun: true)
            #expect(named.entries.map(\.command.commandId) == [queueMove.commandId], "a queue move only for a conversation named")

            // The replay fails again: its own dead letter replays under the original command's name.
            var failedReplay = message
            failedReplay.commandId = replayedId
            let letter = DeadLetter(
                command: failedReplay, reason: "8x8 answered 503", status: 503, errorBody: nil, attempts: 5, firstAttemptAt: 1,
                deadLetteredAt: 2_000, source: "outbound/0/9")
            _ = try await producer.send(KafkaProducerMessage(topic: h.config.topicName(.deadLetters), key: conversation, value: letter.encodedRecord))
            let third = try await replay.run(conversation: nil, since: 2_000, dryRun: true)
            #expect(third.entries.count == 1 && third.entries[0].replayedAs.hasPrefix("\(message.commandId)/replay/"))
            #expect(third.entries[0].replayedAs.components(separatedBy: "/replay/").count == 2, "\(third.entries[0].replayedAs)")

            let egress = h.start()
            try await h.waitForGateway(60, "the replayed message") { $0.contains(replayedId) }
            try await Task.sleep(for: .milliseconds(500))  // nothing more arrives
            #expect(h.gateway.messages(of: conversation).map(\.text) == ["once"])
            #expect(h.gateway.received.allSatisfy { !$0.path.hasSuffix("/typing") })
            await egress.stop()
            await producer.shutdown()
        }
    }

    /// With `agentTakesIt`, an agent accepts the conversation as soon as the move reaches the
    /// queue, so 8x8 reports it assigned to the agent, not to the queue.
    @Test("a queue move that reached 8x8 although no answer came is found there before it is sent again, also when an agent already took the conversation: delivered, not moved again, not reported to the flow as refused", arguments: [false, true])
    func queueMoveFoundBeforeItIsSentAgain(agentTakesIt: Bool) async throws {
        try await EgressHarness.run(egress: "  retry:\n    maxAttempts: 2\n    baseBackoffMs: 10\n    maxBackoffMs: 20") { h in
            let conversation = agentTakesIt ? "conv-agent-took-it" : "conv-queued-anyway"
            // The move takes effect at 8x8, and the connection drops before the answer.
            h.gateway.inject(.drop(afterProcessing: true), forPathEndingWith: "/conversations/\(conversation)", method: "PATCH")
            if agentTakesIt {
                let gateway = h.gateway
                gateway.observe { request, id in
                    if request.method == "PATCH", id == conversation { gateway.assignAgent(conversation, agentId: "agent-7") }
                }
            }
            let move = EgressHarness.command(conversation, 0, .patchConversation, .object(["assignment": .object(["type": .string("queue"), "id": .string("101")])]))
            let after = EgressHarness.message(conversation, 1, text: "after the move")
            let inbound = try h.reader(.inbound)
            let producer = try h.producer()
            try await h.publish([move, after], with: producer)
            let egress = h.start()
            try await h.waitForGateway(60, "the next command delivered") { $0.contains(after.commandId) }
            let metrics = try await egress.metrics(containing: "connector_egress_reconciled_total 1", "the queue move found at 8x8")
            #expect(metrics.contains("connector_dlq_records_total 0"), "\(metrics)")
            #expect(h.gateway.received.filter { $0.method == "PATCH" }.count == 1, "not moved again")
            try await Task.sleep(for: .milliseconds(500))  // nothing more arrives
            #expect(inbound.messages.isEmpty, "no handover failure reported to the flow")
            await egress.stop()
            await inbound.close()
            await producer.shutdown()
        }
    }

    @Test("an agent left in 8x8's assignment from an earlier handover does not pass for a queue move's outcome: a move that broke off before it took effect is sent again, and the conversation reaches the queue")
    func earlierAgentIsNotTheMovesOutcome() async throws {
        try await EgressHarness.run(egress: "  retry:\n    maxAttempts: 3\n    baseBackoffMs: 10\n    maxBackoffMs: 20") { h in
            let conversation = "conv-earlier-agent"
            // The conversation's first handover ended, and 8x8 still names that agent.
            h.gateway.assignAgent(conversation, agentId: "agent-3")
            // The move's connection drops before 8x8 took it.
            h.gateway.inject(.drop(afterProcessing: false), forPathEndingWith: "/conversations/\(conversation)", method: "PATCH")
            let move = EgressHarness.command(conversation, 0, .patchConversation, .object(["assignment": .object(["type": .string("queue"), "id": .string("101")])]))
            let after = EgressHarness.message(conversation, 1, text: "after the move")
            let producer = try h.producer()
            try await h.publish([move, after], with: producer)
            let egress = h.start()
            try await h.waitForGateway(60, "the next command delivered") { $0.contains(after.commandId) }
            let metrics = String(decoding: egress.egress.metrics.render(), as: UTF8.self)
            #expect(metrics.contains("connector_dlq_records_total 0"), "\(metrics)")
            #expect(metrics.contains("connector_egress_reconciled_total 0"), "not taken for delivered: \(metrics)")
            let patches = h.gateway.received.filter { $0.method == "PATCH" }
            #expect(patches.map(\.dropped) == [true, false], "moved again after 8x8 was asked")
            let reads = h.gateway.received.filter { $0.method == "GET" && $0.path.hasSuffix("/conversations/\(conversation)") }
            #expect(reads.count == 2, "once before the move, once after it broke off")
            #expect(h.gateway.assignment(of: conversation)?.type == "queue" && h.gateway.assignment(of: conversation)?.id == "101")
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("429s do not use up a message's attempts: it waits out 8x8's throttling, then still has its attempts for failures")
    func throttlingDoesNotUseUpAttempts() async throws {
        try await EgressHarness.run(egress: "  retry:\n    maxAttempts: 2\n    baseBackoffMs: 10\n    maxBackoffMs: 20") { h in
            let conversation = "conv-throttled-long"
            for _ in 0..<3 { h.gateway.inject(.status(429, retryAfter: 0), forPathEndingWith: "\(conversation)/messages") }
            h.gateway.inject(.status(503), forPathEndingWith: "\(conversation)/messages")
            let message = EgressHarness.message(conversation, 0, text: "after the throttling")
            let producer = try h.producer()
            try await h.publish([message], with: producer)
            let egress = h.start()
            try await h.waitForGateway(60, "the message delivered") { $0.contains(message.commandId) }
            let metrics = try await egress.metrics(containing: #"outcome="delivered""#, "the delivery counted")
            #expect(metrics.contains("connector_dlq_records_total 0"), "\(metrics)")
            #expect(h.gateway.messages(of: conversation).map(\.text) == ["after the throttling"])
            #expect(h.gateway.received.filter { $0.path.hasSuffix("\(conversation)/messages") }.map(\.status) == [429, 429, 429, 503, 202])
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("a 500 is settled by asking 8x8: a message or queue move 8x8 took is delivered once, a message it did not take is sent again, nothing dead-lettered")
    func serverErrorsAreChecked() async throws {
        try await EgressHarness.run(egress: "  retry:\n    maxAttempts: 2\n    baseBackoffMs: 10\n    maxBackoffMs: 20") { h in
            // 8x8 stored the message, then failed; it failed before storing the other; a queue
            // move took effect and answered 500.
            h.gateway.inject(.statusAfterProcessing(500), forPathEndingWith: "conv-500-taken/messages")
            h.gateway.inject(.status(500), forPathEndingWith: "conv-500-lost/messages")
            h.gateway.inject(.statusAfterProcessing(500), forPathEndingWith: "/conversations/conv-500-queued", method: "PATCH")
            let taken = EgressHarness.message("conv-500-taken", 0, text: "stored before the failure")
            let lost = EgressHarness.message("conv-500-lost", 0, text: "failed before it was stored")
            let move = EgressHarness.command("conv-500-queued", 0, .patchConversation, .object(["assignment": .object(["type": .string("queue"), "id": .string("101")])]))
            let inbound = try h.reader(.inbound)
            let producer = try h.producer()
            try await h.publish([taken, lost, move], with: producer)
            let egress = h.start()
            let metrics = try await egress.metrics(containing: "connector_egress_reconciled_total 2", "the message and the queue move found at 8x8")
            try await h.waitForGateway(60, "the lost message sent again") { $0.contains(lost.commandId) }
            try await Task.sleep(for: .milliseconds(500))  // nothing more arrives
            #expect(metrics.contains("connector_dlq_records_total 0"), "\(metrics)")
            #expect(h.gateway.messages(of: "conv-500-taken").map(\.text) == ["stored before the failure"], "not sent twice")
            #expect(h.gateway.messages(of: "conv-500-lost").map(\.text) == ["failed before it was stored"])
            #expect(h.gateway.received.filter { $0.path.hasSuffix("conv-500-lost/messages") && $0.method == "POST" }.count == 2)
            #expect(h.gateway.received.filter { $0.method == "PATCH" }.count == 1, "found at 8x8, not moved again")
            #expect(inbound.messages.isEmpty, "no handover failure reported to the flow")
            await egress.stop()
            await inbound.close()
            await producer.shutdown()
        }
    }

    @Test("an attachment whose url is not an http or https address (a unix socket, a file) is dead-lettered at once, not fetched")
    func attachmentURLsAreWebAddresses() async throws {
        try await EgressHarness.run { h in
            let conversation = "conv-attachment-url"
            let urls = ["http+unix://%2Fvar%2Frun%2Fdocker.sock/info", "file:///etc/passwd", "https:///no-host"]
            let commands = urls.enumerated().map { n, url in
                EgressHarness.command(conversation, n, .sendAttachment, .object(["authorType": .string("bot"), "url": .string(url)]))
            }
            let after = EgressHarness.message(conversation, urls.count, text: "after the attachments")
            let letters = try h.reader(.deadLetters)
            let producer = try h.producer()
            try await h.publish(commands + [after], with: producer)
            let egress = h.start()
            try await h.waitForGateway(60, "the message after the attachments") { $0.contains(after.commandId) }
            let deadLetters = try await letters.wait(30, "three dead letters") { $0.count == 3 }.map { try DeadLetter.decode($0.value) }
            #expect(deadLetters.map { $0.command?.commandId } == commands.map(\.commandId))
            #expect(deadLetters.map(\.reason) == Array(repeating: "not deliverable: the attachment's url is not an http or https address", count: 3))
            #expect(deadLetters.map(\.attempts) == [1, 1, 1])
            #expect(!h.gateway.received.contains { $0.path.hasSuffix("/attachments") })
            await egress.stop()
            await letters.close()
            await producer.shutdown()
        }
    }

    @Test("a redirect from 8x8 is not followed (the POST would become a GET without its body, and the API key would go along): dead-lettered")
    func redirectsAreNotFollowed() async throws {
        try await EgressHarness.run { h in
            let conversation = "conv-moved"
            h.gateway.inject(.redirect(to: "\(h.baseURL)/chat-gateway/v1/conversations/\(conversation)/elsewhere"), forPathEndingWith: "\(conversation)/messages")
            let command = EgressHarness.message(conversation, 0)
            let letters = try h.reader(.deadLetters)
            let producer = try h.producer()
            try await h.publish([command], with: producer)
            let egress = h.start()
            let letter = try DeadLetter.decode(try await letters.wait(60, "the dead letter") { $0.count == 1 }[0].value)
            #expect(letter.reason == "8x8 answered 301: 8x8 answered 301" && letter.status == 301, "\(String(describing: letter.reason))")
            #expect(!h.gateway.received.contains { $0.path.hasSuffix("/elsewhere") }, "not followed")
            await egress.stop()
            await letters.close()
            await producer.shutdown()
        }
    }

    @Test("an attachment's file that is not there (404) is dead-lettered at once; a file name cannot add lines to the upload's part header")
    func attachmentDownloadsAndNames() async throws {
        try await EgressHarness.run { h in
            let conversation = "conv-files"
            let missing = EgressHarness.command(conversation, 0, .sendAttachment, .object([
                "authorType": .string("bot"), "url": .string("\(h.baseURL)/no-such-files/terms.pdf"),
            ]))
            let named = EgressHarness.command(conversation, 1, .sendAttachment, .object([
                "authorType": .string("bot"), "url": .string("\(h.baseURL)/files/terms.pdf"), "fileName": .string("evil\r\nX-Injected: 1\"\\.pdf"),
            ]))
            let letters = try h.reader(.deadLetters)
            let producer = try h.producer()
            try await h.publish([missing, named], with: producer)
            let egress = h.start()
            try await h.waitForGateway(60, "the named attachment") { $0.contains(named.commandId) }
            let letter = try DeadLetter.decode(try await letters.wait(30, "the dead letter") { $0.count == 1 }[0].value)
            #expect(letter.command?.commandId == missing.commandId && letter.attempts == 1)
            #expect(letter.reason == "not deliverable: downloading the attachment answered 404", "\(String(describing: letter.reason))")
            let upload = try #require(h.gateway.received.first { $0.path.hasSuffix("/attachments") })
            let text = String(decoding: upload.body, as: UTF8.self)
            #expect(text.contains(#"filename="evilX-Injected: 1.pdf""#), "\(text.prefix(400))")
            #expect(!text.contains("\r\nX-Injected"))
            await egress.stop()
            await letters.close()
            await producer.shutdown()
        }
    }

    @Test("a partition whose read-ahead is full (a throttled conversation) is paused, not the consume loop: the other partitions' commands go on; the paused one resumes and delivers in order")
    func aFullPartitionDoesNotStopTheOthers() async throws {
        try await EgressHarness.run(egress: "  maxBufferedPerPartition: 2\n  maxConcurrentConversations: 1") { h in
            let slow = "conv-throttled"
            let other = (0..<200).map { "conv-other-\($0)" }.first { Self.partition(of: $0) != Self.partition(of: slow) }!
            let retryAfter = 15
            h.gateway.inject(.status(429, retryAfter: retryAfter), forPathEndingWith: "\(slow)/messages")
            let slowCommands = (0..<6).map { EgressHarness.message(slow, $0) }
            let otherCommands = (0..<2).map { EgressHarness.message(other, $0) }
            let producer = try h.producer()
            try await h.publish(slowCommands, with: producer)
            let egress = h.start()
            let throttled = try await h.firstAnswer(status: 429).at
            try await h.publish(otherCommands, with: producer)
            try await h.expectPartitions(2, holding: slowCommands.count + otherCommands.count)
            try await h.waitForGateway(60, "the other partition's commands") { ids in otherCommands.allSatisfy { ids.contains($0.commandId) } }
            let delivered = try #require(h.gateway.received.last { $0.path.hasSuffix("\(other)/messages") && $0.status == 202 }).at
            #expect(delivered < throttled + .seconds(retryAfter), "delivered while the throttled partition waited")
            try await h.waitForGateway(90, "the throttled conversation's commands") { ids in slowCommands.allSatisfy { ids.contains($0.commandId) } }
            #expect(h.gateway.acceptedCommandIds.filter { $0.contains(slow) } == slowCommands.map(\.commandId), "in order, each once")
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("a seek back to commands the read-ahead dropped that fails (it timed out) restarts the egress from the committed offsets instead of reading on past them: every command once, in order")
    func aFailedSeekRestarts() async throws {
        try await EgressHarness.run(egress: "  maxBufferedPerPartition: 2\n  maxConcurrentConversations: 1") { h in
            let slow = "conv-seek"
            h.gateway.inject(.status(429, retryAfter: 1), forPathEndingWith: "\(slow)/messages")
            let commands = (0..<6).map { EgressHarness.message(slow, $0) }
            let producer = try h.producer()
            try await h.publish(commands, with: producer)
            let log = LogCapture()
            let egress = h.start(logger: log.logger) { $0.failFirstSeekForTesting() }
            try await h.waitForGateway(90, "every command") { ids in commands.allSatisfy { ids.contains($0.commandId) } }
            #expect(h.gateway.acceptedCommandIds == commands.map(\.commandId), "in order, each once")
            _ = try await egress.metrics(containing: "connector_egress_restarts_total 1", "a restart")
            #expect(log.text.contains("could not move back to messages it dropped"), "\(log.text)")
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("a dropped connection is settled by asking 8x8: delivered once whether or not the request took effect")
    func droppedConnections() async throws {
        try await EgressHarness.run { h in
            let conversation = "conv-drop"
            h.gateway.inject(.drop(afterProcessing: true), forPathEndingWith: "\(conversation)/messages")
            h.gateway.inject(.drop(afterProcessing: false), forPathEndingWith: "\(conversation)/messages")
            let commands = (0..<3).map { EgressHarness.message(conversation, $0, text: "same text") }
            let producer = try h.producer()
            try await h.publish(commands, with: producer)
            let egress = h.start()
            try await h.waitForGateway(60, "three messages") { $0.count >= 3 }
            try await Task.sleep(for: .milliseconds(300))  // nothing more arrives
            #expect(h.gateway.acceptedCommandIds == commands.map(\.commandId))
            #expect(h.gateway.messages(of: conversation).count == 3, "8x8 shows each message once")
            #expect(h.gateway.received.filter(\.dropped).count == 2)
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("a message 8x8 takes after the request timed out is found by asking 8x8 once it had time to finish: delivered once, not sent twice")
    func lateAnswerIsNotSentTwice() async throws {
        try await EgressHarness.run(egress: "  requestTimeoutMs: 2000") { h in
            let conversation = "conv-late"
            // 8x8 takes the message 3 s after it came, a second after the egress stopped
            // waiting for the answer.
            h.gateway.inject(.delay(.seconds(3)), forPathEndingWith: "\(conversation)/messages")
            let command = EgressHarness.message(conversation, 0)
            let producer = try h.producer()
            try await h.publish([command], with: producer)
            let egress = h.start()
            _ = try await egress.metricsOnceDelivered()
            // The late request itself is recorded once 8x8 took it (any resend came before).
            _ = try await h.waitForGateway(60, "the late message") { $0.contains(command.commandId) }
            let metrics = egress.metricsText
            #expect(metrics.contains(#"connector_egress_deliveries_total{command="sendMessage",outcome="delivered"} 1"#), "\(metrics)")
            #expect(metrics.contains("connector_egress_reconciled_total 1"), "\(metrics)")
            #expect(h.gateway.messages(of: conversation).count == 1, "8x8 shows the message once")
            #expect(h.gateway.received.filter { $0.method == "POST" }.count == 1)
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("a typing indicator 8x8 keeps refusing with 429 is skipped at once, not waited out or dead-lettered: the reply behind it goes")
    func failingIndicatorDoesNotHoldTheReply() async throws {
        try await EgressHarness.run { h in
            let conversation = "conv-typing-429"
            h.gateway.inject(.status(429, retryAfter: 60), forPathEndingWith: "\(conversation)/typing")
            let typing = EgressHarness.command(conversation, 0, .typing, .object(["authorType": .string("bot")]))
            let reply = EgressHarness.message(conversation, 1)
            let results = try h.reader(.delivery)
            let deadLetters = try h.reader(.deadLetters)
            let producer = try h.producer()
            try await h.publish([typing, reply], with: producer)
            let egress = h.start()
            try await h.waitForGateway(60, "the reply") { $0.contains(reply.commandId) }
            let records = try await results.wait(60, "both results") { records in
                let final = records.compactMap { try? DeliveryResult.decode($0.value) }.filter { $0.outcome != .attempting }
                return final.count >= 2
            }
            let outcomes = Dictionary(records.compactMap { try? DeliveryResult.decode($0.value) }.filter { $0.outcome != .attempting }.map { ($0.commandId, $0.outcome) }) { a, _ in a }
            #expect(outcomes == [typing.commandId: .skipped, reply.commandId: .delivered])
            #expect(deadLetters.messages.isEmpty)
            #expect(h.gateway.received.filter { $0.path.hasSuffix("/typing") }.count == 1, "asked once")
            await egress.stop()
            await results.close()
            await deadLetters.close()
            await producer.shutdown()
        }
    }

    @Test("a graceful stop lets the call to 8x8 under way finish and records it, offset included; the command not started is left for the next owner")
    func gracefulStopFinishesTheCallUnderWay() async throws {
        try await EgressHarness.run(egress: "  requestTimeoutMs: 20000") { h in
            let conversation = "conv-stopping"
            // 8x8 takes the first message 13 s after it came: past the 10 s a graceful stop
            // gives the commands read, within the request timeout.
            h.gateway.inject(.delay(.seconds(13)), forPathEndingWith: "\(conversation)/messages")
            let commands = (0..<2).map { EgressHarness.message(conversation, $0) }
            let results = try h.reader(.delivery)
            let producer = try h.producer()
            try await h.publish(commands, with: producer)
            let egress = h.start()
            // The first call is under way once its attempt is recorded.
            try await results.wait(60, "the first attempt") { $0.contains { (try? DeliveryResult.decode($0.value))?.commandId == commands[0].commandId } }
            await egress.stop()
            let metrics = egress.metricsText
            #expect(metrics.contains(#"connector_egress_deliveries_total{command="sendMessage",outcome="delivered"} 1"#), "\(metrics)")
            let records = try await results.wait(60, "the first command's result") { records in
                records.contains { (try? DeliveryResult.decode($0.value)).map { $0.commandId == commands[0].commandId && $0.outcome == .delivered } ?? false }
            }
            let partition = try #require(records.first.map(\.partition))
            #expect(!records.contains { (try? DeliveryResult.decode($0.value))?.commandId == commands[1].commandId }, "the second never started")
            #expect(h.gateway.acceptedCommandIds == [commands[0].commandId])
            // The first command's offset is committed, the second's not: the next owner sends only the second.
            let admin = try KafkaAdmin(bootstrapServers: h.cluster.bootstrapServers, logger: quietLogger)
            let outbound = TopicPartition(topic: h.config.topicName(.outbound), partition: partition)
            let committed = try await admin.committedOffsets(group: h.config.groupName(.egress), partitions: [outbound])
            let high = try await admin.watermarks(outbound).high
            #expect(committed[outbound] == high - 1, "\(committed) of \(high)")
            await results.close()
            await producer.shutdown()
        }
    }

    @Test("an answer whose body stalls after its head times out instead of holding the conversation: found at 8x8, delivered once, the next message follows")
    func stalledAnswer() async throws {
        try await EgressHarness.run(egress: "  requestTimeoutMs: 1000") { h in
            let conversation = "conv-stall"
            // 8x8 takes the first message and sends the answer's head; its body never comes
            // while the test runs (a connection gone half-open after the head).
            h.gateway.inject(.stallBody(.seconds(300)), forPathEndingWith: "\(conversation)/messages")
            let commands = (0..<2).map { EgressHarness.message(conversation, $0) }
            let producer = try h.producer()
            try await h.publish(commands, with: producer)
            let egress = h.start()
            _ = try await h.waitForGateway(60, "the message after the stalled one") { $0.contains(commands[1].commandId) }
            try await Task.sleep(for: .milliseconds(300))  // nothing more arrives
            #expect(h.gateway.acceptedCommandIds == commands.map(\.commandId))
            #expect(h.gateway.messages(of: conversation).count == 2, "8x8 shows each message once")
            let metrics = egress.metricsText
            #expect(metrics.contains("connector_egress_reconciled_total 1"), "\(metrics)")
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("commands with absurd times (a writer's mistake) do not stop the egress: delivered, or dead-lettered as too old when they fail, and the partition goes on")
    func absurdTimes() async throws {
        try await EgressHarness.run { h in
            let conversation = "conv-times"
            var commands = (0..<3).map { EgressHarness.message(conversation, $0) }
            // The first fails (503) and is older than any retry may be; the second is delivered
            // and its end-to-end time measured from the least time there is.
            commands[0].createdAt = .min
            commands[1].createdAt = .max
            commands[1].receivedAt = .min
            h.gateway.inject(.status(503), forPathEndingWith: "\(conversation)/messages")
            let producer = try h.producer()
            try await h.publish(commands, with: producer)
            let egress = h.start()
            let last = commands[2].commandId
            _ = try await h.waitForGateway(60, "the last command") { $0.contains(last) }
            // 8x8 took the last one before the egress counts its answer.
            let metrics = try await egress.metrics(
                containing: #"connector_egress_deliveries_total{command="sendMessage",outcome="delivered"} 2"#, "the last command's outcome")
            #expect(metrics.contains(#"connector_egress_deliveries_total{command="sendMessage",outcome="deadLettered"} 1"#), "\(metrics)")
            #expect(h.gateway.messages(of: conversation).map(\.commandId) == commands.dropFirst().map(\.commandId))
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("a message a previous owner left at attempting, when 8x8 cannot be asked whether it has it, and a create conversation, which 8x8 cannot be asked about, are dead-lettered rather than sent again; the conversation goes on")
    func uncheckedAfterRestart() async throws {
        try await EgressHarness.run(egress: "  requestTimeoutMs: 1000") { h in
            let conversation = "conv-unasked"
            let commands = (0..<2).map { EgressHarness.message(conversation, $0) }
            // No read of 8x8 shows whether a conversation was created.
            let create = EgressHarness.command("conv-create", 0, .createConversation, .object(["channelId": .string("ch-1"), "user": .object(["name": .string("Jane")])]))
            let producer = try h.producer()
            // What a previous owner wrote before calling 8x8 with the first and the create, in
            // their partition.
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            for command in [commands[0], create] {
                let attempting = DeliveryResult(
                    command: command, outcome: .attempting, status: nil, attempts: 0, at: now, endToEndMillis: nil, error: nil,
                    source: "\(h.config.topicName(.outbound))/0/0")
                _ = try await producer.send(KafkaProducerMessage(topic: h.config.topicName(.delivery), partition: 0, key: command.conversationId, value: attempting.encodedRecord))
            }
            for command in commands + [create] {
                _ = try await producer.send(KafkaProducerMessage(topic: h.config.topicName(.outbound), partition: 0, key: command.conversationId, value: command.encodedRecord))
            }
            // Every read of the conversation's messages fails.
            for _ in 0..<3 { h.gateway.inject(.status(503), forPathEndingWith: "\(conversation)/messages") }
            let egress = h.start()
            _ = try await h.waitForGateway(60, "the second message") { $0.contains(commands[1].commandId) }
            let metrics = egress.metricsText
            #expect(metrics.contains(#"connector_egress_deliveries_total{command="sendMessage",outcome="deadLettered"} 1"#), "\(metrics)")
            #expect(h.gateway.messages(of: conversation).map(\.commandId) == [commands[1].commandId], "the first is not sent again")
            #expect(h.gateway.received.filter { $0.method == "GET" }.map(\.status) == [503, 503, 503])
            _ = try await egress.metrics(
                containing: #"connector_egress_deliveries_total{command="createConversation",outcome="deadLettered"} 1"#, "the create's outcome")
            #expect(!h.gateway.received.contains { $0.path == "/chat-gateway/v1/conversations" }, "no second conversation")
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("a queue move a previous owner left at attempting, with the agent it found before: that agent, still named by 8x8, does not pass for the move's outcome after a restart; the move is sent and the conversation reaches the queue", arguments: [false, true])
    func earlierAgentAfterARestart(recorded: Bool) async throws {
        try await EgressHarness.run(egress: "  requestTimeoutMs: 1000") { h in
            let conversation = recorded ? "conv-restart-agent" : "conv-restart-no-record"
            h.gateway.assignAgent(conversation, agentId: "agent-3")
            let move = EgressHarness.command(conversation, 0, .patchConversation, .object(["assignment": .object(["type": .string("queue"), "id": .string("101")])]))
            let producer = try h.producer()
            // What a previous owner wrote before its request, which never reached 8x8.
            var attempting = DeliveryResult(
                command: move, outcome: .attempting, status: nil, attempts: 0, at: Int64(Date().timeIntervalSince1970 * 1000),
                endToEndMillis: nil, error: nil, source: "\(h.config.topicName(.outbound))/0/0")
            if recorded { attempting.agentBefore = "agent-3" }
            _ = try await producer.send(KafkaProducerMessage(topic: h.config.topicName(.delivery), partition: 0, key: conversation, value: attempting.encodedRecord))
            _ = try await producer.send(KafkaProducerMessage(topic: h.config.topicName(.outbound), partition: 0, key: conversation, value: move.encodedRecord))
            let egress = h.start()
            _ = try await egress.metrics(containing: #"connector_egress_deliveries_total{command="patchConversation",outcome="delivered"} 1"#, "the move's outcome")
            let patches = h.gateway.received.filter { $0.method == "PATCH" }.count
            if recorded {
                #expect(patches == 1, "sent once the earlier agent was recognised")
                #expect(h.gateway.assignment(of: conversation)?.type == "queue")
            } else {
                // Without the record the agent counts as the move's outcome, as before.
                #expect(patches == 0)
                #expect(h.gateway.assignment(of: conversation)?.id == "agent-3")
            }
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("a listed message without a time cannot settle a broken connection: an older one with the same text does not pass for it, the command is dead-lettered")
    func listedWithoutTimes() async throws {
        try await EgressHarness.run { h in
            let conversation = "conv-untimed"
            let first = EgressHarness.message(conversation, 0, text: "same text")
            let producer = try h.producer()
            try await h.publish([first], with: producer)
            let egress = h.start()
            _ = try await h.waitForGateway(60, "the first message") { $0.contains(first.commandId) }
            // Past the window in which the egress counts its own deliveries, the same text again;
            // its request never reaches 8x8, and 8x8 lists messages without their times.
            try await Task.sleep(for: .milliseconds(2_500))  // the egress's clock tolerance is 2 s
            h.gateway.listsMessageTimes = false
            h.gateway.inject(.drop(afterProcessing: false), forPathEndingWith: "\(conversation)/messages")
            let second = EgressHarness.message(conversation, 1, text: "same text")
            try await h.publish([second], with: producer)
            let metrics = try await egress.metrics(containing: #"outcome="deadLettered"} 1"#, "the second command's outcome")
            #expect(!metrics.contains("connector_egress_reconciled_total 1"), "the older message passed for the second")
            #expect(h.gateway.messages(of: conversation).count == 1)
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("asking 8x8 after a dropped connection survives a failing and a throttled read: delivered, not dead-lettered or sent twice")
    func reconcilingReadsAreRetried() async throws {
        try await EgressHarness.run { h in
            let conversation = "conv-ask"
            // The message is taken, its answer lost; then the reads of the conversation's
            // messages get a 503 and a 429 before one succeeds.
            h.gateway.inject(.drop(afterProcessing: true), forPathEndingWith: "\(conversation)/messages")
            h.gateway.inject(.status(503), forPathEndingWith: "\(conversation)/messages")
            h.gateway.inject(.status(429, retryAfter: 1), forPathEndingWith: "\(conversation)/messages")
            let command = EgressHarness.message(conversation, 0)
            let producer = try h.producer()
            try await h.publish([command], with: producer)
            let egress = h.start()
            let metrics = try await egress.metricsOnceDelivered()
            #expect(metrics.contains(#"connector_egress_deliveries_total{command="sendMessage",outcome="delivered"} 1"#), "\(metrics)")
            #expect(metrics.contains("connector_egress_reconciled_total 1"), "\(metrics)")
            #expect(h.gateway.messages(of: conversation).count == 1, "8x8 shows the message once")
            #expect(h.gateway.received.filter { $0.method == "GET" }.map(\.status) == [503, 429, 200])
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("a Retry-After on a read of 8x8 is held to the retry policy's longest backoff: an hour's Retry-After does not hold the conversation for an hour")
    func aLongRetryAfterOnAReadIsCapped() async throws {
        try await EgressHarness.run(egress: "  retry:\n    maxBackoffMs: 1000") { h in
            let conversation = "conv-ask-later"
            h.gateway.inject(.drop(afterProcessing: true), forPathEndingWith: "\(conversation)/messages")
            h.gateway.inject(.status(429, retryAfter: 3600), forPathEndingWith: "\(conversation)/messages")
            let command = EgressHarness.message(conversation, 0)
            let producer = try h.producer()
            try await h.publish([command], with: producer)
            let egress = h.start()
            let metrics = try await egress.metricsOnceDelivered()
            #expect(metrics.contains(#"connector_egress_deliveries_total{command="sendMessage",outcome="delivered"} 1"#), "\(metrics)")
            #expect(metrics.contains("connector_egress_reconciled_total 1"), "\(metrics)")
            #expect(h.gateway.received.filter { $0.method == "GET" }.map(\.status) == [429, 200])
            await egress.stop()
            await producer.shutdown()
        }
    }

    @Test("an unreadable outbound record goes to the dead-letter topic and the partition goes on")
    func poisonRecord() async throws {
        try await EgressHarness.run { h in
            let conversation = "conv-poison"
            let letters = try h.reader(.deadLetters)
            let producer = try h.producer()
            _ = try await producer.send(KafkaProducerMessage(topic: h.config.topicName(.outbound), key: conversation, value: Array("{not json".utf8)))
            let after = EgressHarness.message(conversation, 1)
            try await h.publish([after], with: producer)
            let egress = h.start()
            try await h.waitForGateway(60, "the command after the poison record") { $0.contains(after.commandId) }
            let letter = try DeadLetter.decode(try await letters.wait(30, "the dead letter") { $0.count == 1 }[0].value)
            #expect(letter.command == nil && letter.raw == "{not json" && letter.reason?.hasPrefix("undecodable") == true)
            await egress.stop()
            await letters.close()
            await producer.shutdown()
        }
    }

    @Test("two egresses share the partitions; one leaving mid-stream hands its partitions over without a loss, a duplicate or a reordering")
    func twoEgressesAndARebalance() async throws {
        try await EgressHarness.run { h in
            let conversations = (0..<12).map { "conv-pair-\($0)" }
            let first = (0..<10).flatMap { n in conversations.map { EgressHarness.message($0, n) } }
            let second = (10..<20).flatMap { n in conversations.map { EgressHarness.message($0, n) } }
            let producer = try h.producer()
            let a = h.start()
            let b = h.start()
            try await h.publish(first, with: producer)
            try await h.waitForGateway(90, "the first half") { Set($0).count >= first.count }
            try await h.publish(second, with: producer)
            try await h.waitForGateway(90, "some of the second half") { Set($0).count >= first.count + 20 }
            for egress in [a, b] {
                let metrics = String(decoding: egress.egress.metrics.render(), as: UTF8.self)
                #expect(metrics.contains(#"connector_egress_deliveries_total{command="sendMessage",outcome="delivered"}"#), "both take part")
            }
            await b.stop()  // graceful: drains, commits, leaves; a takes its partitions over
            try await h.waitForGateway(120, "everything") { Set($0).count >= first.count + second.count }
            try await Task.sleep(for: .milliseconds(500))  // nothing more arrives
            let accepted = h.gateway.acceptedCommandIds
            #expect(accepted.count == first.count + second.count, "each once: \(accepted.counts.filter { $0.value > 1 }.keys.sorted().prefix(5))")
            for conversation in conversations {
                #expect(h.gateway.messages(of: conversation).map(\.text) == (0..<20).map { "message \($0) of \(conversation)" })
            }
            await a.stop()
            await producer.shutdown()
        }
    }

    @Test("a command waiting out a Retry-After when its partition is revoked is not sent by the old owner; the next owner sends it once, in order")
    func aRevokedPartitionSendsNothingMore() async throws {
        try await EgressHarness.run(egress: "  requestTimeoutMs: 2000") { h in
            let conversation = "conv-revoked"
            let commands = (0..<3).map { EgressHarness.message(conversation, $0) }
            // Longer than the rebalance plus the next owner's wait (a request timeout) before it
            // asks 8x8 and sends: a send of the first owner after its wait would be a second one.
            // (A rebalance has taken 10 s with the whole suite running on the 2 cores.)
            let retryAfter = 20
            h.gateway.inject(.status(429, retryAfter: retryAfter), forPathEndingWith: "\(conversation)/messages")
            let producer = try h.producer()
            let a = h.start(revokeDrain: .milliseconds(300))
            try await h.publish(commands, with: producer)
            let throttled = try await h.firstAnswer(status: 429).at
            // A second egress joins: every partition is revoked from the first (eager rebalance)
            // while its delivery of command 0 waits out the Retry-After.
            let b = h.start(revokeDrain: .milliseconds(300))
            let rebalanced = try await within(60, "the second egress's partitions") {
                while b.egress.assignment.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
                return ContinuousClock.now
            }
            #expect(rebalanced < throttled + .seconds(retryAfter), "the scenario: the rebalance came while the first owner waited")
            try await h.waitForGateway(90, "every command") { Set($0).count >= commands.count }
            // Past the moment the first owner's wait ends, plus room for a request it would send.
            let quiet = throttled + .seconds(retryAfter) + .seconds(2)
            if quiet > .now { try await Task.sleep(until: quiet) }
            let accepted = h.gateway.acceptedCommandIds
            #expect(accepted == commands.map(\.commandId), "each once, in order: \(accepted)")
            await a.stop()
            await b.stop()
            await producer.shutdown()
        }
    }

    @Test("a revoke while the read-ahead is full and its oldest command waits out a Retry-After: the partition moves at once, every command once, in order")
    func aRevokeWhileTheReadAheadIsFull() async throws {
        try await EgressHarness.run(egress: "  requestTimeoutMs: 2000\n  maxBufferedPerPartition: 2") { h in
            let stuck = "conv-stuck"
            let other = Self.conversation("conv-next", sharingPartitionWith: stuck)
            // The revoke's wait for acknowledgement is the drain (300 ms) plus 5 s; the
            // Retry-After is longer, so a loop held up until it ends would miss the revoke.
            h.gateway.inject(.status(429, retryAfter: 10), forPathEndingWith: "\(stuck)/messages")
            let commands = (0..<4).flatMap { [EgressHarness.message(stuck, $0), EgressHarness.message(other, $0)] }
            let producer = try h.producer()
            let log = LogCapture()
            let a = h.start(logger: log.logger, revokeDrain: .milliseconds(300))
            try await h.publish(commands, with: producer)
            try await h.expectPartitions(1, holding: commands.count)
            _ = try await h.firstAnswer(status: 429)
            let b = h.start(revokeDrain: .milliseconds(300))
            try await h.waitForGateway(90, "every command") { Set($0).count >= commands.count }
            try await Task.sleep(for: .seconds(12))  // past the first owner's Retry-After: nothing more arrives
            let accepted = h.gateway.acceptedCommandIds
            #expect(accepted.count == commands.count, "each once: \(accepted.counts.filter { $0.value > 1 }.keys.sorted())")
            for conversation in [stuck, other] {
                #expect(accepted.filter { $0.contains(conversation + "-") } == commands.filter { $0.conversationId == conversation }.map(\.commandId))
            }
            // The first owner's loop, held up by the full read-ahead, let the revoke through.
            #expect(log.text.contains("partitions revoked"))
            #expect(!log.text.contains("revoke not acknowledged in time"), "\(log.text)")
            await a.stop()
            await b.stop()
            await producer.shutdown()
        }
    }

    @Test("the egress serves health (ready while consuming) and its metrics")
    func healthAndMetrics() async throws {
        try await EgressHarness.run { h in
            let egress = Egress(config: h.config, bootstrapServers: h.cluster.bootstrapServers, logger: quietLogger)
            let producer = try h.producer()
            let command = EgressHarness.message("conv-health", 0)
            try await h.publish([command], with: producer)
            try await withRunningApplication({ egress.application(host: "127.0.0.1", port: 0, onRunning: $0) }) { port in
                func get(_ path: String) async throws -> (Int, String) {
                    let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"), timeout: .seconds(30))
                    return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
                }
                #expect(try await get("/health/live").0 == 200)
                try await h.waitForGateway(60, "the command delivered") { $0.contains(command.commandId) }
                #expect(try await get("/health/ready").0 == 200)
                let (status, metrics) = try await get("/metrics")
                #expect(status == 200)
                #expect(metrics.contains(#"connector_egress_deliveries_total{command="sendMessage",outcome="delivered"} 1"#), "\(metrics)")
                #expect(metrics.contains("connector_end_to_end_seconds_bucket"))
            }
            #expect(!egress.isReady, "not ready once stopped")
            await producer.shutdown()
        }
    }

    @Test("egresses stopped abruptly mid-stream and restarted deliver every command exactly once, in order per conversation")
    func crashAndRestart() async throws {
        // A short request timeout: a restarted egress waits that long before asking 8x8 about
        // a command its crashed predecessor was sending (its request may still land).
        try await EgressHarness.run(egress: "  requestTimeoutMs: 2000") { h in
            let conversations = (0..<12).map { "conv-crash-\($0)" }
            let commands = (0..<25).flatMap { n in conversations.map { EgressHarness.message($0, n) } }
            // Slow answers keep requests in flight when the egress dies.
            for conversation in conversations.prefix(6) {
                for _ in 0..<3 { h.gateway.inject(.delay(.milliseconds(150)), forPathEndingWith: "\(conversation)/messages") }
            }
            let producer = try h.producer()
            try await h.publish(commands, with: producer)
            var egress = h.start()
            for threshold in [60, 150, 240] {
                try await h.waitForGateway(90, "\(threshold) commands") { Set($0).count >= threshold }
                await egress.crash()
                egress = h.start()
            }
            let accepted = try await h.waitForGateway(120, "every command") { Set($0).count >= commands.count }
            try await Task.sleep(for: .milliseconds(500))  // nothing more arrives
            let final = h.gateway.acceptedCommandIds
            let duplicates = final.counts.filter { $0.value > 1 }
            #expect(duplicates.isEmpty, "delivered more than once: \(duplicates.keys.sorted().prefix(5))")
            #expect(Set(accepted) == Set(commands.map(\.commandId)))
            for conversation in conversations {
                let texts = h.gateway.messages(of: conversation).map(\.text)
                #expect(texts == (0..<25).map { "message \($0) of \(conversation)" }, "\(conversation) in order, each once")
            }
            let metrics = String(decoding: egress.egress.metrics.render(), as: UTF8.self)
            print("egress crash test: \(final.count) accepted calls for \(commands.count) commands; \(metrics.split(separator: "\n").filter { $0.hasPrefix("connector_egress_reconciled_total") || $0.contains("outcome=\"duplicate\"") })")
            await egress.stop()
            await producer.shutdown()
        }
    }

    /// The first of `prefix`0, `prefix`1, ... in the partition of `conversation`, as the
    /// harness's producer (the default partitioner, murmur2) places them.
    static func conversation(_ prefix: String, sharingPartitionWith conversation: String) -> String {
        (0..<200).map { "\(prefix)\($0)" }.first { partition(of: $0) == partition(of: conversation) }!
    }

    static func partition(of key: String) -> Int32 {
        KafkaProducerConfiguration(bootstrapServers: "").partition(ofKey: key, partitionCount: EgressHarness.partitions)!
    }
}
