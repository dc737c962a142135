public import ChatEvents
import Mustache

/// What templates see: `input`, `context` and `profile`.
public struct TemplateScope: Sendable {
    let root: TemplateValue

    public init(input: JSONValue, context: JSONValue, profile: JSONValue) {
        root = TemplateValue(.object(["input": input, "context": context, "profile": profile]))
    }
}

/// A JSON value as Mustache walks it, without converting the tree to Foundation objects:
/// objects answer child lookups, arrays iterate, `null` and `false` are empty sections,
/// scalars render as their text.
struct TemplateValue: Sendable, MustacheParent, MustacheCustomRenderable, MustacheSequence {
    let value: JSONValue

    init(_ value: JSONValue) { self.value = value }

    func child(named name: String) -> Any? {
        switch value {
        case .object(let members): members[name].map(TemplateValue.init)
        case .array(let items):
            switch name {
            case "length", "count": TemplateValue(.number(Double(items.count)))
            default: Int(name).flatMap { items.indices.contains($0) ? TemplateValue(items[$0]) : nil }
            }
        default: nil
        }
    }

    var renderText: String {
        switch value {
        case .null: ""
        case .string(let text): text
        case .number, .bool: value.stringValue ?? ""
        case .array(let items): items.compactMap(\.stringValue).joined(separator: ", ")
        case .object: ""
        }
    }

    var isNull: Bool {
        switch value {
        case .null, .bool(false): true
        case .string(let text): text.isEmpty
        case .array(let items): items.isEmpty
        default: false
        }
    }

    func makeIterator() -> IndexingIterator<[TemplateValue]> {
        switch value {
        case .array(let items): items.map(TemplateValue.init).makeIterator()
        case .null, .bool(false): [].makeIterator()
        case .string(let text) where text.isEmpty: [].makeIterator()
        default: [self].makeIterator()
        }
    }
}
