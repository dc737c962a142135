import Foundation
@testable import Kafka
import Synchronization
import Testing
import TestSupport

@Suite struct PollingThreadTests {
    final class Flags: Sendable {
        let inStep = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let stepEnded = Atomic<Bool>(false)
        let returnedAfterStep = Mutex<Bool?>(nil)
    }

    /// A teardown waits for the step in progress however long it takes, saying so once it is
    /// slow: the handle's destroy must not run under a step. (A 2-s limit let a step that a busy
    /// machine held up run into freed memory.)
    @Test func aTeardownWaitsForTheStepInProgress() async throws {
        let flags = Flags()
        defer { flags.release.signal() }  // a failed expectation leaves no thread waiting
        let first = Atomic<Bool>(true)
        let poller = PollingThread(name: "test-poll") {
            guard first.exchange(false, ordering: .acquiringAndReleasing) else { usleep(1_000); return }
            flags.inStep.signal()
            flags.release.wait()
            flags.stepEnded.store(true, ordering: .releasing)
        }
        await withCheckedContinuation { (entered: CheckedContinuation<Void, Never>) in
            Thread { flags.inStep.wait(); entered.resume() }.start()
        }
        let log = LogCapture()
        Thread {
            poller.stopAndWait(logger: log.logger, slow: .milliseconds(10))
            flags.returnedAfterStep.withLock { $0 = flags.stepEnded.load(ordering: .acquiring) }
        }.start()
        // Past `slow` and still waiting: the step has not ended.
        try await within(30, "the slow wait logged") {
            while !log.text.contains("still in a step") { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(flags.returnedAfterStep.withLock { $0 } == nil, "still waiting")
        flags.release.signal()
        let returned = try await within(30, "the wait returned") { () -> Bool in
            while true {
                if let value = flags.returnedAfterStep.withLock({ $0 }) { return value }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        #expect(returned, "it returned after the step ended")
        #expect(poller.isStopping)
    }
}
