/// Runs `operation` for at most `limit`: its result, or nil when it had not finished by then
/// (it is cancelled, and this returns once it has ended). A cancelled caller gets
/// `CancellationError` or the operation's own error, not nil. It bounds the read of an HTTP
/// answer's body: AsyncHTTPClient's own deadline ends when the answer's head arrives.
func withTimeLimit<T: Sendable>(_ limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T? {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            // A caller cancelled is not a call that took too long.
            do { try await Task.sleep(for: limit) } catch { throw CancellationError() }
            return nil
        }
        defer { group.cancelAll() }
        return try await group.next() ?? nil
    }
}
