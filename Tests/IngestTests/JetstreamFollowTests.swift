import App
import Broadcast
import Compression
import EventLog
import Events
import Foundation
import Logging
import Prometheus
import RelayFixture
import TestSupport
import XCTest

@testable import Ingest

/// An edge following a Jetstream v1 host (`serve --upstream …/subscribe`, OPERATIONS §10) over
/// real sockets on 127.0.0.1. The host is a Contrail primary's `/subscribe` — byte-identical to
/// Jetstream's — or, for hostile input, a fixture server sending whatever a test gives it. The
/// edge stores each zstd frame as it came with the upstream's `time_us` and its own v2 seqs,
/// resumes with no gap and no duplicate, passes its filter upstream, and shrugs off frames that
/// are not events.
final class JetstreamFollowTests: XCTestCase {
  private var directories: [String] = []
  private static let base: Int64 = 1_700_000_000_000_000

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private func host(_ stream: SyntheticStream, stored: Int) async throws -> TestServer {
    let log = try TemporaryLog.open("jetstream-host", directories: &directories)
    return try await TestServer.start(stream, stored: stored, log: log)
  }

  private func edge(
    upstream: String, directory: String, dictionary: String? = nil, collections: [String] = [],
    registry: PrometheusCollectorRegistry? = nil
  ) async throws -> (ContrailServer, Task<Void, Never>) {
    var settings = try ServeSettings.forTests(relay: "ws://127.0.0.1:1", dataDirectory: directory)
    settings.upstream = try RelayEndpoint(upstream)
    settings.dictionaryPath = dictionary
    settings.ingestFilter = try EventFilter(ingestCollections: collections, dids: [])
    let edge = try await ContrailServer.start(settings, registry: registry, logger: quietLogger)
    return (edge, Task { await edge.run() })
  }

  /// What a v1 subscriber of the host sees of its log: every event but `#sync`.
  private func v1Records(_ log: EventLog) -> [LogRecord] {
    log.allRecords().filter { $0.kind != .sync }
  }

  private func newDirectory(_ name: String) -> String {
    let directory = TemporaryLog.directory(name)
    directories.append(directory)
    return directory
  }

  /// An edge with nothing stored starts at the host's live tip, whenever its subscription takes
  /// hold: the host's events from `start` on are stored a few at a time until the edge has one.
  /// Returns the index of the next event to store; the edge's first event is the first it has.
  private func prime(
    _ edge: ContrailServer, from stream: SyntheticStream, into host: TestServer, start: Int = 0
  ) async throws -> Int {
    try await waitUntil("the edge follows the host") { host.subscriberCount == 1 }
    var next = start
    while edge.log.lastEventSeq == 0 {
      guard next < stream.events.count else { throw StreamRanOut() }
      try stream.ingest(next..<(next + 1), log: host.log, ring: host.ring)
      next += 1
      try? await waitUntil("the edge stored one", timeout: .milliseconds(200)) {
        edge.log.lastEventSeq > 0
      }
    }
    return next
  }

  /// The host's v1 events from the edge's first one on: what the edge should hold.
  private func expected(_ host: TestServer, _ edge: ContrailServer) -> [LogRecord] {
    let first = edge.log.allRecords().first?.timeUS ?? .max
    return v1Records(host.log).filter { $0.timeUS >= first }
  }

  /// The edge stores the host's zstd frames byte for byte with the host's `time_us` (its history
  /// from live on, then what comes next), numbers them 1, 2, 3… itself, compresses nothing, and
  /// serves the host's v1 bytes from the same cursor — text and zstd — and a v2 stream.
  func testAnEdgeStoresAJetstreamHostsFramesAsTheyCame() async throws {
    let stream = try SyntheticStream(frames: 1_000, seed: 71, start: Self.base, spacing: 1_000)
    let total = stream.events.count
    let host = try await host(stream, stored: 0)
    let (edge, running) = try await edge(
      upstream: "ws://127.0.0.1:\(host.port)/subscribe", directory: newDirectory("jet-edge"))
    let compressedBefore = EventCompressor.framesCompressed
    let primed = try await prime(edge, from: stream, into: host)
    try stream.ingest(primed..<(total / 2), log: host.log, ring: host.ring)
    let firstHalf = self.expected(host, edge).count
    try await waitUntil("the edge has the first half") {
      edge.log.lastEventSeq == Int64(firstHalf)
    }
    try stream.ingest((total / 2)..<total, log: host.log, ring: host.ring)
    let expected = self.expected(host, edge)
    XCTAssertGreaterThan(expected.count, total * 9 / 10)
    try await waitUntil("the edge has everything") {
      edge.log.lastEventSeq == Int64(expected.count)
    }
    // The host compressed; the edge only decompressed.
    XCTAssertEqual(EventCompressor.framesCompressed, compressedBefore + total)
    let stored = edge.log.allRecords()
    XCTAssertEqual(stored.map(\.payload), expected.map(\.payload), "the host's frames, unchanged")
    XCTAssertEqual(stored.map(\.timeUS), expected.map(\.timeUS))
    XCTAssertEqual(stored.map(\.did), expected.map(\.did))
    XCTAssertEqual(stored.map(\.kind), expected.map(\.kind))
    XCTAssertEqual(stored.map(\.collection), expected.map(\.collection))
    XCTAssertEqual(stored.map(\.eventSeq), Array(1...Int64(expected.count)), "its own v2 seqs")
    XCTAssertEqual(edge.log.dictionaryIDs.last, stream.dictionary.id, "the host's /dictionary")

    let cursor = expected[100].timeUS
    for target in ["/subscribe?compress=true&cursor=\(cursor)", "/subscribe?cursor=\(cursor)"] {
      var received: [[TestWebSocketClient.Message]] = []
      for port in [host.port, edge.port] {
        received.append(try await messages(port: port, target: target, count: expected.count - 100))
      }
      XCTAssertEqual(received[0].count, expected.count - 100, target)
      XCTAssertEqual(received[0], received[1], target)
    }
    let v2 = try await messages(
      port: edge.port, target: "/xrpc/network.bsky.jetstream.subscribeEvents?cursor=101",
      count: expected.count - 100)
    XCTAssertEqual(v2.count, expected.count - 100)
    guard case .text(let first) = v2.first else { return XCTFail("no v2 text frame") }
    XCTAssertTrue(first.contains("\"seq\":101,"), first)
    XCTAssertTrue(first.contains(expected[100].did), first)
    await edge.shutdown()
    await running.value
    try await host.stop()
  }

  /// Stopped and started again while the host moves on, the edge asks for `cursor = last
  /// time_us` and ends with every frame once: the one the host sends again is not stored twice.
  func testARestartedEdgeResumesWithNoGapAndNoDuplicate() async throws {
    let stream = try SyntheticStream(frames: 900, seed: 72, start: Self.base, spacing: 1_000)
    let total = stream.events.count
    let host = try await host(stream, stored: 0)
    let directory = newDirectory("jet-edge-restart")
    let upstream = "ws://127.0.0.1:\(host.port)/subscribe"
    var (edge, running) = try await edge(upstream: upstream, directory: directory)
    let primed = try await prime(edge, from: stream, into: host)
    try stream.ingest(primed..<(total / 3), log: host.log, ring: host.ring)
    var expected = self.expected(host, edge)
    try await waitUntil("the edge caught up") { edge.log.lastEventSeq == Int64(expected.count) }
    await edge.shutdown()
    await running.value
    try stream.ingest((total / 3)..<(2 * total / 3), log: host.log, ring: host.ring)
    (edge, running) = try await self.edge(upstream: upstream, directory: directory)
    try stream.ingest((2 * total / 3)..<total, log: host.log, ring: host.ring)
    expected = self.expected(host, edge)
    try await waitUntil("the restarted edge caught up") {
      edge.log.lastEventSeq == Int64(expected.count)
    }
    let stored = edge.log.allRecords()
    XCTAssertEqual(stored.map(\.timeUS), expected.map(\.timeUS))
    XCTAssertEqual(stored.map(\.payload), expected.map(\.payload))
    XCTAssertEqual(stored.map(\.eventSeq), Array(1...Int64(expected.count)))
    await edge.shutdown()
    await running.value
    try await host.stop()
  }

  /// `--collections` goes upstream as `wantedCollections` and holds on the edge: it stores the
  /// host's commits of that collection and every identity and account event, nothing else.
  func testTheIngestFilterGoesUpstreamAsWantedCollections() async throws {
    let stream = try SyntheticStream(frames: 600, seed: 73, start: Self.base, spacing: 1_000)
    let host = try await host(stream, stored: 0)
    // A collection with some commits, but not most of them.
    let collection = try XCTUnwrap(
      Dictionary(grouping: stream.events.filter { $0.kind == .commit }, by: \.collection)
        .filter { $0.value.count >= 5 }.min { $0.value.count < $1.value.count }?.key)
    let registry = PrometheusCollectorRegistry()
    let (edge, running) = try await edge(
      upstream: "ws://127.0.0.1:\(host.port)/subscribe", directory: newDirectory("jet-edge-f"),
      collections: [collection], registry: registry)
    XCTAssertEqual(
      edge.replica?.target(after: 41),
      "/subscribe?compress=true&cursor=41&wantedCollections=" + collection)
    let primed = try await prime(edge, from: stream, into: host)
    try stream.ingest(primed..<stream.events.count, log: host.log, ring: host.ring)
    let expected = self.expected(host, edge).filter {
      $0.kind != .commit || $0.collection == collection
    }
    XCTAssertLessThan(expected.count, v1Records(host.log).count / 2, "the filter matters")
    XCTAssertGreaterThanOrEqual(expected.filter { $0.kind == .commit }.count, 5)
    try await waitUntil("the edge has the matching events") {
      edge.log.lastEventSeq == Int64(expected.count)
    }
    XCTAssertEqual(edge.log.allRecords().map(\.payload), expected.map(\.payload))
    // The host did the filtering: the edge was sent nothing it had to leave out.
    XCTAssertEqual(registry.value(#"contrail_upstream_frames_total{outcome="filtered"}"#), 0)
    XCTAssertEqual(
      registry.value(#"contrail_upstream_frames_total{outcome="stored"}"#),
      Double(expected.count))
    await edge.shutdown()
    await running.value
    try await host.stop()
  }

  /// A host sending, between its real events, frames that are not zstd, zstd of JSON that is not
  /// an event, an event with an escaped DID, a real event with a skippable frame after it, an
  /// event from the far future, a frame over the size limit, an event again and an older one:
  /// the edge stores the real events, in order, leaves the rest out and counts each by reason;
  /// it keeps the connection and stays ready.
  func testFramesThatAreNotEventsAreLeftOutAndTheEdgeCarriesOn() async throws {
    let stream = try SyntheticStream(frames: 40, seed: 74, start: Self.base, spacing: 1_000)
    let good = stream.records.filter { $0.kind != .sync }
    let compressor = try EventCompressor(dictionary: stream.dictionary)
    let firstJSON = String(decoding: stream.events[0].json, as: UTF8.self)
    let notAnEvent = try compressor.compress(Array(#"{"did":"x","kind":"commit"}"#.utf8))
    let escapedDID = try compressor.compress(
      Array(firstJSON.replacingOccurrences(of: "did:", with: #"did\u003a"#).utf8))
    let future = try compressor.compress(
      Array(
        firstJSON.replacingOccurrences(
          of: "\"time_us\":\(stream.events[0].timeUS)", with: "\"time_us\":9000000000000000"
        ).utf8))
    XCTAssertNotEqual(
      Array(firstJSON.utf8),
      try EventDecompressor(dictionary: stream.dictionary)
        .decompress(future))
    let skippable: [UInt8] = [0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]
    let oversize = [UInt8](repeating: 7, count: EventStore.maxForwardedFrameBytes + 1)
    var frames: [[UInt8]] = []
    var counts: [String: Int] = [:]
    for (index, record) in good.enumerated() {
      let (frame, outcome): ([UInt8], String)
      switch index % 8 {
      case 0: (frame, outcome) = ([0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x01, 0x02], "unreadable")
      case 1: (frame, outcome) = (notAnEvent, "not_event")
      case 2: (frame, outcome) = (escapedDID, "not_event")
      case 3: (frame, outcome) = (record.payload + skippable, "unreadable")
      case 4: (frame, outcome) = (future, "bad_time")
      case 5:
        (frame, outcome) = (
          index < 8 ? oversize : good[0].payload, index < 8 ? "oversize" : "repeated"
        )
      case 6: (frame, outcome) = (good[max(0, index - 1)].payload, "repeated")  // again
      default: (frame, outcome) = (good[0].payload, "repeated")  // an older one
      }
      if index > 0 || outcome != "repeated" {
        frames.append(frame)
        counts[outcome, default: 0] += 1
      }
      frames.append(record.payload)
    }
    let relay = FixtureRelay(
      source: FramesSource(frames: frames), configuration: Self.jetstreamPath())
    let (port, relayTask) = try await relay.start()
    let dictionaryFile = newDirectory("jet-dict") + ".zdict"
    try Data(stream.dictionary.bytes).write(to: URL(fileURLWithPath: dictionaryFile))
    defer { try? FileManager.default.removeItem(atPath: dictionaryFile) }
    let registry = PrometheusCollectorRegistry()
    let (edge, running) = try await edge(
      upstream: "ws://127.0.0.1:\(port)/subscribe", directory: newDirectory("jet-edge-bad"),
      dictionary: dictionaryFile, registry: registry)
    try await waitUntil("the edge stored every real event") {
      edge.log.lastEventSeq == Int64(good.count)
    }
    XCTAssertEqual(edge.log.allRecords().map(\.payload), good.map(\.payload))
    XCTAssertEqual(relay.connectionsAccepted, 1, "one connection throughout")
    XCTAssertNil(edge.replica?.problem)
    XCTAssertEqual(try RawHTTP.get(port: edge.port, target: "/readyz").status, 200)
    XCTAssertEqual(counts["oversize"], 1)
    for outcome in ["unreadable", "not_event", "bad_time", "oversize", "repeated"] {
      XCTAssertEqual(
        registry.value(#"contrail_upstream_frames_total{outcome="\#(outcome)"}"#),
        Double(counts[outcome] ?? 0), outcome)
    }
    XCTAssertEqual(
      registry.value(#"contrail_upstream_frames_total{outcome="stored"}"#), Double(good.count))
    await edge.shutdown()
    await running.value
    relayTask.cancel()
  }

  /// A host whose frames need another dictionary: nothing is stored and `/readyz` says why, so a
  /// balancer sends no one to an edge that cannot serve.
  func testAHostWhoseFramesThisDictionaryCannotReadMakesTheEdgeNotReady() async throws {
    let stream = try SyntheticStream(frames: 60, seed: 75, start: Self.base, spacing: 1_000)
    let foreign = try ZstdDictionary(path: SharedData.defaultDictionaryPath)
    let other = try DictionaryTrainer(size: 4 << 10, id: 4_242, optimize: false).train(
      stream.events.map(\.json))
    XCTAssertNotEqual(other.id, foreign.id)
    let compressor = try EventCompressor(dictionary: other)
    let frames = try stream.events.filter { $0.kind != .sync }.map {
      try compressor.compress($0.json)
    }
    let relay = FixtureRelay(
      source: FramesSource(frames: frames), configuration: Self.jetstreamPath())
    let (port, relayTask) = try await relay.start()
    let dictionaryFile = newDirectory("jet-dict-2") + ".zdict"
    try Data(foreign.bytes).write(to: URL(fileURLWithPath: dictionaryFile))
    defer { try? FileManager.default.removeItem(atPath: dictionaryFile) }
    let (edge, running) = try await edge(
      upstream: "ws://127.0.0.1:\(port)/subscribe", directory: newDirectory("jet-edge-dict"),
      dictionary: dictionaryFile)
    try await waitUntil("the edge reports it") {
      let response = try? RawHTTP.get(port: edge.port, target: "/readyz")
      return response?.status == 503 && response?.body.contains("--dictionary") == true
    }
    XCTAssertEqual(edge.log.lastEventSeq, 0)
    await edge.shutdown()
    await running.value
    relayTask.cancel()
  }

  /// A host with no `/dictionary` and no `--dictionary` given: the edge does not start, and says
  /// what to pass — also when its data directory holds a primary's saved dictionary (an edge of
  /// a primary before): a Jetstream host's frames need the host's dictionary.
  func testAHostWithoutADictionaryNeedsDictionary() async throws {
    let relay = FixtureRelay(source: FramesSource(frames: []), configuration: Self.jetstreamPath())
    let (port, relayTask) = try await relay.start()
    defer { relayTask.cancel() }
    let withCopy = newDirectory("jet-edge-nodict-copy")
    try FileManager.default.createDirectory(atPath: withCopy, withIntermediateDirectories: true)
    let saved = try XCTUnwrap(
      FileManager.default.contents(
        atPath: SharedData.projectRoot + "/Dictionaries/contrail-default.zdict"))
    XCTAssertTrue(
      FileManager.default.createFile(atPath: withCopy + "/upstream.zdict", contents: saved))
    for directory in [newDirectory("jet-edge-nodict"), withCopy] {
      do {
        _ = try await edge(upstream: "ws://127.0.0.1:\(port)/subscribe", directory: directory)
        XCTFail("the edge started without a dictionary (\(directory))")
      } catch {
        XCTAssertTrue("\(error)".contains("pass --dictionary"), "\(error)")
      }
    }
  }

  /// `storeForwarded` counts what it leaves out by reason, numbers what it keeps from the log's
  /// next event seq, and applies the filter.
  func testStoreForwardedCountsWhatItLeavesOut() throws {
    let stream = try SyntheticStream(frames: 60, seed: 76, start: Self.base, spacing: 1_000)
    let events = stream.records.filter { $0.kind != .sync }
    let log = try TemporaryLog.open("forward-store", directories: &directories)
    let store = try EventStore(log: log, ring: LiveRing(), dictionary: stream.dictionary)
    let first = store.storeForwarded(
      events.prefix(10).map(\.payload), filter: nil, notAfter: .max)
    XCTAssertEqual(first.outcome.stored, 10)
    XCTAssertEqual(log.lastEventSeq, 10)
    let notEvent = try EventCompressor(dictionary: stream.dictionary).compress(Array("{}".utf8))
    let collection = try XCTUnwrap(events.first { $0.kind == .commit }?.collection)
    let filter = try EventFilter(ingestCollections: [collection], dids: [])
    let batch = [[1, 2, 3], notEvent] + events[5..<events.count].map(\.payload)
    let second = store.storeForwarded(batch, filter: filter, notAfter: .max)
    let passing = events[10...].filter { $0.kind != .commit || $0.collection == collection }
    XCTAssertEqual(second.unreadable, 1)
    XCTAssertEqual(second.notEvents, 1)
    XCTAssertEqual(
      second.repeated,
      5
        - events[5..<10].filter {
          !filter.matches(kind: $0.kind, did: $0.did, collection: $0.collection)
        }.count)
    XCTAssertEqual(second.filtered, events[5...].count - passing.count - second.repeated)
    XCTAssertEqual(second.outcome.stored, passing.count)
    XCTAssertNotNil(second.firstProblem)
    XCTAssertNotEqual(second.firstProblem, second.lastProblem)
    XCTAssertEqual(second.leftOut, 2)
    let stored = log.allRecords()
    XCTAssertEqual(stored.map(\.payload), events.prefix(10).map(\.payload) + passing.map(\.payload))
    XCTAssertEqual(stored.map(\.eventSeq), Array(1...Int64(stored.count)))
    // Events after `notAfter` are left out, not stored to hold back every later one.
    let more = try SyntheticStream(
      frames: 20, seed: 77, start: Self.base + 1_000_000_000, spacing: 1_000)
    let later = more.records.filter { $0.kind != .sync }.map(\.payload)
    let third = store.storeForwarded(
      later, filter: nil, notAfter: more.events[9].timeUS)
    XCTAssertEqual(third.badTime, more.events[10...].filter { $0.kind != .sync }.count)
    XCTAssertEqual(third.outcome.stored, later.count - third.badTime)
    XCTAssertEqual(third.leftOut, third.badTime)
    // A text message (a host that ignored compress=true) stands as an empty frame.
    let text = store.storeForwarded([[]], filter: nil, notAfter: .max)
    XCTAssertEqual(text.unreadable, 1)
    XCTAssertEqual(text.lastProblem, "a text message, not a zstd frame")
  }

  /// A batch bigger than `forwardedBatchBytes` is stored in parts, each appended and published
  /// as it fills: every event once, seqs consecutive across the parts, the ring as the log.
  func testStoreForwardedStoresABigBatchInParts() throws {
    let stream = try SyntheticStream(frames: 200, seed: 78, start: Self.base, spacing: 1_000)
    let events = stream.records.filter { $0.kind != .sync }
    let log = try TemporaryLog.open("forward-parts", directories: &directories)
    let ring = LiveRing(capacity: 10_000, startAfter: 0)
    let store = try EventStore(log: log, ring: ring, dictionary: stream.dictionary)
    store.forwardedBatchBytes = 4_096
    let result = store.storeForwarded(events.map(\.payload), filter: nil, notAfter: .max)
    XCTAssertEqual(result.outcome.stored, events.count)
    XCTAssertNil(result.outcome.error)
    XCTAssertGreaterThan(result.parts, 10, "stored in parts")
    let stored = log.allRecords()
    XCTAssertEqual(stored.map(\.payload), events.map(\.payload))
    XCTAssertEqual(stored.map(\.eventSeq), Array(1...Int64(events.count)))
    XCTAssertEqual(stored.map(\.timeUS), events.map(\.timeUS))
    XCTAssertEqual(ring.newestTimeUS, events.last?.timeUS)
  }

  /// `/readyz` judges a Jetstream host over windows of frames: mostly unusable frames make the
  /// edge not ready, mostly usable ones ready again, anything between leaves it as it was.
  func testUpstreamHealthNeedsMostFramesBadToFailAndMostGoodToRecover() {
    var health = UpstreamHealth()
    XCTAssertFalse(health.add(frames: 10, leftOut: 10), "no window yet")
    XCTAssertTrue(health.add(frames: 6, leftOut: 2))
    XCTAssertTrue(health.failing, "12 of 16 left out")
    XCTAssertTrue(health.add(frames: 16, leftOut: 8))
    XCTAssertTrue(health.failing, "half left out: unchanged")
    XCTAssertTrue(health.add(frames: 16, leftOut: 4))
    XCTAssertFalse(health.failing, "a quarter left out: usable again")
    XCTAssertTrue(health.add(frames: 100, leftOut: 74))
    XCTAssertFalse(health.failing, "under three quarters: unchanged")
    XCTAssertTrue(health.add(frames: 1_000, leftOut: 1_000, problem: "bad"))
    XCTAssertTrue(health.failing)
    XCTAssertFalse(health.add(frames: 3, leftOut: 0))
    XCTAssertEqual(health.lastProblem, "bad", "kept until another frame is left out")
  }

  /// The request puts the edge's own parameters first, then what the URL carries, and asks for
  /// `/subscribe/` as `/subscribe`.
  func testTheRequestPutsTheEdgesParametersFirst() throws {
    let stream = try SyntheticStream(frames: 5, seed: 79, start: Self.base, spacing: 1_000)
    let log = try TemporaryLog.open("forward-target", directories: &directories)
    var configuration = ReplicaFollower.Configuration(
      upstream: try RelayEndpoint("wss://x.example/jetstream/subscribe/?wantedDids=did:plc:a"))
    configuration.collections = ["app.bsky.feed.post"]
    let follower = try ReplicaFollower(
      configuration: configuration,
      store: try EventStore(log: log, ring: LiveRing(), dictionary: stream.dictionary),
      logger: Logger(label: "test"))
    XCTAssertEqual(
      follower.target(after: 7),
      "/jetstream/subscribe?compress=true&cursor=7&wantedCollections=app.bsky.feed.post"
        + "&wantedDids=did:plc:a")
    XCTAssertEqual(
      follower.target(after: 0),
      "/jetstream/subscribe?compress=true&wantedCollections=app.bsky.feed.post"
        + "&wantedDids=did:plc:a")
  }

  private static func jetstreamPath() -> FixtureRelay.Configuration {
    var configuration = FixtureRelay.Configuration()
    configuration.path = "/subscribe"
    return configuration
  }

  private func messages(port: Int, target: String, count: Int) async throws
    -> [TestWebSocketClient.Message]
  {
    let client = try await TestWebSocketClient.connect(port: port, target: target)
    var messages: [TestWebSocketClient.Message] = []
    while messages.count < count {
      guard let message = try? await client.next(timeout: .seconds(5)) else { break }
      if message != .ping { messages.append(message) }
    }
    await client.close()
    return messages
  }
}

/// Fixed frames for a fixture server standing in for a Jetstream host: every connection gets
/// them all, in order, whatever its cursor.
private struct FramesSource: RelaySource {
  let frames: [[UInt8]]
  var oldestSeq: Int64 { 1 }
  func frame(at position: Int) -> (seq: Int64, bytes: [UInt8])? {
    position < frames.count ? (Int64(position + 1), frames[position]) : nil
  }
  func position(after cursor: Int64) -> Int { 0 }
}

/// The edge stored none of a stream's events while the test fed them one by one: a failure.
private struct StreamRanOut: Error, CustomStringConvertible {
  var description: String { "the edge stored none of the stream's events" }
}
