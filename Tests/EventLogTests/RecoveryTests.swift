import EventLog
import Events
import Foundation
import Synchronization
import SyntheticFirehose
import TestSupport
import XCTest

/// Torn tails, bit rot, retention and concurrent readers.
final class RecoveryTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private func freshDirectory() -> String {
    let directory = LogFixtures.directory()
    directories.append(directory)
    return directory
  }

  private func segmentFiles(_ directory: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory + "/segments").sorted().map {
      directory + "/segments/" + $0
    }
  }

  /// ARCHITECTURE invariant 6: cutting the newest segment anywhere inside its last records leaves a
  /// clean prefix after reopening, and appends continue after it.
  func testTruncatingTheNewestSegmentAtEveryByteServesACleanPrefix() throws {
    let records = try LogFixtures.records(frames: 60)
    let source = freshDirectory()
    let log = try EventLog(LogFixtures.configuration(source))
    try log.append(records)
    try log.close()
    let file = try XCTUnwrap(try segmentFiles(source).last)
    let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
    // Where the last three records start: the size of a log holding all but them.
    let shorter = freshDirectory()
    let prefixLog = try EventLog(LogFixtures.configuration(shorter))
    try prefixLog.append(Array(records.dropLast(3)))
    let boundary = prefixLog.stats.bytes
    var checked = 0
    for cut in stride(from: bytes.count, through: boundary, by: -1) {
      let directory = freshDirectory()
      try FileManager.default.createDirectory(
        atPath: directory + "/segments", withIntermediateDirectories: true)
      try bytes.prefix(cut).write(
        to: URL(fileURLWithPath: directory + "/segments/" + (file as NSString).lastPathComponent))
      let reopened = try EventLog(LogFixtures.configuration(directory))
      let served = LogFixtures.readAll(reopened.reader(from: nil))
      XCTAssertEqual(served, Array(records.prefix(served.count)), "cut at \(cut)")
      XCTAssertGreaterThanOrEqual(served.count, records.count - 3)
      XCTAssertEqual(reopened.lastDurableSeq, served.last?.seq)
      // The torn tail is gone from disk, so new appends follow the prefix cleanly.
      let next = LogRecord(
        timeUS: records.last!.timeUS + 10, seq: records.last!.seq + 1,
        eventSeq: records.last!.eventSeq + 1, kind: .account, did: "did:plc:next",
        collection: "", payload: [9])
      try reopened.append([next])
      XCTAssertEqual(LogFixtures.readAll(reopened.reader(from: nil)), served + [next])
      try reopened.close()
      try FileManager.default.removeItem(atPath: directory)
      checked += 1
    }
    XCTAssertGreaterThan(checked, 300)
  }

  /// The bytes a log holding just `records` takes on disk (header included): where the next
  /// record would start.
  private func size(of records: ArraySlice<LogRecord>) throws -> Int {
    let log = try EventLog(LogFixtures.configuration(freshDirectory()))
    try log.append(Array(records))
    return log.stats.bytes
  }

  /// A corrupt record in the middle of the newest segment costs that record only: recovery keeps
  /// every whole record after it (it used to cut the file there), cuts only the torn tail, says
  /// so, and appends continue after the last whole record.
  func testACorruptRecordInTheNewestSegmentKeepsTheRecordsAfterIt() throws {
    let records = try LogFixtures.records(frames: 300)
    let directory = freshDirectory()
    let log = try EventLog(LogFixtures.configuration(directory))
    try log.append(records)
    try log.close()
    let file = try XCTUnwrap(try segmentFiles(directory).last)
    let name = (file as NSString).lastPathComponent
    let damaged = records.count / 2
    let start = try size(of: records[..<damaged])
    let end = try size(of: records[...damaged])
    let lastStart = try size(of: records.dropLast())
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
    bytes[start + 10] ^= 0x01  // inside the record's body: its checksum fails
    bytes.removeLast(5)  // and a torn write at the end
    try Data(bytes).write(to: URL(fileURLWithPath: file))

    let reopened = try EventLog(LogFixtures.configuration(directory))
    var kept = records
    kept.remove(at: damaged)
    kept.removeLast()
    XCTAssertEqual(LogFixtures.readAll(reopened.reader(from: nil)), kept)
    XCTAssertEqual(reopened.lastDurableSeq, kept.last?.seq, "resume after the last whole record")
    XCTAssertEqual(
      reopened.recoveryReport,
      [
        RecoveryNote(kind: .corruptRange, segment: name, offset: start, bytes: end - start),
        RecoveryNote(
          kind: .cutTail, segment: name, offset: lastStart, bytes: bytes.count - lastStart),
      ])
    XCTAssertEqual(reopened.stats.corruptions, 1)
    let next = LogRecord(
      timeUS: records.last!.timeUS + 10, seq: records.last!.seq + 1,
      eventSeq: records.last!.eventSeq + 1, kind: .account, did: "did:plc:next", collection: "",
      payload: [9])
    try reopened.append([next])
    try reopened.close()
    // The corrupt range stays in the file (readers skip it); nothing else is left to cut.
    let again = try EventLog(LogFixtures.configuration(directory))
    XCTAssertEqual(LogFixtures.readAll(again.reader(from: nil)), kept + [next])
    XCTAssertEqual(again.recoveryReport.map(\.kind), [.corruptRange])
  }

  /// A sealed segment cut short (its last record incomplete) is reported, not silently served
  /// one event short.
  func testASealedSegmentTruncatedBy37BytesIsReported() throws {
    let records = try LogFixtures.records(frames: 300)
    let directory = freshDirectory()
    let log = try EventLog(LogFixtures.configuration(directory, segmentBytes: 16 << 10))
    try log.append(records)
    try log.close()
    let files = try segmentFiles(directory)
    XCTAssertGreaterThan(files.count, 2)
    let file = files[0]
    let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
    try bytes.dropLast(37).write(to: URL(fileURLWithPath: file))

    let reopened = try EventLog(LogFixtures.configuration(directory, segmentBytes: 16 << 10))
    let note = try XCTUnwrap(reopened.recoveryReport.first)
    XCTAssertEqual(reopened.recoveryReport.count, 1)
    XCTAssertEqual(note.kind, .damagedTail)
    XCTAssertEqual(note.segment, (file as NSString).lastPathComponent)
    XCTAssertEqual(note.offset + note.bytes, bytes.count - 37, "from its last whole record on")
    XCTAssertEqual(reopened.stats.corruptions, 1)
    XCTAssertEqual(LogFixtures.readAll(reopened.reader(from: nil)).count, records.count - 1)

    let inspect = try ContrailCommand.run(["inspect", directory, "--verify"])
    XCTAssertEqual(inspect.status, 1)
    let output = String(decoding: inspect.stdout, as: UTF8.self)
    XCTAssertTrue(output.contains("damaged: \(note)"), output)
    XCTAssertFalse(output.contains("verify: every record's checksum holds"), output)
  }

  /// A corrupt record in a sealed segment is skipped by readers and listed in the report, so
  /// `serve` can log it.
  func testACorruptRecordInASealedSegmentIsReported() throws {
    let records = try LogFixtures.records(frames: 300)
    let directory = freshDirectory()
    let log = try EventLog(LogFixtures.configuration(directory, segmentBytes: 16 << 10))
    try log.append(records)
    try log.close()
    let file = try segmentFiles(directory)[1]
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
    let flipped = bytes.count / 2
    bytes[flipped] ^= 0x40
    try Data(bytes).write(to: URL(fileURLWithPath: file))

    let reopened = try EventLog(LogFixtures.configuration(directory, segmentBytes: 16 << 10))
    let note = try XCTUnwrap(reopened.recoveryReport.first)
    XCTAssertEqual(reopened.recoveryReport.count, 1)
    XCTAssertEqual(note.kind, .corruptRange)
    XCTAssertEqual(note.segment, (file as NSString).lastPathComponent)
    XCTAssertTrue((note.offset..<(note.offset + note.bytes)).contains(flipped), "\(note)")
    XCTAssertEqual(LogFixtures.readAll(reopened.reader(from: nil)).count, records.count - 1)
  }

  /// A failed write (here a segment roll that cannot create its file) is reported until an
  /// append succeeds: what `/readyz` shows instead of "not connected".
  func testAFailedAppendIsReportedUntilAnAppendSucceeds() throws {
    let directory = freshDirectory()
    let log = try EventLog(LogFixtures.configuration(directory))
    let first = LogRecord(
      timeUS: 1_700_000_000_000_000, seq: 100, eventSeq: 1, kind: .account, did: "did:plc:a",
      collection: "", payload: [1])
    try log.append([first])
    XCTAssertNil(log.writeFailure)
    // A seq below the segment's base starts a new segment, named after its time: occupy the name.
    let second = LogRecord(
      timeUS: first.timeUS + 1, seq: 50, eventSeq: 2, kind: .account, did: "did:plc:a",
      collection: "", payload: [2])
    let blocker = directory + "/segments/" + String(format: "%020lld.seg", second.timeUS)
    try FileManager.default.createDirectory(atPath: blocker, withIntermediateDirectories: false)
    XCTAssertThrowsError(try log.append([second]))
    let failure = try XCTUnwrap(log.writeFailure)
    XCTAssertTrue(failure.contains("cannot create \(blocker)"), failure)
    try FileManager.default.removeItem(atPath: blocker)
    try log.append([second])
    XCTAssertNil(log.writeFailure)
    XCTAssertEqual(LogFixtures.readAll(log.reader(from: nil)), [first, second])
  }

  func testBitFlipsInOldSegmentsAreSkippedAndCounted() throws {
    let records = try LogFixtures.records(frames: 600)
    let directory = freshDirectory()
    let log = try EventLog(LogFixtures.configuration(directory, segmentBytes: 32 << 10))
    try log.append(records)
    try log.close()
    let files = try segmentFiles(directory)
    XCTAssertGreaterThan(files.count, 4)
    var random = SeededRandom(seed: 99)
    var flipped = 0
    for file in files.dropLast() {  // sealed segments
      var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
      let bit = 40 * 8 + random.below((bytes.count - 40) * 8)  // past the header
      bytes[bit / 8] ^= 1 << UInt8(bit % 8)
      try Data(bytes).write(to: URL(fileURLWithPath: file))
      flipped += 1
    }
    let reopened = try EventLog(LogFixtures.configuration(directory, segmentBytes: 32 << 10))
    let reader = reopened.reader(from: nil)
    let served = LogFixtures.readAll(reader)
    // Each flip costs at most the damaged record; everything served is an original record, in order.
    XCTAssertGreaterThanOrEqual(served.count, records.count - flipped)
    XCTAssertLessThan(served.count, records.count)
    var index = 0
    for record in served {
      while index < records.count && records[index] != record { index += 1 }
      XCTAssertLessThan(index, records.count, "served a record that was never written")
    }
    XCTAssertEqual(reopened.stats.corruptions, flipped, "one counted error per damaged record")
    XCTAssertEqual(reader.corruptions, flipped)
  }

  func testRetentionByAgeWithAnInjectedClock() throws {
    let records = try LogFixtures.records(frames: 400)
    let directory = freshDirectory()
    let now = Mutex(records.first!.timeUS)
    var configuration = LogFixtures.configuration(directory, segmentBytes: 16 << 10)
    configuration.retentionMicroseconds = 100
    configuration.clock = { now.withLock { $0 } }
    let log = try EventLog(configuration)
    try log.append(records)
    let segments = log.stats.segments
    XCTAssertGreaterThan(segments, 5)
    XCTAssertEqual(log.enforceRetention(), 0, "nothing is older than the window yet")
    // Move the clock so the first half of the events is older than the window.
    now.withLock { $0 = records[records.count / 2].timeUS + 100 }
    let reader = log.reader(from: nil)  // positioned in a segment about to be deleted
    let first = try XCTUnwrap(reader.next())
    XCTAssertEqual(first, records[0])
    let deleted = log.enforceRetention()
    XCTAssertGreaterThan(deleted, 0)
    let oldest = try XCTUnwrap(log.stats.oldestTimeUS)
    XCTAssertLessThanOrEqual(
      oldest, records[records.count / 2].timeUS, "no segment with live events was deleted")
    XCTAssertGreaterThan(oldest, records[0].timeUS)
    // The reader finishes its (unlinked) segment, then continues with the next one.
    let rest = LogFixtures.readAll(reader)
    XCTAssertEqual(rest.last, records.last)
    XCTAssertTrue(zip(rest, rest.dropFirst()).allSatisfy { $0.timeUS < $1.timeUS })
    XCTAssertEqual(
      log.reader(from: nil).next()?.timeUS, oldest, "new readers start at the oldest retained")
    XCTAssertEqual(try segmentFiles(directory).count, segments - deleted)
  }

  func testMaintenanceTaskDeletesExpiredSegmentsAndSyncs() async throws {
    let records = try LogFixtures.records(frames: 300)
    let now = Mutex(records.first!.timeUS)
    var configuration = LogFixtures.configuration(freshDirectory(), segmentBytes: 16 << 10)
    configuration.retentionMicroseconds = 100
    configuration.sync = .interval(milliseconds: 1)
    configuration.clock = { now.withLock { $0 } }
    let log = try EventLog(configuration)
    try log.append(records)
    // Syncs run in the background (DurabilityTests checks exactly what each one covers).
    let segments = log.stats.segments
    let maintenance = Task { await log.runMaintenance(every: .milliseconds(5)) }
    // Everything but the newest segment expires, and the 1 ms sync interval has passed.
    now.withLock { $0 = records.last!.timeUS + 10_000 }
    let deadline = ContinuousClock.now + .seconds(10)
    while (log.stats.segments > 1 || log.lastDurableSeq != records.last!.seq)
      && ContinuousClock.now < deadline
    {
      try await Task.sleep(for: .milliseconds(5))  // waiting on the condition, bounded
    }
    maintenance.cancel()
    await maintenance.value
    XCTAssertGreaterThan(segments, 1)
    XCTAssertEqual(log.stats.segments, 1, "expired segments deleted in the background")
    XCTAssertEqual(log.lastDurableSeq, records.last!.seq, "synced in the background")
  }

  func testRetentionBySizeKeepsTheNewest() throws {
    let records = try LogFixtures.records(frames: 400)
    let directory = freshDirectory()
    var configuration = LogFixtures.configuration(directory, segmentBytes: 16 << 10)
    configuration.maxDiskBytes = 40 << 10
    let log = try EventLog(configuration)
    try log.append(records)
    XCTAssertGreaterThan(log.enforceRetention(), 0)
    XCTAssertLessThanOrEqual(log.stats.bytes, 40 << 10)
    XCTAssertEqual(LogFixtures.readAll(log.reader(from: nil)).last, records.last)
    configuration.maxDiskBytes = 1  // smaller than any segment: the newest still stays
    let tiny = try EventLog(configuration)
    tiny.enforceRetention()
    XCTAssertEqual(tiny.stats.segments, 1)
  }

  func testAConcurrentReaderSeesAMonotonePrefix() async throws {
    let records = try LogFixtures.records(frames: 1_500)
    let log = try EventLog(LogFixtures.configuration(freshDirectory(), segmentBytes: 64 << 10))
    let writer = Task.detached {
      for batch in stride(from: 0, to: records.count, by: 23) {
        try log.append(Array(records[batch..<min(batch + 23, records.count)]))
        await Task.yield()
      }
    }
    let reader = log.reader(from: nil)
    var seen: [LogRecord] = []
    let deadline = ContinuousClock.now + .seconds(30)
    while seen.count < records.count && ContinuousClock.now < deadline {
      if let record = reader.next() {
        seen.append(record)
      } else {
        await Task.yield()  // caught up with the writer: let it append more
      }
    }
    try await writer.value
    XCTAssertEqual(seen, records, "every record once, in order, none torn")
  }
}
