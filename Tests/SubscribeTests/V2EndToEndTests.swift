import Broadcast
import Compression
import EventLog
import Events
import Foundation
import Ingest
import Prometheus
import Subscribe
import SyntheticFirehose
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// The v2 wire (`subscribeEvents`, PROTOCOL §12) over real sockets on 127.0.0.1 with a real
/// websocket client: frames, seqs, cursors, compression, filters, replay into live under
/// concurrent ingest, and how streams end.
final class V2EndToEndTests: XCTestCase {
  private var directories: [String] = []
  private let registry = PrometheusCollectorRegistry()
  private let clock = TestClock(0)
  private static let path = "/xrpc/network.bsky.jetstream.subscribeEvents"
  /// Event times like the live network's (≥ 10^15 µs, so a time cursor is told from a seq).
  private static let base: Int64 = 1_700_000_000_000_000

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// `frames` generator frames, 1 ms apart from `base`.
  private func stream(frames: Int) throws -> SyntheticStream {
    try SyntheticStream(frames: frames, seed: 47, start: Self.base, spacing: 1_000)
  }

  /// A server whose log and ring hold `stream.events[0..<stored]`, stored as ingest stores them.
  private func server(
    _ stream: SyntheticStream, stored: Int, retention: Int64? = nil,
    _ configure: (inout SubscribeServer.Configuration) -> Void = { _ in }
  ) async throws -> TestServer {
    let log: EventLog
    if let retention {
      clock.set(stream.events[stored - 1].timeUS)
      log = try TemporaryLog.open(
        "v2", retentionMicroseconds: retention, clock: clock, directories: &directories)
    } else {
      log = try TemporaryLog.open("v2", directories: &directories)
    }
    return try await TestServer.start(
      stream, stored: stored, log: log, metrics: registry, configure)
  }

  /// The exact text frame of stored event `index` (its v2 seq is `index + 1`).
  private func expected(_ stream: SyntheticStream, _ index: Int) throws -> String {
    let event = stream.events[index]
    let frame = try XCTUnwrap(
      event.json.withUnsafeBytes {
        V2Frame.message(fromV1: $0, eventSeq: Int64(index + 1), timeUS: event.timeUS)
      })
    return String(decoding: frame, as: UTF8.self)
  }

  /// The next `count` messages as text (zstd frames decompressed with `decompressor`).
  private func texts(
    _ client: TestWebSocketClient, _ count: Int, decompressor: EventDecompressor? = nil
  ) async throws -> [String] {
    var texts: [String] = []
    while texts.count < count {
      switch try await client.next() {
      case .text(let text)?:
        XCTAssertNil(decompressor, "a text frame on a zstd connection")
        texts.append(text)
      case .binary(let bytes)?:
        let decompressor = try XCTUnwrap(decompressor, "a binary frame on a text connection")
        XCTAssertNotNil(
          bytes.withUnsafeBytes { EventDecompressor.contentSize(of: $0) },
          "every zstd frame declares its content size")
        texts.append(String(decoding: try decompressor.decompress(bytes), as: UTF8.self))
      case .ping?: continue
      case let other:
        XCTFail("expected \(count) frames, got \(texts.count) then \(String(describing: other))")
        return texts
      }
    }
    return texts
  }

  private func payload(_ text: String) throws -> [String: Any] {
    let object = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    return try XCTUnwrap(object["payload"] as? [String: Any], text)
  }

  // MARK: Replay and live

  /// From `cursor=1`, every event arrives once, in seq order 1, 2, 3…, byte-identical to its v2
  /// form, while ingest stores the second half concurrently: replay turns into live with no
  /// gap, duplicate or reordering.
  func testReplayFromSeqOneRunsIntoLiveUnderConcurrentIngest() async throws {
    let stream = try self.stream(frames: 1_200)
    let total = stream.events.count
    let half = total / 2
    let server = try await self.server(stream, stored: half)
    let client = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=1")
    let ingest = Task.detached {
      var next = half
      while next < total {
        let end = min(next + 37, total)
        try stream.ingest(next..<end, log: server.log, ring: server.ring)
        next = end
        try await Task.sleep(for: .milliseconds(2))
      }
    }
    let received = try await texts(client, total)
    try await ingest.value
    for index in 0..<total {
      XCTAssertEqual(received[index], try expected(stream, index), "seq \(index + 1)")
    }
    // Both halves of the path were taken: the log, then the v2 ring.
    XCTAssertGreaterThan(registry.value(#"contrail_subscriber_reads_total{source="disk"}"#), 0)
    XCTAssertGreaterThan(registry.value(#"contrail_subscriber_reads_total{source="memory"}"#), 0)
    XCTAssertEqual(server.server.v2.subscribers, 1)
    // Nothing more: no duplicate after the last event.
    if case .text(let extra)? = try? await client.next(timeout: .milliseconds(300)) {
      XCTFail("an extra frame: \(extra)")
    }
    await client.close()
    try await server.stop()
  }

  /// Events stored while no v2 subscriber was connected (the v2 ring idle since the server
  /// started empty) reach the first v2 subscriber from the log, with nothing stored after it
  /// connects; the same after the last v2 subscriber left and more was stored.
  func testEventsStoredWhileNoV2SubscriberWasConnectedAreServed() async throws {
    let stream = try self.stream(frames: 300)
    let total = stream.events.count
    let log = try TemporaryLog.open("v2idle", directories: &directories)
    let ring = LiveRing(capacity: 100_000, startAfter: 0)
    let server = try await TestServer.start(ring: ring, log: log, dictionary: stream.dictionary)
    try stream.ingest(0..<(total / 2), log: log, ring: ring)
    let first = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=1")
    let before = try await texts(first, total / 2)
    XCTAssertEqual(before.last, try expected(stream, total / 2 - 1))
    await first.close()
    try await waitUntil("the v2 subscriber left") { server.server.v2.subscribers == 0 }
    try stream.ingest((total / 2)..<total, log: log, ring: ring)
    let second = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=\(total / 2 + 1)")
    let after = try await texts(second, total - total / 2)
    XCTAssertEqual(after.first, try expected(stream, total / 2))
    XCTAssertEqual(after.last, try expected(stream, total - 1))
    await second.close()
    try await server.stop()
  }

  /// A client that asks for zstd with the ID from `getZstdDictionary` gets every frame as one
  /// zstd frame that the fetched dictionary turns into exactly the text frame — replayed and
  /// live alike.
  func testCompressedFramesDecodeWithTheFetchedDictionary() async throws {
    let stream = try self.stream(frames: 300)
    let total = stream.events.count
    let server = try await self.server(stream, stored: total - 20)
    let response = try await HTTPGet.fetch(
      host: "127.0.0.1", port: server.port,
      path: "/xrpc/network.bsky.jetstream.getZstdDictionary", tls: nil)
    XCTAssertEqual(response.status, 200)
    let dictionary = try ZstdDictionary(bytes: response.body)
    let client = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=1&zstdDictionary=\(dictionary.id)")
    let decompressor = try EventDecompressor(dictionary: dictionary)
    var received = try await texts(client, total - 20, decompressor: decompressor)
    try stream.ingest((total - 20)..<total, log: server.log, ring: server.ring)
    received += try await texts(client, 20, decompressor: decompressor)
    for index in 0..<total {
      XCTAssertEqual(received[index], try expected(stream, index), "seq \(index + 1)")
    }
    await client.close()
    try await server.stop()
  }

  // MARK: Cursors

  /// A seq cursor starts exactly at that seq (inclusive); one at or past the next seq is the
  /// live tip, silently; no cursor is live.
  func testSeqCursorsAreExactAndTheFutureIsLive() async throws {
    let stream = try self.stream(frames: 400)
    let total = stream.events.count
    let server = try await self.server(stream, stored: total - 10)
    let middle = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=123")
    let future = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=\(total + 500)")
    let live = try await TestWebSocketClient.connect(port: server.port, target: Self.path)
    let replayed = try await texts(middle, total - 10 - 122)
    XCTAssertEqual(replayed.first, try expected(stream, 122))
    try await waitUntil("all three subscribed") { server.subscriberCount == 3 }
    try stream.ingest((total - 10)..<total, log: server.log, ring: server.ring)
    for client in [future, live] {
      let tail = try await texts(client, 10)
      for offset in 0..<10 {
        XCTAssertEqual(tail[offset], try expected(stream, total - 10 + offset))
      }
    }
    for client in [middle, future, live] { await client.close() }
    try await server.stop()
  }

  /// A time cursor (≥ 10^15) starts at the first event at or after that time; one older than
  /// everything retained starts at the oldest after `#info OutdatedCursor`; one in the future
  /// is live.
  func testTimeCursorsSeekAndClampWithOutdatedCursor() async throws {
    let stream = try self.stream(frames: 200)
    let total = stream.events.count
    let server = try await self.server(stream, stored: total)
    let exact = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=\(stream.events[57].timeUS)")
    let atExact = try await texts(exact, 1)
    XCTAssertEqual(atExact.first, try expected(stream, 57))
    let between = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=\(stream.events[57].timeUS + 1)")
    let atBetween = try await texts(between, 1)
    XCTAssertEqual(atBetween.first, try expected(stream, 58))
    let old = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=1000000000000000")
    let first = try await texts(old, 2)
    XCTAssertEqual(
      first[0],
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#info","#
        + #""message":"requested timestamp cursor below retention floor; starting at seq 1","#
        + #""name":"OutdatedCursor"}}"#)
    XCTAssertEqual(first[1], try expected(stream, 0))
    let future = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=\(Int64.max)")
    if case .text(let text)? = try? await future.next(timeout: .milliseconds(300)) {
      XCTFail("a future time cursor is live, got \(text)")
    }
    for client in [exact, between, old, future] { await client.close() }
    try await server.stop()
  }

  /// A seq below the retention floor is refused before the upgrade with `400 CursorTooOld`
  /// naming the floor; the floor itself is served.
  func testSeqBelowTheRetentionFloorIsCursorTooOld() async throws {
    let stream = try self.stream(frames: 2_000)
    let total = stream.events.count
    let server = try await self.server(stream, stored: total, retention: 1_000_000)
    XCTAssertGreaterThan(server.log.enforceRetention(), 0)
    let floor = try XCTUnwrap(server.log.oldestEventSeq)
    XCTAssertGreaterThan(floor, 1)
    let (fd, head) = try RawSocket.handshake(port: server.port, target: Self.path + "?cursor=1")
    let rest = RawSocket.readToEnd(fd, timeout: .seconds(5)) {
      String(decoding: $0, as: UTF8.self).contains("}")
    }
    close(fd)
    XCTAssertTrue(head.hasPrefix("HTTP/1.1 400"), head)
    XCTAssertTrue(head.lowercased().contains("content-type: application/json"), head)
    XCTAssertEqual(
      String(decoding: rest.bytes, as: UTF8.self),
      #"{"error":"CursorTooOld","message":"subscribe: cursor too old: cursor 1 below lookback "#
        + #"floor \#(floor); re-backfill from your last seq"}"#)
    let atFloor = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=\(floor)")
    let fromFloor = try await texts(atFloor, 1)
    XCTAssertEqual(fromFloor.first, try expected(stream, Int(floor) - 1))
    await atFloor.close()
    try await server.stop()
  }

  // MARK: Filters and sizes

  /// `kinds`, `dids` and `collections` deliver exactly the matching events, in seq order;
  /// `collections` never hides identity or account events; `maxMessageSizeBytes` skips frames
  /// longer than the cap.
  func testFiltersAndSizeCapDeliverExactlyTheMatchingEvents() async throws {
    let stream = try self.stream(frames: 600)
    let total = stream.events.count
    let server = try await self.server(stream, stored: total)
    let did = stream.events.first { $0.kind == .commit }!.did
    let sizes = try (0..<total).map { try expected(stream, $0).utf8.count }
    let cap = sizes.sorted()[total / 2]
    let cases: [(String, (Int) -> Bool)] = [
      ("kinds=identity&kinds=account", { [.identity, .account].contains(stream.events[$0].kind) }),
      (
        "collections=app.bsky.feed.*",
        {
          stream.events[$0].kind != .commit
            || stream.events[$0].collection.hasPrefix("app.bsky.feed.")
        }
      ),
      (
        "kinds=commit&collections=app.bsky.feed.post",
        {
          stream.events[$0].kind == .commit && stream.events[$0].collection == "app.bsky.feed.post"
        }
      ),
      ("dids=\(did.replacingOccurrences(of: ":", with: "%3A"))", { stream.events[$0].did == did }),
      ("maxMessageSizeBytes=\(cap)", { sizes[$0] <= cap }),
    ]
    for (query, keep) in cases {
      let wanted = (0..<total).filter(keep)
      XCTAssertFalse(wanted.isEmpty, query)
      XCTAssertLessThan(wanted.count, total, query)
      let client = try await TestWebSocketClient.connect(
        port: server.port, target: Self.path + "?cursor=1&" + query)
      let received = try await texts(client, wanted.count)
      for (text, index) in zip(received, wanted) {
        XCTAssertEqual(text, try expected(stream, index), query)
      }
      await client.close()
    }
    try await server.stop()
  }

  /// Relay `#sync` frames are stored and delivered on v2 as `#sync` events with their CAR bytes;
  /// a v1 subscriber never sees them.
  func testSyncEventsReachV2OnlyWithTheirBlocks() async throws {
    var generator = FirehoseGenerator(seed: 5, syncEvery: 25)
    let translator = Translator(sequencer: Sequencer(last: Self.base, clock: { 0 }))
    var events: [Event] = []
    for _ in 0..<300 { translator.translate(generator.next(), into: &events) }
    let syncs = events.filter { $0.kind == .sync }.count
    XCTAssertGreaterThan(syncs, 5)
    let log = try TemporaryLog.open("v2sync", directories: &directories)
    let ring = LiveRing()
    let dictionary = try ZstdDictionary(path: SharedData.defaultDictionaryPath)
    let outcome = try EventStore(log: log, ring: ring, dictionary: dictionary).store(events)
    XCTAssertEqual(outcome.stored, events.count)
    let server = try await TestServer.start(ring: ring, log: log, dictionary: dictionary)
    let v2 = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=1&kinds=sync")
    let frames = try await texts(v2, syncs)
    for text in frames {
      let payload = try payload(text)
      XCTAssertEqual(payload["$type"] as? String, "network.bsky.jetstream.subscribeEvents#sync")
      let sync = try XCTUnwrap(payload["sync"] as? [String: Any])
      let blocks = try XCTUnwrap((sync["blocks"] as? [String: Any])?["$bytes"] as? String)
      XCTAssertFalse(blocks.isEmpty)
      XCTAssertEqual(sync["did"] as? String, payload["did"] as? String)
    }
    let v1 = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe?cursor=0")
    var v1Texts: [String] = []
    for _ in 0..<(events.count - syncs) {
      guard case .text(let text)? = try await v1.next() else { break }
      v1Texts.append(text)
    }
    XCTAssertEqual(v1Texts.count, events.count - syncs)
    XCTAssertFalse(v1Texts.contains { $0.contains(#""kind":"sync""#) })
    if case .text(let extra)? = try? await v1.next(timeout: .milliseconds(300)) {
      XCTFail("v1 got more than its kinds: \(extra)")
    }
    await v1.close()
    await v2.close()
    try await server.stop()
  }

  // MARK: The handshake and the ends of a stream

  /// `xrpc.v1.json` is echoed only when offered exactly; permessage-deflate is never accepted.
  func testSubprotocolEchoAndNoCompressionExtension() async throws {
    let stream = try self.stream(frames: 10)
    let server = try await self.server(stream, stored: stream.events.count)
    let offers: [(String, Bool)] = [
      ("xrpc.v1.json", true), ("chat, xrpc.v1.json", true), ("XRPC.V1.JSON", false),
      ("other", false),
    ]
    for (offer, echoed) in offers {
      let (fd, head) = try RawSocket.handshake(
        port: server.port, target: Self.path,
        headers: [
          ("Sec-WebSocket-Protocol", offer),
          ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ])
      close(fd)
      let lower = head.lowercased()
      XCTAssertTrue(head.hasPrefix("HTTP/1.1 101"), head)
      XCTAssertEqual(lower.contains("sec-websocket-protocol: xrpc.v1.json\r\n"), echoed, offer)
      XCTAssertEqual(
        lower.components(separatedBy: "sec-websocket-protocol").count - 1, echoed ? 1 : 0)
      XCTAssertFalse(lower.contains("sec-websocket-extensions"), head)
    }
    try await server.stop()
  }

  /// A websocket handshake while the server is not ready gets the JSON 503 (the client retries
  /// with backoff), not an upgrade.
  func testNotReadyIsA503BeforeTheUpgrade() async throws {
    let stream = try self.stream(frames: 10)
    let server = try await self.server(stream, stored: stream.events.count) {
      $0.readiness = { "not connected to the relay yet" }
    }
    let (fd, head) = try RawSocket.handshake(port: server.port, target: Self.path)
    let rest = RawSocket.readToEnd(fd, timeout: .seconds(5)) {
      String(decoding: $0, as: UTF8.self).contains("}")
    }
    close(fd)
    XCTAssertTrue(head.hasPrefix("HTTP/1.1 503"), head)
    XCTAssertEqual(
      String(decoding: rest.bytes, as: UTF8.self),
      #"{"error":"ServiceUnavailable","message":"service not ready: not connected to the relay yet"}"#
    )
    XCTAssertEqual(server.subscriberCount, 0)
    try await server.stop()
  }

  /// Clients that hang up while their cursor is being looked up take no subscriber place: with
  /// `--max-subscribers 2`, twenty of them leave room for two real subscribers.
  func testClientsGoneDuringTheCursorLookupTakeNoPlace() async throws {
    let stream = try self.stream(frames: 50)
    let server = try await self.server(stream, stored: stream.events.count) {
      $0.limits.maxSubscribers = 2
    }
    let request = Array(
      ("GET \(Self.path)?cursor=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        + "Sec-WebSocket-Version: 13\r\n\r\n").utf8)
    for _ in 0..<20 {
      let fd = try RawSocket.connect(port: server.port)
      XCTAssertTrue(RawSocket.send(fd, request))
      var reset = linger(l_onoff: 1, l_linger: 0)
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
      close(fd)
    }
    try await waitUntil("the clients that hung up are gone") {
      server.server.pendingConnectionCount == 0
    }
    // Through the same lookup (queued after theirs), two real subscribers still get places.
    let first = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=1")
    let second = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=1")
    try await waitUntil("two subscribers") { server.subscriberCount == 2 }
    await first.close()
    await second.close()
    try await server.stop()
  }

  /// The v2 wire is server-push only: a data message closes with 1008; shutdown closes with
  /// 1001 `server shutting down`.
  func testClientDataClosesWith1008AndShutdownWith1001() async throws {
    let stream = try self.stream(frames: 10)
    let server = try await self.server(stream, stored: stream.events.count)
    let talker = try await TestWebSocketClient.connect(port: server.port, target: Self.path)
    let listener = try await TestWebSocketClient.connect(port: server.port, target: Self.path)
    try await waitUntil("both subscribed") { server.subscriberCount == 2 }
    talker.send(text: #"{"type":"options_update","payload":{}}"#)
    let closed = try await talker.next()
    XCTAssertEqual(closed, .close(code: 1008, reason: "unexpected data message"))
    try await waitUntil("the talker is gone") { server.subscriberCount == 1 }
    try await server.stop()
    let shutdown = try await listener.next()
    XCTAssertEqual(shutdown, .close(code: 1001, reason: "server shutting down"))
  }

  /// A subscriber the slow-consumer policy drops gets a `ConsumerTooSlow` error frame whose
  /// cursor resumes exactly after the last event it was sent, then the connection ends with no
  /// close frame.
  func testConsumerTooSlowNamesTheExactResumeSeq() async throws {
    let stream = try self.stream(frames: 3_000)
    let total = stream.events.count
    let server = try await self.server(stream, stored: total) {
      $0.limits.maxEventsPerSecondPerIP = 200
      $0.slowConsumer = .init(maxLag: .milliseconds(200), grace: .milliseconds(300))
      $0.slowConsumer.checkInterval = .milliseconds(50)
    }
    let client = try await TestWebSocketClient.connect(
      port: server.port, target: Self.path + "?cursor=1")
    var last: Int64 = 0
    var error: [String: Any]?
    loop: while true {
      switch try await client.next(timeout: .seconds(20)) {
      case .text(let text)?:
        let object = try XCTUnwrap(
          JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        if object["$type"] as? String == "error" {
          error = object
          continue
        }
        let seq = try XCTUnwrap((object["payload"] as? [String: Any])?["seq"] as? Int64)
        XCTAssertNil(error, "nothing after the error frame")
        XCTAssertEqual(seq, last + 1)
        last = seq
      case .close(let code, _)?:
        XCTFail("a close frame (\(code.map(String.init) ?? "-")) instead of a dropped connection")
        break loop
      case .ping?: continue
      case nil: break loop
      case .binary?: XCTFail("binary frame on a text connection")
      }
    }
    let frame = try XCTUnwrap(error, "no error frame")
    XCTAssertEqual(frame["error"] as? String, "ConsumerTooSlow")
    XCTAssertLessThan(last, Int64(total))
    XCTAssertEqual(
      frame["message"] as? String,
      "reading below the floor rate \(Int64(total) - last) events behind the tip; reconnect with cursor=\(last + 1)"
    )
    try await server.stop()
  }
}
