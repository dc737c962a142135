import BotWorker
import ChatEvents
import FlowEngine
import Foundation
import Kafka
import Testing

@Suite("Bot worker crashes and rebalances", .serialized)
struct CrashTests {
    /// A flow whose every reply depends on the session (a counter and the execution count),
    /// so a lost or doubled session update shows in the text.
    static let statefulFlow = """
        nodes:
          - { id: count, type: set, increment: { n: 1 }, set: { last: "{{input.text}}" }, next: reply }
          - { id: reply, type: say, text: "{{input.text}} n={{context.n}} exec={{input.execution}}", next: tick }
          - { id: tick, type: typing }
        """

    @Test("workers killed at many points and a second worker joining and leaving: every command once, every session intact")
    func crashesAndRebalances() async throws {
        let flowFile = FileManager.default.temporaryDirectory.appendingPathComponent("stateful-\(UUID().uuidString).yaml")
        try Self.statefulFlow.write(to: flowFile, atomically: true, encoding: .utf8)
        let harness = try WorkerHarness(flow: flowFile.path)

        // The stream: 30 conversations, 8 inputs each, published in rounds of one input per conversation.
        let conversations = 30
        let rounds = 8
        var factories = (0..<conversations).map { EventFactory(conversation: "crash-\($0)") }
        var stream: [[InboundEvent]] = []
        for round in 0..<rounds {
            stream.append((0..<conversations).map { factories[$0].user("r\(round)") })
        }

        // What a worker that never fails would send: the engine run offline, per conversation in order.
        let engine = try #require(try BotWorker.loadEndpoints(config: harness.config)["support"]).engine
        var expected: [String: String] = [:]  // command id -> text ("typing" for the indicator)
        var sessions: [String: SessionState] = [:]
        for round in stream {
            for event in round {
                let result = try engine.handle(event, session: sessions[event.recordKey], now: event.receivedAt)
                if let session = result.session { sessions[event.recordKey] = session }
                for (index, output) in result.outputs.enumerated() {
                    let id = OutboundCommand.commandId(eventId: event.eventId, sequence: index)
                    if case .message(let body) = output { expected[id] = body["text"]?.stringValue } else { expected[id] = "typing" }
                }
            }
        }
        #expect(expected.count == conversations * rounds * 2)
        #expect(expected.values.contains("r7 n=8 exec=8"))

        // Slow acknowledgements keep writes in flight, so the kills land between a command's
        // write and its session's, and between a session's write and the offset commit.
        for broker in harness.cluster.brokerIDs { try harness.cluster.setRoundTripTime(broker: broker, .milliseconds(40)) }
        let outbound = try harness.reader(.outbound)
        let producer = try harness.producer()
        var primary = try harness.start()
        var second: RunningWorker?
        @Sendable func distinctIds(_ records: [KafkaMessage]) -> Int {
            Set(records.compactMap { try? OutboundCommand.decode($0.value).commandId }).count
        }

        for (round, events) in stream.enumerated() {
            try await harness.publish(events, with: producer)
            switch round {
            case 1:  // killed right after new input arrives, mid-processing
                await primary.crash()
                primary = try harness.start()
            case 2:  // a second worker joins: partitions move between live workers
                second = try harness.start()
            case 3:  // killed once some of the round is done
                let target = distinctIds(outbound.messages) + 20
                _ = try? await outbound.wait(30, "some progress") { distinctIds($0) >= target }
                await primary.crash()
                primary = try harness.start()
            case 4:  // the second worker leaves gracefully
                await second?.stop()
                second = nil
            case 5, 6:  // killed again at once, then after a while
                if round == 6 { try await Task.sleep(for: .milliseconds(150)) }
                await primary.crash()
                primary = try harness.start()
            default:
                break
            }
        }

        let total = expected.count
        try await outbound.wait(300, "every expected command") { distinctIds($0) >= total }
        let commands = try outbound.commands()
        let distinct = Dictionary(grouping: commands, by: \.commandId)
        print("crash test: \(commands.count) records, \(distinct.count) distinct commands")
        #expect(Set(distinct.keys) == Set(expected.keys), "no command missing and none unexpected")
        for (id, copies) in distinct {
            for command in copies {
                let text = command.action == .typing ? "typing" : command.body["text"]?.stringValue
                #expect(text == expected[id], "command \(id) carries what an uninterrupted worker would send")
            }
        }
        // Per conversation, the first copy of each command appears in the order the flow produced them.
        for (conversation, records) in Dictionary(grouping: commands, by: \.conversationId) {
            var seen = Set<String>()
            let firstCopies = records.filter { seen.insert($0.commandId).inserted }.compactMap { $0.action == .sendMessage ? $0.body["text"]?.stringValue : nil }
            #expect(firstCopies == (0..<rounds).map { "r\($0) n=\($0 + 1) exec=\($0 + 1)" }, "order in \(conversation)")
        }

        await primary.stop()
        await outbound.close()
        try await producer.shutdown()
    }
}
