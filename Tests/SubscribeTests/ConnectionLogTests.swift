import Broadcast
import EventLog
import Foundation
import Prometheus
import Subscribe
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// What an operator reads about connections: refusals in the log (not only in metrics), connect
/// and disconnect lines paired by an id, and a client that vanishes is not a server close.
final class ConnectionLogTests: XCTestCase {
  private var directories: [String] = []
  private let registry = PrometheusCollectorRegistry()
  private let captured = CapturedLog()

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private func server(
    _ configure: (inout SubscribeServer.Configuration) -> Void = { _ in }
  ) async throws -> SubscribeServer {
    let stream = try SyntheticStream(frames: 400, seed: 21, start: 2_000_000)
    let log = try TemporaryLog.open("connection-log", directories: &directories)
    return try await TestServer.start(
      stream, log: log, metrics: registry, logger: captured.logger, configure
    ).server
  }

  func testRefusalsAreLoggedWithTheirReason() async throws {
    let server = try await server { $0.limits.maxConnectionsPerIP = 1 }
    let bad = try RawHTTP.get(port: server.port, target: "/subscribe?cursor=soon", upgrade: true)
    XCTAssertEqual(bad.status, 400)
    XCTAssertEqual(
      captured.matching("subscribe request rejected", "reason=invalid_cursor").count, 1,
      captured.all.joined(separator: "\n"))
    // The refused request's connection gives its place back once the server sees it closed.
    try await waitUntil("the refused connection is gone") {
      server.pendingConnectionCount == 0
    }
    let first = try RawSocket.silentWebSocket(port: server.port, target: "/subscribe")
    defer { close(first) }
    let (second, head) = try RawSocket.handshake(port: server.port, target: "/subscribe")
    close(second)
    XCTAssertTrue(head.hasPrefix("HTTP/1.1 429"), head)
    XCTAssertEqual(
      captured.matching("subscription refused", "status=429", "address=127.0.0.1").count, 1,
      captured.all.joined(separator: "\n"))
    try await server.stop()
  }

  /// Two subscribers connect and leave in the opposite order; each disconnect line carries the
  /// id of its connect line.
  func testConnectAndDisconnectLinesCarryOneId() async throws {
    let server = try await server()
    let a = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    let b = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe?wantedCollections=app.bsky.feed.post")
    try await waitUntil("both subscribed", timeout: .seconds(10)) { server.subscriberCount == 2 }
    let connects = captured.matching("subscriber connected")
    XCTAssertEqual(connects.count, 2)
    let ids = connects.compactMap { Self.field($0, "id") }
    XCTAssertEqual(Set(ids).count, 2, "distinct ids: \(connects)")
    let bID = try XCTUnwrap(
      connects.first { $0.contains("collections=1") }.flatMap { Self.field($0, "id") })
    await b.close()
    try await waitUntil("b gone", timeout: .seconds(10)) { server.subscriberCount == 1 }
    let disconnects = captured.matching("subscriber disconnected")
    XCTAssertEqual(disconnects.count, 1)
    XCTAssertEqual(disconnects.first.flatMap { Self.field($0, "id") }, bID)
    await a.close()
    try await waitUntil("a gone", timeout: .seconds(10)) { server.subscriberCount == 0 }
    XCTAssertEqual(
      Set(captured.matching("subscriber disconnected").compactMap { Self.field($0, "id") }),
      Set(ids))
    try await server.stop()
  }

  /// A client that resets its connection in the middle of a replay is a lost connection (logged
  /// as such), not a server close for a protocol error; a real protocol error still is one.
  func testAnAbruptDisconnectIsNotAProtocolClose() async throws {
    let server = try await server()
    let protocolCloses = #"contrail_subscriber_closes_total{reason="protocol"}"#
    for _ in 0..<3 {
      let fd = try RawSocket.silentWebSocket(
        port: server.port, target: "/subscribe?cursor=1", receiveBuffer: 4096)
      try await waitUntil("subscribed", timeout: .seconds(10)) { server.subscriberCount == 1 }
      // A little of the replay, then a reset (SO_LINGER 0) with unread data in flight.
      _ = RawSocket.readToEnd(fd, timeout: .seconds(10)) { $0.count > 1000 }
      RawSocket.send(fd, [0x8A, 0x80, 1, 2, 3, 4])  // an unsolicited pong: the server reads
      var linger = linger(l_onoff: 1, l_linger: 0)
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
      close(fd)
      try await waitUntil("the reset subscriber is gone", timeout: .seconds(10)) {
        server.subscriberCount == 0
      }
    }
    XCTAssertEqual(registry.value(protocolCloses), 0, "a reset is not the server's close")
    let lines = captured.matching("subscriber disconnected")
    XCTAssertEqual(lines.count, 3)
    XCTAssertFalse(lines.contains { $0.contains("reason=protocol") }, "\(lines)")

    // A fragmented ping (control frames cannot be fragmented) is a protocol error: 1002.
    let fd = try RawSocket.silentWebSocket(
      port: server.port, target: "/subscribe?wantedDids=did:plc:nobody")
    defer { close(fd) }
    RawSocket.send(fd, [0x09, 0x80, 1, 2, 3, 4])
    let (reply, ended) = RawSocket.readToEnd(fd, timeout: .seconds(10))
    XCTAssertTrue(ended)
    XCTAssertEqual(Array(reply.prefix(4)), [0x88, 0x10, 0x03, 0xEA], "close 1002")
    XCTAssertEqual(registry.value(protocolCloses), 1)
    try await server.stop()
  }

  static func field(_ line: String, _ key: String) -> String? {
    guard let range = line.range(of: " \(key)=") else { return nil }
    return String(line[range.upperBound...].prefix { $0 != " " })
  }
}
