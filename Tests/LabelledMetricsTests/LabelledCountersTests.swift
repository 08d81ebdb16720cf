import LabelledMetrics
import MetricsTestKit
import XCTest

final class LabelledCountersTests: XCTestCase {
  func testOneCounterPerLabelAndValuesCreatedOnFirstUse() throws {
    let metrics = TestMetrics()
    let counters = LabelledCounters(factory: metrics)
    XCTAssertTrue(metrics.counters.isEmpty)
    counters.counter("closes_total", [("reason", "slow")]).increment()
    counters.counter("closes_total", [("reason", "slow")]).increment(by: 2)
    counters.counter("closes_total", [("reason", "shutdown")]).increment()
    counters.counter("drops_total", [("scope", "a"), ("reason", "b")]).increment()
    counters.counter("drops_total", [("scope", "ab"), ("reason", "")]).increment()
    XCTAssertTrue(
      counters.counter("closes_total", [("reason", "slow")])
        === counters.counter("closes_total", [("reason", "slow")]))
    XCTAssertEqual(metrics.counters.count, 4)
    XCTAssertEqual(try metrics.expectCounter("closes_total", [("reason", "slow")]).totalValue, 3)
    XCTAssertEqual(
      try metrics.expectCounter("closes_total", [("reason", "shutdown")]).totalValue, 1)
    XCTAssertEqual(
      try metrics.expectCounter("drops_total", [("scope", "a"), ("reason", "b")]).totalValue, 1)
    XCTAssertEqual(
      try metrics.expectCounter("drops_total", [("scope", "ab"), ("reason", "")]).totalValue, 1)
  }
}
