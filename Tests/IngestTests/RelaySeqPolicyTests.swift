import App
import Broadcast
import Compression
import EventLog
import Events
import Foundation
import Prometheus
import RelayFixture
import SyntheticFirehose
import TestSupport
import XCTest

@testable import Ingest

/// How ingest follows the relay's seqs: a `--relay-cursor` that survives failed connections,
/// backoff that grows when connections achieve nothing, new epochs when the seq goes backwards,
/// and one absurd jump that cannot stall ingest.
final class RelaySeqPolicyTests: XCTestCase {
  private var directories: [String] = []
  private var tasks: [Task<Void, Never>] = []
  private let captured = CapturedLog()

  override func tearDown() {
    for task in tasks { task.cancel() }
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  private func frames(_ count: Int, firstSeq: Int64, seed: UInt64) -> [[UInt8]] {
    var generator = FirehoseGenerator(seed: seed, firstSeq: firstSeq)
    return (0..<count).map { _ in generator.next() }
  }

  /// What the translator makes of `frames`: (relay seq, JSON with time_us blanked).
  private func expected(_ frames: [[UInt8]]) -> [(Int64, String)] {
    let translator = Translator()
    var events: [Event] = []
    for frame in frames { translator.translate(frame, into: &events) }
    return events.map { ($0.seq, blankTime(String(decoding: $0.json, as: UTF8.self))) }
  }

  private func relay(_ frames: [[UInt8]], port: Int = 0, errorAfter: Int? = nil) async throws
    -> (FixtureRelay, Int, Task<Void, Never>)
  {
    var configuration = FixtureRelay.Configuration()
    configuration.port = port
    configuration.errorAfter = errorAfter
    let relay = FixtureRelay(
      source: FileRelaySource(frames: frames, loop: false), configuration: configuration)
    let (bound, task) = try await relay.start()
    tasks.append(task)
    return (relay, bound, task)
  }

  /// A port where nothing listens now (a relay bound it and went away).
  private func freePort() async throws -> Int {
    let (_, port, task) = try await relay([])
    task.cancel()
    await task.value
    return port
  }

  private func serve(relayPort: Int, _ adjust: (inout ServeSettings) -> Void = { _ in })
    async throws -> (ContrailServer, PrometheusCollectorRegistry)
  {
    let directory = TemporaryLog.directory("seq-policy")
    directories.append(directory)
    var settings = try ServeSettings.forTests(
      relay: "ws://127.0.0.1:\(relayPort)", dataDirectory: directory)
    adjust(&settings)
    let registry = PrometheusCollectorRegistry()
    let contrail = try await ContrailServer.start(
      settings, registry: registry, logger: captured.logger)
    tasks.append(Task { await contrail.run() })
    return (contrail, registry)
  }

  private func stored(_ contrail: ContrailServer) throws -> [(Int64, String)] {
    try IngestEndToEndTests.stored(
      contrail.log, try ZstdDictionary(path: SharedData.defaultDictionaryPath))
  }

  private func assertSame(
    _ stored: [(Int64, String)], _ expected: [(Int64, String)], file: StaticString = #filePath,
    line: UInt = #line
  ) {
    XCTAssertEqual(stored.count, expected.count, file: file, line: line)
    XCTAssertTrue(
      zip(stored, expected).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 },
      "stored events equal the expected ones, in order", file: file, line: line)
  }

  /// `--relay-cursor N` while the relay refuses the first connections: once it is up, ingest
  /// starts right after N (no silent gap, no jump to the live tip).
  func testRelayCursorSurvivesFailedConnections() async throws {
    let port = try await freePort()
    let (contrail, registry) = try await serve(relayPort: port) { $0.relayStart = .seq(1_100) }
    let ingest = contrail.ingest
    try await waitUntil("two failed attempts", timeout: .seconds(10)) {
      registry.value("contrail_relay_reconnects_total") >= 2
    }
    XCTAssertEqual(ingest.connections, 0)
    let frames = frames(300, firstSeq: 1_001, seed: 5)
    _ = try await relay(frames, port: port)
    let wanted = expected(Array(frames[100...]))
    let log = contrail.log
    try await waitUntil("stored through the end", timeout: .seconds(20)) {
      (log.lastWrittenSeq ?? 0) >= wanted.last!.0
    }
    assertSame(try stored(contrail), wanted)
    await contrail.shutdown()
  }

  /// A relay that ends every connection with an error frame at once: the delay between
  /// attempts grows instead of hammering it.
  func testBackoffGrowsWhenConnectionsStoreNothing() async throws {
    let (relay, port, _) = try await relay(frames(10, firstSeq: 1, seed: 6), errorAfter: 0)
    let started = ContinuousClock.now
    let (contrail, _) = try await serve(relayPort: port) {
      $0.backoffBase = .milliseconds(100)
      $0.backoffCap = .seconds(5)
    }
    try await waitUntil("six connections", timeout: .seconds(30)) { relay.connectionsAccepted >= 6 }
    // Delays of at least 0.1, 0.1, 0.2, 0.4 and 0.8 s; without growth 0.5 s would do.
    XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(1_500))
    await contrail.shutdown()
  }

  func testBackoffStaysWithinItsSteps() throws {
    var configuration = Ingest.Configuration(relay: try RelayEndpoint("ws://127.0.0.1:1"))
    configuration.backoffBase = .seconds(1)
    configuration.backoffCap = .seconds(30)
    let pipeline = IngestPipeline(
      store: try EventStore(
        log: try TemporaryLog.open("backoff", directories: &directories),
        ring: LiveRing(capacity: 16),
        dictionary: ZstdDictionary(path: SharedData.defaultDictionaryPath)),
      metrics: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()),
      logger: quietLogger)
    let ingest = try Ingest(configuration: configuration, pipeline: pipeline, logger: quietLogger)
    for attempt in 0..<12 {
      let step = min(30.0, Double(1 << attempt))
      for _ in 0..<50 {
        let delay = ingest.backoff(attempt)
        let seconds =
          Double(delay.components.seconds) + Double(delay.components.attoseconds) * 1e-18
        XCTAssertGreaterThanOrEqual(seconds, max(1, step / 2) - 1e-9, "attempt \(attempt)")
        XCTAssertLessThanOrEqual(seconds, step + 1e-9, "attempt \(attempt)")
      }
    }
  }

  /// The relay's seqs restart mid-stream on one connection: a new epoch, everything stored.
  func testSeqGoingBackwardsStartsANewEpoch() async throws {
    let first = frames(200, firstSeq: 5_000, seed: 7)
    let second = frames(200, firstSeq: 1, seed: 8)
    let (_, port, _) = try await relay(first + second)
    let (contrail, registry) = try await serve(relayPort: port)
    let wanted = expected(first + second)
    let log = contrail.log
    try await waitUntil("the second epoch stored", timeout: .seconds(20)) {
      log.lastWrittenSeq == wanted.last!.0
    }
    assertSame(try stored(contrail), wanted)
    XCTAssertEqual(registry.value("contrail_relay_seq_epochs_total"), 1)
    let loud = captured.matching(
      "error the relay's seq went backwards: storing from here on as a new relay epoch",
      "last_seq=\(first.count + 4_999)", "seq=1")
    XCTAssertEqual(loud.count, 1, "an error line: \(captured.all.joined(separator: "\n"))")
    await contrail.shutdown()
  }

  /// Serves `first` until stored, then replaces the relay on the same port with one serving
  /// `second` (whose seqs are all below ours: it answers `FutureCursor`); checks that both are
  /// stored in full, the second as one new epoch.
  private func switchRelays(_ first: [[UInt8]], then second: [[UInt8]]) async throws {
    let (firstRelay, port, task) = try await relay(first)
    let (contrail, registry) = try await serve(relayPort: port)
    let log = contrail.log
    let firstExpected = expected(first)
    try await waitUntil("the first relay stored", timeout: .seconds(20)) {
      log.lastWrittenSeq == firstExpected.last!.0
    }
    task.cancel()
    firstRelay.dropConnections()
    await task.value
    _ = try await relay(second, port: port)
    let wanted = firstExpected + expected(second)
    try await waitUntil("the second relay stored", timeout: .seconds(20)) {
      log.lastWrittenSeq == wanted.last!.0 && (try? self.stored(contrail).count) == wanted.count
    }
    assertSame(try stored(contrail), wanted)
    XCTAssertEqual(registry.value(#"contrail_relay_error_frames_total{code="FutureCursor"}"#), 1)
    XCTAssertEqual(registry.value("contrail_relay_seq_epochs_total"), 1)
    XCTAssertEqual(registry.value("contrail_relay_duplicate_frames_total"), 0)
    await contrail.shutdown()
  }

  /// The operator points serve at another relay whose seqs are far below ours: it answers
  /// `FutureCursor`, ingest follows it from its live tip as a new epoch.
  func testSwitchingToARelayWithLowerSeqs() async throws {
    try await switchRelays(
      frames(150, firstSeq: 90_000, seed: 9), then: frames(150, firstSeq: 10, seed: 10))
  }

  /// As above, but the new relay's seqs sit just below ours (within the resume-overlap window):
  /// after its `FutureCursor` they are still a new epoch, not an overlap to drop.
  func testARelayJustBelowOurSeqIsANewEpochNotAnOverlap() async throws {
    // The second relay's newest seq, 1,099, is below the 1,149 stored.
    try await switchRelays(
      frames(150, firstSeq: 1_000, seed: 12), then: frames(100, firstSeq: 1_000, seed: 13))
  }

  /// One frame claiming seq 2^62 is dropped; ingest carries on and resumes normally. So is one
  /// claiming 2^63−1, beyond what the event log can store (found in review: taken as a new
  /// epoch, it was written as a segment base the next start refused to open).
  func testOneAbsurdSeqCannotStallIngest() async throws {
    var stream = frames(200, firstSeq: 1_000, seed: 11)
    let absurd = FrameSeq.locate(stream[100])!
    stream.insert(FrameSeq.rewrite(stream[100], to: 1 << 62, at: absurd.range), at: 101)
    let first = FrameSeq.locate(stream[0])!
    stream.insert(FrameSeq.rewrite(stream[0], to: Int64.max, at: first.range), at: 0)
    let (_, port, _) = try await relay(stream)
    let (contrail, registry) = try await serve(relayPort: port)
    let wanted = expected(
      stream.enumerated().filter { $0.offset != 0 && $0.offset != 102 }.map(\.element))
    let log = contrail.log
    try await waitUntil("everything stored", timeout: .seconds(20)) {
      log.lastWrittenSeq == wanted.last!.0
    }
    assertSame(try stored(contrail), wanted)
    XCTAssertEqual(registry.value("contrail_relay_seq_jumps_total"), 2)
    XCTAssertEqual(registry.value("contrail_relay_seq_epochs_total"), 0)
    let counted = ["commit", "identity", "account"].reduce(0.0) {
      $0 + registry.value(#"contrail_events_total{kind="\#($1)"}"#)
    }
    XCTAssertEqual(
      Int(counted), wanted.count, "events_total counts stored events, not dropped ones")
    XCTAssertEqual(
      captured.matching(
        "warning dropped a relay frame whose seq jumps absurdly far ahead", "seq=\(1 << 62)"
      ).count, 1)
    XCTAssertEqual(
      captured.matching(
        "warning dropped a relay frame whose seq is beyond what the event log can store",
        "seq=\(Int64.max)"
      ).count, 1)
    await contrail.shutdown()
  }
}
