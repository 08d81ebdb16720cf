import EventLog
import Events
import Foundation
import TestSupport
import XCTest

final class EventLogTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private func makeLog(
    segmentBytes: Int = 256 << 20, configure: (inout EventLog.Configuration) -> Void = { _ in }
  )
    throws -> (EventLog, String)
  {
    let directory = LogFixtures.directory()
    directories.append(directory)
    var configuration = LogFixtures.configuration(directory, segmentBytes: segmentBytes)
    configure(&configuration)
    return (try EventLog(configuration), directory)
  }

  func testRoundTripAcrossSegmentsAndReopen() throws {
    let records = try LogFixtures.records(frames: 1_500)
    let (log, directory) = try makeLog(segmentBytes: 64 << 10)
    for batch in stride(from: 0, to: records.count, by: 97) {
      try log.append(Array(records[batch..<min(batch + 97, records.count)]))
    }
    XCTAssertGreaterThan(log.stats.segments, 5, "small segments roll")
    XCTAssertEqual(LogFixtures.readAll(log.reader(from: nil)), records)
    XCTAssertEqual(log.lastDurableSeq, records.last!.seq)
    XCTAssertEqual(log.lastTimeUS, records.last!.timeUS)
    try log.close()

    let reopened = try EventLog(LogFixtures.configuration(directory, segmentBytes: 64 << 10))
    XCTAssertEqual(LogFixtures.readAll(reopened.reader(from: 0)), records)
    XCTAssertEqual(reopened.lastDurableSeq, records.last!.seq)
    XCTAssertEqual(reopened.stats.events, records.count)
    XCTAssertEqual(reopened.stats.corruptions, 0)
  }

  func testOverheadPerEventIsAtMost36BytesForCommonEvents() throws {
    let records = try LogFixtures.records(frames: 1_000)
    let (log, _) = try makeLog()
    try log.append(records)
    let payload = records.reduce(0) { $0 + $1.payload.count }
    let overhead = Double(log.stats.bytes - 40 - payload) / Double(records.count)
    XCTAssertLessThanOrEqual(overhead, 36, "bytes on disk per event beyond its payload")
  }

  func testExactSeekAtBeforeBetweenAndAfterEvents() throws {
    let records = try LogFixtures.records(frames: 800)
    // Spread the times so there are gaps to seek into.
    let spread = records.enumerated().map { index, r in
      LogRecord(
        timeUS: r.timeUS + Int64(index) * 10, seq: r.seq, eventSeq: r.eventSeq, kind: r.kind,
        did: r.did,
        collection: r.collection, payload: r.payload)
    }
    let (log, _) = try makeLog(segmentBytes: 32 << 10)
    try log.append(spread)
    XCTAssertGreaterThan(log.stats.segments, 3)
    for index in [0, 1, 77, 300, spread.count / 2, spread.count - 2, spread.count - 1] {
      let at = spread[index].timeUS
      XCTAssertEqual(
        log.reader(from: at).next(), spread[index], "at an event's time: that event first")
      XCTAssertEqual(
        log.reader(from: at - 3).next(), spread[index], "between two events: the later one")
    }
    XCTAssertEqual(LogFixtures.readAll(log.reader(from: spread[400].timeUS)), Array(spread[400...]))
    XCTAssertEqual(
      log.reader(from: spread[0].timeUS - 1_000_000).next(), spread[0],
      "older than retained: oldest")
    XCTAssertEqual(log.reader(from: -5).next(), spread[0])
    XCTAssertEqual(log.reader(from: nil).next(), spread[0])
    // Newer than the newest: live, so only later appends arrive.
    let live = log.reader(from: spread.last!.timeUS + 1)
    XCTAssertNil(live.next())
    let later = LogRecord(
      timeUS: spread.last!.timeUS + 50, seq: spread.last!.seq + 1,
      eventSeq: spread.last!.eventSeq + 1, kind: .identity,
      did: "did:plc:later",
      collection: "", payload: [1, 2, 3])
    try log.append([later])
    XCTAssertEqual(live.next(), later)
    XCTAssertNil(live.next())
  }

  func testFiltersReturnExactlyTheMatchesWithoutTouchingOthers() throws {
    let records = try LogFixtures.records(frames: 1_200)
    let (log, _) = try makeLog(segmentBytes: 64 << 10)
    try log.append(records)
    let someDIDs = Array(Set(records.prefix(200).map(\.did))).sorted().prefix(5)
    let filters: [EventFilter] = [
      try EventFilter(wantedCollections: ["app.bsky.feed.post"], wantedDIDs: []),
      try EventFilter(wantedCollections: ["app.bsky.graph.*"], wantedDIDs: []),
      try EventFilter(wantedCollections: [], wantedDIDs: Array(someDIDs)),
      try EventFilter(
        wantedCollections: ["app.bsky.feed.like", "fm.teal.alpha.*"], wantedDIDs: Array(someDIDs)),
    ]
    for filter in filters {
      let expected = records.filter {
        filter.matches(kind: $0.kind, did: $0.did, collection: $0.collection)
      }
      let reader = log.reader(from: nil, filter: filter)
      XCTAssertEqual(LogFixtures.readAll(reader), expected)
      XCTAssertGreaterThan(expected.count, 0)
      XCTAssertEqual(reader.delivered, expected.count)
      XCTAssertEqual(
        reader.skipped, records.count - expected.count, "the others were never materialized")
    }
  }
}
