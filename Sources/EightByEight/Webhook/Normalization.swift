public import ChatEvents

extension WebhookEvent {
    /// What this event means for a bot (spec section 10's `kind`), with the fields of its kind.
    /// Pure: no I/O, so every shape is tested without a server.
    public var normalized: NormalizedEvent {
        switch payload {
        case .message(let message):
            return Self.normalize(message)
        case .activity(let activity):
            return Self.normalize(activity)
        case .conversationUpdate(let update):
            var event = NormalizedEvent(kind: .conversationState)
            event.state = update.normalizedState
            event.assignment = update.assignment.map { .init(type: $0.type?.lowercased(), id: $0.id, resourceId: $0.resourceId) }
            event.user = update.user.map(Self.normalize)
            event.channel = update.channel
            event.msisdn = update.msisdn
            return event
        case .queued(let queued):
            var event = NormalizedEvent(kind: .queued)
            event.queue = .init(id: queued.queueId, name: queued.queueName)
            return event
        case .membersChanged(let change):
            let kind: NormalizedEvent.Kind = switch change.change?.lowercased() {
            case "joined": .memberJoined
            case "left": .memberLeft
            default: .unknown
            }
            var event = NormalizedEvent(kind: kind)
            event.member = .init(id: change.id, type: change.memberType?.lowercased())
            return event
        case .transfer:
            return NormalizedEvent(kind: .transfer)
        case .verify:
            return NormalizedEvent(kind: .verify)
        case .legacyAgent(let agent):
            var event = NormalizedEvent(kind: kind == .agentJoined ? .memberJoined : .memberLeft)
            event.member = .init(id: agent.agentId, type: "agent", name: agent.agentName)
            return event
        case .legacyText(let text):
            let fromUser = ["VISITOR", "USER", "CUSTOMER"].contains(messageType?.uppercased() ?? "")
            var event = NormalizedEvent(kind: fromUser ? .userMessage : .agentMessage)
            event.text = text.message
            event.sender = fromUser
                ? .init(id: nil, type: "user")
                : .init(id: text.agentId, type: "agent", name: text.agentName)
            return event
        case .unknown:
            return NormalizedEvent(kind: .unknown)
        }
    }

    static func normalize(_ message: Message) -> NormalizedEvent {
        let senderType = message.sender?.type?.lowercased()
        let kind: NormalizedEvent.Kind
        if message.isEcho == true || senderType == "bot" {
            kind = .echo
        } else if senderType == "agent" {
            kind = .agentMessage
        } else if senderType == "system" {
            // 8x8's own notices ("agent joined", "chat transferred"): nobody for the bot to
            // answer. Kept with their text and sender as `unknown`.
            kind = .unknown
        } else {
            // `user`, and the empty or missing type some 8x8 samples send: a bot's webhook only
            // sees the customer's, the agent's and its own messages.
            kind = .userMessage
        }
        var event = NormalizedEvent(kind: kind)
        event.text = message.text
        event.sender = message.sender.map { .init(id: $0.id, type: senderType?.isEmpty == false ? senderType : nil) }
        if let attachments = message.attachments, !attachments.isEmpty {
            event.attachments = attachments.map { .init(id: $0.id, type: $0.type?.lowercased(), url: $0.preSignedUrl, fileName: $0.fileName) }
        }
        if let cards = message.cards, !cards.isEmpty {
            event.cards = cards.map { .init(contentType: $0.contentType, content: $0.content) }
        }
        return event
    }

    static func normalize(_ activity: Activity) -> NormalizedEvent {
        switch activity.subtype {
        case .typing:
            var event = NormalizedEvent(kind: .typing)
            event.typing = activity.typingUsers.map { .init(id: $0.id, type: $0.type) }
            return event
        case .quickReplyAction:
            let reply = activity.quickReply
            var event = NormalizedEvent(kind: .postback)
            event.postback = .init(title: reply.title, payload: reply.payload)
            // A quick reply is the user's answer: the flow reads its payload as the text.
            event.text = reply.payload ?? reply.title
            event.activity = activity.name
            return event
        case .adaptiveCardAction:
            let action = activity.cardAction
            var event = NormalizedEvent(kind: .cardSubmit)
            event.cardSubmit = .init(action: action.type, data: action.data)
            event.activity = activity.name
            return event
        case .readReceipts:
            var event = NormalizedEvent(kind: .readReceipt)
            event.readReceipts = activity.readReceipts.map { receipt in
                .init(timestamp: receipt.timestamp, users: receipt.users.map { .init(id: $0.id, type: $0.type) })
            }
            return event
        case .other:
            // Channel buttons (WhatsApp, RCS, Viber) answer like quick replies.
            if let reply = activity.channelReply {
                var event = NormalizedEvent(kind: .postback)
                event.postback = .init(title: reply.title, payload: reply.id)
                event.text = reply.id ?? reply.title
                event.activity = activity.name
                event.value = activity.value
                return event
            }
            var event = NormalizedEvent(kind: .unknown)
            event.activity = activity.name
            event.value = activity.value
            return event
        }
    }

    static func normalize(_ user: ConversationUpdate.User) -> NormalizedEvent.UserInfo {
        var info = NormalizedEvent.UserInfo()
        info.name = user.name
        info.userId = user.userId
        info.email = user.email
        info.phone = user.phone
        info.company = user.company
        info.caseId = user.caseId
        info.language = user.language
        info.ipAddress = user.ipaddress
        info.timezoneOffset = user.timezoneOffset
        info.additionalProperties = user.additionalProperties?.map { .init(key: $0.key, value: $0.value, id: $0.id) }
        return info
    }
}
