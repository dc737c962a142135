@testable import ChatEvents
import Testing

@Suite("Log budget")
struct LogBudgetTests {
    @Test("at most the limit per window and kind; the next line written says how many were held back")
    func budget() {
        let budget = LogBudget(limit: 3, window: .seconds(10))
        let start = ContinuousClock.now
        #expect((0..<5).map { _ in budget.admit("a", at: start + .seconds(1)) } == [0, 0, 0, nil, nil])
        #expect(budget.admit("b", at: start + .seconds(2)) == 0, "each kind has its own budget")
        #expect(budget.admit("a", at: start + .seconds(9)) == nil)
        // A new window for "a" (10 s after its first line): the three held back are counted.
        #expect(budget.admit("a", at: start + .seconds(11)) == 3)
        #expect(budget.admit("a", at: start + .seconds(11)) == 0)
    }
}
