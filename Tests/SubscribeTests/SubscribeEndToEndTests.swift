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

#if canImport(Glibc)
  import Glibc
#endif

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// `/subscribe` over real sockets on 127.0.0.1 with a real websocket client.
final class SubscribeEndToEndTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private func dictionary() throws -> ZstdDictionary {
    try ZstdDictionary(path: SharedData.defaultDictionaryPath)
  }

  private func stream(frames: Int) throws -> SyntheticStream {
    try SyntheticStream(frames: frames, seed: 31, start: 5_000_000)
  }

  /// A server over a log and ring already holding `stream.prefix(count)`.
  private func server(_ stream: SyntheticStream, preloaded count: Int, ringCapacity: Int = 100_000)
    async throws
    -> (SubscribeServer, LiveRing, EventLog)
  {
    let log = try TemporaryLog.open("server", directories: &directories)
    let ring = LiveRing(capacity: ringCapacity, startAfter: 0)
    try log.append(Array(stream.records.prefix(count)))
    ring.publish(Array(stream.broadcast.prefix(count)))
    let server = try await TestServer.start(ring: ring, log: log, dictionary: try dictionary())
    return (server.server, ring, log)
  }

  private func receive(_ client: TestWebSocketClient, _ count: Int) async throws
    -> [TestWebSocketClient.Message]
  {
    var messages: [TestWebSocketClient.Message] = []
    while messages.count < count {
      guard let message = try await client.next() else { break }
      messages.append(message)
    }
    return messages
  }

  func testFiltersDeliverExactlyTheMatchingJSON() async throws {
    let stream = try self.stream(frames: 600)
    let (server, _, _) = try await server(stream, preloaded: stream.events.count)
    let cases: [(String, (Event) -> Bool)] = [
      ("", { _ in true }),
      (
        "wantedCollections=app.bsky.graph.*",
        { $0.kind != .commit || $0.collection.hasPrefix("app.bsky.graph.") }
      ),
      (
        "wantedCollections=app.bsky.feed.post&wantedDids=\(stream.events[3].did)",
        {
          $0.did == stream.events[3].did
            && ($0.kind != .commit || $0.collection == "app.bsky.feed.post")
        }
      ),
    ]
    for (query, keep) in cases {
      let expected = stream.events.filter(keep)
      let client = try await TestWebSocketClient.connect(
        port: server.port, target: "/subscribe?cursor=0&" + query)
      let messages = try await receive(client, expected.count)
      XCTAssertEqual(
        messages, expected.map { .text(String(decoding: $0.json, as: UTF8.self)) }, query)
      await client.close()
    }
    try await server.stop()
  }

  func testCompressedSubscribersGetFramesThatDecodeWithTheServedDictionary() async throws {
    let stream = try self.stream(frames: 300)
    let (server, _, _) = try await server(stream, preloaded: stream.events.count)
    let (data, response) = try await URLSession.shared.data(
      from: URL(string: "http://127.0.0.1:\(server.port)/dictionary")!)
    let http = try XCTUnwrap(response as? HTTPURLResponse)
    XCTAssertEqual(http.statusCode, 200)
    let served = try ZstdDictionary(bytes: [UInt8](data))
    XCTAssertEqual(http.value(forHTTPHeaderField: "Zstd-Dictionary-Id"), String(served.id))
    let decompressor = try EventDecompressor(dictionary: served)
    for target in ["/subscribe?cursor=0&compress=true", "/subscribe?cursor=0&compress=TRUE"] {
      let client = try await TestWebSocketClient.connect(port: server.port, target: target)
      let messages = try await receive(client, stream.events.count)
      for (message, event) in zip(messages, stream.events) {
        switch message {
        case .binary(let frame): XCTAssertEqual(try decompressor.decompress(frame), event.json)
        case .text(let text):
          XCTAssertEqual(text, String(decoding: event.json, as: UTF8.self), "compress=TRUE is off")
        default: XCTFail("unexpected \(message)")
        }
      }
      await client.close()
    }
    try await server.stop()
  }

  /// A cursor far back starts on disk and reaches live while ingest keeps publishing.
  func testCursorReplayCrossesFromDiskToLive() async throws {
    let stream = try self.stream(frames: 2_000)
    let half = stream.events.count / 2
    let (server, ring, log) = try await server(stream, preloaded: half, ringCapacity: 200)
    let cursor = stream.events[100].timeUS
    let client = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe?cursor=\(cursor)")
    let ingest = Task.detached {
      for start in stride(from: half, to: stream.events.count, by: 50) {
        let end = min(start + 50, stream.events.count)
        try log.append(Array(stream.records[start..<end]))
        ring.publish(Array(stream.broadcast[start..<end]))
        await Task.yield()
      }
    }
    let expected = stream.events[100...].map {
      TestWebSocketClient.Message.text(String(decoding: $0.json, as: UTF8.self))
    }
    let messages = try await receive(client, expected.count)
    XCTAssertEqual(messages.count, expected.count)
    XCTAssertTrue(messages == expected, "every event from the cursor on, once, in order")
    try await ingest.value
    await client.close()
    try await server.stop()
  }

  func testInvalidRequestsGet400WithTheReason() async throws {
    let stream = try self.stream(frames: 10)
    let (server, _, _) = try await server(stream, preloaded: stream.events.count)
    let cases = [
      (
        "/subscribe?wantedCollections=a,b", 400,
        "invalid subscriber options: invalid collection: a,b"
      ),
      ("/subscribe?wantedDids=did:plc:", 400, "invalid subscriber options: invalid DID: did:plc:"),
      ("/subscribe?cursor=abc", 400, "invalid cursor: abc"),
      ("/subscribe?heartbeat=0", 400, "invalid subscriber options: invalid heartbeat: 0"),
      ("/subscribe", 400, "a websocket handshake is required"),
      ("/nope", 404, "not found"),
      ("/healthz", 200, "ok"),
    ]
    for (path, status, body) in cases {
      let (data, response) = try await URLSession.shared.data(
        from: URL(string: "http://127.0.0.1:\(server.port)\(path)")!)
      let http = try XCTUnwrap(response as? HTTPURLResponse)
      XCTAssertEqual(http.statusCode, status, path)
      XCTAssertEqual(String(decoding: data, as: UTF8.self), body, path)
      if status == 400 {
        XCTAssertEqual(http.value(forHTTPHeaderField: "Content-Type"), "text/plain; charset=utf-8")
      }
    }
    // PROTOCOL §2.1: request targets of at least 1 MiB are accepted (10,000 DIDs ≈ 440 KB).
    let dids = (0..<10_000).map {
      "wantedDids=did:plc:\(String(repeating: "a", count: 24 - String($0).count))\($0)"
    }
    let big =
      "/subscribe?" + dids.joined(separator: "&") + "&x=" + String(repeating: "y", count: 620_000)
    XCTAssertGreaterThan(big.utf8.count, 1 << 20)
    let response = try RawHTTP.get(port: server.port, target: big)
    XCTAssertEqual(response.status, 400)
    XCTAssertEqual(
      response.body, "a websocket handshake is required", "parsed and validated, not refused")
    do {
      _ = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe?cursor=abc")
      XCTFail("an invalid subscription must not be upgraded")
    } catch is TestWebSocketClient.NotUpgraded {}
    try await server.stop()
  }

  /// PROTOCOL §6 under load: cursors 1 h, 1 min and 1 s back from the newest stored event while
  /// live events keep arriving fast. Each subscriber gets every event from the first
  /// `time_us ≥ cursor` on, strictly increasing, no gap, no duplicate, across disk → memory.
  func testCursorsAnHourAMinuteAndASecondBackDuringFastIngest() async throws {
    // ~3,100 events 2 s apart: 1.7 hours, two thirds stored, the rest arriving live.
    let stream = try SyntheticStream(
      frames: 3_000, seed: 44, start: 1_700_000_000_000_000, spacing: 2_000_000)
    let stored = stream.events.count * 2 / 3
    let (server, ring, log) = try await server(stream, preloaded: stored, ringCapacity: 300)
    let newest = stream.events[stored - 1].timeUS
    var clients: [(TestWebSocketClient, [Event])] = []
    for back: Int64 in [3_600_000_000, 60_000_000, 1_000_000] {
      let cursor = newest - back
      clients.append(
        (
          try await TestWebSocketClient.connect(
            port: server.port, target: "/subscribe?cursor=\(cursor)"),
          stream.events.filter { $0.timeUS >= cursor }
        ))
    }
    let ingest = Task.detached {
      for start in stride(from: stored, to: stream.events.count, by: 20) {
        try stream.ingest(start..<min(start + 20, stream.events.count), log: log, ring: ring)
        await Task.yield()
      }
    }
    for (client, expected) in clients {
      XCTAssertGreaterThan(expected.count, 1, "the cursor is inside the stored range")
      let messages = try await receive(client, expected.count)
      XCTAssertTrue(
        messages == expected.map { .text(String(decoding: $0.json, as: UTF8.self)) },
        "every event from the cursor on, once, in order (\(messages.count) of \(expected.count))")
      await client.close()
    }
    try await ingest.value
    try await server.stop()
  }
}
