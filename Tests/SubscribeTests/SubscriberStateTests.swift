import Events
import NIOCore
import XCTest

@testable import Broadcast
@testable import Subscribe

/// `SubscriberState` alone: each transition's phase and the action it answers with, no socket.
final class SubscriberStateTests: XCTestCase {
  private let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
  private let noPacing: () -> TimeAmount? = { nil }

  /// `count` events of `size` JSON bytes (time_us from `first`), framed as the ring frames them.
  private func events(_ count: Int, size: Int = 500, first: Int64 = 1) -> [BroadcastEvent] {
    BroadcastEvent.framed(
      (0..<count).map { index in
        let json = [UInt8](repeating: UInt8(ascii: "a") + UInt8(index % 26), count: size)
        return BroadcastEvent(
          timeUS: first + Int64(index), kind: .commit, did: "did:plc:x",
          collection: "app.bsky.feed.like", json: ByteBuffer(bytes: json),
          compressed: ByteBuffer(bytes: json.prefix(size / 3)), jsonLength: size)
      })
  }

  /// The events as a feed hands them out: runs of adjacent frames.
  private func feedBatch(_ events: [BroadcastEvent], disk: Bool = false, maxSize: Int64 = 0)
    -> FeedBatch
  {
    var runs = RunBuilder(binary: false, maxJSONLength: maxSize)
    runs.add(events)
    return runs.batch(position: events.last?.timeUS ?? 0, fromDisk: disk, filteredOut: 0)
  }

  private func batch(
    _ events: [BroadcastEvent], limit: Int = 128, disk: Bool = false, maxSize: Int64 = 0
  ) -> SubscriberState.Batch {
    SubscriberState.Batch(feedBatch(events, disk: disk, maxSize: maxSize), limit: limit)
  }

  private func subscribed(heartbeat: TimeAmount? = nil, maxSize: Int64 = 0) -> SubscriberState {
    var state = SubscriberState(
      settings: .init(compressed: false, heartbeat: heartbeat, pongTimeout: .seconds(60)),
      maxMessageSizeBytes: maxSize, now: t0)
    state.subscribe(at: 0, now: t0)
    return state
  }

  /// Writes every piece the state hands out while the channel stays writable; returns the
  /// pieces and the action that followed them.
  private func writeAll(
    _ state: inout SubscriberState, _ first: SubscriberState.Action, now: NIODeadline? = nil
  ) -> ([FramePiece], SubscriberState.Action) {
    var pieces: [FramePiece] = []
    var action = first
    while case .write(let piece) = action {
      pieces.append(piece)
      action = state.wrote(writable: true, now: now ?? t0, pacing: noPacing)
    }
    return (pieces, action)
  }

  private func read(_ action: SubscriberState.Action) -> SubscriberState.Read? {
    if case .read(let read) = action { return read }
    return nil
  }

  func testALiveBatchIsReadWrittenAndFollowedByAWaitOrAYield() {
    var state = subscribed()
    XCTAssertEqual(
      state.pump(writable: true, pacing: noPacing),
      .read(.init(limit: 128, update: nil, rewind: nil)))
    XCTAssertEqual(state.phase, .reading)
    XCTAssertEqual(state.pump(writable: true, pacing: noPacing), .none, "one read in flight")
    // A full batch from memory: written, then a yield (more is likely there).
    let full = events(128)
    let (pieces, after) = writeAll(
      &state, state.received(batch(full), writable: true, pacing: noPacing))
    XCTAssertEqual(pieces.reduce(0) { $0 + $1.events }, 128)
    XCTAssertEqual(
      pieces.flatMap(\.buffers).reduce(into: [UInt8]()) { $0 += $1.readableBytesView },
      full.reduce(into: [UInt8]()) { $0 += $1.textFrame!.readableBytesView },
      "every frame, in order")
    XCTAssertEqual(after, .yield)
    XCTAssertEqual(state.deliveredThrough, 128)
    // A short batch: caught up, so it waits for the next publish.
    XCTAssertNotNil(read(state.pump(writable: true, pacing: noPacing)))
    let (_, last) = writeAll(
      &state, state.received(batch(events(5, first: 129)), writable: true, pacing: noPacing))
    XCTAssertEqual(last, .awaitEvents)
    XCTAssertEqual(state.phase, .awaitingEvents)
    XCTAssertEqual(state.deliveredThrough, 133)
    // Nothing new: the position still moves (heartbeats report it), then it waits.
    XCTAssertNotNil(read(state.pump(writable: true, pacing: noPacing)))
    var empty = batch([])
    empty.position = 200
    XCTAssertEqual(state.received(empty, writable: true, pacing: noPacing), .awaitEvents)
    XCTAssertEqual(state.deliveredThrough, 200)
  }

  func testADiskBatchIsFollowedByTheNextReadAtOnce() {
    var state = subscribed()
    _ = state.pump(writable: true, pacing: noPacing)
    let action = state.received(batch(events(20), disk: true), writable: true, pacing: noPacing)
    XCTAssertTrue(state.replaying)
    let (_, after) = writeAll(&state, action)
    XCTAssertEqual(after, .read(.init(limit: 128, update: nil, rewind: nil)))
    _ = state.received(batch(events(3, first: 21)), writable: true, pacing: noPacing)
    XCTAssertFalse(state.replaying, "live again once reads come from memory")
  }

  /// The channel fills partway through a batch: the rest is held and written once it drains
  /// (nothing is read twice); a rest bigger than a piece still held after two periodic checks
  /// is dropped and read again, from where writing stopped, in small batches.
  func testAFullChannelHoldsASmallRestAndRereadsABigOne() throws {
    for (count, big) in [(40, false), (128, true)] {
      var state = subscribed()
      _ = state.pump(writable: true, pacing: noPacing)
      guard
        case .write(let first) = state.received(
          batch(events(count, size: 2_000)), writable: true, pacing: noPacing)
      else { return XCTFail("writes at once") }
      XCTAssertEqual(state.wrote(writable: false, now: t0, pacing: noPacing), .none)
      XCTAssertEqual(state.phase, .awaitingWritable)
      XCTAssertTrue(state.stalled)
      XCTAssertEqual(state.deliveredThrough, Int64(first.events))
      XCTAssertEqual(state.pump(writable: false, pacing: noPacing), .none)
      XCTAssertEqual(state.check(now: t0, health: .ok, writable: false), .none)
      // Drained before the next check: the rest goes out as it is.
      var drained = state
      let (rest, after) = writeAll(&drained, drained.pump(writable: true, pacing: noPacing))
      XCTAssertEqual(first.events + rest.reduce(0) { $0 + $1.events }, count)
      XCTAssertEqual(after, big ? .yield : .awaitEvents, "then on, without reading it again")
      // Still full at the second check.
      XCTAssertEqual(
        state.check(now: t0 + .milliseconds(500), health: .ok, writable: false), .none)
      let next = state.pump(writable: true, pacing: noPacing)
      if big {
        XCTAssertEqual(
          next, .read(.init(limit: 8, update: nil, rewind: Int64(first.events) + 1)),
          "read again from the first event not written, 8 at a time")
      } else {
        guard case .write = next else { return XCTFail("a small rest is kept") }
      }
    }
  }

  func testStalledReadsStaySmallUntilSixteenCleanBatches() {
    var state = subscribed()
    _ = state.pump(writable: true, pacing: noPacing)
    guard case .write = state.received(batch(events(10)), writable: true, pacing: noPacing) else {
      return XCTFail("writes")
    }
    // The batch went out, but the channel is full after it.
    XCTAssertEqual(state.wrote(writable: false, now: t0, pacing: noPacing), .none)
    XCTAssertTrue(state.stalled)
    var time: Int64 = 100
    for round in 0..<16 {
      XCTAssertEqual(read(state.pump(writable: true, pacing: noPacing))?.limit, 8, "round \(round)")
      let (_, after) = writeAll(
        &state,
        state.received(batch(events(8, first: time), limit: 8), writable: true, pacing: noPacing))
      XCTAssertEqual(after, .yield)
      time += 8
    }
    XCTAssertFalse(state.stalled)
    XCTAssertEqual(read(state.pump(writable: true, pacing: noPacing))?.limit, 128)
  }

  /// PROTOCOL §7.2: an update applies from the next read; a batch held under the old options is
  /// read again under the new ones.
  func testAnUpdateRereadsWhatWasReadUnderTheOldOptions() throws {
    var state = subscribed()
    _ = state.pump(writable: true, pacing: noPacing)
    guard
      case .write(let first) = state.received(
        batch(events(40, size: 2_000)), writable: true, pacing: noPacing)
    else { return XCTFail("writes") }
    _ = state.wrote(writable: false, now: t0, pacing: noPacing)  // a small rest is held
    let filter = try EventFilter(wantedCollections: ["app.bsky.feed.post"], wantedDIDs: [])
    XCTAssertEqual(
      state.update(filter: filter, maxMessageSizeBytes: 1_000, writable: false, pacing: noPacing),
      .none, "not while the channel is full")
    XCTAssertEqual(
      state.pump(writable: true, pacing: noPacing),
      .read(
        .init(
          limit: 8, update: .init(filter: filter, maxMessageSizeBytes: 1_000),
          rewind: Int64(first.events) + 1)))
    XCTAssertEqual(state.maxMessageSizeBytes, 1_000)
    // While a read is in flight, an update waits for it; an empty result reads again at once.
    let other = try EventFilter(wantedCollections: ["app.bsky.graph.*"], wantedDIDs: [])
    XCTAssertEqual(
      state.update(filter: other, maxMessageSizeBytes: 0, writable: true, pacing: noPacing), .none)
    XCTAssertEqual(
      state.received(batch([]), writable: true, pacing: noPacing),
      .read(
        .init(
          limit: 8, update: .init(filter: other, maxMessageSizeBytes: 0),
          rewind: Int64(first.events) + 1)),
      "what the old filter rejected is read again under the new one")
  }

  /// The events the old filter rejected before a held batch's first run are read again too: the
  /// rewind goes to just after what was delivered, not to the held run.
  func testAnUpdateRereadsEventsTheOldFilterRejected() throws {
    var state = subscribed()
    _ = state.pump(writable: true, pacing: noPacing)
    // Events 1 and 2 were rejected by the old filter: the batch's only run starts at 3.
    _ = state.received(batch(events(3, first: 3)), writable: false, pacing: noPacing)
    let filter = try EventFilter(wantedCollections: ["app.bsky.feed.like"], wantedDIDs: [])
    _ = state.update(filter: filter, maxMessageSizeBytes: 0, writable: false, pacing: noPacing)
    XCTAssertEqual(
      state.pump(writable: true, pacing: noPacing),
      .read(.init(limit: 128, update: .init(filter: filter, maxMessageSizeBytes: 0), rewind: 1)))
  }

  func testMessagesOverTheSizeLimitAreSkippedButPassed() {
    var state = subscribed(maxSize: 1_000)
    _ = state.pump(writable: true, pacing: noPacing)
    let mixed = events(2, size: 500) + events(3, size: 1_500, first: 3) + events(3, first: 6)
    let read = feedBatch(mixed, maxSize: 1_000)
    XCTAssertEqual(read.events, 8)
    XCTAssertEqual(read.oversize, 3)
    XCTAssertEqual(read.runs.count, 2, "a skipped event ends a run")
    let (pieces, _) = writeAll(
      &state,
      state.received(SubscriberState.Batch(read, limit: 128), writable: true, pacing: noPacing))
    XCTAssertEqual(pieces.reduce(0) { $0 + $1.events }, 5)
    XCTAssertEqual(state.deliveredThrough, 8, "skipped events count as delivered")
  }

  func testPacingDefersReadsOnly() {
    var state = subscribed()
    XCTAssertEqual(
      state.pump(writable: true, pacing: { .milliseconds(20) }), .schedulePump(.milliseconds(20)))
    XCTAssertEqual(state.phase, .paced)
    XCTAssertEqual(state.pump(writable: true, pacing: noPacing), .none, "a pump is scheduled")
    XCTAssertNotNil(read(state.pacedPumpFired(writable: true, pacing: noPacing)))
  }

  func testChecksCloseForThePolicyAndSendHeartbeats() {
    var state = subscribed(heartbeat: .seconds(1))
    XCTAssertEqual(state.check(now: t0 + .milliseconds(500), health: .ok, writable: true), .none)
    XCTAssertEqual(state.check(now: t0 + .seconds(1), health: .ok, writable: false), .none)
    XCTAssertEqual(state.check(now: t0 + .seconds(1), health: .ok, writable: true), .heartbeat(0))
    XCTAssertEqual(state.check(now: t0 + .milliseconds(1_500), health: .ok, writable: true), .none)
    // Sending events postpones the next heartbeat.
    _ = state.pump(writable: true, pacing: noPacing)
    _ = writeAll(
      &state, state.received(batch(events(3)), writable: true, pacing: noPacing),
      now: t0 + .milliseconds(1_900))
    XCTAssertEqual(state.check(now: t0 + .milliseconds(2_500), health: .ok, writable: true), .none)
    XCTAssertEqual(
      state.check(now: t0 + .milliseconds(2_900), health: .ok, writable: true), .heartbeat(3))
    XCTAssertEqual(
      state.check(now: t0 + .seconds(3), health: .lagging, writable: true), .close(.lagging))
    XCTAssertEqual(state.closeReason, "lagging")
    XCTAssertEqual(state.check(now: t0 + .seconds(9), health: .tooSlow, writable: true), .none)

    var slow = subscribed()
    XCTAssertEqual(slow.check(now: t0, health: .tooSlow, writable: false), .close(.tooSlow))
  }

  func testPingsAndThePongTimeout() {
    var state = subscribed()
    XCTAssertEqual(state.ping(now: t0 + .seconds(30)), .ping)
    state.pong(now: t0 + .seconds(31))
    XCTAssertEqual(state.ping(now: t0 + .seconds(60)), .ping)
    XCTAssertEqual(state.ping(now: t0 + .seconds(91)), .close(.pingTimeout))
    XCTAssertEqual(state.ping(now: t0 + .seconds(120)), .none, "closing")
  }

  func testClosingEndsEverythingElse() {
    var state = subscribed()
    _ = state.pump(writable: true, pacing: noPacing)
    XCTAssertEqual(state.close(.shutdown), .close(.shutdown))
    XCTAssertEqual(state.close(.tooSlow), .none, "one close")
    XCTAssertEqual(state.closeReason, "shutdown")
    XCTAssertEqual(state.received(batch(events(3)), writable: true, pacing: noPacing), .none)
    XCTAssertEqual(state.pump(writable: true, pacing: noPacing), .none)
    XCTAssertEqual(state.clientClosed(), .closeConnection, "the client's answer to our close")
    XCTAssertTrue(state.end())
    XCTAssertFalse(state.end(), "once")
    XCTAssertEqual(state.disconnectReason, "shutdown")

    var client = subscribed()
    XCTAssertEqual(client.clientClosed(), .echoClose)
    XCTAssertEqual(client.disconnectReason, "client")
    var lost = subscribed()
    XCTAssertEqual(lost.connectionLost("connection lost: reset"), .closeConnection)
    XCTAssertEqual(lost.disconnectReason, "connection lost: reset")
  }

  func testNothingButPingsBeforeTheHello() throws {
    var state = SubscriberState(
      settings: .init(compressed: true, heartbeat: .seconds(1), pongTimeout: .seconds(60)),
      maxMessageSizeBytes: 0, now: t0)
    XCTAssertEqual(state.pump(writable: true, pacing: noPacing), .none)
    XCTAssertEqual(state.check(now: t0 + .seconds(5), health: .tooSlow, writable: true), .none)
    XCTAssertEqual(state.ping(now: t0 + .seconds(30)), .ping)
    let filter = try EventFilter(wantedCollections: ["app.bsky.feed.post"], wantedDIDs: [])
    XCTAssertEqual(
      state.update(filter: filter, maxMessageSizeBytes: 2_000, writable: true, pacing: noPacing),
      .subscribe(filter))
    XCTAssertEqual(state.maxMessageSizeBytes, 2_000)
    state.subscribe(at: 77, now: t0)
    XCTAssertEqual(state.deliveredThrough, 77)
    XCTAssertNotNil(read(state.pump(writable: true, pacing: noPacing)))
  }

  // MARK: FramePlanner

  /// Where a buffer's readable bytes are in memory.
  private func span(_ buffer: ByteBuffer) -> Range<UInt> {
    buffer.withUnsafeReadableBytes {
      let start = UInt(bitPattern: $0.baseAddress)
      return start..<(start + UInt($0.count))
    }
  }

  /// Dense runs go out as one slice of their block each; a subscriber that takes a few events
  /// of each block gets copies (pinning a block for one small frame would hold the whole block);
  /// unframed events are framed into a copy. The bytes are the same every way.
  func testPiecesAreSlicesOfDenseBlocksAndCopiesOfSparseOnes() {
    let all = events(300)
    let blocks = Set(all.map { ObjectIdentifier($0.frames!.block) })
    XCTAssertGreaterThan(blocks.count, 3)
    let planner = FramePlanner(compressed: false)
    func frames(_ events: [BroadcastEvent]) -> [UInt8] {
      events.reduce(into: []) { $0 += $1.textFrame!.readableBytesView }
    }
    func write(_ events: [BroadcastEvent]) -> [ByteBuffer] {
      let runs = feedBatch(events).runs
      let slices = planner.slices(runs)
      var buffers: [ByteBuffer] = []
      var next = 0
      while next < runs.count {
        let (piece, end) = planner.piece(runs, slices: slices, from: next, chunkBytes: 64 << 10)
        XCTAssertLessThan(piece.frameBytes, (64 << 10) + (40 << 10))
        buffers += piece.buffers
        next = end
      }
      return buffers
    }
    let blockSpans = all.map { span($0.frames!.block.text) }
    func inBlocks(_ buffer: ByteBuffer) -> Bool {
      let bytes = span(buffer)
      return blockSpans.contains {
        $0.contains(bytes.lowerBound) && bytes.upperBound <= $0.upperBound
      }
    }

    XCTAssertEqual(feedBatch(all).runs.count, blocks.count, "one run per block")
    let dense = write(all)
    XCTAssertEqual(dense.reduce(into: [UInt8]()) { $0 += $1.readableBytesView }, frames(all))
    XCTAssertTrue(dense.allSatisfy(inBlocks), "slices of the shared blocks, no copies")
    XCTAssertEqual(dense.count, blocks.count, "one slice per block")

    let sparse = all.enumerated().filter { $0.offset % 10 == 0 }.map(\.element)
    let copies = write(sparse)
    XCTAssertEqual(copies.reduce(into: [UInt8]()) { $0 += $1.readableBytesView }, frames(sparse))
    XCTAssertFalse(copies.contains(where: inBlocks), "copied: a tenth of a block is not worth it")

    let unframed = (0..<50).map {
      BroadcastEvent(
        timeUS: Int64($0), kind: .commit, did: "d", collection: "c",
        json: ByteBuffer(bytes: Array(repeating: 65, count: 200)), compressed: ByteBuffer(),
        jsonLength: 200)
    }
    let plain = write(unframed)
    XCTAssertEqual(plain.count, 1, "one buffer per piece, as before frames existed")
    XCTAssertEqual(
      plain.reduce(into: [UInt8]()) { $0 += $1.readableBytesView },
      frames(BroadcastEvent.framed(unframed)))
  }
}
