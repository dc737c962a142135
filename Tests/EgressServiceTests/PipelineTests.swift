import BotWorker
import ChatEvents
import Foundation
import IngressService
import Kafka
import ServiceLifecycle
import Simulator
import Testing

@Suite("The whole pipeline: simulator webhooks, ingress, worker, egress, simulator REST")
struct WholePipelineTests {
    static func webhook(_ type: String, _ data: String, conversation: String = "conv-e2e") -> [UInt8] {
        Array(#"{"eventType":"\#(type)","conversationId":"\#(conversation)","timestamp":1713100000000,"data":\#(data)}"#.utf8)
    }

    /// Runs the worker, the egress and the ingress on the harness's cluster, then `body` with
    /// the endpoint's webhook URL; stops the worker and the egress after it.
    static func withPipeline(_ h: EgressHarness, _ body: (_ url: String, _ egress: RunningEgress) async throws -> Void) async throws {
        let worker = BotWorker(
            config: h.config, bootstrapServers: h.cluster.bootstrapServers, endpoints: try BotWorker.loadEndpoints(config: h.config),
            logger: quietLogger)
        let egress = h.start()
        let workerGroup = ServiceGroup(configuration: .init(services: [.init(service: worker)], logger: quietLogger))
        let workerTask = Task { _ = try? await workerGroup.run() }
        let ingress = try IngressService.make(config: h.config, bootstrapServers: h.cluster.bootstrapServers, logger: quietLogger)
        try await withRunningApplication({ ingress.application(host: "127.0.0.1", port: 0, onRunning: $0) }) { port in
            try await body("http://127.0.0.1:\(port)/endpoint/support-token-1", egress)
        }
        await workerGroup.triggerGracefulShutdown()
        await workerTask.value
        await egress.stop()
    }

    @Test("the demo conversation from greeting through handover and back to the end reaches 8x8, and 8x8's echoes are dropped")
    func demoConversation() async throws {
        try await EgressHarness.run { h in
            let inbound = try h.reader(.inbound)
            try await Self.withPipeline(h) { url, egress in
                h.simulator.sendEchoes(to: url, logger: quietLogger)
                var sender = h.simulator.webhookSender(logger: quietLogger)
                sender.tenantId = "acme"
                let conversation: [[UInt8]] = [
                    Self.webhook("CONVERSATION_UPDATE", #"{"state":"ACTIVE","user":{"name":"Jane","userId":"crm-1"},"channel":"WebChat"}"#),
                    Self.webhook("ACTIVITY", #"{"name":"quickReply/action","value":{"type":"postback","data":{"title":"My balance","payload":"what is my balance"}}}"#),
                    Self.webhook("MESSAGE", #"{"isEcho":false,"sender":{"id":"crm-1","type":"user"},"text":"update my email"}"#),
                    Self.webhook("MESSAGE", #"{"isEcho":false,"sender":{"id":"crm-1","type":"user"},"text":"jane@example.com"}"#),
                    Self.webhook("MESSAGE", #"{"isEcho":false,"sender":{"id":"crm-1","type":"user"},"text":"let me talk to a human"}"#),
                    Self.webhook("QUEUED", #"{"queueId":"101","queueName":"Support"}"#),
                    Self.webhook("MEMBERS_CHANGED", #"{"memberType":"agent","change":"joined","id":"agent-1"}"#),
                    Self.webhook("MESSAGE", #"{"isEcho":false,"sender":{"id":"agent-1","type":"agent"},"text":"Hello Jane, Tom here."}"#),
                    Self.webhook("MESSAGE", #"{"isEcho":false,"sender":{"id":"crm-1","type":"user"},"text":"my card is blocked"}"#),
                    Self.webhook("MEMBERS_CHANGED", #"{"memberType":"agent","change":"left","id":"agent-1"}"#),
                    Self.webhook("ACTIVITY", #"{"name":"quickReply/action","value":{"type":"postback","data":{"title":"No, bye","payload":"bye"}}}"#),
                ]
                for body in conversation {
                    let result = try await sender.send(body: body, to: url)
                    #expect(result.status == 200, "\(result.body)")
                }
                let expected = [
                    "Hi Jane! I'm the demo bot. I can tell you your balance or take your email address.",
                    "What would you like to do?",
                    "Your balance is 1,234.56 EUR.",
                    "Anything else?",
                    "What is your email address?",
                    "Thanks, I saved jane@example.com.",
                    "Anything else?",
                    "I'm connecting you with a colleague. Please wait a moment.",
                    "PATCH",
                    "I'm back. Was your question answered?",
                    "What would you like to do?",
                    "Goodbye, and thanks for chatting!",
                    "PATCH /participants/user",
                ]
                try await h.waitForGateway(120, "the conversation at 8x8") { $0.count >= expected.count }
                // 8x8 echoes each bot message; the echoes go through the ingress and the worker drops them.
                let botMessages = expected.count - 2
                let records = try await inbound.wait(60, "the echoes") { records in
                    records.count { (try? InboundEvent.decode($0.value))?.normalized.kind == .echo } >= botMessages
                }
                try await Task.sleep(for: .milliseconds(500))  // nothing more arrives
                #expect(records.count == conversation.count + botMessages)
                let calls = h.gateway.received.filter { $0.method != "GET" && $0.status != 0 }
                let seen = calls.map { call -> String in
                    if call.path.hasSuffix("/messages") { return call.json?["text"]?.stringValue ?? "<card>" }
                    return "\(call.method) \(call.path.replacingOccurrences(of: "/chat-gateway/v1/conversations/conv-e2e", with: ""))".trimmingCharacters(in: .whitespaces)
                }
                #expect(seen == expected)
                #expect(calls.allSatisfy { (200..<300).contains($0.status) && $0.headers["x-api-key"] == EgressHarness.credentials.apiKey })
                #expect(Set(h.gateway.acceptedCommandIds).count == expected.count, "each command once")
                let metrics = String(decoding: egress.egress.metrics.render(), as: UTF8.self)
                #expect(metrics.contains("connector_end_to_end_seconds_count \(expected.count)"))
            }
            await inbound.close()
        }
    }

    @Test("a handover 8x8 refuses is dead-lettered, the flow tells the user (input.handover.status error) and the bot answers again")
    func refusedHandover() async throws {
        try await EgressHarness.run { h in
            let deadLetters = try h.reader(.deadLetters)
            // 8x8 refuses the queue move (a queue id it does not know); a 400 is not retried.
            h.gateway.inject(.status(400), forPathEndingWith: "/conversations/conv-refused", method: "PATCH")
            try await Self.withPipeline(h) { url, _ in
                var sender = h.simulator.webhookSender(logger: quietLogger)
                sender.tenantId = "acme"
                let gateway = h.gateway
                @Sendable func botTexts() -> [String] {
                    gateway.received.filter { $0.path.hasSuffix("/messages") && $0.method == "POST" && (200..<300).contains($0.status) }
                        .map { $0.json?["text"]?.stringValue ?? "<card>" }
                }
                func send(_ type: String, _ data: String) async throws {
                    let result = try await sender.send(body: Self.webhook(type, data, conversation: "conv-refused"), to: url)
                    #expect(result.status == 200, "\(result.body)")
                }
                try await send("MESSAGE", #"{"isEcho":false,"sender":{"id":"crm-2","type":"user"},"text":"let me talk to a human"}"#)
                let sorry = "Sorry, I could not reach a colleague just now. Please try again a little later."
                try await within(120, "the flow hearing of the refused handover") {
                    while !botTexts().contains("Anything else?") { try await Task.sleep(for: .milliseconds(20)) }
                }
                #expect(botTexts() == ["I'm connecting you with a colleague. Please wait a moment.", sorry, "Anything else?"])
                let patches = gateway.received.filter { $0.method == "PATCH" }
                #expect(patches.map(\.status) == [400], "refused once, not retried")
                let letters = try await deadLetters.wait(30, "the dead letter") { !$0.isEmpty }
                #expect(try DeadLetter.decode(letters[0].value).command?.action == .patchConversation)

                // The bot is not left silent: the next message runs the flow.
                try await send("MESSAGE", #"{"isEcho":false,"sender":{"id":"crm-2","type":"user"},"text":"what is my balance"}"#)
                try await within(60, "the answer after the refused handover") {
                    while !botTexts().contains("Your balance is 1,234.56 EUR.") { try await Task.sleep(for: .milliseconds(20)) }
                }
            }
            await deadLetters.close()
        }
    }
}
