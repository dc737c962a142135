public import ChatEvents

/// What a turn asks 8x8 to do, in order. The worker turns each into an outbound command.
public enum BotOutput: Sendable, Hashable {
    /// A SendConversationMessagePayload (`authorType: bot`).
    case message(JSONValue)
    /// A file by URL, with optional text: the egress uploads it and sends it.
    case attachment(url: String, fileName: String?)
    case typing
    case thinking(seconds: Int)
    /// Move the conversation to an 8x8 queue (`PATCH /conversations/{id}`).
    case handover(queueId: String?)
    /// Ask 8x8 to hand the conversation back to the bot after the agent (post-agent-assignment).
    case handback
    /// Remove the user, which ends the conversation; `displayMessage` is shown when set.
    case endConversation(displayMessage: String?)

    public static func text(_ text: String) -> BotOutput {
        .message(.object(["authorType": .string("bot"), "text": .string(text)]))
    }

    /// Text with an 8x8 quick-replies card.
    public static func quickReplies(_ text: String?, _ options: [(title: String, payload: String)]) -> BotOutput {
        var body: [String: JSONValue] = ["authorType": .string("bot")]
        if let text, !text.isEmpty { body["text"] = .string(text) }
        body["cards"] = .array([.object([
            "contentType": .string("application/8x8.quick.replies"),
            "content": .object(["options": .array(options.map {
                .object(["title": .string($0.title), "data": .object(["postback": .string($0.payload)])])
            })]),
        ])])
        return .message(.object(body))
    }

    /// An Adaptive Card message (version 1.3 unless the card names one).
    public static func adaptiveCard(_ card: JSONValue) -> BotOutput {
        var content = card.objectValue ?? [:]
        if content["version"] == nil { content["version"] = .string("1.3") }
        if content["$schema"] == nil { content["$schema"] = .string("http://adaptivecards.io/schemas/adaptive-card.json") }
        return .message(.object([
            "authorType": .string("bot"),
            "cards": .array([.object(["contentType": .string("application/vnd.microsoft.card.adaptive"), "content": .object(content)])]),
        ]))
    }
}
