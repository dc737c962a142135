import Foundation
import Synchronization
import Testing
import TestSupport

/// `within`, the guard the tests put around every wait.
@Suite struct WithinTests {
    final class Parked: Sendable {
        let continuation = Mutex<CheckedContinuation<Void, Never>?>(nil)
        func release() { continuation.withLock { $0?.resume(); $0 = nil } }
    }

    /// A body stuck where cancellation does not reach fails the guard when its time is up
    /// instead of holding up the test (and the run) for good.
    @Test func aBodyCancellationCannotReachFailsTheGuard() async throws {
        let parked = Parked()
        defer { parked.release() }
        await #expect(throws: TestTimeout.self) {
            try await within(1, "a continuation nobody resumes") {
                await withCheckedContinuation { continuation in parked.continuation.withLock { $0 = continuation } }
            }
        }
    }

    @Test func aBodysValueAndErrorComeThrough() async throws {
        #expect(try await within(30, "a value") { 7 } == 7)
        struct Refused: Error {}
        await #expect(throws: Refused.self) {
            try await within(30, "an error") { () -> Int in throw Refused() }
        }
    }
}
