import Foundation
import XCTest

@testable import EventLog

/// Inputs found by fuzzing the event log's readers (`scripts/fuzz LogRecord`, `scripts/fuzz
/// Segment`; FUZZING.md), kept so that they run in the normal test suite.
final class FuzzRegressionTests: XCTestCase {
  private var paths: [String] = []

  override func tearDown() {
    for path in paths { try? FileManager.default.removeItem(atPath: path) }
  }

  /// A segment file: a valid header (base time 1.7e15 µs, base seq 1000, base event seq 500)
  /// and then `body`.
  private func segment(
    _ body: [UInt8], baseTime: UInt64 = 1_700_000_000_000_000, baseSeq: UInt64 = 1_000,
    baseEventSeq: UInt64 = 500
  ) throws -> String {
    var file = SegmentFile.magic
    SegmentFile.appendLE(UInt64(SegmentFile.version), &file)
    SegmentFile.appendLE(baseTime, &file)
    SegmentFile.appendLE(baseSeq, &file)
    SegmentFile.appendLE(baseEventSeq, &file)
    file.append(contentsOf: body)
    let path = FileManager.default.temporaryDirectory.appendingPathComponent(
      "contrail-fuzz-\(UUID()).seg"
    ).path
    paths.append(path)
    try Data(file).write(to: URL(fileURLWithPath: path))
    return path
  }

  /// An encoded record `time` µs after the segment's base time, its event seq `eventSeq` (by
  /// default `time`) after the base event seq.
  private func record(_ payload: [UInt8], time: Int64 = 1, eventSeq: Int64? = nil) -> [UInt8] {
    var out: [UInt8] = []
    let record = LogRecord(
      timeUS: 1_700_000_000_000_000 + time, seq: 1_001, eventSeq: 500 + (eventSeq ?? time),
      kind: .commit, did: "did:web:example.com", collection: "app.bsky.feed.post",
      payload: payload)
    XCTAssertTrue(
      RecordCodec.encode(
        record, bases: .init(time: 1_700_000_000_000_000, seq: 1_000, eventSeq: 500), into: &out))
    return out
  }

  /// FuzzSegment (slow units): after a corrupt record, the byte-by-byte search re-read the file
  /// from every offset whose length pointed past its end (a 1 MiB buffer each time), so a garbage
  /// tail of n bytes cost O(n²) bytes read at startup (`ff ff 07` repeated claims a 2 MiB record
  /// at one offset in three: 48 KiB of it read about 180 MB, 192 KiB 2.9 GB). Now the scan reads the file about
  /// once; counted with the thread's `rchar` (bytes asked of read/pread) on Linux.
  func testGarbageTailIsScannedInLinearTime() throws {
    let tail = [UInt8]([0xFF, 0xFF, 0x07]).repeated(16 << 10)
    for mode in [SegmentFile.Tail.report, .leave] {
      let path = try segment(record([1, 2, 3]) + tail + record([4], time: 2))
      let readBefore = bytesRead()
      let (segment, notes, unreadTail) = try SegmentFile.load(path: path, tail: mode)
      if let readBefore, let readAfter = bytesRead() {
        XCTAssertLessThan(readAfter - readBefore, 4 * (tail.count + 100), "\(mode)")
      }
      XCTAssertEqual(segment.state.withLock { $0.count }, 2)
      XCTAssertEqual(notes.map(\.kind), [.corruptRange])
      XCTAssertEqual(notes.first?.bytes, tail.count)
      XCTAssertEqual(unreadTail, 0)
    }
  }

  /// A damaged header whose base time or seq leaves no room for a record's 32-bit offset
  /// trapped on overflow in `RecordCodec.parse` (base time `ff…ff 7f`); it is now a bad header.
  /// So is a base event seq that overflows or is below 1 (event seqs start at 1).
  func testHeaderBasesThatOverflowAreRejected() throws {
    let top = UInt64(Int64.max) - UInt64(UInt32.max)
    for (time, seq, eventSeq) in [
      (UInt64(Int64.max), UInt64(1_000), UInt64(1)), (1_700_000_000_000_000, UInt64(Int64.max), 1),
      (UInt64(bitPattern: -1), 0, 1), (top + 1, 0, 1), (1_700_000_000_000_000, 0, top + 1),
      (1_700_000_000_000_000, 0, UInt64(bitPattern: -1)), (1_700_000_000_000_000, 0, 0),
    ] {
      let path = try segment(record([1]), baseTime: time, baseSeq: seq, baseEventSeq: eventSeq)
      XCTAssertThrowsError(
        try SegmentFile.load(path: path, tail: .report), "\(time) \(seq) \(eventSeq)")
    }
    let path = try segment(record([1]), baseTime: top, baseSeq: 0, baseEventSeq: top)
    XCTAssertEqual(
      try SegmentFile.load(path: path, tail: .report).0.state.withLock { $0.count }, 1)
  }

  /// Random garbage between records: the resync scan finds the record after it. (It used to
  /// compute a CRC over every claimed length at every offset: 1 MiB of random bytes took
  /// minutes; the cheap field checks now come first.)
  func testRandomGarbageBetweenRecordsIsSkipped() throws {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    let garbage = (0..<(256 << 10)).map { _ -> UInt8 in
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return UInt8(truncatingIfNeeded: state >> 56)
    }
    let path = try segment(record([1, 2, 3]) + garbage + record([4], time: 2))
    let started = ContinuousClock.now
    let (segment, notes, _) = try SegmentFile.load(path: path, tail: .report)
    XCTAssertEqual(segment.state.withLock { $0.count }, 2)
    XCTAssertGreaterThanOrEqual(notes.count, 1)
    XCTAssertLessThan(ContinuousClock.now - started, .seconds(30))
  }

  /// A record the resync search finds after damage counts only if its time follows the last
  /// record's: time strictly increases through a segment, so anything else is a false match.
  func testAResyncMatchOutOfTimeOrderIsNotARecord() throws {
    let first = record([1], time: 5)
    let garbage: [UInt8] = [0xFF, 0xFF, 0x07]
    let stale = record([2], time: 5)
    let path = try segment(first + garbage + stale + record([3], time: 6))
    let (segment, notes, _) = try SegmentFile.load(path: path, tail: .report)
    XCTAssertEqual(segment.state.withLock { $0.count }, 2)
    XCTAssertEqual(segment.state.withLock { $0.lastTime }, 1_700_000_000_000_006)
    XCTAssertEqual(
      notes,
      [
        RecoveryNote(
          kind: .corruptRange, segment: (path as NSString).lastPathComponent,
          offset: SegmentFile.headerSize + first.count, bytes: garbage.count + stale.count)
      ])
  }

  /// The same for the event seq: a match whose time follows the last record's but whose event
  /// seq does not is not a record either.
  func testAResyncMatchOutOfEventSeqOrderIsNotARecord() throws {
    let first = record([1], time: 5, eventSeq: 5)
    let garbage: [UInt8] = [0xFF, 0xFF, 0x07]
    let stale = record([2], time: 6, eventSeq: 5)
    let path = try segment(first + garbage + stale + record([3], time: 7, eventSeq: 6))
    let (segment, notes, _) = try SegmentFile.load(path: path, tail: .report)
    XCTAssertEqual(segment.state.withLock { $0.count }, 2)
    XCTAssertEqual(segment.state.withLock { $0.lastEventSeq }, 506)
    XCTAssertEqual(segment.state.withLock { $0.lastTime }, 1_700_000_000_000_007)
    XCTAssertEqual(
      notes,
      [
        RecoveryNote(
          kind: .corruptRange, segment: (path as NSString).lastPathComponent,
          offset: SegmentFile.headerSize + first.count, bytes: garbage.count + stale.count)
      ])
  }

  /// The bytes this thread has read from files so far (`rchar`); nil where there is no
  /// /proc/thread-self/io.
  private func bytesRead() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/thread-self/io", encoding: .utf8) else {
      return nil
    }
    for line in text.split(separator: "\n") where line.hasPrefix("rchar:") {
      return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
    }
    return nil
  }
}

extension Array {
  fileprivate func repeated(_ times: Int) -> [Element] {
    (0..<times).flatMap { _ in self }
  }
}
