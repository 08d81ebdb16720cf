import Broadcast
import EventLog
import Foundation
import Ingest
import TestSupport
import XCTest

/// The store path numbers events with the log's event seqs (the v2 `seq`): 1-based and
/// consecutive, the same numbers in the log and in the live ring, continuing across a reopen and
/// after a failed append from the last event the log kept.
final class EventStoreEventSeqTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private func readAll(_ reader: LogReader) -> [LogRecord] {
    var records: [LogRecord] = []
    while let record = reader.next() { records.append(record) }
    return records
  }

  private func ringEvents(_ ring: LiveRing) -> [BroadcastEvent] {
    guard case .events(let events, _, _) = ring.read(after: 0, limit: 1 << 20, filter: .all)
    else { return [] }
    return events
  }

  func testStoredAndPublishedEventsCarryTheSameConsecutiveEventSeqs() throws {
    let stream = try SyntheticStream(frames: 300, seed: 7, start: 5_000_000)
    let directory = TemporaryLog.directory("store-seq")
    directories.append(directory)
    let configuration = TemporaryLog.configuration(directory, segmentBytes: 16 << 10)
    let log = try EventLog(configuration)
    let ring = LiveRing(capacity: 100_000, startAfter: 0)
    let store = try EventStore(log: log, ring: ring, dictionary: stream.dictionary)
    let half = stream.events.count / 2
    for range in [0..<1, 1..<80, 80..<half] {  // one, a parallel-compressed batch, the rest
      let outcome = store.store(Array(stream.events[range]))
      XCTAssertNil(outcome.error)
      XCTAssertEqual(outcome.stored, range.count)
    }
    let stored = readAll(log.reader(from: nil))
    XCTAssertEqual(stored.map(\.eventSeq), Array(1...Int64(half)))
    XCTAssertEqual(stored.map(\.timeUS), stream.events[..<half].map(\.timeUS))
    let published = ringEvents(ring)
    XCTAssertEqual(published.map(\.eventSeq), Array(1...Int64(half)), "the ring's are the log's")
    XCTAssertEqual(published.map(\.timeUS), stored.map(\.timeUS))
    try log.close()

    let reopened = try EventLog(configuration)
    XCTAssertEqual(reopened.lastEventSeq, Int64(half))
    let again = try EventStore(log: reopened, ring: ring, dictionary: stream.dictionary)
    XCTAssertNil(again.store(Array(stream.events[half...])).error)
    XCTAssertEqual(
      readAll(reopened.reader(from: nil)).map(\.eventSeq),
      Array(1...Int64(stream.events.count)), "continues after a reopen")
    XCTAssertEqual(ringEvents(ring).map(\.eventSeq), Array(1...Int64(stream.events.count)))
    try reopened.close()
  }

  /// A write that fails part-way through a batch (the disk fills after a roll): the prefix the
  /// log kept is published with its numbers, and the next batch continues right after it, so
  /// the numbers subscribers see have no gap and no repeat.
  func testAfterAFailedAppendTheNextBatchContinuesFromTheKeptPrefix() throws {
    let stream = try SyntheticStream(frames: 200, seed: 8, start: 6_000_000)
    let directory = TemporaryLog.directory("store-seq-fault")
    directories.append(directory)
    var configuration = TemporaryLog.configuration(directory, segmentBytes: 4 << 10)
    // Writes: the first segment's header and records, the second's header, then its records fail.
    let faults = StoreFaultTests.Faults(failWritesAt: 4)
    configuration.storage = faults.storage
    let log = try EventLog(configuration)
    let ring = LiveRing(capacity: 100_000, startAfter: 0)
    let store = try EventStore(log: log, ring: ring, dictionary: stream.dictionary)
    let first = store.store(Array(stream.events[..<150]))
    XCTAssertNotNil(first.error)
    let kept = first.stored
    XCTAssertGreaterThan(kept, 0)
    XCTAssertLessThan(kept, 150)
    XCTAssertEqual(log.lastEventSeq, Int64(kept))
    XCTAssertEqual(ringEvents(ring).map(\.eventSeq), Array(1...Int64(kept)))

    // Ingest goes on with the events after the failure (it would fetch them again).
    let rest = Array(stream.events[150...])
    XCTAssertNil(store.store(rest).error)
    let total = kept + rest.count
    XCTAssertEqual(
      readAll(log.reader(from: nil)).map(\.eventSeq), Array(1...Int64(total)))
    XCTAssertEqual(ringEvents(ring).map(\.eventSeq), Array(1...Int64(total)))
    XCTAssertEqual(
      ringEvents(ring).map(\.timeUS),
      stream.events[..<kept].map(\.timeUS) + rest.map(\.timeUS))
    try log.close()
  }
}
