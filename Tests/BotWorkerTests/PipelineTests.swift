import BotWorker
import ChatEvents
import Foundation
import IngressService
import Kafka
import Simulator
import Testing

@Suite("Pipeline: signed webhooks through the ingress and the worker", .serialized)
struct PipelineTests {
    static let signer = try! WebhookSigner(kid: "pipeline-key")

    /// An 8x8 webhook body.
    static func webhook(_ type: String, _ data: String, conversation: String = "conv-pipe") -> [UInt8] {
        Array(#"{"eventType":"\#(type)","conversationId":"\#(conversation)","timestamp":1713100000000,"data":\#(data)}"#.utf8)
    }

    @Test("a full demo conversation: 8x8 webhooks in, the commands for 8x8 out of the outbound topic")
    func demoConversationThroughTheIngress() async throws {
        let simulator = EightByEightSimulator(signer: Self.signer)
        try await withRunningApplication({ simulator.application(logger: quietLogger, onRunning: $0) }) { simulatorPort in
            let harness = try WorkerHarness(jwkBaseURL: "http://127.0.0.1:\(simulatorPort)")
            let ingress = try IngressService.make(config: harness.config, bootstrapServers: harness.cluster.bootstrapServers, logger: quietLogger)
            let outbound = try harness.reader(.outbound)
            let worker = try harness.start()
            try await withRunningApplication({ ingress.application(host: "127.0.0.1", port: 0, onRunning: $0) }) { port in
                var sender = simulator.webhookSender(logger: quietLogger)
                sender.tenantId = "acme"
                sender.customerId = "customer-1"
                let url = "http://127.0.0.1:\(port)/endpoint/support-token-1"
                let conversation: [[UInt8]] = [
                    Self.webhook("CONVERSATION_UPDATE", #"{"state":"ACTIVE","user":{"name":"Jane","userId":"crm-1","ipaddress":"10.0.0.7"},"channel":"WebChat"}"#),
                    Self.webhook("ACTIVITY", #"{"name":"quickReply/action","value":{"type":"postback","data":{"title":"My balance","payload":"what is my balance"}}}"#),
                    Self.webhook("MESSAGE", #"{"isEcho":true,"sender":{"id":"bot","type":"bot"},"text":"Your balance is 1,234.56 EUR."}"#),
                    Self.webhook("MESSAGE", #"{"isEcho":false,"sender":{"id":"crm-1","type":"user"},"text":"update my email"}"#),
                    Self.webhook("MESSAGE", #"{"isEcho":false,"sender":{"id":"crm-1","type":"user"},"text":"jane(at)example"}"#),
                    Self.webhook("MESSAGE", #"{"isEcho":false,"sender":{"id":"crm-1","type":"user"},"text":"jane@example.com"}"#),
                    Self.webhook("MESSAGE", #"{"isEcho":false,"sender":{"id":"crm-1","type":"user"},"text":"let me talk to a human"}"#),
                    Self.webhook("QUEUED", #"{"queueId":"101","queueName":"Support"}"#),
                    Self.webhook("MEMBERS_CHANGED", #"{"memberType":"agent","change":"joined","id":"agent-1"}"#),
                    Self.webhook("MESSAGE", #"{"isEcho":false,"sender":{"id":"agent-1","type":"agent"},"text":"Hello Jane, Tom here."}"#),
                    Self.webhook("MESSAGE", #"{"isEcho":false,"sender":{"id":"crm-1","type":"user"},"text":"my card is blocked"}"#),
                    Self.webhook("TRANSFER", #"{"fromAgentId":"agent-1","toQueueId":"102"}"#),
                    Self.webhook("MEMBERS_CHANGED", #"{"memberType":"agent","change":"left","id":"agent-1"}"#),
                    Self.webhook("MEMBERS_CHANGED", #"{"memberType":"agent","change":"joined","id":"agent-2"}"#),
                    Self.webhook("MEMBERS_CHANGED", #"{"memberType":"agent","change":"left","id":"agent-2"}"#),
                    Self.webhook("ACTIVITY", #"{"name":"quickReply/action","value":{"type":"postback","data":{"title":"No, bye","payload":"bye"}}}"#),
                ]
                for body in conversation {
                    // One at a time, as 8x8 sends a conversation's events.
                    let result = try await sender.send(body: body, to: url)
                    #expect(result.status == 200, "\(result.body)")
                }
                let records = try await outbound.wait(90, "the conversation's commands") { $0.count >= 14 }
                try await Task.sleep(for: .milliseconds(300))  // nothing more arrives
                let commands = try outbound.commands()
                #expect(commands.count == 14)
                #expect(Set(records.map(\.keyString)) == ["conv-pipe"])
                let texts = commands.map { $0.action == .sendMessage ? ($0.body["text"]?.stringValue ?? "<card>") : $0.action.rawValue }
                #expect(texts == [
                    "Hi Jane! I'm the demo bot. I can tell you your balance or take your email address.",
                    "What would you like to do?",
                    "Your balance is 1,234.56 EUR.",
                    "Anything else?",
                    "What is your email address?",
                    "That does not look like an email address. Please type it like name@example.com.",
                    "Thanks, I saved jane@example.com.",
                    "Anything else?",
                    "I'm connecting you with a colleague. Please wait a moment.",
                    "patchConversation",
                    "I'm back. Was your question answered?",
                    "What would you like to do?",
                    "Goodbye, and thanks for chatting!",
                    "endConversation",
                ])
                #expect(commands.allSatisfy { $0.tenantId == "acme" && $0.receivedAt > 0 && $0.receivedAt <= $0.createdAt })
                let ingressIds = Set(commands.map(\.causationEventId))
                #expect(ingressIds.count == 8, "each command names the webhook that caused it")
            }
            await worker.stop()
            await outbound.close()
        }
    }
}
