import Events
import Synchronization
import XCTest

final class SequencerTests: XCTestCase {
  func testStrictlyIncreasingWhenTheClockStallsOrStepsBack() {
    let readings = Mutex<[Int64]>([100, 100, 90, 200, 150, 150, 300])
    var sequencer = Sequencer(clock: { readings.withLock { $0.removeFirst() } })
    let values = (0..<7).map { _ in sequencer.next() }
    XCTAssertEqual(values, [100, 101, 102, 200, 201, 202, 300])
  }

  /// PROTOCOL §11.4 "restart clock": a restart with the wall clock set back one hour.
  func testRestartAboveTheLastStoredValue() {
    let lastStored = Sequencer.wallClockMicroseconds()
    var restarted = Sequencer(last: lastStored, clock: { lastStored - 3_600_000_000 })
    XCTAssertEqual(restarted.next(), lastStored + 1)
    XCTAssertEqual(restarted.next(), lastStored + 2)
  }

  func testWallClockIsMicroseconds() {
    let now = Sequencer.wallClockMicroseconds()
    XCTAssertGreaterThan(now, 1_700_000_000_000_000)
    XCTAssertLessThan(now, 4_000_000_000_000_000)
  }
}
