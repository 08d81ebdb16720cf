import EventLog
import Events
import Foundation
import Synchronization
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// Group commit off the live path (issue 13): appends, readers and the facts event loops read
/// never wait for an fsync in progress; `lastDurableSeq` only covers what a completed sync
/// started after; storage faults (a failing fsync, a full disk) are injected through
/// `Configuration.storage`, without root.
final class DurabilityTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private func configuration(segmentBytes: Int = 256 << 20) -> EventLog.Configuration {
    let directory = LogFixtures.directory()
    directories.append(directory)
    return LogFixtures.configuration(directory, segmentBytes: segmentBytes)
  }

  /// Runs `body` and checks it took under 50 ms: far less than the sync being held.
  private func quickly<T>(
    _ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T
  ) rethrows -> T {
    let start = ContinuousClock.now
    let result = try body()
    let elapsed = ContinuousClock.now - start
    XCTAssertLessThan(
      elapsed, .milliseconds(50), "\(what) took \(elapsed) while a sync was in progress",
      file: file, line: line)
    return result
  }

  /// The centerpiece: while a sync is provably in progress (held inside the fake fdatasync until
  /// the test releases it), appends (rolls included), readers, retention and every fact an event
  /// loop reads answer at once; the held sync then makes exactly what was written before it
  /// started durable, and nothing after.
  func testAppendsAndReadersNeverWaitForASyncInProgress() throws {
    let records = try LogFixtures.records(frames: 400)
    let held = HeldSync()
    var configuration = configuration(segmentBytes: 16 << 10)
    configuration.sync = .bytes(1)  // every append asks for a sync
    configuration.storage = held.storage
    configuration.maxDiskBytes = 64 << 10
    let log = try EventLog(configuration)
    let first = Array(records[..<20])
    held.holdNext()
    try log.append(first)
    XCTAssertEqual(held.started.wait(timeout: .now() + 10), .success, "the append asked for a sync")
    // One segment so far: the held call is the first sync's only fdatasync.
    quickly("stats") { XCTAssertEqual(log.stats.segments, 1) }

    for start in stride(from: first.count, to: records.count, by: 50) {
      let batch = Array(records[start..<min(start + 50, records.count)])
      try quickly("append") { try log.append(batch) }
    }
    XCTAssertGreaterThan(log.stats.segments, 3, "segments rolled meanwhile")
    quickly("lastTimeUS") { XCTAssertEqual(log.lastTimeUS, records.last!.timeUS) }
    quickly("lastWrittenSeq") { XCTAssertEqual(log.lastWrittenSeq, records.last!.seq) }
    quickly("lastDurableSeq") { XCTAssertNil(log.lastDurableSeq, "no sync has completed yet") }
    quickly("stats") { XCTAssertEqual(log.stats.events, records.count) }
    quickly("writeFailure") { XCTAssertNil(log.writeFailure) }
    try quickly("syncIfDue") { try log.syncIfDue() }
    quickly("a reader at a cursor") {
      XCTAssertEqual(log.reader(from: records[250].timeUS).next(), records[250])
    }
    quickly("a live reader") { XCTAssertNil(log.reader(from: records.last!.timeUS + 1).next()) }
    let deleted = quickly("retention") { log.enforceRetention() }
    XCTAssertGreaterThan(deleted, 0, "retention deleted segments, synced or not")
    quickly("deletedThroughTimeUS") { XCTAssertNotNil(log.deletedThroughTimeUS) }
    XCTAssertEqual(LogFixtures.readAll(log.reader(from: nil)).last, records.last)
    XCTAssertTrue(held.holding, "all of it happened while the first sync was in progress")

    // Hold the next sync too, so the first one's result shows alone.
    held.holdNext()
    held.release()
    XCTAssertEqual(
      held.started.wait(timeout: .now() + 10), .success,
      "the appends made during the first sync asked for another")
    XCTAssertEqual(
      log.lastDurableSeq, first.last!.seq,
      "the first sync covered what was written before it started, and nothing after")
    held.release()
    try log.sync()  // waits for the sync in progress, then syncs the rest
    XCTAssertEqual(log.lastDurableSeq, records.last!.seq)
    try log.close()
    XCTAssertEqual(held.failures, 0, "no descriptor was closed under a sync")
  }

  /// A write nobody follows up (no more appends, no maintenance task) is still synced within
  /// the interval.
  func testAQuietTailIsSyncedWithinTheIntervalWithoutMaintenance() throws {
    let records = try LogFixtures.records(frames: 20)
    var configuration = configuration()
    configuration.sync = .interval(milliseconds: 200)
    let log = try EventLog(configuration)
    let start = ContinuousClock.now
    try log.append(records)
    let deadline = ContinuousClock.now + .seconds(10)
    while log.lastDurableSeq != records.last!.seq && ContinuousClock.now < deadline {
      usleep(1_000)  // polling the condition, bounded by the deadline
    }
    XCTAssertEqual(log.lastDurableSeq, records.last!.seq, "synced by the log's own timer")
    XCTAssertLessThan(ContinuousClock.now - start, .seconds(5))
    try log.close()
  }

  /// A failing fsync (EIO) does not advance the durable seq, is visible (`syncIfDue` throws,
  /// `syncFailure`, `writeFailure` for `/readyz`), leaves the written records readable, and the
  /// next successful sync covers them.
  func testAFailingSyncIsFinalUntilARestart() throws {
    let records = try LogFixtures.records(frames: 200)
    let failing = Flag()
    var configuration = configuration(segmentBytes: 16 << 10)
    configuration.sync = .bytes(1)
    configuration.storage.sync = { fd in failing.isSet ? EIO : EventLog.Storage.system.sync(fd) }
    let log = try EventLog(configuration)
    let first = Array(records[..<100])
    try log.append(first)
    try log.sync()
    XCTAssertEqual(log.lastDurableSeq, first.last!.seq)

    failing.set(true)
    try log.append(Array(records[100...]))  // written: appends do not fail on a sync failure
    let deadline = ContinuousClock.now + .seconds(10)
    while log.syncFailure == nil && ContinuousClock.now < deadline {
      usleep(1_000)  // polling the condition, bounded by the deadline
    }
    let failure = try XCTUnwrap(log.syncFailure, "the background sync failed")
    XCTAssertTrue(failure.contains("Input/output error"), failure)
    XCTAssertEqual(log.writeFailure, failure, "what /readyz shows")
    XCTAssertThrowsError(try log.syncIfDue()) {
      XCTAssertTrue("\($0)".contains("Input/output error"), "\($0)")
    }
    XCTAssertThrowsError(try log.sync())
    XCTAssertEqual(log.lastDurableSeq, first.last!.seq, "a failed sync makes nothing durable")
    XCTAssertEqual(log.lastWrittenSeq, records.last!.seq)
    XCTAssertEqual(LogFixtures.readAll(log.reader(from: nil)), records, "written, readable")

    // A later fsync that succeeds proves nothing (Linux may have dropped the failed pages): the
    // failure is final for this process, and a reopen rescans what is really on disk.
    failing.set(false)
    XCTAssertThrowsError(try log.sync())
    XCTAssertEqual(log.lastDurableSeq, first.last!.seq, "a retry after a failure proves nothing")
    XCTAssertEqual(log.syncFailure, failure)
    XCTAssertThrowsError(try log.syncIfDue())
    try? log.close()
    let reopened = try EventLog(configuration)
    XCTAssertNil(reopened.syncFailure)
    XCTAssertEqual(reopened.lastDurableSeq, records.last!.seq, "a reopen syncs what it finds")
    try reopened.close()
  }

  /// A write fails half-way and cutting the half record off fails too: the segment is sealed, so
  /// the next records go to a new segment instead of after the junk; everything whole stays
  /// readable, and the next open reports the damaged tail.
  func testAFailedCutSealsTheSegment() throws {
    let records = try LogFixtures.records(frames: 60)
    let armed = Flag()
    let calls = Locked(0)
    var configuration = configuration()
    configuration.sync = .never
    configuration.storage = EventLog.Storage(
      write: { fd, bytes, count in
        guard armed.isSet else { return EventLog.Storage.system.write(fd, bytes, count) }
        let call = calls.withLock { value -> Int in
          value += 1
          return value
        }
        // Half of the first write lands, then the disk is full.
        return call == 1
          ? EventLog.Storage.system.write(fd, bytes, max(count / 2, 1)) : -Int(ENOSPC)
      },
      sync: EventLog.Storage.system.sync,
      truncate: { _, _ in EIO })
    let log = try EventLog(configuration)
    let half = records.count / 2
    try log.append(Array(records[..<half]))
    armed.set(true)
    XCTAssertThrowsError(try log.append([records[half]]))
    armed.set(false)
    try log.append(Array(records[half...]))
    XCTAssertEqual(log.stats.segments, 2, "the damaged segment was sealed")
    XCTAssertTrue(LogFixtures.readAll(log.reader(from: nil)) == records, "every whole record, once")
    try log.close()
    let reopened = try EventLog(configuration)
    XCTAssertEqual(reopened.recoveryReport.map(\.kind), [.damagedTail])
    XCTAssertTrue(LogFixtures.readAll(reopened.reader(from: nil)) == records, "after a reopen")
    try reopened.close()
  }

  /// A disk that fills up mid-write (ENOSPC after a partial write, and at a segment roll): the
  /// append throws, only whole records stay (no half record in the file, none readable), the
  /// facts say exactly what was kept, and once there is room appends carry on seamlessly.
  func testAFullDiskKeepsOnlyWholeRecordsAndRecovers() throws {
    let records = try LogFixtures.records(frames: 300)
    let disk = FillingDisk()
    var configuration = configuration(segmentBytes: 8 << 10)
    configuration.sync = .interval(milliseconds: 5)
    configuration.storage = disk.storage
    let log = try EventLog(configuration)
    try log.append(Array(records[..<100]))

    disk.setRoom(300)  // part of the next batch fits, then the disk is full
    XCTAssertThrowsError(try log.append(Array(records[100...]))) {
      XCTAssertTrue("\($0)".contains("No space left on device"), "\($0)")
    }
    XCTAssertTrue(log.writeFailure?.contains("No space left on device") ?? false)
    let kept = records.prefix { $0.timeUS <= log.lastTimeUS! }.count
    XCTAssertGreaterThanOrEqual(kept, 100)
    XCTAssertLessThan(kept, records.count)
    XCTAssertEqual(log.lastWrittenSeq, records[kept - 1].seq)
    XCTAssertEqual(LogFixtures.readAll(log.reader(from: nil)), Array(records[..<kept]))

    // A roll on a full disk (a seq going backwards starts a segment) leaves no header-less file.
    let files = try segmentFiles(configuration.directory)
    let epoch = LogRecord(
      timeUS: records.last!.timeUS + 1, seq: 1, eventSeq: records.last!.eventSeq + 1,
      kind: .account, did: "did:plc:epoch",
      collection: "", payload: [1, 2, 3])
    disk.setRoom(0)
    XCTAssertThrowsError(try log.append([epoch]))
    XCTAssertEqual(try segmentFiles(configuration.directory), files)

    disk.setRoom(nil)
    try log.append(Array(records[kept...]))
    XCTAssertNil(log.writeFailure)
    try log.append([epoch])
    try log.close()
    XCTAssertEqual(disk.shortWrites, 1, "the disk filled in the middle of a write")

    let reopened = try EventLog(configuration)
    XCTAssertEqual(reopened.recoveryReport, [], "no torn or half-written record anywhere")
    XCTAssertEqual(LogFixtures.readAll(reopened.reader(from: nil)), records + [epoch])
  }

  /// Many rolls under background syncs, with a reader and retention running alongside: every
  /// segment is synced after its last write (so a sealed segment is durable before it counts),
  /// no sync ever hits a closed descriptor, the durable seq only moves forward behind the
  /// written one, and `close` leaves everything durable.
  func testEverySegmentIsSyncedAfterItsLastWrite() async throws {
    let records = try LogFixtures.records(frames: 1_000)
    let recorder = Recorder()
    var configuration = configuration(segmentBytes: 16 << 10)
    configuration.sync = .interval(milliseconds: 2)
    configuration.storage = recorder.storage
    configuration.maxDiskBytes = 200 << 10
    let log = try EventLog(configuration)
    let writer = Task.detached {
      var durable: [Int64] = []
      for start in stride(from: 0, to: records.count, by: 25) {
        try log.append(Array(records[start..<min(start + 25, records.count)]))
        if start % 100 == 0 { log.enforceRetention() }
        if let seq = log.lastDurableSeq { durable.append(seq) }
        XCTAssertLessThanOrEqual(log.lastDurableSeq ?? 0, log.lastWrittenSeq ?? 0)
        await Task.yield()
      }
      return durable
    }
    let reader = log.reader(from: nil)
    var seen: [LogRecord] = []
    let deadline = ContinuousClock.now + .seconds(60)
    while seen.last != records.last && ContinuousClock.now < deadline {
      if let record = reader.next() { seen.append(record) } else { await Task.yield() }
    }
    let durable = try await writer.value
    XCTAssertEqual(durable, durable.sorted(), "the durable seq only moves forward")
    XCTAssertEqual(seen.last, records.last)
    XCTAssertTrue(zip(seen, seen.dropFirst()).allSatisfy { $0.timeUS < $1.timeUS })
    let backgroundSyncs = recorder.events.count { $0.op == "sync" }
    try log.close()
    XCTAssertEqual(log.lastDurableSeq, records.last!.seq)

    let events = recorder.events
    XCTAssertEqual(events.filter { !$0.ok }, [], "every sync succeeded (no closed descriptor)")
    let written = Set(events.filter { $0.op == "write" }.map(\.path))
    XCTAssertGreaterThan(written.count, 10, "many segments")
    for path in written {
      let lastWrite = events.lastIndex { $0.op == "write" && $0.path == path }!
      XCTAssertTrue(
        events[lastWrite...].contains { $0.op == "sync" && $0.path == path },
        "\(path) synced after its last write")
    }
    XCTAssertGreaterThan(backgroundSyncs, 1, "synced in the background before close")
  }

  /// `.never` starts no sync of its own: rolls and appends never fsync; `sync()` and `close()`
  /// fsync on the caller's thread.
  func testNeverSyncsOnlyWhenAskedOnTheCallersThread() throws {
    let records = try LogFixtures.records(frames: 300)
    let threads = Locked<[pthread_t]>([])
    var configuration = configuration(segmentBytes: 16 << 10)
    configuration.sync = .never
    configuration.storage.sync = { fd in
      threads.withLock { $0.append(pthread_self()) }
      return EventLog.Storage.system.sync(fd)
    }
    let log = try EventLog(configuration)
    try log.append(records)
    try log.syncIfDue()
    XCTAssertGreaterThan(log.stats.segments, 3)
    XCTAssertEqual(threads.withLock { $0.count }, 0, "no sync on appends or rolls")
    XCTAssertEqual(log.lastDurableSeq, records.last!.seq, "`.never` takes written for durable")
    try log.sync()
    try log.close()
    let callers = threads.withLock { $0 }
    XCTAssertFalse(callers.isEmpty)
    XCTAssertTrue(callers.allSatisfy { pthread_equal($0, pthread_self()) != 0 }, "inline")
  }

  /// `close` waits for the sync in progress (it joins the background work), then syncs the rest;
  /// after it nothing syncs any more and appends fail.
  func testCloseWaitsForTheSyncInProgressThenSyncsTheRest() throws {
    let records = try LogFixtures.records(frames: 100)
    let held = HeldSync()
    var configuration = configuration()
    configuration.sync = .bytes(1)
    configuration.storage = held.storage
    let log = try EventLog(configuration)
    held.holdNext()
    try log.append(Array(records[..<50]))
    XCTAssertEqual(held.started.wait(timeout: .now() + 10), .success)
    try quickly("append") { try log.append(Array(records[50...])) }
    let closed = DispatchSemaphore(value: 0)
    let closeError = Locked<String?>(nil)
    Thread.detachNewThread {
      do { try log.close() } catch { closeError.withLock { $0 = "\(error)" } }
      closed.signal()
    }
    XCTAssertEqual(
      closed.wait(timeout: .now() + .milliseconds(300)), .timedOut,
      "close does not return while a sync is in progress")
    XCTAssertTrue(held.holding)
    held.release()
    XCTAssertEqual(closed.wait(timeout: .now() + 10), .success)
    XCTAssertNil(closeError.withLock { $0 })
    XCTAssertEqual(log.lastDurableSeq, records.last!.seq, "the final sync covered the rest")
    let calls = held.calls
    XCTAssertThrowsError(try log.append(Array(records.suffix(1))))
    XCTAssertNoThrow(try log.syncIfDue())
    XCTAssertEqual(held.calls, calls, "nothing syncs after close")
    XCTAssertEqual(held.failures, 0)
  }

  private func segmentFiles(_ directory: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory + "/segments").sorted()
  }
}

/// A fake fdatasync the test can hold: after `holdNext()`, the next sync blocks (signalling
/// `started`) until `release()`; the others go straight to the disk.
final class HeldSync: Sendable {
  private struct State {
    var holdNext = false
    var holding = false
    var calls = 0
    var failures = 0
  }
  private let state = Mutex(State())
  let started = DispatchSemaphore(value: 0)
  private let released = DispatchSemaphore(value: 0)

  func holdNext() { state.withLock { $0.holdNext = true } }
  func release() { released.signal() }
  var holding: Bool { state.withLock { $0.holding } }
  var calls: Int { state.withLock { $0.calls } }
  /// Syncs the disk refused (EBADF would mean a descriptor closed under a sync).
  var failures: Int { state.withLock { $0.failures } }

  var storage: EventLog.Storage {
    var storage = EventLog.Storage.system
    storage.sync = { fd in
      let hold = self.state.withLock { state in
        state.calls += 1
        defer { state.holdNext = false }
        state.holding = state.holdNext
        return state.holdNext
      }
      if hold {
        self.started.signal()
        // Bounded: a test that forgets to release fails on its timings instead of hanging.
        _ = self.released.wait(timeout: .now() + 10)
        self.state.withLock { $0.holding = false }
      }
      let result = EventLog.Storage.system.sync(fd)
      if result != 0 { self.state.withLock { $0.failures += 1 } }
      return result
    }
    return storage
  }
}

/// A disk with `room` bytes left (nil: unlimited): a write gets what fits, then ENOSPC.
final class FillingDisk: Sendable {
  private let state = Mutex<(room: Int?, shortWrites: Int)>((nil, 0))

  func setRoom(_ room: Int?) { state.withLock { $0.room = room } }
  var shortWrites: Int { state.withLock { $0.shortWrites } }

  var storage: EventLog.Storage {
    var storage = EventLog.Storage.system
    storage.write = { fd, bytes, count in
      let allowed = self.state.withLock { state -> Int in
        guard let room = state.room else { return count }
        let allowed = min(room, count)
        state.room = room - allowed
        if allowed > 0 && allowed < count { state.shortWrites += 1 }
        return allowed
      }
      guard allowed > 0 else { return -Int(ENOSPC) }
      return EventLog.Storage.system.write(fd, bytes, allowed)
    }
    return storage
  }
}

/// Records every write and sync with the file it went to (and whether it succeeded).
final class Recorder: Sendable {
  struct Event: Equatable {
    var op: String
    var path: String
    var ok: Bool
  }
  private let log = Mutex<[Event]>([])
  var events: [Event] { log.withLock { $0 } }

  /// The file behind `fd` (a deleted file's name, without " (deleted)").
  private static func path(_ fd: Int32) -> String {
    let path =
      (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)"))
      ?? "fd \(fd)"
    return path.hasSuffix(" (deleted)") ? String(path.dropLast(10)) : path
  }

  var storage: EventLog.Storage {
    EventLog.Storage(
      write: { fd, bytes, count in
        let path = Self.path(fd)
        let written = EventLog.Storage.system.write(fd, bytes, count)
        self.log.withLock { $0.append(Event(op: "write", path: path, ok: written >= 0)) }
        return written
      },
      sync: { fd in
        let path = Self.path(fd)
        let result = EventLog.Storage.system.sync(fd)
        self.log.withLock { $0.append(Event(op: "sync", path: path, ok: result == 0)) }
        return result
      })
  }
}

/// A flag for `@Sendable` fakes.
final class Flag: Sendable {
  private let value = Atomic<Bool>(false)
  var isSet: Bool { value.load(ordering: .acquiring) }
  func set(_ on: Bool) { value.store(on, ordering: .releasing) }
}

/// A value behind a lock that escaping closures can share.
final class Locked<Value: Sendable>: Sendable {
  private let mutex: Mutex<Value>
  init(_ value: Value) { mutex = Mutex(value) }
  func withLock<Result>(_ body: (inout Value) -> Result) -> Result { mutex.withLock { body(&$0) } }
}
