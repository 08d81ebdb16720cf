import Broadcast
import Compression
import EventLog
import Events
import Foundation
import NIOCore
import Prometheus
import Subscribe
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// Heartbeats, limits, the slow-consumer policy and the subscribe metrics, over real sockets.
final class PolicyEndToEndTests: XCTestCase {
  private var directories: [String] = []
  private let registry = PrometheusCollectorRegistry()

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private func server(
    _ stream: SyntheticStream, preload: Int, log: EventLog? = nil, ring: LiveRing? = nil,
    _ configure: (inout SubscribeServer.Configuration) -> Void = { _ in }
  ) async throws -> (SubscribeServer, LiveRing, EventLog) {
    let log = try log ?? TemporaryLog.open("policy", directories: &directories)
    let ring = ring ?? LiveRing(capacity: 100_000, startAfter: 0)
    try stream.ingest(0..<preload, log: log, ring: ring)
    let server = try await TestServer.start(
      ring: ring, log: log, dictionary: stream.dictionary, metrics: registry, configure)
    return (server.server, ring, log)
  }

  private func heartbeatTime(_ message: TestWebSocketClient.Message?) -> Int64? {
    guard case .text(let text)? = message, text.hasPrefix(#"{"kind":"heartbeat","time_us":"#),
      text.hasSuffix("}")
    else { return nil }
    return Int64(text.dropFirst(30).dropLast())
  }

  /// PROTOCOL §10.2 and §11.5: with a filter that matches nothing, heartbeats arrive with
  /// non-decreasing T; resuming at T+1 repeats nothing scanned and loses nothing.
  func testHeartbeatsTrackTheScannedPositionAndResumeExactly() async throws {
    let stream = try SyntheticStream(frames: 400, seed: 12, start: 3_000_000)
    let half = stream.events.count / 2
    let (server, ring, log) = try await server(stream, preload: half)
    let nobody = "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz"
    let client = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe?heartbeat=1&wantedDids=\(nobody)")
    let first = try await client.next(timeout: .seconds(5))
    XCTAssertEqual(
      heartbeatTime(first), stream.events[half - 1].timeUS, "a live start reports the newest")
    // Ingest the rest; heartbeats follow the scan position up to the last event.
    try stream.ingest(half..<(half + 100), log: log, ring: ring)
    var times: [Int64] = [heartbeatTime(first)!]
    let last = stream.events.last!.timeUS
    var ingested = false
    while times.last! < last {
      guard let time = heartbeatTime(try await client.next(timeout: .seconds(5))) else {
        return XCTFail("only heartbeats may arrive for a filter that matches nothing")
      }
      XCTAssertGreaterThanOrEqual(time, times.last!)
      times.append(time)
      if !ingested {
        try stream.ingest((half + 100)..<stream.events.count, log: log, ring: ring)
        ingested = true
      }
    }
    XCTAssertEqual(times.last, last)
    await client.close()
    // Resuming at T+1 of an intermediate heartbeat starts with the first event after T.
    let middle = times.first { $0 > stream.events[half - 1].timeUS && $0 < last } ?? times[0]
    let resumed = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe?cursor=\(middle + 1)")
    let next = try XCTUnwrap(stream.events.first { $0.timeUS > middle })
    let resumedFirst = try await resumed.next()
    XCTAssertEqual(resumedFirst, .text(String(decoding: next.json, as: UTF8.self)))
    await resumed.close()
    // Compressed subscribers get the heartbeat as one zstd frame with the same dictionary.
    let compressed = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe?compress=true&heartbeat=1&wantedDids=\(nobody)")
    guard case .binary(let frame)? = try await compressed.next(timeout: .seconds(5)) else {
      return XCTFail("expected a binary heartbeat")
    }
    let json = try EventDecompressor(dictionary: stream.dictionary).decompress(frame)
    XCTAssertEqual(
      String(decoding: json, as: UTF8.self), #"{"kind":"heartbeat","time_us":\#(last)}"#)
    await compressed.close()
    XCTAssertGreaterThanOrEqual(
      registry.value("contrail_heartbeats_sent_total"), Double(times.count + 1))
    try await server.stop()
  }

  func testLimitsRefuseWith429And503AndPaceDelivery() async throws {
    let stream = try SyntheticStream(frames: 700, seed: 4, start: 2_000_000)
    let (server, _, _) = try await server(stream, preload: stream.events.count) {
      $0.limits.maxConnectionsPerIP = 2
      $0.limits.maxEventsPerSecondPerIP = 200
    }
    let started = ContinuousClock.now
    let paced = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe?cursor=0")
    let idle = try await TestWebSocketClient.connect(
      port: server.port, target: "/subscribe?wantedCollections=none.at.all")
    let refused = try RawHTTP.get(port: server.port, target: "/subscribe", upgrade: true)
    XCTAssertEqual(refused.status, 429)
    XCTAssertEqual(refused.body, "too many connections from 127.0.0.1")
    XCTAssertEqual(registry.value(#"contrail_subscribe_refused_total{reason="max_per_ip"}"#), 1)
    // 200 events/s for the address: the replay of ~740 events takes at least ~2 s (one
    // second's burst and one batch of debt, then the rate), and arrives complete and in order.
    for event in stream.events {
      let message = try await paced.next()
      guard message == .text(String(decoding: event.json, as: UTF8.self)) else {
        return XCTFail("paced delivery must stay exact")
      }
    }
    let elapsed = ContinuousClock.now - started
    let floor = Double(stream.events.count - 200 - 128) / 200 * 0.9
    XCTAssertGreaterThan(elapsed, .seconds(floor), "paced to the per-address rate")
    // A closed connection gives its place back.
    await idle.close()
    let deadline = ContinuousClock.now + .seconds(10)
    while server.subscriberCount > 1 && ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(10))
    }
    let again = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    await again.close()
    await paced.close()
    try await server.stop()

    let (full, _, _) = try await self.server(stream, preload: 0) { $0.limits.maxSubscribers = 1 }
    let only = try await TestWebSocketClient.connect(port: full.port, target: "/subscribe")
    let unavailable = try RawHTTP.get(port: full.port, target: "/subscribe", upgrade: true)
    XCTAssertEqual(unavailable.status, 503)
    XCTAssertEqual(unavailable.body, "too many subscribers: the server is at its limit")
    await only.close()
    try await full.stop()
  }

  /// Events are encoded and compressed once at ingest, whatever the number of subscribers; the
  /// subscribe metrics count what went out.
  func testFanOutDoesNoPerSubscriberEncoding() async throws {
    let stream = try SyntheticStream(frames: 300, seed: 8, start: 6_000_000)
    let (server, ring, log) = try await server(stream, preload: 0)
    var clients: [(TestWebSocketClient, Bool)] = []
    for index in 0..<20 {
      let compressed = index % 2 == 0
      clients.append(
        (
          try await TestWebSocketClient.connect(
            port: server.port, target: compressed ? "/subscribe?compress=true" : "/subscribe"),
          compressed
        ))
    }
    let deadline = ContinuousClock.now + .seconds(10)
    while server.subscriberCount < 20 && ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(5))
    }
    // Ingest as the pipeline does: compress once, store, publish.
    let compressor = try EventCompressor(dictionary: stream.dictionary)
    let compressedBefore = EventCompressor.framesCompressed
    let decompressedBefore = EventDecompressor.framesDecompressed
    var records: [LogRecord] = []
    var broadcast: [BroadcastEvent] = []
    for event in stream.events {
      let frame = try compressor.compress(event.json)
      records.append(LogRecord(event, eventSeq: Int64(records.count + 1), payload: frame))
      broadcast.append(BroadcastEvent(event, eventSeq: 0, compressed: frame))
    }
    try log.append(records)
    ring.publish(broadcast)
    for (client, compressed) in clients {
      var received: [TestWebSocketClient.Message] = []
      for _ in stream.events {
        let message = try await client.next()
        received.append(try XCTUnwrap(message))
      }
      let expected: [TestWebSocketClient.Message] = zip(stream.events, records).map {
        compressed ? .binary($1.payload) : .text(String(decoding: $0.json, as: UTF8.self))
      }
      XCTAssertTrue(received == expected, "subscriber stream differs")
    }
    let n = stream.events.count
    XCTAssertEqual(EventCompressor.framesCompressed - compressedBefore, n, "compressed once each")
    XCTAssertEqual(EventDecompressor.framesDecompressed - decompressedBefore, 0)
    XCTAssertEqual(
      registry.value(#"contrail_events_sent_total{compression="none"}"#), Double(10 * n))
    XCTAssertEqual(
      registry.value(#"contrail_events_sent_total{compression="zstd"}"#), Double(10 * n))
    XCTAssertEqual(
      registry.value(#"contrail_subscriber_reads_total{source="memory"}"#), Double(20 * n))
    XCTAssertEqual(registry.value(#"contrail_subscriber_reads_total{source="disk"}"#), 0)
    XCTAssertEqual(registry.value(#"contrail_subscribers{compression="zstd"}"#), 10)
    XCTAssertEqual(registry.value(#"contrail_subscriptions_total{start="live"}"#), 20)
    let zstdBytes = records.reduce(0) { $0 + $1.payload.count } * 10
    XCTAssertEqual(
      registry.value(#"contrail_bytes_sent_total{compression="zstd"}"#), Double(zstdBytes))
    for (client, _) in clients { await client.close() }
    try await server.stop()
    XCTAssertEqual(registry.value(#"contrail_subscriber_closes_total{reason="shutdown"}"#), 0)
  }

  /// 1,000 concurrent subscribers with mixed filters, half compressed, each get exactly their
  /// stream: the first half replayed, the second half live.
  func testAThousandSubscribersWithMixedFilters() async throws {
    let stream = try SyntheticStream(frames: 120, seed: 21, start: 4_000_000)
    let half = stream.events.count / 2
    let (server, ring, log) = try await server(stream, preload: half)
    let dids = Array(Set(stream.events.map(\.did))).sorted()
    let filters: [(String, (Event) -> Bool)] = [
      ("", { _ in true }),
      (
        "wantedCollections=app.bsky.feed.like",
        { $0.kind != .commit || $0.collection == "app.bsky.feed.like" }
      ),
      (
        "wantedCollections=app.bsky.graph.*",
        { $0.kind != .commit || $0.collection.hasPrefix("app.bsky.graph.") }
      ),
      ("wantedDids=\(dids[0])&wantedDids=\(dids[1])", { $0.did == dids[0] || $0.did == dids[1] }),
      (
        "wantedCollections=app.bsky.feed.post&wantedDids=\(dids[2])",
        { $0.did == dids[2] && ($0.kind != .commit || $0.collection == "app.bsky.feed.post") }
      ),
    ]
    let expected: [[TestWebSocketClient.Message]] = filters.flatMap { _, keep in
      [false, true].map { compressed in
        zip(stream.events, stream.records).filter { keep($0.0) }.map {
          compressed ? .binary($0.1.payload) : .text(String(decoding: $0.0.json, as: UTF8.self))
        }
      }
    }
    // Which expected stream subscriber `index` should get.
    let which = { (index: Int) in (index % filters.count) * 2 + (index / filters.count) % 2 }
    var clients: [(Int, TestWebSocketClient)] = []
    for wave in stride(from: 0, to: 1_000, by: 100) {  // waves: stay inside the listen backlog
      try await withThrowingTaskGroup(of: (Int, TestWebSocketClient).self) { group in
        for index in wave..<(wave + 100) {
          let query = filters[index % filters.count].0
          let compress = which(index) % 2 == 1 ? "&compress=true" : ""
          let port = server.port
          group.addTask {
            let client = try await TestWebSocketClient.connect(
              port: port, target: "/subscribe?cursor=0&\(query)\(compress)")
            return (index, client)
          }
        }
        for try await pair in group { clients.append(pair) }
      }
    }
    XCTAssertEqual(clients.count, 1_000)
    try stream.ingest(half..<stream.events.count, log: log, ring: ring)
    let results = try await withThrowingTaskGroup(of: Bool.self) { group in
      for (index, client) in clients {
        let want = expected[which(index)]
        group.addTask {
          for message in want {
            let received = try await client.next(timeout: .seconds(60))
            if received != message { return false }
          }
          await client.close()
          return true
        }
      }
      return try await group.reduce(into: [Bool]()) { $0.append($1) }
    }
    XCTAssertEqual(results.filter { $0 }.count, 1_000, "every subscriber got exactly its stream")
    try await server.stop()
  }
}
