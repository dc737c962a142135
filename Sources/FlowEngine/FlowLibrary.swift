import Foundation

/// An endpoint's flow with every flow its `execute` nodes reach, read and checked together.
public struct FlowLibrary: Sendable {
    public let main: Flow
    public let flows: [String: Flow]

    /// Whether a saved position still exists in these flows, the nodes its callers return to
    /// included: a flow deployed meanwhile may have renamed or removed any of them.
    public func contains(_ position: FlowPosition) -> Bool {
        guard flows[position.flow]?.nodes[position.node] != nil else { return false }
        return position.stack.allSatisfy { frame in
            guard let flow = flows[frame.flow] else { return false }
            return frame.node.map { flow.nodes[$0] != nil } ?? true
        }
    }

    /// Where the flows continue after the node at `position`: its `next`, or else the nearest
    /// caller's node to return to; nil when the flows run out.
    public func position(after position: FlowPosition) -> FlowPosition? {
        if let next = flows[position.flow]?.nodes[position.node]?.next {
            return FlowPosition(flow: position.flow, node: next, stack: position.stack)
        }
        return Self.unwind(position.stack)
    }

    /// A flow ran out: return to the innermost caller that has a next node.
    static func unwind(_ stack: [FlowPosition.ReturnFrame]) -> FlowPosition? {
        var stack = stack
        while let frame = stack.popLast() {
            if let node = frame.node { return FlowPosition(flow: frame.flow, node: node, stack: stack) }
        }
        return nil
    }

    public init(main: Flow, others: [Flow] = []) {
        self.main = main
        var flows = [main.source: main]
        for flow in others { flows[flow.source] = flow }
        self.flows = flows
    }

    /// Reads `path` and the flows it executes. Throws every problem found, in file order.
    public static func load(path: String) throws(FlowLoadError) -> FlowLibrary {
        var flows: [String: Flow] = [:]
        var problems: [FlowProblem] = []
        var pending: [(path: String, from: (file: String, line: Int)?)] = [(path, nil)]
        var seen = Set<String>()
        while let (file, from) = pending.popLast() {
            guard seen.insert(file).inserted else { continue }
            guard let data = FileManager.default.contents(atPath: file), let yaml = String(data: data, encoding: .utf8) else {
                problems.append(FlowProblem(
                    file: from?.file ?? file, line: from?.line ?? 1,
                    message: from == nil ? "cannot read flow file \(file)" : "executed flow \(file) cannot be read"))
                continue
            }
            let (flow, found) = FlowParser.parse(yaml: yaml, file: file)
            problems += found
            guard let flow else { continue }
            flows[file] = flow
            for reference in flow.executes { pending.append((reference.path, (file, reference.line))) }
        }
        // Intents are ranked by the main flow's examples: a condition naming another (a typo,
        // an intent declared elsewhere) would never hold.
        if let main = flows[path] {
            let declared = Set(main.intents.intents.map(\.name))
            for flow in flows.values.sorted(by: { $0.source < $1.source }) {
                for reference in flow.intentReferences where !declared.contains(reference.name) {
                    problems.append(FlowProblem(
                        file: flow.source, line: reference.line, column: reference.column,
                        message: "intent '\(reference.name)' is not one of the intents of \(main.source)"
                            + (declared.isEmpty ? " (it declares none)" : ": \(declared.sorted().joined(separator: ", "))")))
                }
            }
        }
        guard problems.isEmpty, let main = flows[path] else { throw FlowLoadError(problems: problems) }
        return FlowLibrary(main: main, others: Array(flows.values))
    }
}

/// Everything wrong with a flow and the flows it executes.
public struct FlowLoadError: Error, Sendable, CustomStringConvertible {
    public var problems: [FlowProblem]
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}
