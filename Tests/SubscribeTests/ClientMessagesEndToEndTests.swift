import Broadcast
import Compression
import EventLog
import Events
import Foundation
import NIOCore
import Subscribe
import SyntheticFirehose
import TestSupport
import XCTest

/// `options_update`, `requireHello` and the client-message closes over real sockets.
final class ClientMessagesEndToEndTests: XCTestCase {
  private var directories: [String] = []
  private var events: [Event] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private var ring: LiveRing!
  private var log: EventLog!
  private var stream: SyntheticStream!

  /// A server whose log and ring hold the first `preload` of `frames` frames' events.
  private func server(frames: Int = 800, preload: Int? = nil) async throws -> SubscribeServer {
    stream = try SyntheticStream(frames: frames, seed: 77, start: 9_000_000)
    events = stream.events
    log = try TemporaryLog.open("messages", directories: &directories)
    ring = LiveRing(capacity: 100_000, startAfter: 0)
    try ingest(0..<(preload ?? events.count))
    return try await TestServer.start(ring: ring, log: log, dictionary: stream.dictionary).server
  }

  private func ingest(_ range: Range<Int>) throws {
    try stream.ingest(range, log: log, ring: ring)
  }

  private func text(_ event: Event) -> TestWebSocketClient.Message {
    .text(String(decoding: event.json, as: UTF8.self))
  }

  private func update(_ collections: [String]) -> String {
    let list = collections.map { "\"\($0)\"" }.joined(separator: ",")
    return #"{"type":"options_update","payload":{"wantedCollections":[\#(list)]}}"#
  }

  func testRequireHelloSendsNothingUntilTheHelloThenUsesItsFilter() async throws {
    let server = try await server()
    let client = try await TestWebSocketClient.connect(
      port: server.port,
      target: "/subscribe?cursor=0&requireHello=true&wantedCollections=app.bsky.feed.like")
    do {
      let early = try await client.next(timeout: .milliseconds(400))
      XCTFail("nothing may arrive before the hello: \(String(describing: early))")
    } catch is TestWebSocketClient.Timeout {}
    client.send(text: #"{"type":"something_else"}"#)  // ignored, still waiting
    client.send(binary: [1, 2, 3])  // ignored
    client.send(text: update(["app.bsky.graph.*"]))
    let expected = events.filter {
      $0.kind != .commit || $0.collection.hasPrefix("app.bsky.graph.")
    }
    var received: [TestWebSocketClient.Message] = []
    while received.count < expected.count, let message = try await client.next() {
      received.append(message)
    }
    XCTAssertTrue(
      received == expected.map(text),
      "the hello's filter, from the query cursor evaluated at hello time")
    await client.close()
    try await server.stop()
  }

  func testOptionsUpdateChangesTheFilterFromTheNextEvent() async throws {
    let server = try await server(frames: 2_000, preload: 100)
    let client = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe?cursor=0&wantedCollections=app.bsky.feed.like")
    let likes = events.filter { $0.kind != .commit || $0.collection == "app.bsky.feed.like" }
    let posts = events.filter { $0.kind != .commit || $0.collection == "app.bsky.feed.post" }
    let first = try await client.next()
    XCTAssertEqual(first, text(likes[0]))
    client.send(text: update(["app.bsky.feed.post"]))
    // Live events keep arriving while the update travels, in small batches; between batches
    // the test takes whatever has arrived (each wait bounded).
    var received: [TestWebSocketClient.Message] = [first!]
    for start in stride(from: 100, to: events.count, by: 25) {
      try ingest(start..<min(start + 25, events.count))
      while let message = try? await client.next(timeout: .milliseconds(20)) {
        received.append(message)
      }
    }
    while let message = try? await client.next(timeout: .seconds(2)) { received.append(message) }
    // Until the update takes effect the old filter's events continue in order; after it, only
    // posts (and identity/account), every one of them from there on, in order.
    let oldFilter = Array(received.prefix { likes.map(text).contains($0) })
    XCTAssertTrue(
      oldFilter == Array(likes.prefix(oldFilter.count).map(text)), "old filter: an unbroken prefix")
    let newFilter = Array(received.dropFirst(oldFilter.count))
    guard let firstNew = newFilter.first, let start = posts.map(text).firstIndex(of: firstNew)
    else {
      return XCTFail("no event under the new filter arrived (\(received.count) received)")
    }
    XCTAssertTrue(
      newFilter == Array(posts[start...].map(text)), "new filter: every later post, in order")
    XCTAssertGreaterThan(newFilter.count, 20)
    await client.close()
    try await server.stop()
  }

  func testBadMessagesCloseWithCodeAndReason() async throws {
    let server = try await server(frames: 50)
    let cases: [(String, UInt16, String)] = [
      ("not json", 1007, "bad SubscriberSourcedMessage envelope"),
      (#"{"type":"options_update"}"#, 1007, "bad options_update payload"),
      (update(["*"]), 1008, "invalid subscriber options: invalid collection: *"),
      (String(repeating: "x", count: 10_000_001), 1009, "message too big"),
    ]
    for (message, code, reason) in cases {
      let client = try await TestWebSocketClient.connect(
        port: server.port, target: "/subscribe?requireHello=true")
      client.send(text: message)
      let close = try await client.next()
      XCTAssertEqual(close, .close(code: code, reason: reason))
      await client.close()
    }
    let long = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe?requireHello=true")
    long.send(text: update([String(repeating: "a", count: 300)]))
    guard case .close(1008, let reason)? = try await long.next() else {
      return XCTFail("expected 1008")
    }
    XCTAssertTrue(reason.hasSuffix("...") && reason.utf8.count <= 123, reason)
    await long.close()
    try await server.stop()
  }
}

/// Server pings, the pong timeout, and graceful shutdown (PROTOCOL §9).
final class KeepaliveEndToEndTests: XCTestCase {
  private var directory = ""

  override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

  private func server(pingInterval: TimeAmount, pongTimeout: TimeAmount) async throws
    -> SubscribeServer
  {
    directory = TemporaryLog.directory("keepalive")
    let configuration = TemporaryLog.configuration(directory)
    let dictionary = try ZstdDictionary(
      path: SharedData.defaultDictionaryPath)
    return try await TestServer.start(log: try EventLog(configuration), dictionary: dictionary) {
      $0.pingInterval = pingInterval
      $0.pongTimeout = pongTimeout
    }.server
  }

  func testSilentClientsAreClosedAndAnsweringOnesStay() async throws {
    // Margins wide enough for a starved debug build on two busy cores.
    let server = try await server(
      pingInterval: .milliseconds(100), pongTimeout: .milliseconds(1_500))
    let silent = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe", answerPings: false)
    let polite = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    var pings = 0
    while let message = try await silent.next(timeout: .seconds(10)) {
      if message == .ping {
        pings += 1
        continue
      }
      XCTAssertEqual(message, .close(code: 1008, reason: "ping timeout"))
      break
    }
    XCTAssertGreaterThanOrEqual(pings, 3, "pinged every interval before giving up")
    // The answering client is still there well past the timeout.
    do {
      let unexpected = try await polite.next(timeout: .seconds(2))
      XCTFail("an answering client must stay open: \(String(describing: unexpected))")
    } catch is TestWebSocketClient.Timeout {}
    XCTAssertEqual(server.subscriberCount, 1)
    await polite.close()
    await silent.close()
    try await server.stop()
  }

  func testShutdownClosesEverySubscriberWith1001() async throws {
    let server = try await server(pingInterval: .seconds(30), pongTimeout: .seconds(60))
    let clients = [
      try await TestWebSocketClient.connect(port: server.port, target: "/subscribe"),
      try await TestWebSocketClient.connect(
        port: server.port, target: "/subscribe?requireHello=true&compress=true"),
    ]
    let deadline = ContinuousClock.now + .seconds(10)
    while server.subscriberCount < 2 && ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(5))
    }
    let stopping = Task { try await server.stop() }
    for client in clients {
      let close = try await client.next()
      XCTAssertEqual(close, .close(code: 1001, reason: "server shutting down"))
      await client.close()
    }
    try await stopping.value
    XCTAssertEqual(server.subscriberCount, 0)
  }
}
