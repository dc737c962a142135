public import Hummingbird

/// Runs an HTTP application built by `make` (which gets the callback reporting the bound
/// port), hands the port to `body`, and stops the application when `body` returns or throws.
/// Tests and `connector dev` use it to run servers on free ports.
public func withRunningApplication<App: ApplicationProtocol, T: Sendable>(
    _ make: (@escaping @Sendable (Int) async -> Void) -> App,
    _ body: (Int) async throws -> T
) async throws -> T {
    let (ports, reporter) = AsyncStream.makeStream(of: Int.self)
    let application = make { port in reporter.yield(port) }
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            try await application.runService(gracefulShutdownSignals: [])
            reporter.finish()
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            try await group.next()
            throw CancellationError()
        }
        do {
            let result = try await body(port)
            group.cancelAll()
            return result
        } catch {
            group.cancelAll()
            throw error
        }
    }
}
