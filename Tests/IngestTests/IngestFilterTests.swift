import App
import Broadcast
import Compression
import EventLog
import Events
import Foundation
import Ingest
import Prometheus
import RelayFixture
import Synchronization
import SyntheticFirehose
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// `serve --collections / --dids`: the log holds only the commits asked for plus identity,
/// account and sync events (by DID), the filtered-out rest is counted, and resuming — after a
/// reconnect, a restart or a SIGKILL — continues after the last frame handled, stored or filtered
/// out: nothing is fetched twice, lost or stored twice.
final class IngestFilterTests: XCTestCase {
  private var directories: [String] = []
  private var tasks: [Task<Void, Never>] = []

  override func tearDown() {
    for task in tasks { task.cancel() }
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// One generated frame: its bytes, its relay seq (nil: not a seq'd frame) and its events.
  struct Frame {
    let bytes: [UInt8]
    let seq: Int64?
    let events: [Event]
  }

  static func frames(_ count: Int, seed: UInt64) -> [Frame] {
    var generator = FirehoseGenerator(seed: seed)
    let translator = Translator()
    return (0..<count).map { _ in
      let bytes = generator.next()
      var events: [Event] = []
      let seq: Int64? =
        if case .translated(_, let seq) = translator.translate(bytes, into: &events) {
          seq
        } else {
          nil
        }
      return Frame(bytes: bytes, seq: seq, events: events)
    }
  }

  /// What a filtered log holds for `frames`: (relay seq, JSON with time_us blanked), in order.
  static func expected(_ frames: some Collection<Frame>, _ filter: EventFilter) -> [(Int64, String)]
  {
    frames.flatMap(\.events).filter(filter.matches).map {
      ($0.seq, blankTime(String(decoding: $0.json, as: UTF8.self)))
    }
  }

  /// A fixture relay serving `frames` unpaced (on `port`, or a free one), and the cursors its
  /// connections asked for ("none" for the live tip).
  private func relay(_ frames: [Frame], port: Int = 0) async throws -> (
    relay: FixtureRelay, port: Int, task: Task<Void, Never>, cursors: @Sendable () -> [String]
  ) {
    let lines = Lines()
    var configuration = FixtureRelay.Configuration()
    configuration.port = port
    configuration.log = { line in lines.value.withLock { $0.append(line) } }
    let relay = FixtureRelay(
      source: FileRelaySource(frames: frames.map(\.bytes), loop: false),
      configuration: configuration)
    let (port, task) = try await relay.start()
    tasks.append(task)
    let cursors: @Sendable () -> [String] = {
      lines.value.withLock { $0 }.compactMap { line in
        line.range(of: "opened, cursor ").map { String(line[$0.upperBound...]) }
      }
    }
    return (relay, port, task, cursors)
  }

  private func stop(_ relay: FixtureRelay, _ task: Task<Void, Never>) async {
    task.cancel()
    relay.dropConnections()
    await task.value
  }

  private func serve(
    relayPort: Int, directory: String, filter: EventFilter,
    registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()
  ) async throws -> ContrailServer {
    var settings = try ServeSettings.forTests(
      relay: "ws://127.0.0.1:\(relayPort)", dataDirectory: directory)
    settings.ingestFilter = filter
    let contrail = try await ContrailServer.start(
      settings, registry: registry, logger: quietLogger)
    tasks.append(Task { await contrail.run() })
    return contrail
  }

  private func directory() -> String {
    let directory = TemporaryLog.directory("ingest-filter")
    directories.append(directory)
    return directory
  }

  private func stored(_ log: EventLog) throws -> [(Int64, String)] {
    try IngestEndToEndTests.stored(log, try ZstdDictionary(path: SharedData.defaultDictionaryPath))
  }

  private func assertSame(
    _ stored: [(Int64, String)], _ expected: [(Int64, String)], _ what: String,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(stored.count, expected.count, what, file: file, line: line)
    let mismatch = zip(stored, expected).enumerated().first {
      $0.element.0.0 != $0.element.1.0 || $0.element.0.1 != $0.element.1.1
    }?.offset
    XCTAssertNil(mismatch, "\(what): first difference", file: file, line: line)
  }

  /// `--collections app.bsky.feed.post`: only posts and every identity and account event are
  /// stored. The first run ends with frames whose events were all filtered out; after a restart
  /// ingest asks the relay for what follows the last of those (not the last stored event), and
  /// the log ends up holding exactly the filtered stream, nothing twice.
  func testCollectionsStoreOnlyThoseCommitsAndARestartResumesAfterFilteredFrames() async throws {
    let filter = try EventFilter(ingestCollections: ["app.bsky.feed.post"], dids: [])
    let all = Self.frames(2_000, seed: 21)
    // Cut the first run after three frames in a row that hold no post.
    let isPost = { (event: Event) in event.collection == "app.bsky.feed.post" }
    let cut = try XCTUnwrap(
      (800..<all.count).first { end in
        all[(end - 3)..<end].allSatisfy {
          $0.seq != nil && !$0.events.isEmpty && !$0.events.contains(where: isPost)
        }
      })
    let firstRun = Array(all[..<cut])
    let lastHandled = try XCTUnwrap(firstRun.last?.seq)
    let everything = all.flatMap(\.events)
    XCTAssertTrue(everything.contains { $0.kind == .identity }, "the stream has identity events")
    XCTAssertTrue(everything.contains { $0.kind == .account }, "the stream has account events")
    XCTAssertTrue(everything.contains { $0.kind == .commit && !isPost($0) }, "and other commits")

    let directory = directory()
    // The first relay stops at the last post, so that the frames after it come on the next
    // connection, in reads that store nothing.
    let lastPost = try XCTUnwrap(firstRun.lastIndex { $0.events.contains(where: isPost) })
    XCTAssertLessThan(lastPost, cut - 3)
    let (postsRelay, port, postsTask, _) = try await relay(Array(firstRun[...lastPost]))
    let registry = PrometheusCollectorRegistry()
    let contrail = try await serve(
      relayPort: port, directory: directory, filter: filter, registry: registry)
    let lastPostSeq = try XCTUnwrap(firstRun[lastPost].seq)
    try await waitUntil("stored through the last post") {
      registry.value("contrail_relay_seq") == Double(lastPostSeq)
    }
    await stop(postsRelay, postsTask)
    let (relay, _, task, cursors) = try await self.relay(firstRun, port: port)
    try await waitUntil("the first run handled") {
      registry.value("contrail_relay_seq") == Double(lastHandled)
    }
    XCTAssertEqual(cursors(), ["\(lastPostSeq)"])
    let log = contrail.log
    let firstExpected = Self.expected(firstRun, filter)
    assertSame(try stored(log), firstExpected, "the first run")
    XCTAssertEqual(log.lastWrittenSeq, lastPostSeq, "the last frames stored nothing")
    let filteredOut = firstRun.flatMap(\.events).count - firstExpected.count
    XCTAssertGreaterThan(filteredOut, firstExpected.count, "most events are filtered out")
    XCTAssertEqual(registry.value("contrail_ingest_filtered_total"), Double(filteredOut))
    XCTAssertEqual(
      registry.value(#"contrail_events_total{kind="commit"}"#),
      Double(firstRun.flatMap(\.events).filter { $0.kind == .commit && isPost($0) }.count))
    // A reconnect resumes after the last frame handled.
    relay.dropConnections()
    try await waitUntil("reconnected") { cursors().count == 2 }
    XCTAssertEqual(cursors(), ["\(lastPostSeq)", "\(lastHandled)"])
    await contrail.shutdown()
    await stop(relay, task)
    XCTAssertTrue(
      FileManager.default.fileExists(atPath: directory + "/" + ContrailServer.relayCursorFile))

    // The second run: a relay with the whole stream, the same data directory.
    let (_, port2, _, restartCursors) = try await self.relay(all)
    let registry2 = PrometheusCollectorRegistry()
    let again = try await serve(
      relayPort: port2, directory: directory, filter: filter, registry: registry2)
    let last = try XCTUnwrap(all.last { $0.seq != nil }?.seq)
    try await waitUntil("the second run handled") {
      registry2.value("contrail_relay_seq") == Double(last)
    }
    XCTAssertEqual(restartCursors(), ["\(lastHandled)"], "resumed after the last frame handled")
    XCTAssertEqual(registry2.value("contrail_relay_duplicate_frames_total"), 0, "nothing refetched")
    assertSame(try stored(again.log), Self.expected(all, filter), "both runs")
    await again.shutdown()
  }

  /// `--dids`: every kind of those DIDs' events is stored, and nothing of anyone else's.
  func testDIDsStoreEveryKindOfThoseDIDsOnly() async throws {
    let all = Self.frames(1_500, seed: 22)
    // The two busiest DIDs with an identity or account event among their events.
    var byDID: [String: [Event]] = [:]
    for event in all.flatMap(\.events) { byDID[event.did, default: []].append(event) }
    let chosen = byDID.filter { $0.value.contains { $0.kind != .commit } }
      .sorted { $0.value.count > $1.value.count }.prefix(2).map(\.key)
    XCTAssertEqual(chosen.count, 2)
    let filter = try EventFilter(ingestCollections: [], dids: chosen)
    let (_, port, _, _) = try await relay(all)
    let registry = PrometheusCollectorRegistry()
    let contrail = try await serve(
      relayPort: port, directory: directory(), filter: filter, registry: registry)
    let last = try XCTUnwrap(all.last { $0.seq != nil }?.seq)
    try await waitUntil("everything handled") {
      registry.value("contrail_relay_seq") == Double(last)
    }
    let wanted = Self.expected(all, filter)
    XCTAssertEqual(wanted.count, chosen.map { byDID[$0]!.count }.reduce(0, +))
    assertSame(try stored(contrail.log), wanted, "the chosen DIDs' events")
    XCTAssertGreaterThan(registry.value(#"contrail_events_total{kind="commit"}"#), 0)
    XCTAssertGreaterThan(
      registry.value(#"contrail_events_total{kind="identity"}"#)
        + registry.value(#"contrail_events_total{kind="account"}"#), 0)
    await contrail.shutdown()
  }

  /// A filter that has matched nothing yet leaves the log empty; a restart must still resume
  /// after the frames it filtered, not at the relay's live tip (which would skip whatever was
  /// published while it was down).
  func testAnEmptyLogResumesAfterTheFilteredFramesNotAtTheLiveTip() async throws {
    let all = Self.frames(300, seed: 23)
    let filter = try EventFilter(ingestCollections: [], dids: ["did:plc:nobodyatall"])
    let directory = directory()
    let (relay, port, task, _) = try await relay(all)
    let registry = PrometheusCollectorRegistry()
    let contrail = try await serve(
      relayPort: port, directory: directory, filter: filter, registry: registry)
    let last = try XCTUnwrap(all.last { $0.seq != nil }?.seq)
    try await waitUntil("everything handled") {
      registry.value("contrail_relay_seq") == Double(last)
    }
    XCTAssertNil(contrail.log.lastWrittenSeq, "nothing stored")
    XCTAssertEqual(
      registry.value("contrail_ingest_filtered_total"), Double(all.flatMap(\.events).count))
    await contrail.shutdown()
    await stop(relay, task)

    let (_, port2, _, cursors) = try await self.relay(all)
    let again = try await serve(relayPort: port2, directory: directory, filter: filter)
    try await waitUntil("connected again") { again.ingest.connections == 1 }
    XCTAssertEqual(cursors(), ["\(last)"])
    await again.shutdown()
  }

  /// The cursor file counts only while the log's last record is the one it was written after,
  /// and only when it is whole; otherwise the log decides.
  func testTheCursorFileIsTrustedOnlyWhenItMatchesTheLog() throws {
    let log = try TemporaryLog.open("cursor-file", directories: &directories)
    let path = directories.last! + "/relay-cursor"
    let store = try EventStore(
      log: log, ring: LiveRing(capacity: 16),
      dictionary: ZstdDictionary(path: SharedData.defaultDictionaryPath))
    func initialSeq(_ contents: String?) throws -> Int64? {
      if let contents {
        try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
      } else {
        try? FileManager.default.removeItem(atPath: path)
      }
      return IngestPipeline(
        store: store, metrics: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()),
        logger: quietLogger, filter: try EventFilter(ingestCollections: ["a.b.c"], dids: []),
        cursorFile: path
      ).initialSeq
    }
    XCTAssertNil(try initialSeq(nil), "an empty log and no file: the live tip")
    XCTAssertEqual(try initialSeq("contrail-relay-cursor 1\n0\n500\n"), 500)
    XCTAssertNil(try initialSeq("contrail-relay-cursor 1\n17\n500\n"), "after another record")
    XCTAssertNil(try initialSeq("contrail-relay-cursor 1\n0\n50"), "cut short")
    XCTAssertNil(try initialSeq("contrail-relay-cursor 1\n0\n"), "cut short")
    XCTAssertNil(try initialSeq("contrail-relay-cursor 2\n0\n500\n"), "another version")
    XCTAssertNil(try initialSeq("\0\0\0\0"), "garbage")

    let event = Event(
      timeUS: 1_000, seq: 40, kind: .identity, did: "did:plc:x", collection: "",
      json: Array(#"{"did":"did:plc:x"}"#.utf8))
    XCTAssertNil(store.store([event]).error)
    XCTAssertEqual(try initialSeq(nil), 40, "the log decides")
    XCTAssertEqual(try initialSeq("contrail-relay-cursor 1\n1000\n500\n"), 500)
    XCTAssertEqual(try initialSeq("contrail-relay-cursor 1\n0\n500\n"), 40, "written before it")
    XCTAssertEqual(try initialSeq("contrail-relay-cursor 1\n999\n500\n"), 40)
  }

  /// `serve --collections` as a process killed with SIGKILL mid-stream and restarted: the log
  /// ends up holding exactly the filtered stream, no gap and no duplicate.
  func testSIGKILLThenRestartWithAFilterLosesAndRepeatsNothing() async throws {
    let all = Self.frames(3_000, seed: 24)
    let filter = try EventFilter(ingestCollections: ["app.bsky.feed.*"], dids: [])
    let wanted = Self.expected(all, filter)
    let directory = directory()
    var configuration = FixtureRelay.Configuration()
    configuration.rate = 1_500
    let relay = FixtureRelay(
      source: FileRelaySource(frames: all.map(\.bytes), loop: false), configuration: configuration)
    let (relayPort, task) = try await relay.start()
    tasks.append(task)
    func serve() throws -> Process {
      let process = Process()
      process.executableURL = try ContrailCommand.binary()
      process.arguments = [
        "serve", "--relay", "ws://127.0.0.1:\(relayPort)", "--data-dir", directory, "--host",
        "127.0.0.1", "--port", "0", "--fsync-interval", "20ms", "--log-level", "warning",
        "--dictionary", SharedData.defaultDictionaryPath,
      ]
      process.environment = ProcessInfo.processInfo.environment.merging([
        "CONTRAIL_COLLECTIONS": "app.bsky.feed.*"
      ]) { $1 }
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle.nullDevice
      try process.run()
      return process
    }
    func storedSeq() -> Int64 {
      var configuration = EventLog.Configuration(directory: directory)
      configuration.sync = .never
      return (try? EventLog(configuration, readOnly: true))?.lastWrittenSeq ?? 0
    }
    let first = try serve()
    try await waitUntil("some events stored") { storedSeq() >= 1_000 }
    kill(first.processIdentifier, SIGKILL)
    first.waitUntilExit()
    XCTAssertLessThan(storedSeq(), wanted.last!.0, "killed mid-stream")
    let second = try serve()
    try await waitUntil("everything stored after the restart") { storedSeq() >= wanted.last!.0 }
    kill(second.processIdentifier, SIGTERM)
    second.waitUntilExit()
    XCTAssertEqual(second.terminationStatus, 0)
    var logConfiguration = EventLog.Configuration(directory: directory)
    logConfiguration.sync = .never
    assertSame(
      try stored(try EventLog(logConfiguration, readOnly: true)), wanted, "across the kill")
  }
}

/// Lines a closure collects from another thread.
private final class Lines: Sendable {
  let value = Mutex<[String]>([])
}
