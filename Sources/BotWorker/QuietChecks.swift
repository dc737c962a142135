import Synchronization

/// The checks of quiet partitions (has this generation been handed every inbound record?),
/// each running on a task of its own while the consuming task goes on with the events, at
/// most one per partition. An answer counts only for the position it checked and the
/// assignment it was asked for: a check of a partition revoked meanwhile, or assigned again,
/// is forgotten and its answer dropped.
final class QuietChecks: Sendable {
    enum Position: Sendable, Equatable {
        /// Every record was handed; `committed` is the group's committed offset when it was
        /// asked (no record came since the assignment).
        case caughtUp(committed: Int64?)
        case behind
        /// Kafka did not tell.
        case unknown
    }

    enum Take: Equatable {
        case running
        case found(Position)
    }

    private struct Check {
        let id: UInt64
        /// The offset after the last record handed when the check started (nil: none since
        /// the assignment).
        let next: Int64?
        var found: Position?
    }

    private let checks = Mutex<(running: [Int32: Check], lastID: UInt64)>(([:], 0))

    /// The answer for `partition` at position `next`, taken (a later take starts anew); nil
    /// when there is none, or only one for another position (dropped): start a check.
    func take(_ partition: Int32, checking next: Int64?) -> Take? {
        checks.withLock { checks in
            guard let check = checks.running[partition] else { return nil }
            guard let found = check.found else { return .running }
            checks.running[partition] = nil
            return check.next == next ? .found(found) : nil
        }
    }

    /// Runs `position` on a task of its own; its answer waits for `take`.
    func start(_ partition: Int32, checking next: Int64?, _ position: @escaping @Sendable () async -> Position) {
        let id = checks.withLock { checks in
            checks.lastID += 1
            checks.running[partition] = Check(id: checks.lastID, next: next)
            return checks.lastID
        }
        Task {
            let found = await position()
            checks.withLock { checks in
                guard checks.running[partition]?.id == id else { return }
                checks.running[partition]?.found = found
            }
        }
    }

    /// Drops the partition's check (revoked): its answer, if it still comes, is not kept.
    func forget(_ partition: Int32) {
        checks.withLock { $0.running[partition] = nil }
    }
}
