import Broadcast
import EventLog
import Foundation
import Prometheus
import Subscribe
import TestSupport
import XCTest

/// The two subscriber numbers the status page shows exactly: how many subscribers are replaying
/// from disk, and the bytes zstd saved.
final class ReplayMetricsTests: XCTestCase {
  private var directories: [String] = []
  private let registry = PrometheusCollectorRegistry()

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// A zstd subscriber from cursor 1, paced to 50 events/s, stays behind a 64-event ring for
  /// seconds: it is counted as replaying, a live subscriber is not, and the count drops when it
  /// leaves. What it was sent saves exactly its JSON length minus its zstd length.
  func testReplayingSubscribersAndBytesSaved() async throws {
    let stream = try SyntheticStream(frames: 400, seed: 31, start: 4_000_000)
    let log = try TemporaryLog.open("replay-metrics", directories: &directories)
    let server = try await TestServer.start(stream, log: log, ringCapacity: 64, metrics: registry) {
      $0.limits.maxEventsPerSecondPerIP = 50
    }
    let replaying = "contrail_subscribers_replaying"

    let behind = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe?cursor=1&compress=true")
    try await waitUntil("the replaying subscriber is counted", timeout: .seconds(10)) {
      registry.value(replaying) == 1
    }
    let live = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    try await waitUntil("both subscribed", timeout: .seconds(10)) { server.subscriberCount == 2 }
    XCTAssertEqual(registry.value(replaying), 1, "the live subscriber is not replaying")
    // Receive a few events, then leave.
    for _ in 0..<5 { _ = try await behind.next(timeout: .seconds(10)) }
    await behind.close()
    try await waitUntil("the replaying subscriber left", timeout: .seconds(10)) {
      server.subscriberCount == 1
    }
    XCTAssertEqual(registry.value(replaying), 0)

    let sent = Int(registry.value(#"contrail_events_sent_total{compression="zstd"}"#))
    XCTAssertGreaterThanOrEqual(sent, 5)
    let expected = stream.broadcast.prefix(sent).reduce(0) {
      $0 + $1.jsonLength - $1.compressed.readableBytes
    }
    XCTAssertGreaterThan(expected, 0)
    XCTAssertEqual(Int(registry.value("contrail_bytes_saved_total")), expected)
    await live.close()
    try await server.stop()
  }
}
