import Broadcast
import Compression
import EventLog
import Events
import Foundation
import NIOCore
import Prometheus
import Subscribe
import SyntheticFirehose
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// ARCHITECTURE §4: a subscriber that never reads only hurts itself, its server-side memory stays
/// bounded, and the slow-consumer policy closes it with a reason.
final class SlowSubscriberTests: XCTestCase {
  private var directories: [String] = []
  private let registry = PrometheusCollectorRegistry()
  /// The log's clock (µs), moved by the retention test.
  private let clock = TestClock(0)

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// 1 ms apart from this `time_us`, like a busy relay.
  private static let base: Int64 = 1_700_000_000_000_000

  /// `count` ~1.5 KB events, 1 ms apart: far more than the socket buffers of a client that never
  /// reads. Returns them as the ring holds them and as the log stores them.
  private static func events(_ count: Int, from first: Int = 0) throws -> (
    [BroadcastEvent], [LogRecord]
  ) {
    let dictionary = try ZstdDictionary(path: SharedData.defaultDictionaryPath)
    let compressor = try EventCompressor(dictionary: dictionary)
    let padding = String(repeating: "x", count: 1_500)
    var broadcast: [BroadcastEvent] = []
    var records: [LogRecord] = []
    for index in first..<(first + count) {
      let time = base + Int64(index + 1) * 1_000
      let did = "did:plc:aaaaaaaaaaaaaaaaaaaaaa\(index % 10)a"
      let json = Array(
        #"{"did":"\#(did)","time_us":\#(time),"kind":"commit","pad":"\#(padding)"}"#.utf8)
      let frame = try compressor.compress(json)
      broadcast.append(
        BroadcastEvent(
          timeUS: time, kind: .commit, did: did, collection: "app.bsky.feed.like",
          json: ByteBuffer(bytes: json), compressed: ByteBuffer(bytes: frame),
          jsonLength: json.count))
      records.append(
        LogRecord(
          timeUS: time, seq: Int64(index + 1), eventSeq: Int64(index + 1), kind: .commit, did: did,
          collection: "app.bsky.feed.like", payload: frame))
    }
    return (broadcast, records)
  }

  private func server(
    preload count: Int, retention: Int64 = 24 * 3_600_000_000,
    _ configure: (inout SubscribeServer.Configuration) -> Void = { _ in }
  ) async throws -> (SubscribeServer, LiveRing, EventLog) {
    clock.set(Self.base + Int64(count) * 1_000)
    let log = try TemporaryLog.open(
      "slow", retentionMicroseconds: retention, clock: clock, segmentBytes: 1 << 20,
      directories: &directories)
    let ring = LiveRing(capacity: 2_000, maxBytes: 1 << 30, startAfter: 0)
    let (broadcast, records) = try Self.events(count)
    try log.append(records)  // ingest writes the log first, then publishes
    ring.publish(broadcast)
    let server = try await TestServer.start(
      ring: ring, log: log, dictionary: try ZstdDictionary(path: SharedData.defaultDictionaryPath),
      metrics: registry, configure)
    return (server.server, ring, log)
  }

  /// Waits until the server holds more than the socket can take for some subscriber: the silent
  /// one has stopped reading and the server is holding its backlog.
  private func waitForStall(_ server: SubscribeServer) async throws {
    try await waitUntil("the silent subscriber stalls") {
      (await server.bufferedBytesPerSubscriber().max() ?? 0) > 32 << 10
    }
    // ...and stays stalled: the kernel may grow the socket buffers for a while, and each growth
    // lets a few more batches out. Stalled means no event read for 300 ms.
    var reads = -1.0
    try await waitUntil("the silent subscriber stops reading") {
      let now =
        registry.value(#"contrail_subscriber_reads_total{source="disk"}"#)
        + registry.value(#"contrail_subscriber_reads_total{source="memory"}"#)
      defer { reads = now }
      if now != reads { return false }
      try? await Task.sleep(for: .milliseconds(300))
      return now
        == registry.value(#"contrail_subscriber_reads_total{source="disk"}"#)
        + registry.value(#"contrail_subscriber_reads_total{source="memory"}"#)
    }
  }

  /// Reads `count` events; returns how long that took, failing on anything out of order.
  private func read(_ client: TestWebSocketClient, _ count: Int, from first: Int) async throws
    -> Duration
  {
    let started = ContinuousClock.now
    for index in first..<(first + count) {
      guard case .text(let text)? = try await client.next(timeout: .seconds(20)),
        text.contains(#""time_us":\#(Self.base + Int64(index + 1) * 1_000),"#)
      else {
        XCTFail("event \(index) missing or out of order")
        return .seconds(0)
      }
    }
    return ContinuousClock.now - started
  }

  func testANeverReadingSubscriberDoesNotHoldBackOthers() async throws {
    let (server, _, _) = try await server(preload: 20_000)
    let sample = 20_000  // all of them, so every read is accounted for
    func reads() -> Double {
      registry.value(#"contrail_subscriber_reads_total{source="disk"}"#)
        + registry.value(#"contrail_subscriber_reads_total{source="memory"}"#)
    }
    /// A new subscriber reads all `sample` events (30 MB) from the start; how long it took.
    func timedRead() async throws -> Duration {
      let reader = try await TestWebSocketClient.connect(
        port: server.port, target: "/subscribe?cursor=0")
      let elapsed = try await read(reader, sample, from: 0)
      await reader.close()
      return elapsed
    }
    /// Six samples alone and six beside a freshly stalled silent subscriber, interleaved with
    /// alternating order; the ratio of the best three of each.
    func comparison() async throws -> (Double, [Duration], [Duration]) {
      var alone: [Duration] = []
      var beside: [Duration] = []
      for round in 0..<6 {
        if round % 2 == 0 { alone.append(try await timedRead()) }
        let silent = try RawSocket.silentWebSocket(port: server.port, target: "/subscribe?cursor=0")
        try await waitForStall(server)
        let before = reads()
        beside.append(try await timedRead())
        // The stalled subscriber did (almost) no work meanwhile: the kernel keeps growing its
        // send buffer for a while, and each growth lets a small stalled-size batch out, but
        // nearly every read was the measured reader's.
        let silentReads = reads() - before - Double(sample)
        XCTAssertGreaterThanOrEqual(silentReads, 0)
        XCTAssertLessThanOrEqual(silentReads, Double(sample) / 20, "the silent subscriber idles")
        if round == 0 {
          // Its server-side buffer is the write buffer's high-water mark (64 KiB) plus one
          // write piece (64 KiB), not a whole batch (512 of these 1.6 KB events from disk).
          let buffered = await server.bufferedBytesPerSubscriber()
          XCTAssertLessThanOrEqual(buffered.max() ?? 0, 160 << 10, "bounded: \(buffered)")
        }
        close(silent)
        try await waitUntil("the silent subscriber is gone") { server.subscriberCount == 0 }
        if round % 2 == 1 { alone.append(try await timedRead()) }
      }
      func best3(_ samples: [Duration]) -> Duration {
        samples.sorted().prefix(3).reduce(.zero, +)
      }
      return (best3(alone) / best3(beside), alone, beside)
    }
    // Wall time on a shared two-core host varies ±30% per sample. A silent subscriber costs
    // nothing once stalled (asserted above), so a ratio under 0.9 is noise unless it repeats:
    // up to three comparisons, the best counts. A real slowdown fails all three.
    var attempts: [String] = []
    var best = 0.0
    for _ in 0..<3 where best < 0.9 {
      let (ratio, alone, beside) = try await comparison()
      best = max(best, ratio)
      attempts.append("ratio \(ratio): alone \(alone), beside \(beside)")
    }
    XCTAssertGreaterThanOrEqual(
      best, 0.9, "others keep ≥ 90% of their rate: \(attempts.joined(separator: "; "))")
    try await server.stop()
  }

  /// The policy's lag limit closes a subscriber that stays too far behind; one that keeps up
  /// stays and gets every live event.
  func testALaggingSubscriberIsClosedByPolicy() async throws {
    let (server, ring, log) = try await server(preload: 20_000) {
      $0.slowConsumer = .init(maxLag: .seconds(5), grace: .seconds(1))
      $0.slowConsumer.checkInterval = .milliseconds(100)
    }
    let silent = try RawSocket.silentWebSocket(port: server.port, target: "/subscribe?cursor=0")
    defer { close(silent) }
    let reader = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    try await waitUntil("both subscribed") { server.subscriberCount == 2 }
    let (broadcast, records) = try Self.events(500, from: 20_000)
    try log.append(records)
    ring.publish(broadcast)
    _ = try await read(reader, 500, from: 20_000)
    try await waitUntil("the lagging subscriber is closed") {
      registry.value(#"contrail_subscriber_closes_total{reason="lagging"}"#) == 1
    }
    // Its close frame cannot get past the unread backlog, so TCP is dropped after 5 s.
    try await waitUntil("the lagging subscriber is gone") { server.subscriberCount == 1 }
    XCTAssertEqual(registry.value(#"contrail_subscribers{compression="none"}"#), 1)
    await reader.close()
    try await server.stop()
  }

  /// Retention deleting events a stalled subscriber has not read closes it with 1008
  /// `consumer too slow`; a new subscriber from the oldest retained event is unaffected.
  func testRetentionPassingAStalledSubscriberClosesIt() async throws {
    let (server, _, log) = try await server(preload: 20_000, retention: 10_000_000)
    let silent = try RawSocket.silentWebSocket(port: server.port, target: "/subscribe?cursor=0")
    defer { close(silent) }
    try await waitForStall(server)
    // 20 s of events, 10 s retention: move the clock so the older half expires.
    clock.set(Self.base + 20_000 * 1_000 + 10_000_000 - 8_000_000)
    XCTAssertGreaterThan(log.enforceRetention(), 0)
    try await waitUntil("the stalled subscriber is closed") {
      registry.value(#"contrail_subscriber_closes_total{reason="too_slow"}"#) == 1
    }
    let oldest = try XCTUnwrap(log.stats.oldestTimeUS)
    let fresh = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe?cursor=0")
    let first = (oldest - Self.base) / 1_000 - 1
    _ = try await read(fresh, 100, from: Int(first))
    await fresh.close()
    XCTAssertEqual(registry.value(#"contrail_subscriber_closes_total{reason="too_slow"}"#), 1)
    try await server.stop()
  }
}
