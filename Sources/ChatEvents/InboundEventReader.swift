/// Reads `eightbyeight.inbound.v1` records from the JSON tree of `JSONParser`, field by field:
/// the worker's hot path, several times cheaper than `JSONDecoder` with `Codable` (which
/// builds the raw 8x8 body through a boxed container per value). Strict like `Codable`:
/// a required field missing or of the wrong type is an error; unknown fields are ignored.
extension InboundEvent {
    public init(record json: JSONValue) throws(DecodingError) {
        let object = try RecordReader(json, path: [])
        schema = try object.string("schema")
        eventId = try object.string("eventId")
        retry = try object.int("retry")
        tenantId = try object.optionalString("tenantId")
        customerId = try object.optionalString("customerId")
        endpoint = try object.optionalString("endpoint")
        guard let route = Route(rawValue: try object.string("route")) else { throw object.invalid("route") }
        self.route = route
        receivedAt = try object.int64("receivedAt")
        transmissionTime = try object.optionalInt64("transmissionTime")
        eventType = try object.string("eventType")
        conversationId = try object.optionalString("conversationId")
        eventTimestamp = try object.optionalInt64("eventTimestamp")
        signatureVerified = try object.bool("signatureVerified")
        normalized = try NormalizedEvent(record: try object.object("normalized"))
        raw = object.members["raw"].flatMap { $0 == .null ? nil : $0 }
    }
}

extension NormalizedEvent {
    init(record object: RecordReader) throws(DecodingError) {
        guard let kind = Kind(rawValue: try object.string("kind")) else { throw object.invalid("kind") }
        self.init(kind: kind)
        text = try object.optionalString("text")
        sender = try object.optionalObject("sender").map(Participant.init(record:))
        attachments = try object.optionalArray("attachments")?.map { (item) throws(DecodingError) in
            Attachment(
                id: try item.optionalString("id"), type: try item.optionalString("type"),
                url: try item.optionalString("url"), fileName: try item.optionalString("fileName"))
        }
        cards = try object.optionalArray("cards")?.map { (item) throws(DecodingError) in
            Card(contentType: try item.optionalString("contentType"), content: item.value("content"))
        }
        postback = try object.optionalObject("postback").map { (item) throws(DecodingError) in
            Postback(title: try item.optionalString("title"), payload: try item.optionalString("payload"))
        }
        cardSubmit = try object.optionalObject("cardSubmit").map { (item) throws(DecodingError) in
            CardSubmit(action: try item.optionalString("action"), data: item.value("data"))
        }
        typing = try object.optionalArray("typing")?.map(Participant.init(record:))
        readReceipts = try object.optionalArray("readReceipts")?.map { (item) throws(DecodingError) in
            ReadReceipt(
                timestamp: try item.optionalInt64("timestamp"),
                users: try item.array("users").map(Participant.init(record:)))
        }
        state = try object.optionalString("state")
        assignment = try object.optionalObject("assignment").map { (item) throws(DecodingError) in
            Assignment(type: try item.optionalString("type"), id: try item.optionalString("id"), resourceId: try item.optionalString("resourceId"))
        }
        user = try object.optionalObject("user").map { (item) throws(DecodingError) in
            var user = UserInfo()
            user.name = try item.optionalString("name")
            user.userId = try item.optionalString("userId")
            user.email = try item.optionalString("email")
            user.phone = try item.optionalString("phone")
            user.company = try item.optionalString("company")
            user.caseId = try item.optionalString("caseId")
            user.language = try item.optionalString("language")
            user.ipAddress = try item.optionalString("ipAddress")
            user.timezoneOffset = try item.optionalInt64("timezoneOffset").map { Int($0) }
            user.additionalProperties = try item.optionalArray("additionalProperties")?.map { (property) throws(DecodingError) in
                UserInfo.Property(key: try property.string("key"), value: try property.optionalString("value"), id: try property.optionalString("id"))
            }
            return user
        }
        channel = try object.optionalString("channel")
        msisdn = try object.optionalString("msisdn")
        queue = try object.optionalObject("queue").map { (item) throws(DecodingError) in
            Queue(id: try item.optionalString("id"), name: try item.optionalString("name"))
        }
        member = try object.optionalObject("member").map(Participant.init(record:))
        activity = try object.optionalString("activity")
        value = object.value("value")
        failure = try object.optionalObject("failure").map { (item) throws(DecodingError) in
            Failure(
                status: try item.optionalInt64("status").map { Int(clamping: $0) }, reason: try item.optionalString("reason"),
                causationEventId: try item.optionalString("causationEventId"))
        }
    }
}

extension NormalizedEvent.Participant {
    init(record item: RecordReader) throws(DecodingError) {
        self.init(id: try item.optionalString("id"), type: try item.optionalString("type"), name: try item.optionalString("name"))
    }
}

/// Typed access to the members of one JSON object of a record, with `Codable`'s errors.
struct RecordReader {
    let members: [String: JSONValue]
    let path: [String]

    init(_ value: JSONValue, path: [String]) throws(DecodingError) {
        guard case .object(let members) = value else {
            throw DecodingError.typeMismatch([String: JSONValue].self, .init(codingPath: path.map(Key.init), debugDescription: "expected an object"))
        }
        self.members = members
        self.path = path
    }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func invalid(_ name: String) -> DecodingError {
        .dataCorrupted(.init(codingPath: (path + [name]).map(Key.init), debugDescription: "unexpected value"))
    }

    private func missing(_ name: String) -> DecodingError {
        .keyNotFound(Key(name), .init(codingPath: path.map(Key.init), debugDescription: "missing"))
    }

    private func mismatch<T>(_ type: T.Type, _ name: String) -> DecodingError {
        .typeMismatch(type, .init(codingPath: (path + [name]).map(Key.init), debugDescription: "wrong type"))
    }

    /// The member, nil when absent or null.
    func value(_ name: String) -> JSONValue? {
        guard let value = members[name], value != .null else { return nil }
        return value
    }

    func optionalString(_ name: String) throws(DecodingError) -> String? {
        guard let value = value(name) else { return nil }
        guard case .string(let text) = value else { throw mismatch(String.self, name) }
        return text
    }

    func string(_ name: String) throws(DecodingError) -> String {
        guard let text = try optionalString(name) else { throw missing(name) }
        return text
    }

    func optionalInt64(_ name: String) throws(DecodingError) -> Int64? {
        guard let value = value(name) else { return nil }
        guard case .number(let number) = value, let whole = JSONInteger.exact(number) else {
            throw mismatch(Int64.self, name)
        }
        return whole
    }

    func int64(_ name: String) throws(DecodingError) -> Int64 {
        guard let number = try optionalInt64(name) else { throw missing(name) }
        return number
    }

    func int(_ name: String) throws(DecodingError) -> Int { Int(try int64(name)) }

    func bool(_ name: String) throws(DecodingError) -> Bool {
        guard let value = value(name) else { throw missing(name) }
        guard case .bool(let flag) = value else { throw mismatch(Bool.self, name) }
        return flag
    }

    func object(_ name: String) throws(DecodingError) -> RecordReader {
        guard let value = value(name) else { throw missing(name) }
        return try RecordReader(value, path: path + [name])
    }

    func optionalObject(_ name: String) throws(DecodingError) -> RecordReader? {
        guard let value = value(name) else { return nil }
        return try RecordReader(value, path: path + [name])
    }

    func array(_ name: String) throws(DecodingError) -> [RecordReader] {
        guard let items = try optionalArray(name) else { throw missing(name) }
        return items
    }

    func optionalArray(_ name: String) throws(DecodingError) -> [RecordReader]? {
        guard let value = value(name) else { return nil }
        guard case .array(let items) = value else { throw mismatch([JSONValue].self, name) }
        var result: [RecordReader] = []
        result.reserveCapacity(items.count)
        for (index, item) in items.enumerated() { result.append(try RecordReader(item, path: path + [name, String(index)])) }
        return result
    }
}
