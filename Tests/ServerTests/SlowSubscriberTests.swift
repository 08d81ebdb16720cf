import Broadcast
import Compression
import EventLog
import Events
import Foundation
import NIOCore
import Prometheus
import Server
import Synchronization
import SyntheticFirehose
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// ARCHITECTURE §4: a subscriber that never reads only hurts itself, its server-side memory stays
/// bounded, and the slow-consumer policy closes it with a reason.
final class SlowSubscriberTests: XCTestCase {
  private var directory = ""
  private let registry = PrometheusCollectorRegistry()
  /// The log's clock (µs), moved by the retention test.
  private final class Clock: Sendable {
    let now = Atomic<Int64>(0)
  }
  private let clock = Clock()

  override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

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
          timeUS: time, seq: Int64(index + 1), kind: .commit, did: did,
          collection: "app.bsky.feed.like", payload: frame))
    }
    return (broadcast, records)
  }

  private func server(
    preload count: Int, retention: Int64 = 24 * 3_600_000_000,
    _ configure: (inout SubscribeServer.Configuration) -> Void = { _ in }
  ) async throws -> (SubscribeServer, LiveRing, EventLog) {
    directory = TemporaryLog.directory("slow")
    var configuration = TemporaryLog.configuration(directory, segmentBytes: 1 << 20)
    configuration.retentionMicroseconds = retention
    let clock = self.clock
    clock.now.store(Self.base + Int64(count) * 1_000, ordering: .relaxed)
    configuration.clock = { clock.now.load(ordering: .relaxed) }
    let log = try EventLog(configuration)
    let ring = LiveRing(capacity: 2_000, maxBytes: 1 << 30, startAfter: 0)
    let (broadcast, records) = try Self.events(count)
    try log.append(records)  // ingest writes the log first, then publishes
    ring.publish(broadcast)
    var settings = SubscribeServer.Configuration()
    settings.metrics = PrometheusMetricsFactory(registry: registry)
    configure(&settings)
    let server = try await SubscribeServer.start(
      sources: .init(
        ring: ring, log: log, dictionary: try ZstdDictionary(path: SharedData.defaultDictionaryPath)
      ),
      configuration: settings)
    return (server, ring, log)
  }

  private func metric(_ series: String) -> Double {
    for line in registry.emitToString().split(separator: "\n") where line.hasPrefix(series + " ") {
      return Double(line.dropFirst(series.count + 1)) ?? .nan
    }
    return 0
  }

  /// Waits (bounded) until `condition` holds.
  private func wait(
    _ what: String, timeout: Duration = .seconds(15), _ condition: () async -> Bool
  ) async throws {
    let deadline = ContinuousClock.now + timeout
    while !(await condition()) {
      guard ContinuousClock.now < deadline else { return XCTFail("timed out waiting: \(what)") }
      try await Task.sleep(for: .milliseconds(20))
    }
  }

  /// Waits until the server holds more than the socket can take for some subscriber: the silent
  /// one has stopped reading and the server is holding its backlog.
  private func waitForStall(_ server: SubscribeServer) async throws {
    try await wait("the silent subscriber stalls") {
      (await server.bufferedBytesPerSubscriber().max() ?? 0) > 200 << 10
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
    // Each sample: a new subscriber reads 8,000 events (12 MB) from the start. Baseline samples,
    // then samples with a silent subscriber stalled beside them, then one more baseline after it
    // is gone; the best of each is compared (noise on a shared host only ever adds time).
    func timedRead() async throws -> Duration {
      let reader = try await TestWebSocketClient.connect(
        port: server.port, target: "/subscribe?cursor=0")
      let elapsed = try await read(reader, 8_000, from: 0)
      await reader.close()
      return elapsed
    }
    var alone = [try await timedRead(), try await timedRead()]
    let silent = try RawHTTP.silentWebSocket(port: server.port, target: "/subscribe?cursor=0")
    try await waitForStall(server)
    var beside = [try await timedRead(), try await timedRead()]
    // Its server-side memory is the write buffer's high-water mark (1 MiB) plus one batch.
    let buffered = await server.bufferedBytesPerSubscriber()
    XCTAssertLessThanOrEqual(buffered.max() ?? 0, 3 << 19, "bounded: \(buffered)")
    beside.append(try await timedRead())
    close(silent)
    alone.append(try await timedRead())
    let ratio = alone.min()! / beside.min()!
    XCTAssertGreaterThanOrEqual(
      ratio, 0.9, "others keep ≥ 90% of their rate: alone \(alone), beside \(beside)")
    try await server.stop()
  }

  /// The policy's lag limit closes a subscriber that stays too far behind; one that keeps up
  /// stays and gets every live event.
  func testALaggingSubscriberIsClosedByPolicy() async throws {
    let (server, ring, log) = try await server(preload: 20_000) {
      $0.slowConsumer = .init(maxLag: .seconds(5), grace: .seconds(1))
      $0.slowConsumer.checkInterval = .milliseconds(100)
    }
    let silent = try RawHTTP.silentWebSocket(port: server.port, target: "/subscribe?cursor=0")
    defer { close(silent) }
    let reader = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    try await wait("both subscribed") { server.subscriberCount == 2 }
    let (broadcast, records) = try Self.events(500, from: 20_000)
    try log.append(records)
    ring.publish(broadcast)
    _ = try await read(reader, 500, from: 20_000)
    try await wait("the lagging subscriber is closed") {
      metric(#"contrail_subscriber_closes_total{reason="lagging"}"#) == 1
    }
    // Its close frame cannot get past the unread backlog, so TCP is dropped after 5 s.
    try await wait("the lagging subscriber is gone") { server.subscriberCount == 1 }
    XCTAssertEqual(metric(#"contrail_subscribers{compression="none"}"#), 1)
    await reader.close()
    try await server.stop()
  }

  /// Retention deleting events a stalled subscriber has not read closes it with 1008
  /// `consumer too slow`; a new subscriber from the oldest retained event is unaffected.
  func testRetentionPassingAStalledSubscriberClosesIt() async throws {
    let (server, _, log) = try await server(preload: 20_000, retention: 10_000_000)
    let silent = try RawHTTP.silentWebSocket(port: server.port, target: "/subscribe?cursor=0")
    defer { close(silent) }
    try await waitForStall(server)
    // 20 s of events, 10 s retention: move the clock so the older half expires.
    clock.now.store(Self.base + 20_000 * 1_000 + 10_000_000 - 8_000_000, ordering: .relaxed)
    XCTAssertGreaterThan(log.enforceRetention(), 0)
    try await wait("the stalled subscriber is closed") {
      metric(#"contrail_subscriber_closes_total{reason="too_slow"}"#) == 1
    }
    let oldest = try XCTUnwrap(log.stats.oldestTimeUS)
    let fresh = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe?cursor=0")
    let first = (oldest - Self.base) / 1_000 - 1
    _ = try await read(fresh, 100, from: Int(first))
    await fresh.close()
    XCTAssertEqual(metric(#"contrail_subscriber_closes_total{reason="too_slow"}"#), 1)
    try await server.stop()
  }
}
