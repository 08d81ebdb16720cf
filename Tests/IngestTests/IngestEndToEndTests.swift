import App
import Broadcast
import Compression
import EventLog
import Events
import Foundation
import Ingest
import Logging
import NIOCore
import Prometheus
import RelayFixture
import Subscribe
import SyntheticFirehose
import TestSupport
import XCTest

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// Fixture relay → `serve` in-process → log and subscribers, over real sockets on 127.0.0.1.
final class IngestEndToEndTests: XCTestCase {
  private var directories: [String] = []
  private var tasks: [Task<Void, Never>] = []

  override func tearDown() {
    for task in tasks { task.cancel() }
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// `count` generated frames and what the translator makes of them: (relay seq, JSON with
  /// time_us blanked) in relay order.
  static func frames(_ count: Int, seed: UInt64 = 9) -> ([[UInt8]], [(Int64, String)]) {
    var generator = FirehoseGenerator(seed: seed)
    let frames = (0..<count).map { _ in generator.next() }
    let translator = Translator()
    var events: [Event] = []
    for frame in frames { translator.translate(frame, into: &events) }
    return (frames, events.map { ($0.seq, blankTime(String(decoding: $0.json, as: UTF8.self))) })
  }

  /// Starts a fixture relay serving `frames`; returns it and its port.
  private func relay(_ frames: [[UInt8]], rate: Int?) async throws -> (FixtureRelay, Int) {
    var configuration = FixtureRelay.Configuration()
    configuration.rate = rate
    let relay = FixtureRelay(
      source: FileRelaySource(frames: frames, loop: false), configuration: configuration)
    let (port, task) = try await relay.start()
    tasks.append(task)
    return (relay, port)
  }

  private func settings(relayPort: Int) throws -> ServeSettings {
    let directory = TemporaryLog.directory("serve")
    directories.append(directory)
    return try .forTests(relay: "ws://127.0.0.1:\(relayPort)", dataDirectory: directory)
  }

  private func start(_ settings: ServeSettings, _ registry: PrometheusCollectorRegistry)
    async throws -> ContrailServer
  {
    let contrail = try await ContrailServer.start(
      settings, registry: registry, logger: quietLogger)
    tasks.append(Task { await contrail.run() })
    return contrail
  }

  /// Every stored event, as (relay seq, JSON with time_us blanked).
  static func stored(_ log: EventLog, _ dictionary: ZstdDictionary) throws -> [(Int64, String)] {
    let decompressor = try EventDecompressor(dictionary: dictionary)
    let reader = log.reader(from: nil)
    var stored: [(Int64, String)] = []
    while let record = reader.next() {
      stored.append(
        (
          record.seq,
          blankTime(String(decoding: try decompressor.decompress(record.payload), as: UTF8.self))
        ))
    }
    return stored
  }

  /// The relay connection is cut five times mid-stream and sends one error frame: every event
  /// is stored exactly once, in relay order, and a subscriber following along gets all of them.
  func testCutsAndAnErrorFrameLoseAndRepeatNothing() async throws {
    let (frames, expected) = Self.frames(1_500)
    let (relay, relayPort) = try await relay(frames, rate: 1_500)
    let registry = PrometheusCollectorRegistry()
    let contrail = try await start(try settings(relayPort: relayPort), registry)
    let subscriber = try await TestWebSocketClient.connect(
      port: contrail.port, target: "/subscribe?cursor=0")
    let log = contrail.log
    for cut in 1...6 {
      let seq = Int64(cut * 200)
      try await waitUntil("seq \(seq) stored") { (log.lastWrittenSeq ?? 0) >= seq }
      // Cut the current connection only: the previous one is gone and this one is registered.
      try await waitUntil("reconnected") {
        relay.connectionsAccepted == cut && relay.openConnections == 1
      }
      if cut == 3 {
        relay.sendError("ConsumerTooSlow", message: "test")
      } else {
        relay.dropConnections()
      }
    }
    let last = expected.last!.0
    try await waitUntil("everything stored") { (log.lastWrittenSeq ?? 0) >= last }
    let stored = try Self.stored(log, try ZstdDictionary(path: SharedData.defaultDictionaryPath))
    XCTAssertEqual(stored.count, expected.count, "no event lost or repeated")
    let mismatch = zip(stored, expected).enumerated().first {
      $0.element.0.0 != $0.element.1.0 || $0.element.0.1 != $0.element.1.1
    }?.offset
    XCTAssertNil(mismatch, "stored events equal the translator's, in relay order")
    XCTAssertGreaterThanOrEqual(registry.value("contrail_relay_reconnects_total"), 6)
    XCTAssertEqual(
      registry.value(#"contrail_relay_error_frames_total{code="ConsumerTooSlow"}"#), 1)
    // The subscriber saw every event once, in order, across all the reconnects.
    let received = try await receivedInOrder(subscriber, expected)
    XCTAssertEqual(received, expected.count)
    await contrail.shutdown()
    let close = try await subscriber.next()
    XCTAssertEqual(close, .close(code: 1001, reason: "server shutting down"))
  }

  /// `/healthz` answers before the relay is reachable, `/readyz` says why it is not ready, and
  /// `/metrics` shows ingest moving once it is.
  func testHealthReadinessAndMetrics() async throws {
    let (frames, expected) = Self.frames(300)
    // A port with nothing listening yet: the relay comes up after serve.
    let (_, relayPort) = try await relay([], rate: nil)
    let placeholder = tasks.removeLast()
    placeholder.cancel()
    await placeholder.value  // its listening socket is closed
    var settings = try settings(relayPort: relayPort)
    settings.backoffCap = .milliseconds(100)
    let registry = PrometheusCollectorRegistry()
    let contrail = try await start(settings, registry)
    let health = try RawHTTP.get(port: contrail.port, target: "/healthz")
    XCTAssertEqual(health.status, 200)
    XCTAssertEqual(health.body, "ok")
    let notReady = try RawHTTP.get(port: contrail.port, target: "/readyz")
    XCTAssertEqual(notReady.status, 503)
    XCTAssertEqual(notReady.body, "not connected to the relay yet")
    // Bring the relay up on the same port.
    var configuration = FixtureRelay.Configuration()
    configuration.port = relayPort
    let relay = FixtureRelay(
      source: FileRelaySource(frames: frames, loop: false), configuration: configuration)
    let relayTask = try await relay.start().task
    tasks.append(relayTask)
    let log = contrail.log
    try await waitUntil("ingest caught up") { (log.lastWrittenSeq ?? 0) >= expected.last!.0 }
    let ready = try RawHTTP.get(port: contrail.port, target: "/readyz")
    XCTAssertEqual(ready.status, 200)
    XCTAssertEqual(ready.body, "ready")
    let metrics = try RawHTTP.get(port: contrail.port, target: "/metrics")
    XCTAssertEqual(metrics.status, 200)
    for series in [
      #"contrail_relay_frames_total{type="commit"}"#, #"contrail_events_total{kind="commit"}"#,
      "contrail_relay_bytes_total", "contrail_relay_seq",
    ] {
      let line = metrics.body.split(separator: "\n").first { $0.hasPrefix(series + " ") }
      let value = line.flatMap { Double($0.dropFirst(series.count + 1)) } ?? 0
      XCTAssertGreaterThan(value, 0, series)
    }
    // Every metric family says what it is.
    let lines = metrics.body.split(separator: "\n")
    for type in lines where type.hasPrefix("# TYPE ") {
      let name = type.dropFirst(7).prefix { $0 != " " }
      XCTAssertTrue(lines.contains { $0.hasPrefix("# HELP \(name) ") }, "no HELP for \(name)")
    }
    XCTAssertGreaterThan(lines.filter { $0.hasPrefix("# HELP ") }.count, 10)
    let commits = expected.filter { $0.1.contains(#""kind":"commit""#) }.count
    XCTAssertEqual(registry.value(#"contrail_events_total{kind="commit"}"#), Double(commits))
    XCTAssertEqual(registry.value("contrail_relay_seq"), Double(expected.last!.0))
    XCTAssertGreaterThanOrEqual(registry.value("contrail_relay_reconnects_total"), 1)
    // The relay goes away: a reconnect in progress is still ready (a load balancer must not drop
    // every instance at each relay hiccup); only a long outage is not.
    relayTask.cancel()
    relay.dropConnections()
    await relayTask.value
    try await waitUntil("the connection is gone") { !contrail.ingest.isConnected }
    let reconnecting = try RawHTTP.get(port: contrail.port, target: "/readyz")
    XCTAssertEqual(reconnecting.status, 200, reconnecting.body)
    XCTAssertFalse(contrail.ingest.isRecentlyConnected(grace: .zero))
    XCTAssertTrue(contrail.ingest.isRecentlyConnected(grace: .seconds(30)))
    await contrail.shutdown()
  }

  /// A relay that goes quiet is reconnected by the watchdog (and nothing is stored twice).
  func testAStalledRelayIsReconnected() async throws {
    let (frames, expected) = Self.frames(100)
    let (_, relayPort) = try await relay(frames, rate: nil)
    var settings = try settings(relayPort: relayPort)
    settings.staleAfter = .milliseconds(300)
    let contrail = try await start(settings, PrometheusCollectorRegistry())
    let ingest = contrail.ingest
    try await waitUntil("three connections", timeout: .seconds(20)) { ingest.connections >= 3 }
    let stored = try Self.stored(
      contrail.log, try ZstdDictionary(path: SharedData.defaultDictionaryPath))
    XCTAssertEqual(stored.count, expected.count)
    await contrail.shutdown()
  }
}
