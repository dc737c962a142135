import Foundation

/// The threads of a process as Linux lists them in `/proc/PID/task`: each one's name and
/// scheduling policy (0 the default, 3 `SCHED_BATCH`). Empty where there is no `/proc`.
public func threadPolicies(pid: Int32? = nil) -> [(name: String, policy: Int)] {
    let tasks = "/proc/\(pid.map(String.init) ?? "self")/task"
    guard let ids = try? FileManager.default.contentsOfDirectory(atPath: tasks) else { return [] }
    return ids.compactMap { id in
        // The name sits in parentheses and may hold anything; the fields after it are plain.
        // `policy` is the stat file's 41st field, the 39th after the name.
        guard let stat = try? String(contentsOfFile: "\(tasks)/\(id)/stat", encoding: .utf8),
              let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 38, let policy = Int(fields[38]) else { return nil }
        return (String(stat[stat.index(after: open)..<close]), policy)
    }
}
