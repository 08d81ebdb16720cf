import App
import Compression
import EventLog
import Events
import Foundation
import Prometheus
import RelayFixture
import SyntheticFirehose
import TestSupport
import XCTest

/// A relay that passes hostile frames through untouched, interleaved with valid ones, into
/// `serve` in-process: the server stays up on its first relay connection, stores and delivers
/// every valid event exactly once, and counts every hostile frame.
final class HostileRelayTests: XCTestCase {
  private var directories: [String] = []
  private var tasks: [Task<Void, Never>] = []

  override func tearDown() {
    for task in tasks { task.cancel() }
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  func testServeSurvivesHostileFramesAndKeepsServing() async throws {
    let (valid, expected) = IngestEndToEndTests.frames(200, seed: 31)
    // After each of the first frames, hostile variants of it (same seq, so none may add events),
    // and twice a frame over the size limit, which is skipped unread.
    var stream: [[UInt8]] = []
    var oversize = 0
    let header = CBORValue.map([("op", .int(1)), ("t", .text("#commit"))]).encoded
    for (index, frame) in valid.enumerated() {
      stream.append(frame)
      guard index < 12 else { continue }
      for attack in HostileFrames.variants(of: frame, limit: 120) where !attack.touchesSeq {
        stream.append(attack.bytes)
      }
      if index == 0 {
        stream += HostileFrames.wholeFrames(header: header).map(\.bytes)
      }
      if index % 6 == 5 {
        stream.append(header + CBORValue.bytes([UInt8](repeating: 0x5A, count: 6 << 20)).encoded)
        oversize += 1
      }
    }
    // What a translator counts over the same frames (the oversize ones never reach it).
    let reference = Translator()
    var scratch: [Event] = []
    for frame in stream where frame.count <= 5 << 20 { reference.translate(frame, into: &scratch) }
    let undecodable = reference.counters.frames(.undecodable)
    XCTAssertGreaterThan(undecodable, 100)

    var configuration = FixtureRelay.Configuration()
    configuration.rate = nil
    let relay = FixtureRelay(
      source: FileRelaySource(frames: stream, loop: false), configuration: configuration)
    let (relayPort, relayTask) = try await relay.start()
    tasks.append(relayTask)
    let directory = TemporaryLog.directory("hostile")
    directories.append(directory)
    let registry = PrometheusCollectorRegistry()
    let contrail = try await ContrailServer.start(
      try .forTests(relay: "ws://127.0.0.1:\(relayPort)", dataDirectory: directory),
      registry: registry, logger: quietLogger)
    tasks.append(Task { await contrail.run() })
    let subscriber = try await TestWebSocketClient.connect(
      port: contrail.port, target: "/subscribe?cursor=0")

    let log = contrail.log
    let last = expected.last!.0
    try await waitUntil("everything stored", timeout: .seconds(60)) {
      (log.lastWrittenSeq ?? 0) >= last
    }
    let stored = try IngestEndToEndTests.stored(
      log, try ZstdDictionary(path: SharedData.defaultDictionaryPath))
    XCTAssertEqual(stored.count, expected.count, "every valid event stored once")
    XCTAssertTrue(
      zip(stored, expected).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 },
      "stored events equal the valid frames' own, in relay order")
    let received = try await receivedInOrder(subscriber, expected)
    XCTAssertEqual(received, expected.count, "the subscriber got every valid event")
    try await waitUntil("hostile frames counted") {
      registry.value(#"contrail_relay_frames_total{type="oversize"}"#) == Double(oversize)
    }
    XCTAssertEqual(
      registry.value(#"contrail_relay_frames_total{type="undecodable"}"#), Double(undecodable))
    XCTAssertEqual(contrail.ingest.connections, 1, "no hostile frame cost a reconnect")
    XCTAssertEqual(try RawHTTP.get(port: contrail.port, target: "/healthz").status, 200)
    await contrail.shutdown()
  }
}
