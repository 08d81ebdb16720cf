import Broadcast
import EventLog
import Events
import Foundation
import NIOCore
import Prometheus
import Subscribe
import Synchronization
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// Hostile input over real sockets: extreme query values, slow and idle connections, connection
/// floods, oversize messages. Each gets a clear answer and costs nobody else anything.
final class HostileInputTests: XCTestCase {
  private var directories: [String] = []
  private let registry = PrometheusCollectorRegistry()
  private var stream: SyntheticStream!
  private var log: EventLog!
  private var ring: LiveRing!
  /// Events ingested so far (a prefix of `stream`).
  private var ingested = 0

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private func server(
    frames: Int = 300, preload: Int = 100,
    _ configure: (inout SubscribeServer.Configuration) -> Void = { _ in }
  ) async throws -> SubscribeServer {
    stream = try SyntheticStream(frames: frames, seed: 99, start: 7_000_000)
    log = try TemporaryLog.open("hostile", directories: &directories)
    ring = LiveRing(capacity: 100_000, startAfter: 0)
    ingested = 0
    try ingest(preload)
    return try await TestServer.start(
      ring: ring, log: log, dictionary: stream.dictionary, metrics: registry, configure
    ).server
  }

  private func ingest(_ count: Int) throws {
    try stream.ingest(ingested..<(ingested + count), log: log, ring: ring)
    ingested += count
  }

  private func text(_ index: Int) -> TestWebSocketClient.Message {
    .text(String(decoding: stream.events[index].json, as: UTF8.self))
  }

  /// A new subscriber receives the next live event: the server is still serving. The caller
  /// makes sure no other subscriber is opening or closing meanwhile.
  private func assertStillServing(_ server: SubscribeServer, _ what: String) async throws {
    let before = server.subscriberCount
    let client = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    try await waitUntil("the check subscriber is open", timeout: .seconds(10)) {
      server.subscriberCount == before + 1
    }
    let index = ingested
    try ingest(1)
    let message = try await client.next(timeout: .seconds(10))
    XCTAssertEqual(message, text(index), "still serving after \(what)")
    await client.close()
  }

  // MARK: - Query values

  /// PROTOCOL §6 at the edges of int64, immediately and under `requireHello` (§7.3): ≤ 0 starts
  /// at the oldest event, beyond the newest is live; unparsable values get 400; the server
  /// keeps serving throughout.
  func testExtremeCursorsGetSensibleStreams() async throws {
    let server = try await server()
    let oldest: [Int64] = [.min, .min + 1, -1, 0]
    let live: [Int64] = [.max, .max - 1]
    for hello in [false, true] {
      for cursor in oldest + live {
        let target =
          "/subscribe?cursor=\(cursor)&maxMessageSizeBytes=\(Int64.min)"
          + (hello ? "&requireHello=true" : "")
        let client = try await TestWebSocketClient.connect(port: server.port, target: target)
        let applied = registry.value(#"contrail_options_updates_total{outcome="applied"}"#)
        if hello {
          client.send(
            text: #"{"type":"options_update","payload":{"maxMessageSizeBytes":\#(Int64.max)}}"#)
          try await waitUntil("the hello is applied", timeout: .seconds(10)) {
            registry.value(#"contrail_options_updates_total{outcome="applied"}"#) == applied + 1
          }
        }
        let label = "cursor \(cursor)\(hello ? " with a hello" : "")"
        if oldest.contains(cursor) {
          // Every event from the oldest on, in order.
          for index in 0..<ingested {
            let message = try await client.next(timeout: .seconds(10))
            guard message == text(index) else {
              XCTFail("\(label): event \(index) is \(String(describing: message))")
              break
            }
          }
        } else {
          // Live: nothing until the next event, then exactly that one.
          try await waitUntil("subscribed", timeout: .seconds(10)) { server.subscriberCount == 1 }
          let index = ingested
          try ingest(1)
          let message = try await client.next(timeout: .seconds(10))
          XCTAssertEqual(message, text(index), "\(label) is live")
        }
        await client.close()
        try await waitUntil("closed", timeout: .seconds(10)) { server.subscriberCount == 0 }
      }
    }
    // Unparsable values: a 400 with the reason, on both paths.
    let unparsable = [
      "9223372036854775808", "-9223372036854775809", "99999999999999999999999", "1e3", "+-1",
      "%201", "0x10", "--1",
    ]
    for value in unparsable {
      for upgrade in [false, true] {
        let answer = try RawHTTP.get(
          port: server.port, target: "/subscribe?cursor=\(value)", upgrade: upgrade)
        XCTAssertEqual(answer.status, 400, value)
        XCTAssertTrue(answer.body.hasPrefix("invalid cursor: "), answer.body)
      }
    }
    for value in ["9223372036854775807", "-9223372036854775808", "0", "3601"] {
      let answer = try RawHTTP.get(
        port: server.port, target: "/subscribe?heartbeat=\(value)", upgrade: true)
      XCTAssertEqual(answer.status, 400, value)
      XCTAssertTrue(answer.body.contains("invalid heartbeat"), answer.body)
    }
    XCTAssertEqual(
      registry.value(#"contrail_subscribe_rejected_total{reason="invalid_cursor"}"#),
      Double(unparsable.count * 2))
    try await assertStillServing(server, "extreme cursors")
    try await server.stop()
  }

  // MARK: - HTTP timeouts

  /// 200 connections sending one header byte per second each are all closed within the header
  /// timeout (with a 408, as their requests had begun), while a subscriber keeps receiving.
  func testSlowlorisConnectionsAreClosedWhileSubscribersKeepReceiving() async throws {
    let server = try await server(frames: 3_000, preload: 10) {
      $0.headerTimeout = .seconds(1)
    }
    let subscriber = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe")
    try await waitUntil("subscribed", timeout: .seconds(10)) { server.subscriberCount == 1 }
    // Live events all along: 20 every 50 ms.
    let received = Atomic<Int>(0)
    let reading = Task {
      while case .text? = try await subscriber.next(timeout: .seconds(10)) {
        received.add(1, ordering: .relaxed)
      }
    }
    let (stream, log, ring, first) = (self.stream!, self.log!, self.ring!, ingested)
    let publishing = Task {
      var next = first
      while !Task.isCancelled && next + 20 <= stream.events.count {
        try stream.ingest(next..<(next + 20), log: log, ring: ring)
        next += 20
        try await Task.sleep(for: .milliseconds(50))
      }
    }
    defer { publishing.cancel() }

    let started = ContinuousClock.now
    var sockets: [Int32] = []
    defer { for fd in sockets { close(fd) } }
    for _ in 0..<200 { sockets.append(try RawSocket.connect(port: server.port)) }
    let receivedAtStart = received.load(ordering: .relaxed)
    // One byte of a request head per socket per ~second, until the server closes each.
    let request = Array("GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n".utf8)
    var closedAt: [Int32: Duration] = [:]
    var sent = 0
    while closedAt.count < sockets.count && ContinuousClock.now - started < .seconds(8) {
      for fd in sockets where closedAt[fd] == nil {
        if RawSocket.isClosedByPeer(fd) {
          closedAt[fd] = ContinuousClock.now - started
        } else if sent < request.count {
          RawSocket.send(fd, [request[sent]])
        }
      }
      sent += 1
      // Poll for closes every 100 ms, send a byte every 10 polls (about once a second).
      for _ in 0..<10 where closedAt.count < sockets.count {
        try await Task.sleep(for: .milliseconds(100))
        for fd in sockets where closedAt[fd] == nil && RawSocket.isClosedByPeer(fd) {
          closedAt[fd] = ContinuousClock.now - started
        }
      }
    }
    XCTAssertEqual(closedAt.count, 200, "every slowloris socket saw EOF")
    let latest = closedAt.values.max() ?? .seconds(99)
    // The header timeout (1 s) plus margin: connecting 200 sockets and a loaded 2-core host.
    XCTAssertLessThan(latest, .seconds(4), "closed within the header timeout")
    XCTAssertGreaterThanOrEqual(
      closedAt.values.min() ?? .zero, .milliseconds(900), "not before the header timeout")
    XCTAssertEqual(registry.value(#"contrail_http_timeouts_total{phase="header"}"#), 200)
    XCTAssertGreaterThan(
      received.load(ordering: .relaxed), receivedAtStart + 100,
      "the subscriber kept receiving during the attack")
    XCTAssertEqual(server.pendingConnectionCount, 0)
    publishing.cancel()
    await subscriber.close()
    reading.cancel()
    try await server.stop()
  }

  /// A begun request that stalls gets `408`; a connection that never sends is closed silently;
  /// an idle keep-alive connection is closed after the idle timeout; an upgraded connection
  /// outlives both timeouts.
  func testHeaderAndIdleTimeouts() async throws {
    let server = try await server {
      $0.headerTimeout = .seconds(1)
      $0.idleTimeout = .milliseconds(1_500)
    }
    let subscriber = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe")
    try await waitUntil("subscribed", timeout: .seconds(10)) { server.subscriberCount == 1 }

    let begun = try RawSocket.connect(port: server.port)
    defer { close(begun) }
    RawSocket.send(begun, Array("GET /healthz HTTP/1.1\r\nHost: x\r\n".utf8))
    let silent = try RawSocket.connect(port: server.port)
    defer { close(silent) }
    let keepAlive = try RawSocket.connect(port: server.port)
    defer { close(keepAlive) }
    // Two pipelined requests: both answered, then the idle timeout applies.
    RawSocket.send(
      keepAlive, Array(String(repeating: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", count: 2).utf8)
    )

    let started = ContinuousClock.now
    let (begunBytes, begunEnded) = RawSocket.readToEnd(begun, timeout: .seconds(5))
    let begunAfter = ContinuousClock.now - started
    XCTAssertTrue(begunEnded)
    XCTAssertTrue(
      String(decoding: begunBytes, as: UTF8.self).hasPrefix("HTTP/1.1 408 Request Timeout"),
      String(decoding: begunBytes, as: UTF8.self))
    XCTAssertLessThan(begunAfter, .seconds(3))
    let (silentBytes, silentEnded) = RawSocket.readToEnd(silent, timeout: .seconds(5))
    XCTAssertTrue(silentEnded)
    XCTAssertEqual(silentBytes, [], "nothing was asked, nothing is answered")
    let (keepAliveBytes, keepAliveEnded) = RawSocket.readToEnd(keepAlive, timeout: .seconds(5))
    let keepAliveAfter = ContinuousClock.now - started
    XCTAssertTrue(keepAliveEnded)
    let response = String(decoding: keepAliveBytes, as: UTF8.self)
    XCTAssertTrue(response.hasPrefix("HTTP/1.1 200 OK"), response)
    XCTAssertEqual(response.components(separatedBy: "HTTP/1.1 200 OK").count, 3, response)
    XCTAssertTrue(response.hasSuffix("\r\n\r\nok"), "two responses, then the close: \(response)")
    XCTAssertGreaterThanOrEqual(keepAliveAfter, .milliseconds(1_400), "kept for the idle time")
    XCTAssertEqual(registry.value(#"contrail_http_timeouts_total{phase="header"}"#), 2)
    XCTAssertEqual(registry.value(#"contrail_http_timeouts_total{phase="idle"}"#), 1)

    // The subscriber has been open longer than both timeouts and still gets events.
    XCTAssertGreaterThan(ContinuousClock.now - started, .milliseconds(1_500))
    let index = ingested
    try ingest(1)
    let message = try await subscriber.next(timeout: .seconds(10))
    XCTAssertEqual(message, text(index), "upgraded connections have no HTTP timeouts")
    await subscriber.close()
    try await server.stop()
  }

  // MARK: - Connection limits

  /// `maxConnectionsPerIP` counts TCP connections from accept, upgraded or not, each once, and
  /// gives the place back when a connection closes.
  func testPerAddressLimitCountsConnectionsFromAccept() async throws {
    let server = try await server { $0.limits.maxConnectionsPerIP = 3 }
    func refusals() -> Double {
      registry.value(#"contrail_subscribe_refused_total{reason="max_per_ip"}"#)
    }
    // Three idle connections that never send a request fill the address's places.
    var idle: [Int32] = []
    defer { for fd in idle { close(fd) } }
    for _ in 0..<3 { idle.append(try RawSocket.connect(port: server.port)) }
    try await waitUntil("three pending", timeout: .seconds(10)) {
      server.pendingConnectionCount == 3
    }
    for (target, upgrade) in [("/healthz", false), ("/subscribe", true)] {
      let refused = try RawHTTP.get(port: server.port, target: target, upgrade: upgrade)
      XCTAssertEqual(refused.status, 429, target)
      XCTAssertEqual(refused.body, "too many connections from 127.0.0.1")
    }
    XCTAssertEqual(refusals(), 2)
    // One closes: its place is free again.
    close(idle.removeLast())
    try await waitUntil("a place is free", timeout: .seconds(10)) {
      server.pendingConnectionCount == 2
    }
    XCTAssertEqual(try RawHTTP.get(port: server.port, target: "/healthz").status, 200)
    for fd in idle { close(fd) }
    idle = []
    try await waitUntil("no connections", timeout: .seconds(10)) {
      server.pendingConnectionCount == 0
    }

    // Two subscriptions take two places, not four: a third connection is still allowed...
    let first = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    let second = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    try await waitUntil("two subscribed", timeout: .seconds(10)) { server.subscriberCount == 2 }
    XCTAssertEqual(server.pendingConnectionCount, 0, "upgraded connections are not pending")
    let third = try RawSocket.connect(port: server.port)
    defer { close(third) }
    try await waitUntil("the third is counted", timeout: .seconds(10)) {
      server.pendingConnectionCount == 1
    }
    // ...and a fourth is not.
    XCTAssertEqual(try RawHTTP.get(port: server.port, target: "/healthz").status, 429)
    XCTAssertEqual(refusals(), 3)
    // A subscription that ends gives its place back.
    await first.close()
    try await waitUntil("one subscriber left", timeout: .seconds(10)) {
      server.subscriberCount == 1
    }
    let again = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    try await waitUntil("subscribed again", timeout: .seconds(10)) {
      server.subscriberCount == 2
    }
    await again.close()
    await second.close()
    try await server.stop()
  }

  /// Connections that have not upgraded are capped: beyond the cap a connection is closed at
  /// accept and counted, and subscribers keep being served once the flood ends.
  func testPendingConnectionsAreCapped() async throws {
    let server = try await server { $0.limits.maxPendingConnections = 50 }
    let subscriber = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe")
    try await waitUntil("subscribed", timeout: .seconds(10)) { server.subscriberCount == 1 }
    var flood: [Int32] = []
    defer { for fd in flood { close(fd) } }
    for _ in 0..<50 { flood.append(try RawSocket.connect(port: server.port)) }
    try await waitUntil("fifty pending", timeout: .seconds(10)) {
      server.pendingConnectionCount == 50
    }
    var extra: [Int32] = []
    defer { for fd in extra { close(fd) } }
    for _ in 0..<30 { extra.append(try RawSocket.connect(port: server.port)) }
    try await waitUntil("the extra connections are closed at once", timeout: .seconds(5)) {
      extra.allSatisfy(RawSocket.isClosedByPeer)
    }
    XCTAssertEqual(server.pendingConnectionCount, 50)
    XCTAssertEqual(registry.value(#"contrail_subscribe_refused_total{reason="max_pending"}"#), 30)
    XCTAssertFalse(flood.contains(where: RawSocket.isClosedByPeer), "the first fifty stay")
    // The existing subscriber is unaffected.
    let index = ingested
    try ingest(1)
    let message = try await subscriber.next(timeout: .seconds(10))
    XCTAssertEqual(message, text(index))
    for fd in flood { close(fd) }
    flood = []
    try await waitUntil("the flood is gone", timeout: .seconds(10)) {
      server.pendingConnectionCount == 0
    }
    try await assertStillServing(server, "a connection flood")
    await subscriber.close()
    try await server.stop()
  }

  // MARK: - Big inputs

  /// A client message over 10,000,000 bytes closes with 1009 (fragmented, or one frame that
  /// declares a huge length); a message of exactly the limit is read; a 1 MiB query and a
  /// target beyond the decoder's limit get answers; others are served throughout.
  func testOversizeMessagesAndHugeQueries() async throws {
    let server = try await server()
    let bystander = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    try await waitUntil("subscribed", timeout: .seconds(10)) { server.subscriberCount == 1 }

    // Exactly 10,000,000 bytes: read and ignored (an unknown type), the connection stays.
    let envelope = #"{"type":"padding","pad":""}"#
    let exact =
      #"{"type":"padding","pad":""#
      + String(repeating: "x", count: 10_000_000 - envelope.utf8.count) + #""}"#
    XCTAssertEqual(exact.utf8.count, 10_000_000)
    let fits = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    fits.send(text: exact)
    try await waitUntil("the big message is read", timeout: .seconds(20)) {
      registry.value(#"contrail_options_updates_total{outcome="ignored"}"#) == 1
    }
    // One byte more: 1009.
    let tooBig = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    tooBig.send(text: exact + " ")
    var closeFrame: TestWebSocketClient.Message?
    while let message = try await tooBig.next(timeout: .seconds(20)) {
      if case .close = message {
        closeFrame = message
        break
      }
    }
    XCTAssertEqual(closeFrame, .close(code: 1009, reason: "message too big"))
    // One frame declaring 2^62 bytes: refused at its header, nothing buffered.
    let raw = try RawSocket.silentWebSocket(
      port: server.port, target: "/subscribe?wantedDids=did:plc:nobody")
    defer { close(raw) }
    var header: [UInt8] = [0x81, 0xFF]  // FIN + text, masked, 64-bit length
    for shift in stride(from: 56, through: 0, by: -8) {
      header.append(UInt8((UInt64(1) << 62) >> UInt64(shift) & 0xFF))
    }
    header += [1, 2, 3, 4]  // mask key
    RawSocket.send(raw, header)
    let (reply, ended) = RawSocket.readToEnd(raw, timeout: .seconds(10))
    XCTAssertTrue(ended, "the connection is closed")
    XCTAssertTrue(reply.starts(with: [0x88]), "a close frame first")
    if reply.count >= 4 {
      XCTAssertEqual(UInt16(reply[2]) << 8 | UInt16(reply[3]), 1009)
    }
    XCTAssertEqual(registry.value(#"contrail_subscriber_closes_total{reason="oversize"}"#), 2)

    // A 1 MiB query (about 24,000 DIDs): read and answered with the reason.
    let did = "did:plc:abcdefghijklmnopqrstuvwx"
    var query = "/subscribe?"
    var count = 0
    while query.utf8.count < 1 << 20 {
      query += "wantedDids=\(did)\(count)&"
      count += 1
    }
    let many = try RawHTTP.get(port: server.port, target: query, upgrade: true)
    XCTAssertEqual(many.status, 400)
    XCTAssertEqual(many.body, "invalid subscriber options: too many wanted DIDs")
    // Beyond the decoder's 2 MiB limit: refused, not buffered further.
    let huge = "/subscribe?" + String(repeating: "a", count: 3 << 20)
    let hugeAnswer = try? RawHTTP.get(port: server.port, target: huge, upgrade: true)
    XCTAssertNotEqual(hugeAnswer?.status, 101)
    if let status = hugeAnswer?.status { XCTAssertEqual(status / 100, 4, "a client error") }

    // The bystander and the one whose big message fitted were never disturbed.
    let index = ingested
    try ingest(1)
    let toBystander = try await bystander.next(timeout: .seconds(10))
    XCTAssertEqual(toBystander, text(index))
    let toFits = try await fits.next(timeout: .seconds(10))
    XCTAssertEqual(toFits, text(index))
    await fits.close()
    await bystander.close()
    try await waitUntil("all closed", timeout: .seconds(10)) { server.subscriberCount == 0 }
    try await assertStillServing(server, "oversize messages")
    try await server.stop()
  }
}
