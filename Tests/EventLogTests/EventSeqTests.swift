import Events
import Foundation
import Synchronization
import SyntheticFirehose
import TestSupport
import XCTest

@testable import EventLog

/// The v2 event seq (docs/FORMAT.md §3): stored with every record, 1-based and strictly
/// increasing, never reused across restarts and retention, and located exactly by seq and by time.
final class EventSeqTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private func directory() -> String {
    let directory = LogFixtures.directory()
    directories.append(directory)
    return directory
  }

  /// `records` with time_us spread `timeGap` µs apart and event seqs `seqGap` apart from
  /// `firstEventSeq`, so that there are gaps to locate into.
  private func spread(
    _ records: [LogRecord], timeGap: Int64 = 10, seqGap: Int64 = 3, firstEventSeq: Int64 = 1
  ) -> [LogRecord] {
    records.enumerated().map { index, r in
      LogRecord(
        timeUS: r.timeUS + Int64(index) * timeGap, seq: r.seq,
        eventSeq: firstEventSeq + Int64(index) * seqGap, kind: r.kind, did: r.did,
        collection: r.collection, payload: r.payload)
    }
  }

  private func segmentFiles(_ directory: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory + "/segments").sorted()
      .map { directory + "/segments/" + $0 }
  }

  func testEventSeqsAreStoredOneBasedAndStrictlyIncreasing() throws {
    let records = try LogFixtures.records(frames: 1_000)
    XCTAssertEqual(records.map(\.eventSeq), Array(1...Int64(records.count)), "the fixture's")
    let log = try EventLog(LogFixtures.configuration(directory(), segmentBytes: 32 << 10))
    XCTAssertEqual(log.lastEventSeq, 0, "a fresh log")
    XCTAssertNil(log.oldestEventSeq)
    XCTAssertNil(try log.locate(eventSeqAtLeast: 1))
    XCTAssertNil(try log.locate(timeUSAtLeast: 0))
    for start in stride(from: 0, to: records.count, by: 113) {
      try log.append(Array(records[start..<min(start + 113, records.count)]))
      XCTAssertEqual(log.lastEventSeq, records[min(start + 113, records.count) - 1].eventSeq)
    }
    XCTAssertGreaterThan(log.stats.segments, 3)
    let read = LogFixtures.readAll(log.reader(from: nil))
    XCTAssertEqual(read, records, "records carry their event seqs back")
    let filtered = log.reader(
      from: nil, filter: try EventFilter(wantedCollections: ["app.bsky.feed.post"], wantedDIDs: []))
    XCTAssertLessThan(LogFixtures.readAll(filtered).count, records.count)
    XCTAssertEqual(filtered.scannedThroughEventSeq, records.last!.eventSeq, "skipped ones count")
    XCTAssertEqual(log.oldestEventSeq, 1)
    XCTAssertEqual(log.stats.oldestEventSeq, 1)
    XCTAssertEqual(log.stats.newestEventSeq, Int64(records.count))
    let summaries = log.segmentSummaries
    XCTAssertEqual(summaries.first?.firstEventSeq, 1)
    XCTAssertEqual(summaries.last?.lastEventSeq, Int64(records.count))
    for (earlier, later) in zip(summaries, summaries.dropFirst()) {
      XCTAssertEqual(later.firstEventSeq, earlier.lastEventSeq! + 1, "segments continue")
      XCTAssertEqual(later.baseEventSeq, later.firstEventSeq)
    }
  }

  func testAppendThrowsUnlessTimeAndEventSeqBothIncrease() throws {
    let records = try LogFixtures.records(frames: 20)
    let log = try EventLog(LogFixtures.configuration(directory()))
    XCTAssertThrowsError(try log.append([with(records[0], eventSeq: 0)]), "0 is never assigned")
    try log.append(Array(records[..<10]))
    let last = records[9]
    let next = records[10]
    for bad in [
      [with(next, eventSeq: last.eventSeq)],  // repeats
      [with(next, eventSeq: last.eventSeq - 1)],  // goes back
      [next, with(records[11], eventSeq: next.eventSeq)],  // repeats within a batch
      [with(next, timeUS: last.timeUS)],  // time repeats
      [with(next, eventSeq: EventLog.eventSeqLimit)],  // a v2 timestamp cursor's range
    ] {
      XCTAssertThrowsError(try log.append(bad)) {
        XCTAssertTrue("\($0)".contains("must increase"), "\($0)")
      }
      XCTAssertEqual(log.stats.events, 10, "nothing of the batch was written")
      XCTAssertNil(log.writeFailure, "not a disk failure")
    }
    XCTAssertEqual(log.lastEventSeq, last.eventSeq)
    try log.append([with(next, eventSeq: last.eventSeq + 5)])  // gaps are fine
    XCTAssertEqual(log.lastEventSeq, last.eventSeq + 5)
  }

  /// Found in review: a relay seq of Int64.min trapped the append (its offset from the segment's
  /// base overflowed), and a seq or time_us past the storable range was written as a segment
  /// base that the next open refused. Now both are refused before anything is written, and the
  /// largest storable values are stored and reopen.
  func testSeqsAndTimesOutsideTheStorableRangeAreRefused() throws {
    let records = try LogFixtures.records(frames: 20)
    let path = directory()
    let log = try EventLog(LogFixtures.configuration(path))
    try log.append(Array(records[..<10]))
    let next = records[10]
    let limit = EventLog.storableRange.upperBound
    func record(timeUS: Int64, seq: Int64, eventSeq: Int64) -> LogRecord {
      LogRecord(
        timeUS: timeUS, seq: seq, eventSeq: eventSeq, kind: next.kind, did: next.did,
        collection: next.collection, payload: next.payload)
    }
    for (timeUS, seq) in [
      (next.timeUS, Int64.min), (next.timeUS, -1), (next.timeUS, limit + 1),
      (next.timeUS, Int64.max), (limit + 1, next.seq), (Int64.max, next.seq),
    ] {
      XCTAssertThrowsError(
        try log.append([record(timeUS: timeUS, seq: seq, eventSeq: next.eventSeq)])
      ) { XCTAssertTrue("\($0)".contains("outside"), "\($0)") }
      XCTAssertEqual(log.stats.events, 10, "nothing was written")
      XCTAssertNil(log.writeFailure, "not a disk failure")
    }
    let highest = record(timeUS: limit, seq: limit, eventSeq: next.eventSeq)
    try log.append([highest])
    try log.close()
    let reopened = try EventLog(LogFixtures.configuration(path))
    XCTAssertEqual(LogFixtures.readAll(reopened.reader(from: nil)).last, highest)
  }

  func testLastEventSeqSurvivesAReopen() throws {
    let records = try LogFixtures.records(frames: 300)
    let path = directory()
    let log = try EventLog(LogFixtures.configuration(path, segmentBytes: 16 << 10))
    try log.append(records)
    try log.close()
    let reopened = try EventLog(LogFixtures.configuration(path, segmentBytes: 16 << 10))
    XCTAssertEqual(reopened.lastEventSeq, records.last!.eventSeq)
    XCTAssertEqual(reopened.oldestEventSeq, 1)
    XCTAssertEqual(LogFixtures.readAll(reopened.reader(from: nil)), records)
    let more = try SyntheticStream(
      frames: 10, seed: 4, start: records.last!.timeUS, firstEventSeq: records.last!.eventSeq + 1)
    XCTAssertThrowsError(try reopened.append([with(more.records[0], eventSeq: 1)]))
    try reopened.append(more.records)
    XCTAssertEqual(LogFixtures.readAll(reopened.reader(from: nil)), records + more.records)
  }

  /// Retention deletes every segment but the newest, which still says where the numbering is,
  /// also after a reopen.
  func testEventSeqContinuesAfterRetentionDeletedEverySealedSegment() throws {
    let records = try LogFixtures.records(frames: 600)
    let path = directory()
    let now = Atomic<Int64>(records.first!.timeUS)
    var configuration = LogFixtures.configuration(path, segmentBytes: 16 << 10)
    configuration.retentionMicroseconds = 1_000
    configuration.clock = { now.load(ordering: .relaxed) }
    let log = try EventLog(configuration)
    try log.append(records)
    let segments = log.segmentSummaries
    XCTAssertGreaterThan(segments.count, 3)
    now.store(records.last!.timeUS + 1_000_000, ordering: .relaxed)
    XCTAssertEqual(log.enforceRetention(), segments.count - 1)
    let newest = segments.last!
    XCTAssertEqual(log.deletedThroughEventSeq, segments[segments.count - 2].lastEventSeq)
    XCTAssertEqual(log.deletedThroughTimeUS, segments[segments.count - 2].lastTimeUS)
    XCTAssertEqual(log.oldestEventSeq, newest.firstEventSeq, "the retention floor")
    XCTAssertEqual(log.lastEventSeq, records.last!.eventSeq)
    XCTAssertEqual(
      try log.locate(eventSeqAtLeast: 1)?.eventSeq, newest.firstEventSeq, "below the floor")
    try log.close()

    let reopened = try EventLog(configuration)
    XCTAssertEqual(reopened.lastEventSeq, records.last!.eventSeq)
    XCTAssertEqual(reopened.oldestEventSeq, newest.firstEventSeq)
    XCTAssertNil(reopened.deletedThroughEventSeq, "since this open")
    let more = try SyntheticStream(
      frames: 5, seed: 4, start: records.last!.timeUS, firstEventSeq: records.last!.eventSeq + 1)
    XCTAssertThrowsError(try reopened.append([with(more.records[0], eventSeq: 1)]))
    try reopened.append(more.records)
    XCTAssertEqual(reopened.lastEventSeq, more.records.last!.eventSeq)
  }

  /// A write that fails right after a roll leaves a newest segment holding only its header;
  /// once retention has deleted the others, no record is left at all, and the header alone
  /// carries the numbering across a reopen.
  func testEventSeqContinuesWhenNoRecordIsLeft() throws {
    let records = try LogFixtures.records(frames: 50)
    let path = directory()
    let disk = FillingDisk()
    let now = Atomic<Int64>(records.first!.timeUS)
    var configuration = LogFixtures.configuration(path)
    configuration.segmentMaxMicroseconds = 1_000
    configuration.retentionMicroseconds = 1_000
    configuration.clock = { now.load(ordering: .relaxed) }
    configuration.storage = disk.storage
    let log = try EventLog(configuration)
    try log.append(Array(records.dropLast()))
    let failed = with(records.last!, timeUS: records.last!.timeUS + 10_000)  // rolls
    disk.setRoom(SegmentFile.headerSize)  // the new segment's header, then the disk is full
    XCTAssertThrowsError(try log.append([failed]))
    disk.setRoom(nil)
    XCTAssertEqual(log.stats.segments, 2)
    XCTAssertEqual(log.segmentSummaries.last?.events, 0)
    now.store(failed.timeUS + 1_000_000, ordering: .relaxed)
    XCTAssertEqual(log.enforceRetention(), 1)
    XCTAssertEqual(log.stats.events, 0)
    XCTAssertNil(log.oldestEventSeq)
    XCTAssertNil(try log.locate(eventSeqAtLeast: 1))
    XCTAssertNil(try log.locate(timeUSAtLeast: 0))
    XCTAssertEqual(log.lastEventSeq, records[records.count - 2].eventSeq, "the last one written")
    try log.close()

    let reopened = try EventLog(configuration)
    XCTAssertEqual(reopened.stats.events, 0)
    XCTAssertEqual(reopened.lastEventSeq, failed.eventSeq - 1, "from the header's base")
    XCTAssertThrowsError(try reopened.append([with(failed, eventSeq: failed.eventSeq - 1)]))
    try reopened.append([failed])
    XCTAssertEqual(reopened.oldestEventSeq, failed.eventSeq)
    XCTAssertEqual(LogFixtures.readAll(reopened.reader(from: nil)), [failed])
  }

  /// Every record is found by its event seq and by its time, and so is the next record from
  /// between two, across many segments; before the oldest gives the oldest, after the newest nil.
  func testLocateIsExactBySeqAndByTime() throws {
    let records = spread(try LogFixtures.records(frames: 800), firstEventSeq: 7)
    let log = try EventLog(LogFixtures.configuration(directory(), segmentBytes: 32 << 10))
    try log.append(records)
    XCTAssertGreaterThan(log.stats.segments, 3)
    for record in records {
      XCTAssertEqual(keys(try log.locate(eventSeqAtLeast: record.eventSeq)), keys(record))
      XCTAssertEqual(
        keys(try log.locate(eventSeqAtLeast: record.eventSeq - 1)), keys(record), "between")
      XCTAssertEqual(keys(try log.locate(timeUSAtLeast: record.timeUS)), keys(record))
      XCTAssertEqual(
        keys(try log.locate(timeUSAtLeast: record.timeUS - 3)), keys(record), "between")
    }
    let first = keys(records[0])
    XCTAssertEqual(keys(try log.locate(eventSeqAtLeast: 1)), first, "before the oldest")
    XCTAssertEqual(keys(try log.locate(eventSeqAtLeast: 0)), first)
    XCTAssertEqual(keys(try log.locate(eventSeqAtLeast: Int64.min)), first)
    XCTAssertEqual(keys(try log.locate(timeUSAtLeast: records[0].timeUS - 1_000_000)), first)
    XCTAssertEqual(keys(try log.locate(timeUSAtLeast: 0)), first)
    XCTAssertNil(try log.locate(eventSeqAtLeast: records.last!.eventSeq + 1), "the future")
    XCTAssertNil(try log.locate(eventSeqAtLeast: Int64.max))
    XCTAssertNil(try log.locate(timeUSAtLeast: records.last!.timeUS + 1))
    // Agrees with where a reader from that time starts.
    for index in [0, 5, 399, 400, records.count - 1] {
      let found = try XCTUnwrap(try log.locate(eventSeqAtLeast: records[index].eventSeq - 2))
      XCTAssertEqual(log.reader(from: found.timeUS).next(), records[index])
    }
  }

  /// Locating while one thread appends and another applies retention: every answer is a
  /// record that exists with its own time, at or after the target, and exactly the target
  /// whenever the target was written before the call and not deleted by its end.
  func testLocateDuringAppendsAndRetention() throws {
    let records = try LogFixtures.records(frames: 3_000)
    let timeOf = Dictionary(uniqueKeysWithValues: records.map { ($0.eventSeq, $0.timeUS) })
    let now = Atomic<Int64>(records.first!.timeUS)
    var configuration = LogFixtures.configuration(directory(), segmentBytes: 16 << 10)
    configuration.retentionMicroseconds = 1_500
    configuration.clock = { now.load(ordering: .relaxed) }
    let log = try EventLog(configuration)
    try log.append(Array(records[..<200]))
    let done = Atomic<Bool>(false)
    let writer = Thread {
      for start in stride(from: 200, to: records.count, by: 37) {
        let batch = Array(records[start..<min(start + 37, records.count)])
        try! log.append(batch)
        now.store(batch.last!.timeUS, ordering: .relaxed)
        log.enforceRetention()
      }
      done.store(true, ordering: .releasing)
    }
    writer.start()
    var random = SeededRandom(seed: 5)
    var exact = 0
    var checks = 0
    while !done.load(ordering: .acquiring) || checks < 200 {
      let written = log.lastEventSeq
      let target = Int64(1 + random.below(Int(written) + 5))
      let byTime = timeOf[target] ?? records.last!.timeUS + 1
      for (found, key) in [
        (try log.locate(eventSeqAtLeast: target), target),
        (try log.locate(timeUSAtLeast: byTime), target),
      ] {
        let deleted = log.deletedThroughEventSeq ?? 0
        guard let found else {
          XCTAssertGreaterThan(key, written, "nil only for the future")
          continue
        }
        XCTAssertGreaterThanOrEqual(found.eventSeq, key)
        XCTAssertEqual(timeOf[found.eventSeq], found.timeUS, "a real record")
        if key <= written && key > deleted {
          XCTAssertEqual(found.eventSeq, key, "exact")
          exact += 1
        }
      }
      checks += 1
    }
    XCTAssertGreaterThan(exact, 100)
    XCTAssertGreaterThan(log.stats.deletedSegments, 5, "retention ran meanwhile")
  }

  /// A corrupt record costs that record only; the event seqs around it stay in order, and
  /// locating the lost one gives the record after it.
  func testDamageKeepsTheEventSeqOrder() throws {
    let records = try LogFixtures.records(frames: 300)
    let path = directory()
    let log = try EventLog(LogFixtures.configuration(path))
    try log.append(records)
    try log.close()
    let file = try XCTUnwrap(try segmentFiles(path).last)
    let damaged = records.count / 2
    let sizer = try EventLog(LogFixtures.configuration(directory()))
    try sizer.append(Array(records[..<damaged]))
    let start = sizer.stats.bytes
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
    bytes[start + 10] ^= 0x01
    try Data(bytes).write(to: URL(fileURLWithPath: file))

    let reopened = try EventLog(LogFixtures.configuration(path))
    var kept = records
    kept.remove(at: damaged)
    let read = LogFixtures.readAll(reopened.reader(from: nil))
    XCTAssertEqual(read, kept)
    XCTAssertEqual(reopened.lastEventSeq, records.last!.eventSeq)
    XCTAssertEqual(
      keys(try reopened.locate(eventSeqAtLeast: records[damaged].eventSeq)),
      keys(records[damaged + 1]))
    XCTAssertEqual(
      keys(try reopened.locate(timeUSAtLeast: records[damaged].timeUS)), keys(records[damaged + 1]))
  }

  /// A data directory written by an older Contrail (format 1, no event seqs) is refused with
  /// what it is and what to do, and left as it is; `serve` prints that and exits non-zero.
  func testAFormat1DataDirectoryIsRefused() throws {
    let path = directory()
    try FileManager.default.createDirectory(
      atPath: path + "/segments", withIntermediateDirectories: true)
    let name = "00001700000000000000.seg"
    var header = SegmentFile.magic
    SegmentFile.appendLE(1 | UInt64(20_261_122) << 32, &header)  // version 1, a dictionary ID
    SegmentFile.appendLE(1_700_000_000_000_000, &header)
    SegmentFile.appendLE(1_000, &header)
    XCTAssertEqual(header.count, 32, "a format-1 header")
    try Data(header).write(to: URL(fileURLWithPath: path + "/segments/" + name))
    let expected =
      "the data directory \(path) holds segments written by an older Contrail (log format 1, "
      + "e.g. segments/\(name)) without v2 event sequence numbers; this Contrail reads log "
      + "format 2 only. Move the data directory aside or delete it: the log is a 24-hour buffer "
      + "and refills from the relay"
    for readOnly in [false, true] {
      XCTAssertThrowsError(try EventLog(LogFixtures.configuration(path), readOnly: readOnly)) {
        XCTAssertEqual("\($0)", expected)
      }
    }
    XCTAssertEqual(
      try Data(contentsOf: URL(fileURLWithPath: path + "/segments/" + name)), Data(header),
      "not removed as a torn header, nor changed")

    let serve = try ContrailCommand.run([
      "serve", "--offline", "--host", "127.0.0.1", "--port", "0", "--data-dir", path,
    ])
    XCTAssertNotEqual(serve.status, 0)
    XCTAssertTrue(serve.stderr.contains("log format 1"), serve.stderr)
    XCTAssertTrue(serve.stderr.contains("Move the data directory aside or delete it"), serve.stderr)
    let inspect = try ContrailCommand.run(["inspect", path])
    XCTAssertNotEqual(inspect.status, 0)
    XCTAssertTrue(inspect.stderr.contains("log format 1"), inspect.stderr)
  }

  private func keys(_ record: LogRecord) -> [Int64] { [record.timeUS, record.eventSeq] }

  private func keys(_ located: (timeUS: Int64, eventSeq: Int64)?) -> [Int64]? {
    located.map { [$0.timeUS, $0.eventSeq] }
  }

  private func with(_ record: LogRecord, timeUS: Int64? = nil, eventSeq: Int64? = nil)
    -> LogRecord
  {
    LogRecord(
      timeUS: timeUS ?? record.timeUS, seq: record.seq, eventSeq: eventSeq ?? record.eventSeq,
      kind: record.kind, did: record.did, collection: record.collection, payload: record.payload)
  }
}
