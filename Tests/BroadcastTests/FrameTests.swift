import Broadcast
import EventLog
import Events
import Foundation
import NIOCore
import TestSupport
import XCTest

/// Frames are built once per event (at publish for the ring, at the read for the log) into
/// blocks that neighbouring events share; the feed reads the ring without the log and says when
/// the slow-consumer policy applies.
/// Hands a feed to a reader task (one task per feed, so never used by two at once).
private final class FeedBox: @unchecked Sendable {
  let feed: SubscriberFeed
  init(_ feed: SubscriberFeed) { self.feed = feed }
}

final class FrameTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// A websocket frame as RFC 6455 §5.2 lays it out (FIN, unmasked), built independently of
  /// `FrameHeader`.
  private func frame(_ opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
    var bytes: [UInt8] = [0x80 | opcode]
    if payload.count < 126 {
      bytes.append(UInt8(payload.count))
    } else if payload.count <= 0xFFFF {
      bytes += [126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    } else {
      bytes.append(127)
      bytes += (0..<8).reversed().map { UInt8(truncatingIfNeeded: payload.count >> ($0 * 8)) }
    }
    return bytes + payload
  }

  private func bytes(_ buffer: ByteBuffer?) -> [UInt8] {
    buffer.map { Array($0.readableBytesView) } ?? []
  }

  /// Where a buffer's readable bytes are in memory.
  private func address(_ buffer: ByteBuffer) -> UInt {
    buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
  }

  private func ringEvents(_ ring: LiveRing, after position: Int64 = 0) -> [BroadcastEvent] {
    guard case .events(let events, _, _) = ring.read(after: position, limit: 1 << 20, filter: .all)
    else { return [] }
    return events
  }

  func testPublishFramesEachEventOnceInSharedBlocks() throws {
    let stream = try SyntheticStream(frames: 400, seed: 3)
    let ring = LiveRing(capacity: 10_000, startAfter: 0)
    // One event with a JSON over 65,535 bytes: the 64-bit length form.
    let big = Array(repeating: UInt8(ascii: "x"), count: 70_000)
    let large = BroadcastEvent(
      timeUS: stream.broadcast.last!.timeUS + 1, kind: .commit, did: "did:plc:big",
      collection: "app.bsky.feed.post", json: ByteBuffer(bytes: big),
      compressed: ByteBuffer(bytes: [1, 2, 3]), jsonLength: big.count)
    ring.publish(stream.broadcast + [large])
    let events = ringEvents(ring)
    XCTAssertEqual(events.count, stream.broadcast.count + 1)
    var blocks: [ObjectIdentifier] = []
    for (index, (event, original)) in zip(events, stream.broadcast + [large]).enumerated() {
      let frames = try XCTUnwrap(event.frames, "event \(index) framed at publish")
      XCTAssertEqual(bytes(event.textFrame), frame(0x1, bytes(original.json)), "text \(index)")
      XCTAssertEqual(bytes(event.binaryFrame), frame(0x2, bytes(original.compressed)))
      XCTAssertEqual(bytes(event.json), bytes(original.json), "the payloads are unchanged")
      XCTAssertEqual(bytes(event.compressed), bytes(original.compressed))
      // The payloads are the frames' own bytes (the event's buffers were let go), not copies.
      let text = try XCTUnwrap(event.textFrame)
      XCTAssertEqual(
        address(try XCTUnwrap(event.json)),
        address(text) + UInt(text.readableBytes - event.jsonLength))
      if blocks.last != ObjectIdentifier(frames.block) {
        blocks.append(ObjectIdentifier(frames.block))
      }
    }
    // Blocks of about FrameBlock.targetBytes; neighbours' frames adjacent within one.
    XCTAssertGreaterThan(blocks.count, 2)
    XCTAssertLessThan(blocks.count, events.count / 4, "many events per block")
    for (first, second) in zip(events, events.dropFirst()) {
      guard let a = first.frames, let b = second.frames, a.block === b.block else { continue }
      XCTAssertEqual(a.range(binary: false)!.upperBound, b.range(binary: false)!.lowerBound)
      XCTAssertEqual(a.range(binary: true)!.upperBound, b.range(binary: true)!.lowerBound)
    }
    // Every block but the last (which took the large event after others) stays near the target.
    for event in events where event.frames!.block !== events.last!.frames!.block {
      let block = event.frames!.block
      XCTAssertLessThan(
        block.text.readableBytes + block.binary.readableBytes, FrameBlock.targetBytes + 8_192)
    }
    // Published again (frames already built): kept as they are.
    let again = LiveRing(capacity: 10_000, startAfter: 0)
    again.publish(events)
    XCTAssertTrue(
      zip(ringEvents(again), events).allSatisfy { $0.frames!.block === $1.frames!.block })
  }

  func testARingWithoutFramingKeepsEventsAsGiven() throws {
    let stream = try SyntheticStream(frames: 50, seed: 4)
    let ring = LiveRing(capacity: 1_000, startAfter: 0, framing: false)
    ring.publish(stream.broadcast)
    let events = ringEvents(ring)
    XCTAssertEqual(events.count, stream.broadcast.count)
    XCTAssertTrue(events.allSatisfy { $0.frames == nil })
  }

  /// A read that reaches its limit inside a block goes on to the block's end (for feeds), so the
  /// next read starts at a block's first event; a plain read stops at the limit.
  func testWholeBlockReadsEndAtABlockBoundary() throws {
    let stream = try SyntheticStream(frames: 400, seed: 5)
    let ring = LiveRing(capacity: 10_000, startAfter: 0)
    ring.publish(stream.broadcast)
    guard case .events(let plain, _, _) = ring.read(after: 0, limit: 10, filter: .all) else {
      return XCTFail("in the ring")
    }
    XCTAssertEqual(plain.count, 10)
    var position: Int64 = 0
    var reads = 0
    while case .events(let batch, let through, _) = ring.read(
      after: position, limit: 10, filter: .all, wholeBlocks: true), !batch.isEmpty
    {
      guard batch.count >= 10 else {
        XCTAssertEqual(through, stream.broadcast.last!.timeUS, "only the last read is short")
        position = through
        continue
      }
      let last = batch.last!.frames!.block
      if case .events(let next, _, _) = ring.read(after: through, limit: 1, filter: .all),
        let first = next.first
      {
        XCTAssertFalse(first.frames!.block === last, "the next read starts a new block")
      }
      // Past the limit only to finish the block of the tenth event.
      XCTAssertTrue(batch[9...].allSatisfy { $0.frames!.block === batch[9].frames!.block })
      position = through
      reads += 1
    }
    XCTAssertEqual(position, stream.broadcast.last!.timeUS)
    XCTAssertGreaterThan(reads, 2)
  }

  /// The feed reads the ring without touching the log (`nextRunsFromMemory` is nil only when the
  /// position is behind the ring), frames what it reads from the log as it reads it, and rewinds.
  func testFeedReadsMemoryAndDiskSeparatelyAndFramesDiskReads() throws {
    let stream = try SyntheticStream(frames: 600, seed: 6)
    let log = try TemporaryLog.open("frames", directories: &directories)
    try log.append(stream.records)
    let ring = LiveRing(capacity: 100, startAfter: 0)
    ring.publish(stream.broadcast)
    let pool = DecompressorPool(dictionary: stream.dictionary)
    for text in [false, true] {
      let feed = SubscriberFeed(
        ring: ring, log: log, start: .cursor(0), filter: .all, decompressors: text ? pool : nil)
      XCTAssertNil(feed.nextRunsFromMemory(limit: 10), "behind the ring: the log's turn")
      var received: [BroadcastEvent] = []
      while feed.position < stream.broadcast[stream.broadcast.count - 100].timeUS {
        received += try feed.nextFromDisk(limit: 10)
      }
      XCTAssertNotNil(feed.nextRunsFromMemory(limit: 10), "in the ring again")
      XCTAssertGreaterThan(feed.fromDisk, 0)
      for (event, original) in zip(received, stream.broadcast) {
        XCTAssertEqual(event.timeUS, original.timeUS)
        let frames = try XCTUnwrap(event.frames, "framed at the read")
        if text {
          XCTAssertEqual(bytes(event.textFrame), frame(0x1, bytes(original.json)))
          XCTAssertNil(frames.range(binary: true))
          XCTAssertEqual(bytes(event.json), bytes(original.json))
        } else {
          XCTAssertEqual(bytes(event.binaryFrame), frame(0x2, bytes(original.compressed)))
          XCTAssertNil(frames.range(binary: false))
          XCTAssertNil(event.json)
          XCTAssertEqual(event.jsonLength, original.jsonLength)
        }
        let block = frames.block
        XCTAssertLessThan(
          block.text.readableBytes + block.binary.readableBytes, FrameBlock.targetBytes + 8_192)
      }
      // Rewinding to an event read before reads it again.
      let target = stream.broadcast[50].timeUS
      feed.rewind(to: target)
      XCTAssertEqual(feed.position, target - 1)
      XCTAssertEqual(try feed.nextBatch(limit: 1).first?.timeUS, target)
    }
  }

  /// A subscriber's read hands out runs: one per stretch of adjacent frames of its form (one
  /// per block when it takes everything), the JSON and payload bytes summed, events over the
  /// size limit left out and counted; a filter that skips events breaks the runs.
  func testRingReadsHandOutRunsOfAdjacentFrames() throws {
    let stream = try SyntheticStream(frames: 600, seed: 8)
    let log = try TemporaryLog.open("runs", directories: &directories)
    let ring = LiveRing(capacity: 10_000, startAfter: 0)
    ring.publish(stream.broadcast)
    let events = ringEvents(ring)
    let blocks = events.reduce(into: [ObjectIdentifier]()) {
      let id = ObjectIdentifier($1.frames!.block)
      if $0.last != id { $0.append(id) }
    }
    for binary in [false, true] {
      let feed = SubscriberFeed(
        ring: ring, log: log, start: .cursor(0), filter: .all,
        decompressors: binary ? nil : DecompressorPool(dictionary: stream.dictionary))
      var runs: [FrameRun] = []
      while let batch = feed.nextRunsFromMemory(limit: 100), batch.events > 0 {
        XCTAssertGreaterThanOrEqual(
          batch.events, min(100, events.count - runs.reduce(0) { $0 + $1.events }))
        runs += batch.runs
      }
      XCTAssertEqual(runs.count, blocks.count, "one run per block: reads end at a block's end")
      var bytes: [UInt8] = []
      for run in runs {
        let block = try XCTUnwrap(run.block)
        bytes += block.buffer(binary: binary).readableBytesView[run.range]
      }
      XCTAssertEqual(
        bytes,
        events.reduce(into: []) {
          $0 += (binary ? $1.binaryFrame! : $1.textFrame!).readableBytesView
        }, "the runs are exactly the frames, in order")
      XCTAssertEqual(runs.reduce(0) { $0 + $1.jsonBytes }, events.reduce(0) { $0 + $1.jsonLength })
      XCTAssertEqual(
        runs.reduce(0) { $0 + $1.payloadBytes },
        events.reduce(0) { $0 + $1.payloadLength(binary: binary) })
      XCTAssertEqual(runs.first?.firstTimeUS, events.first?.timeUS)
      XCTAssertEqual(runs.last?.lastTimeUS, events.last?.timeUS)
    }
    // A size limit and a filter.
    let cap = events.map(\.jsonLength).sorted()[events.count / 2]
    let likes = try EventFilter(wantedCollections: ["app.bsky.feed.like"], wantedDIDs: [])
    let feed = SubscriberFeed(
      ring: ring, log: log, start: .cursor(0), filter: likes, decompressors: nil)
    feed.maxMessageSizeBytes = Int64(cap)
    var runs: [FrameRun] = []
    var read = 0
    var oversize = 0
    while let batch = feed.nextRunsFromMemory(limit: 50), batch.events > 0 || batch.filteredOut > 0
    {
      runs += batch.runs
      read += batch.events
      oversize += batch.oversize
    }
    let matching = events.filter {
      likes.matches(kind: $0.kind, did: $0.did, collection: $0.collection)
    }
    XCTAssertEqual(read, matching.count)
    XCTAssertEqual(oversize, matching.filter { $0.jsonLength > cap }.count)
    let sent = matching.filter { $0.jsonLength <= cap }
    XCTAssertEqual(runs.reduce(0) { $0 + $1.events }, sent.count)
    XCTAssertGreaterThan(runs.count, blocks.count, "skipped events break runs")
    var bytes: [UInt8] = []
    for run in runs { bytes += run.block!.binary.readableBytesView[run.range] }
    XCTAssertEqual(bytes, sent.reduce(into: []) { $0 += $1.binaryFrame!.readableBytesView })
  }

  /// Readers scan the ring outside its lock while it is published to and evicts: every reader
  /// sees every event once, in order, and a batch bigger than the ring keeps only its newest.
  func testConcurrentReadersSeeEveryEventOnceWhileTheRingEvicts() async throws {
    let stream = try SyntheticStream(frames: 3_000, seed: 9)
    let events = stream.broadcast
    let log = try TemporaryLog.open("concurrent", directories: &directories)
    let ring = LiveRing(capacity: 2_000, startAfter: 0)
    let readers = (0..<3).map { _ in
      SubscriberFeed(ring: ring, log: log, start: .live, filter: .all, decompressors: nil)
    }
    let boxes = readers.map { FeedBox($0) }
    let results = try await withThrowingTaskGroup(of: ([Int64], Int).self) { group in
      for box in boxes {
        group.addTask {
          var times: [Int64] = []
          var seen = 0
          var previousLast: Int64? = nil
          let deadline = ContinuousClock.now + .seconds(60)
          while seen < events.count && ContinuousClock.now < deadline {
            guard let batch = box.feed.nextRunsFromMemory(limit: 128) else {
              XCTFail("fell behind the ring")
              return (times, seen)
            }
            for run in batch.runs {
              if let previousLast {
                XCTAssertEqual(run.firstTimeUS, previousLast + 1, "nothing skipped between runs")
              }
              previousLast = run.lastTimeUS
              seen += run.events
              times.append(run.firstTimeUS)
              if run.events > 1 { times.append(run.lastTimeUS) }
              XCTAssertEqual(run.events, Int(run.lastTimeUS - run.firstTimeUS) + 1, "contiguous")
            }
            if batch.runs.isEmpty { await Task.yield() }
          }
          return (times, seen)
        }
      }
      group.addTask {
        for start in stride(from: 0, to: events.count, by: 50) {
          ring.publish(Array(events[start..<min(start + 50, events.count)]))
          if start % 500 == 0 { try await Task.sleep(for: .milliseconds(1)) }
        }
        return ([], -1)
      }
      var all: [([Int64], Int)] = []
      for try await result in group where result.1 >= 0 { all.append(result) }
      return all
    }
    XCTAssertEqual(results.count, 3)
    let total = events.count
    for (times, seen) in results {
      XCTAssertEqual(seen, total, "every event seen exactly once")
      XCTAssertLessThanOrEqual(times.count, total)
      XCTAssertEqual(times.first, events.first?.timeUS)
      XCTAssertEqual(times.last, events.last?.timeUS)
      XCTAssertTrue(zip(times, times.dropFirst()).allSatisfy { $0 < $1 }, "in order, once")
    }
    // One batch bigger than the ring: only its newest `capacity` events stay.
    let small = LiveRing(capacity: 100, startAfter: 0)
    small.publish(events)
    guard case .behind = small.read(after: events[0].timeUS, limit: 1, filter: .all) else {
      return XCTFail("the oldest are evicted")
    }
    guard
      case .events(let newest, _, _) = small.read(
        after: events[events.count - 101].timeUS, limit: 1_000, filter: .all)
    else { return XCTFail("the newest 100 stay") }
    XCTAssertEqual(newest.map(\.timeUS), events.suffix(100).map(\.timeUS))
  }

  /// The slow-consumer policy, with the feed: retention passing what was delivered is `tooSlow`;
  /// lagging more than the limit is `lagging` only after the grace, and catching up forgives.
  func testHealthAppliesRetentionAndTheLagLimit() throws {
    let stream = try SyntheticStream(frames: 300, seed: 7, start: 1_000_000_000, spacing: 1_000)
    let clock = TestClock(stream.broadcast.first!.timeUS)
    let log = try TemporaryLog.open(
      "health", retentionMicroseconds: 1_000_000, clock: clock, directories: &directories)
    try log.append(stream.records)
    let ring = LiveRing(capacity: 10_000, startAfter: 0)
    ring.publish(stream.broadcast)
    let feed = SubscriberFeed(
      ring: ring, log: log, start: .cursor(0), filter: .all, decompressors: nil,
      lagLimit: .init(maxLagUS: 50_000, grace: .seconds(1)))
    let first = stream.broadcast.first!.timeUS
    let newest = stream.broadcast.last!.timeUS
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
    XCTAssertEqual(feed.health(delivered: newest, now: t0), .ok)
    XCTAssertEqual(feed.health(delivered: first, now: t0), .ok, "lagging, within the grace")
    XCTAssertEqual(feed.health(delivered: first, now: t0 + .milliseconds(999)), .ok)
    XCTAssertEqual(feed.health(delivered: first, now: t0 + .seconds(1)), .lagging)
    XCTAssertEqual(feed.health(delivered: newest - 10_000, now: t0 + .seconds(2)), .ok, "caught up")
    XCTAssertEqual(feed.health(delivered: first, now: t0 + .seconds(2)), .ok, "a new grace")
    // Retention: move the clock so that the older segments expire.
    clock.set(newest + 1_000_000 - 100_000)
    XCTAssertGreaterThan(log.enforceRetention(), 0)
    let deleted = try XCTUnwrap(log.deletedThroughTimeUS)
    XCTAssertEqual(feed.health(delivered: deleted - 1, now: t0 + .seconds(3)), .tooSlow)
    let unlimited = SubscriberFeed(
      ring: ring, log: log, start: .live, filter: .all, decompressors: nil)
    XCTAssertEqual(unlimited.health(delivered: deleted, now: t0), .ok, "no lag limit")
  }
}
