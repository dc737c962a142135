import IngressService
import Testing

struct EventLoopExecutorTests {
    @Test func oneLoopMoreThanTheCoresUnlessTheEnvironmentSaysOtherwise() {
        #expect(EventLoopExecutor.loopCount(environment: [:], cores: 2) == 3)
        #expect(EventLoopExecutor.loopCount(environment: [:], cores: 8) == 9)
        #expect(EventLoopExecutor.loopCount(environment: [:], cores: 0) == 2)
        #expect(EventLoopExecutor.loopCount(environment: ["CONNECTOR_EVENT_LOOPS": "2"], cores: 2) == 2)
        #expect(EventLoopExecutor.loopCount(environment: ["CONNECTOR_EVENT_LOOPS": "16"], cores: 2) == 16)
        // Not a usable count: the default.
        for bad in ["0", "-1", "257", "three", ""] {
            #expect(EventLoopExecutor.loopCount(environment: ["CONNECTOR_EVENT_LOOPS": bad], cores: 4) == 5, "\(bad)")
        }
    }

    @Test func setupDescribesWhereTasksRun() {
        #expect("\(EventLoopExecutor.Setup(onEventLoops: true, loops: 3))" == "3 of NIO's event loops")
        #expect("\(EventLoopExecutor.Setup(onEventLoops: false, loops: 2))" == "the default executor")
    }
}
