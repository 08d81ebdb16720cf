import Broadcast
import Compression
import EventLog
import Events
import Foundation
import NIOCore
import Synchronization
import SyntheticFirehose
import TestSupport
import XCTest

final class BroadcastTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// Generated events in both wire forms, plus their log records.
  private func stream(frames: Int) throws -> (
    events: [BroadcastEvent], records: [LogRecord], dictionary: ZstdDictionary
  ) {
    let stream = try SyntheticStream(frames: frames, seed: 12)
    return (stream.broadcast, stream.records, stream.dictionary)
  }

  private func log() throws -> EventLog {
    try TemporaryLog.open("broadcast", segmentBytes: 64 << 10, directories: &directories)
  }

  func testRingBoundsAndBehind() throws {
    let (events, _, _) = try stream(frames: 300)
    let ring = LiveRing(capacity: 100, startAfter: events[0].timeUS - 1)
    ring.publish(Array(events.prefix(250)))
    XCTAssertEqual(ring.newestTimeUS, events[249].timeUS)
    guard case .behind = ring.read(after: events[0].timeUS, limit: 10, filter: .all) else {
      return XCTFail("evicted positions must be read from the log")
    }
    guard
      case .events(let found, let through, _) = ring.read(
        after: events[149].timeUS, limit: 10, filter: .all)
    else {
      return XCTFail("the ring holds the newest 100")
    }
    XCTAssertEqual(found.map(\.timeUS), events[150..<160].map(\.timeUS))
    XCTAssertEqual(through, events[159].timeUS)
    let byBytes = LiveRing(capacity: 10_000, maxBytes: 20_000, startAfter: 0)
    byBytes.publish(events)
    guard
      case .events(let newest, _, _) = byBytes.read(
        after: events[events.count - 10].timeUS, limit: 100, filter: .all)
    else { return XCTFail("the newest events stay") }
    XCTAssertEqual(newest.count, 9)
    guard
      case .behind = byBytes.read(after: events[events.count / 2].timeUS, limit: 10, filter: .all)
    else {
      return XCTFail("the byte budget evicts the oldest")
    }
  }

  func testWaitersAreWokenOncePerPublishedBatch() throws {
    let (events, _, _) = try stream(frames: 50)
    let ring = LiveRing(capacity: 1_000, startAfter: 0)
    let calls = Mutex(0)
    for _ in 0..<3 { ring.notify(after: 0) { calls.withLock { $0 += 1 } } }
    ring.publish(Array(events.prefix(20)))  // one batch of 20 events
    XCTAssertEqual(calls.withLock { $0 }, 3, "each waiter once, not once per event")
    XCTAssertEqual(ring.wakeUpRounds, 1)
    ring.publish(Array(events[20..<30]))
    XCTAssertEqual(calls.withLock { $0 }, 3, "one-shot")
    ring.notify(after: events[0].timeUS) { calls.withLock { $0 += 1 } }
    XCTAssertEqual(calls.withLock { $0 }, 4, "newer events already there: woken at once")
  }

  /// Subscribers replaying from old cursors while ingest keeps publishing reach live with every
  /// event exactly once, in order, crossing from disk to memory.
  func testReplayReachesLiveWithoutGapDuplicateOrReordering() async throws {
    let (events, records, dictionary) = try stream(frames: 3_000)
    let log = try self.log()
    let ring = LiveRing(capacity: 256, startAfter: 0)
    let half = events.count / 2
    try log.append(Array(records.prefix(half)))
    ring.publish(Array(events.prefix(half)))

    let follows = try EventFilter(wantedCollections: ["app.bsky.graph.*"], wantedDIDs: [])
    let cases: [(SubscriberFeed.Start, EventFilter, Bool, [BroadcastEvent])] = [
      (.cursor(0), .all, false, events),
      (
        .cursor(events[400].timeUS), follows, true,
        events[400...].filter {
          follows.matches(kind: $0.kind, did: $0.did, collection: $0.collection)
        }
      ),
      (.cursor(events[half - 100].timeUS), .all, true, Array(events[(half - 100)...])),
      (.live, .all, false, Array(events[half...])),
    ]
    let pool = DecompressorPool(dictionary: dictionary)
    let feeds = cases.map { start, filter, text, _ in
      SubscriberFeed(
        ring: ring, log: log, start: start, filter: filter, decompressors: text ? pool : nil)
    }
    let ingest = Task.detached {
      for start in stride(from: half, to: events.count, by: 37) {
        let end = min(start + 37, events.count)
        try log.append(Array(records[start..<end]))  // the log first, then the ring
        ring.publish(Array(events[start..<end]))
        await Task.yield()
      }
    }
    let last = events.last!.timeUS
    for (index, feed) in feeds.enumerated() {
      var received: [BroadcastEvent] = []
      let deadline = ContinuousClock.now + .seconds(60)
      while feed.position < last && ContinuousClock.now < deadline {
        let batch = try feed.nextBatch(limit: 64)
        received += batch
        if batch.isEmpty && feed.position < last {
          await withCheckedContinuation { continuation in
            feed.notifyWhenReady { continuation.resume() }
          }
        }
      }
      let expected = cases[index].3
      let mismatch = zip(received, expected).enumerated().first {
        $0.element.0.timeUS != $0.element.1.timeUS
      }?.offset
      XCTAssertTrue(
        received.count == expected.count && mismatch == nil,
        "subscriber \(index): received \(received.count) of \(expected.count), first difference at \(String(describing: mismatch)); "
          + "first \(String(describing: received.first?.timeUS)) vs \(String(describing: expected.first?.timeUS)), "
          + "last \(String(describing: received.last?.timeUS)) vs \(String(describing: expected.last?.timeUS))"
      )
      XCTAssertTrue(zip(received, received.dropFirst()).allSatisfy { $0.timeUS < $1.timeUS })
      if !cases[index].2 {  // text subscribers get JSON only
        XCTAssertTrue(
          received.elementsEqual(expected) { $0.compressed == $1.compressed }, "the stored frames")
      } else {
        XCTAssertTrue(
          received.elementsEqual(expected) { $0.json == $1.json }, "text replays decode to the JSON"
        )
      }
      if index < 3 {
        XCTAssertGreaterThan(feed.fromDisk, 0, "subscriber \(index) started on disk")
        XCTAssertGreaterThan(feed.fromMemory, 0, "subscriber \(index) ended in memory")
      }
    }
    try await ingest.value
  }
}
