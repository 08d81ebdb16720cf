import Broadcast
import Compression
import EventLog
import Events
import Foundation
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Prometheus
import Synchronization
import TestSupport
import XCTest

@testable import Subscribe

/// `SubscriberHandler` and its state machine on an `EmbeddedChannel`: the bytes it writes, what
/// it reads where (the ring on the event loop, the log through the offload), backpressure, and
/// the slow-consumer policy, with the event loop's clock under the test's control.
final class SubscriberChannelTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// Counts the disk reads handed to the offload (run by the embedded loop in turn).
  private final class Offloads: Sendable {
    let count = Atomic<Int>(0)
  }

  /// Turns the channel unwritable once `limit` bytes were written since the last drain, as a
  /// socket's high-water mark would.
  private final class WaterMark: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var limit = Int.max
    var written = 0

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
      written += unwrapOutboundIn(data).readableBytes
      if written > limit, let channel = context.channel as? EmbeddedChannel {
        channel.isWritable = false
      }
      context.write(data, promise: promise)
    }
  }

  /// One subscriber on an embedded channel.
  private final class Harness {
    let channel = EmbeddedChannel()
    let offloads = Offloads()
    let registry = PrometheusCollectorRegistry()
    let waterMark = WaterMark()
    /// Everything written so far, in order.
    var bytes: [UInt8] = []
    var buffers: [ByteBuffer] = []

    init(
      query: String, ring: LiveRing, log: EventLog, dictionary: ZstdDictionary,
      configure: (inout SubscribeServer.Configuration) -> Void = { _ in }
    ) throws {
      var configuration = SubscribeServer.Configuration()
      configuration.metrics = PrometheusMetricsFactory(registry: registry)
      configure(&configuration)
      let options = try SubscribeOptions.parse(query: Substring(query), socketEncoding: nil).get()
      let offloads = self.offloads
      let environment = SubscriberEnvironment(
        configuration: configuration, registry: SubscriberRegistry(),
        limits: ConnectionLimits(configuration.limits),
        metrics: SubscribeMetrics(factory: configuration.metrics),
        heartbeats: try HeartbeatEncoder(dictionary: dictionary),
        offload: DiskReads { loop, work in
          offloads.count.add(1, ordering: .relaxed)
          return loop.submit(work)
        })
      let pool = DecompressorPool(dictionary: dictionary)
      let writer = RawFrameWriter()
      let handler = SubscriberHandler(
        options: options, address: "192.0.2.1", environment: environment, writer: writer
      ) { filter in
        SubscriberFeed(
          ring: ring, log: log, start: options.cursor.map { .cursor($0) } ?? .live,
          filter: filter, decompressors: options.compress ? nil : pool,
          lagLimit: configuration.slowConsumer.lagLimit)
      }
      try channel.pipeline.syncOperations.addHandlers(waterMark, writer, handler)
      try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    }

    /// Runs the event loop until it has nothing left to do now, and collects what was written.
    func run() throws {
      channel.embeddedEventLoop.run()
      while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
        buffers.append(buffer)
        bytes += buffer.readableBytesView
      }
    }

    /// The socket took everything: writable again.
    func drain() throws {
      try run()
      waterMark.written = 0
      channel.isWritable = true
      channel.pipeline.fireChannelWritabilityChanged()
      try run()
    }

    func advance(_ amount: TimeAmount) throws {
      channel.embeddedEventLoop.advanceTime(by: amount)
      try run()
    }

    func send(_ text: String) throws {
      try channel.writeInbound(
        WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text)))
      try run()
    }

    private var parsed: [(opcode: UInt8, payload: [UInt8])] = []
    private var offset = 0

    /// The frames written, as (opcode, payload).
    var frames: [(opcode: UInt8, payload: [UInt8])] {
      while bytes.count - offset >= 2 {
        var length = Int(bytes[offset + 1] & 0x7F)
        var header = 2
        if length == 126 {
          length = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
          header = 4
        } else if length == 127 {
          length = bytes[(offset + 2)..<(offset + 10)].reduce(0) { $0 << 8 | Int($1) }
          header = 10
        }
        parsed.append(
          (bytes[offset] & 0x0F, Array(bytes[(offset + header)..<(offset + header + length)])))
        offset += header + length
      }
      XCTAssertEqual(offset, bytes.count, "whole frames")
      return parsed
    }

    var diskReads: Int { offloads.count.load(ordering: .relaxed) }
  }

  private func bytes(_ buffer: ByteBuffer?) -> [UInt8] {
    buffer.map { Array($0.readableBytesView) } ?? []
  }

  /// Where a buffer's readable bytes are in memory.
  private func span(_ buffer: ByteBuffer) -> Range<UInt> {
    buffer.withUnsafeReadableBytes {
      let start = UInt(bitPattern: $0.baseAddress)
      return start..<(start + UInt($0.count))
    }
  }

  /// The ring's frame blocks (both forms), where they are in memory.
  private func blockSpans(_ ring: LiveRing) -> [Range<UInt>] {
    guard case .events(let events, _, _) = ring.read(after: 0, limit: 1 << 20, filter: .all)
    else { return [] }
    var seen = Set<ObjectIdentifier>()
    var spans: [Range<UInt>] = []
    for event in events {
      guard let block = event.frames?.block, seen.insert(ObjectIdentifier(block)).inserted else {
        continue
      }
      spans += [span(block.text), span(block.binary)]
    }
    return spans
  }

  private func log(_ label: String) throws -> EventLog {
    try TemporaryLog.open(label, segmentBytes: 64 << 10, directories: &directories)
  }

  /// Live subscribers get every event byte for byte, read from the ring on the event loop (no
  /// offload at all), and sent as slices of the frames built at publish: every buffer written
  /// lies inside a shared block, and there are far fewer buffers than events.
  func testLiveEventsAreSlicesOfTheSharedFramesReadWithoutThePool() throws {
    let stream = try SyntheticStream(frames: 800, seed: 21)
    for compressed in [false, true] {
      let log = try log("live")
      let ring = LiveRing(capacity: 100_000, startAfter: 0)
      let harness = try Harness(
        query: compressed ? "compress=true" : "", ring: ring, log: log,
        dictionary: stream.dictionary)
      try harness.run()
      XCTAssertTrue(harness.bytes.isEmpty)
      for start in stride(from: 0, to: stream.broadcast.count, by: 100) {
        let end = min(start + 100, stream.broadcast.count)
        try log.append(Array(stream.records[start..<end]))
        ring.publish(Array(stream.broadcast[start..<end]))
        try harness.run()
      }
      let frames = harness.frames
      XCTAssertEqual(frames.count, stream.broadcast.count)
      for (frame, event) in zip(frames, stream.broadcast) {
        XCTAssertEqual(frame.opcode, compressed ? 2 : 1)
        XCTAssertTrue(
          frame.payload == (compressed ? bytes(event.compressed) : bytes(event.json)),
          "event \(event.timeUS) byte for byte")
      }
      XCTAssertEqual(harness.diskReads, 0, "the ring is read on the event loop")
      let spans = blockSpans(ring)
      for buffer in harness.buffers {
        let bytes = span(buffer)
        XCTAssertTrue(
          spans.contains { $0.lowerBound <= bytes.lowerBound && bytes.upperBound <= $0.upperBound },
          "a slice of a shared block, not a copy")
      }
      XCTAssertLessThan(harness.buffers.count, stream.broadcast.count / 10)
      XCTAssertEqual(
        harness.registry.value(#"contrail_subscriber_reads_total{source="memory"}"#),
        Double(stream.broadcast.count))
    }
  }

  /// A cursor behind the ring reads the log through the offload, then the ring without it; the
  /// sequence is exact across the change, and the same without frames (the old way: copies).
  func testReplayReadsTheLogOffTheLoopThenTheRingOnIt() throws {
    let stream = try SyntheticStream(frames: 1_500, seed: 22)
    let half = stream.broadcast.count / 2
    var outputs: [[UInt8]] = []
    for (compressed, framing) in [(false, true), (true, true), (false, false)] {
      let log = try log("replay")
      let ring = LiveRing(capacity: 200, startAfter: 0, framing: framing)
      try log.append(Array(stream.records[..<half]))
      ring.publish(Array(stream.broadcast[..<half]))
      let harness = try Harness(
        query: "cursor=0" + (compressed ? "&compress=true" : ""), ring: ring, log: log,
        dictionary: stream.dictionary)
      try harness.run()
      let fromDisk = harness.diskReads
      XCTAssertGreaterThan(fromDisk, 0, "the start is only on disk")
      XCTAssertEqual(harness.frames.count, half)
      for start in stride(from: half, to: stream.broadcast.count, by: 50) {
        let end = min(start + 50, stream.broadcast.count)
        try log.append(Array(stream.records[start..<end]))
        ring.publish(Array(stream.broadcast[start..<end]))
        try harness.run()
      }
      XCTAssertEqual(harness.diskReads, fromDisk, "live: no more offloads")
      let frames = harness.frames
      XCTAssertEqual(frames.map(\.payload).count, stream.broadcast.count)
      for (frame, event) in zip(frames, stream.broadcast) {
        XCTAssertTrue(
          frame.payload == (compressed ? bytes(event.compressed) : bytes(event.json)),
          "event \(event.timeUS) byte for byte")
      }
      if !compressed { outputs.append(harness.bytes) }
    }
    XCTAssertTrue(outputs[0] == outputs[1], "frames or copies: the same bytes")
  }

  /// Nothing more is read while the channel is full; what is written stays within a piece beyond
  /// the high-water mark; writability resumes it, and every event arrives once, in order,
  /// whether the rest of a batch was held or dropped and read again.
  func testAFullChannelStopsReadingUntilItDrains() throws {
    let stream = try SyntheticStream(frames: 1_500, seed: 23)
    // From the ring (rests are small), and from the log (a 512-event read leaves a big rest).
    for fromDisk in [false, true] {
      let log = try log("full")
      let ring = LiveRing(capacity: fromDisk ? 200 : 100_000, startAfter: 0)
      let harness = try Harness(
        query: "cursor=0", ring: ring, log: log, dictionary: stream.dictionary)
      harness.waterMark.limit = 32 << 10
      try log.append(stream.records)
      ring.publish(stream.broadcast)
      try harness.run()
      func reads() -> Double {
        harness.registry.value(#"contrail_subscriber_reads_total{source="memory"}"#)
          + harness.registry.value(#"contrail_subscriber_reads_total{source="disk"}"#)
      }
      var drains = 0
      while harness.frames.count < stream.broadcast.count && drains < 1_000 {
        XCTAssertFalse(harness.channel.isWritable)
        let read = reads()
        let written = harness.bytes.count
        try harness.run()  // still full: nothing happens
        XCTAssertEqual(harness.bytes.count, written)
        XCTAssertEqual(reads(), read)
        XCTAssertLessThanOrEqual(harness.waterMark.written, (32 << 10) + (64 << 10) + 40_000)
        if drains % 3 == 0 {
          // Full through two periodic checks: a big rest is dropped, and read again later.
          try harness.advance(.seconds(1))
          XCTAssertEqual(harness.bytes.count, written)
        }
        try harness.drain()
        drains += 1
      }
      XCTAssertGreaterThan(drains, 10)
      XCTAssertTrue(
        harness.frames.map(\.payload) == stream.broadcast.map { bytes($0.json) },
        "every event once, in order")
      if fromDisk {
        XCTAssertGreaterThan(harness.diskReads, 0)
        XCTAssertGreaterThan(reads(), Double(stream.broadcast.count), "dropped rests read again")
      } else {
        XCTAssertEqual(harness.diskReads, 0)
        XCTAssertEqual(reads(), Double(stream.broadcast.count), "nothing read twice")
      }
    }
  }

  /// An `options_update` applies from the next read, with its `maxMessageSizeBytes`.
  func testOptionsUpdateFiltersAndCapsTheNextEvents() throws {
    let stream = try SyntheticStream(frames: 600, seed: 24)
    let log = try log("update")
    let ring = LiveRing(capacity: 100_000, startAfter: 0)
    let harness = try Harness(query: "", ring: ring, log: log, dictionary: stream.dictionary)
    try harness.run()
    let sizes = stream.broadcast.map(\.jsonLength).sorted()
    let cap = sizes[sizes.count / 2]
    try harness.send(
      #"{"type":"options_update","payload":{"wantedCollections":["app.bsky.feed.like"],"maxMessageSizeBytes":\#(cap)}}"#
    )
    try log.append(stream.records)
    ring.publish(stream.broadcast)
    try harness.run()
    let likes = try EventFilter(wantedCollections: ["app.bsky.feed.like"], wantedDIDs: [])
    let expected = stream.broadcast.filter {
      likes.matches(kind: $0.kind, did: $0.did, collection: $0.collection) && $0.jsonLength <= cap
    }
    XCTAssertGreaterThan(expected.count, 10)
    let received = harness.frames.map(\.payload)
    XCTAssertEqual(received.count, expected.count)
    XCTAssertTrue(received == expected.map { bytes($0.json) }, "exactly the matching events")
    XCTAssertGreaterThan(harness.registry.value("contrail_events_oversize_total"), 0)
  }

  /// A caught-up subscriber holds one wake-up in the ring, however many updates it sends while
  /// it waits (each one reads, finds nothing new and waits again).
  func testUpdatesWhileWaitingRegisterOneWakeUp() throws {
    let stream = try SyntheticStream(frames: 50, seed: 26)
    let log = try log("wake-ups")
    let ring = LiveRing(capacity: 100_000, startAfter: 0)
    let harness = try Harness(query: "", ring: ring, log: log, dictionary: stream.dictionary)
    try harness.run()
    XCTAssertEqual(ring.waiting, 1)
    for _ in 0..<50 {
      try harness.send(
        #"{"type":"options_update","payload":{"wantedCollections":["app.bsky.feed.post"]}}"#)
      try harness.run()
    }
    XCTAssertEqual(ring.waiting, 1, "one wake-up, not one per update")
    try log.append(stream.records)
    ring.publish(stream.broadcast)
    try harness.run()
    XCTAssertGreaterThan(harness.frames.count, 0, "the wake-up still delivers")
  }

  /// The feed's policy, on the loop's clock: retention passing what a stalled subscriber was
  /// sent closes it with 1008; so does lagging past the limit for longer than the grace.
  func testTheSlowConsumerPolicyCloses() throws {
    let stream = try SyntheticStream(frames: 1_000, seed: 25, start: 1_000_000_000, spacing: 1_000)
    // Retention.
    let clock = TestClock(stream.broadcast.first!.timeUS)
    let log = try TemporaryLog.open(
      "policy", retentionMicroseconds: 1_000_000, clock: clock, directories: &directories)
    try log.append(stream.records)
    let ring = LiveRing(capacity: 100, startAfter: 0)
    ring.publish(stream.broadcast)
    let stalled = try Harness(
      query: "cursor=0", ring: ring, log: log, dictionary: stream.dictionary)
    stalled.waterMark.limit = 0  // full after the first write
    try stalled.run()
    XCTAssertEqual(
      stalled.registry.value(#"contrail_subscriber_closes_total{reason="too_slow"}"#), 0)
    clock.set(stream.broadcast.last!.timeUS + 1_000_000 - 200_000)
    XCTAssertGreaterThan(log.enforceRetention(), 0)
    try stalled.advance(.milliseconds(500))
    XCTAssertEqual(stalled.frames.last?.opcode, 0x8)
    XCTAssertEqual(stalled.frames.last?.payload, [0x03, 0xF0] + Array("consumer too slow".utf8))
    XCTAssertEqual(
      stalled.registry.value(#"contrail_subscriber_closes_total{reason="too_slow"}"#), 1)

    // The lag limit, on the same log (retention no longer reaches the live end).
    let lagging = try Harness(query: "", ring: ring, log: log, dictionary: stream.dictionary) {
      $0.slowConsumer = .init(maxLag: .milliseconds(5), grace: .seconds(2))
    }
    lagging.waterMark.limit = 0
    try lagging.run()
    let more = try SyntheticStream(
      frames: 400, seed: 26, start: stream.broadcast.last!.timeUS, spacing: 1_000,
      firstEventSeq: stream.records.last!.eventSeq + 1)
    try log.append(more.records)
    ring.publish(more.broadcast)
    try lagging.run()  // reads a batch, writes one piece, and is full
    for _ in 0..<4 { try lagging.advance(.milliseconds(500)) }
    XCTAssertEqual(
      lagging.registry.value(#"contrail_subscriber_closes_total{reason="lagging"}"#), 0)
    try lagging.advance(.milliseconds(500))
    XCTAssertEqual(
      lagging.registry.value(#"contrail_subscriber_closes_total{reason="lagging"}"#), 1)
    XCTAssertEqual(lagging.frames.last?.payload, [0x03, 0xF0] + Array("consumer too slow".utf8))
  }

  /// A subscriber waiting for the next publish is registered with the ring; once it is gone,
  /// that registration keeps nothing alive (not the handler, and through its feed not the ring).
  func testADepartedSubscribersWakeUpKeepsNothingAlive() throws {
    let stream = try SyntheticStream(frames: 50, seed: 28)
    let log = try log("departed")
    weak var weakRing: LiveRing?
    try {
      let ring = LiveRing(capacity: 1_000, startAfter: 0)
      weakRing = ring
      ring.publish(stream.broadcast)
      let harness = try Harness(query: "", ring: ring, log: log, dictionary: stream.dictionary)
      try harness.run()  // live and caught up: waiting for the next publish
      XCTAssertEqual(harness.channel.isActive, true)
      try harness.channel.close().wait()
      try harness.run()
    }()
    XCTAssertNil(weakRing, "nothing holds the ring once its only subscriber left")
  }

  /// Heartbeats report the scanned position for a filter that matches nothing.
  func testHeartbeatsFollowThePositionOnTheLoopsClock() throws {
    let stream = try SyntheticStream(frames: 300, seed: 27)
    let log = try log("heartbeat")
    let ring = LiveRing(capacity: 100_000, startAfter: 0)
    let harness = try Harness(
      query: "heartbeat=1&wantedDids=did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", ring: ring, log: log,
      dictionary: stream.dictionary)
    try log.append(stream.records)
    ring.publish(stream.broadcast)
    try harness.run()
    XCTAssertTrue(harness.bytes.isEmpty)
    try harness.advance(.milliseconds(500))
    XCTAssertTrue(harness.bytes.isEmpty, "not due yet")
    try harness.advance(.milliseconds(500))
    XCTAssertEqual(harness.frames.count, 1)
    XCTAssertEqual(
      String(decoding: harness.frames[0].payload, as: UTF8.self),
      #"{"kind":"heartbeat","time_us":\#(stream.broadcast.last!.timeUS)}"#)
  }
}
