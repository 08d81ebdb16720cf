import Broadcast
import Compression
import EventLog
import Events
import Foundation
import Ingest
import Prometheus
import RelayFixture
import Subscribe
import Synchronization
import SyntheticFirehose
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// Storage faults injected into the log's system calls (no root, no tmpfs): a failing fsync
/// after a batch was published, and a failing write in the middle of a batch. Either way the
/// ring — what live subscribers see — and the log hold every event exactly once, in relay
/// order, and ingest resumes after the fault on its own.
final class StoreFaultTests: XCTestCase {
  private var directories: [String] = []
  private var tasks: [Task<Void, Never>] = []

  override func tearDown() {
    for task in tasks { task.cancel() }
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// Which calls fail: `syncs` and `writes` count down the calls left to pass before one fails
  /// with `errno`; each fails `times` calls in a row, then everything passes again.
  final class Faults: Sendable {
    let syncCalls = Atomic<Int>(0)
    let writeCalls = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
    let failSyncAt: Int?
    let failWritesAt: Int?
    let times: Int

    init(failSyncAt: Int? = nil, failWritesAt: Int? = nil, times: Int = 1) {
      self.failSyncAt = failSyncAt
      self.failWritesAt = failWritesAt
      self.times = times
    }

    func failing(_ call: Int, _ at: Int?) -> Bool {
      guard let at, call >= at, call < at + times else { return false }
      failures.add(1, ordering: .relaxed)
      return true
    }

    var storage: EventLog.Storage {
      let system = EventLog.Storage.system
      return EventLog.Storage(
        write: { fd, bytes, count in
          let call = self.writeCalls.add(1, ordering: .relaxed).newValue
          return self.failing(call, self.failWritesAt)
            ? -Int(ENOSPC) : system.write(fd, bytes, count)
        },
        sync: { fd in
          let call = self.syncCalls.add(1, ordering: .relaxed).newValue
          return self.failing(call, self.failSyncAt) ? EIO : system.sync(fd)
        })
    }
  }

  private func run(_ faults: Faults, reconnects: Bool, frames count: Int = 800) async throws {
    let (frames, expected) = IngestEndToEndTests.frames(count, seed: 17)
    let relay = FixtureRelay(source: FileRelaySource(frames: frames, loop: false))
    let (port, relayTask) = try await relay.start()
    tasks.append(relayTask)
    let directory = TemporaryLog.directory("store-faults")
    directories.append(directory)
    var configuration = EventLog.Configuration(directory: directory)
    configuration.sync = .interval(milliseconds: 2)
    configuration.segmentMaxBytes = 64 << 10  // rolls too: segment headers and directory syncs
    configuration.storage = faults.storage
    let log = try EventLog(configuration)
    let ring = LiveRing(capacity: 100_000)
    let dictionary = try ZstdDictionary(path: SharedData.defaultDictionaryPath)
    let registry = PrometheusCollectorRegistry()
    let pipeline = IngestPipeline(
      store: try EventStore(log: log, ring: ring, dictionary: dictionary),
      metrics: PrometheusMetricsFactory(registry: registry), logger: quietLogger)
    var ingestConfiguration = Ingest.Configuration(
      relay: try RelayEndpoint("ws://127.0.0.1:\(port)"))
    ingestConfiguration.backoffBase = .milliseconds(10)
    ingestConfiguration.backoffCap = .milliseconds(50)
    let ingest = try Ingest(
      configuration: ingestConfiguration, pipeline: pipeline, logger: quietLogger)
    let running = Task { await ingest.run() }
    tasks.append(running)

    try await waitUntil("everything stored", timeout: .seconds(60)) {
      (log.lastWrittenSeq ?? 0) >= expected.last!.0
    }
    ingest.stop()
    await running.value
    XCTAssertGreaterThan(faults.failures.load(ordering: .relaxed), 0, "the fault happened")
    XCTAssertGreaterThanOrEqual(
      registry.value("contrail_log_append_errors_total"), 1, "ingest saw it")
    if reconnects {
      XCTAssertGreaterThanOrEqual(ingest.connections, 2, "and reconnected")
    } else {
      XCTAssertEqual(ingest.connections, 1, "a failed fsync is no reason to reconnect")
      XCTAssertNotNil(log.syncFailure, "it is final for the process")
    }

    // The log: every event once, in relay order.
    let stored = try IngestEndToEndTests.stored(log, dictionary)
    XCTAssertEqual(stored.count, expected.count, "no event lost or stored twice in the log")
    XCTAssertNil(
      zip(stored, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset,
      "the log matches the relay's events in order")
    // The ring: what live subscribers are sent, every event once, in order.
    var published: [BroadcastEvent] = []
    var position: Int64 = 0
    while case .events(let events, let through, let scanned) = ring.read(
      after: position, limit: 4096, filter: .all), scanned > 0
    {
      published += events
      position = through
    }
    XCTAssertEqual(published.count, expected.count, "nothing published twice or skipped")
    XCTAssertTrue(
      zip(published, published.dropFirst()).allSatisfy { $0.timeUS < $1.timeUS },
      "published in strictly increasing time_us")
    let decompressor = try EventDecompressor(dictionary: dictionary)
    let publishedJSON = try published.map {
      blankTime(
        String(
          decoding: try decompressor.decompress(Array($0.compressed.readableBytesView)),
          as: UTF8.self))
    }
    XCTAssertEqual(publishedJSON, expected.map(\.1), "the ring matches the relay's events")
    if reconnects { try log.close() } else { XCTAssertThrowsError(try log.close()) }
  }

  /// An fsync fails after its batch was appended and published: the batch is not published
  /// again, and ingest goes on (the failure is final; reconnecting cannot mend the disk).
  func testAFailingSyncNeverPublishesTwice() async throws {
    try await run(Faults(failSyncAt: 3), reconnects: false)
  }

  /// A write fails part-way through (a full disk): the records the log kept are published, the
  /// rest is fetched again after the reconnect, so nothing is lost or repeated.
  func testAFailingWriteLeavesNoGap() async throws {
    try await run(Faults(failWritesAt: 6, times: 3), reconnects: true)
  }
  /// A sync that takes 500 ms never holds up the live path: while it is in progress a new
  /// subscriber connects, the next batch is stored and published, and the subscriber receives
  /// it, all well inside those 500 ms.
  func testASlowSyncBlocksNeitherPublishNorTheEventLoops() async throws {
    let syncing = Atomic<Bool>(false)
    let slow = EventLog.Storage(
      write: EventLog.Storage.system.write,
      sync: { fd in
        syncing.store(true, ordering: .relaxed)
        defer { syncing.store(false, ordering: .relaxed) }
        Thread.sleep(forTimeInterval: 0.5)  // the fake disk is slow; the test waits on conditions
        return EventLog.Storage.system.sync(fd)
      })
    let directory = TemporaryLog.directory("slow-sync")
    directories.append(directory)
    var configuration = EventLog.Configuration(directory: directory)
    configuration.sync = .interval(milliseconds: 1)
    configuration.storage = slow
    let log = try EventLog(configuration)
    let ring = LiveRing(capacity: 10_000)
    let stream = try SyntheticStream(frames: 60, seed: 5, start: 9_000_000)
    let store = try EventStore(log: log, ring: ring, dictionary: stream.dictionary)
    let server = try await TestServer.start(ring: ring, log: log, dictionary: stream.dictionary)

    XCTAssertNil(store.store(Array(stream.events[0..<20])).error)
    try await waitUntil("a sync is in progress", timeout: .seconds(10)) {
      try? log.syncIfDue()
      return syncing.load(ordering: .relaxed)
    }
    let started = ContinuousClock.now
    let client = try await TestWebSocketClient.connect(port: server.port, target: "/subscribe")
    try await waitUntil("subscribed", timeout: .seconds(1)) { server.subscriberCount == 1 }
    let outcome = store.store(Array(stream.events[20..<40]))
    XCTAssertNil(outcome.error)
    let first = try await client.next(timeout: .seconds(1))
    let elapsed = ContinuousClock.now - started
    XCTAssertEqual(first, .text(String(decoding: stream.events[20].json, as: UTF8.self)))
    XCTAssertTrue(syncing.load(ordering: .relaxed), "the sync was still in progress")
    XCTAssertLessThan(elapsed, .milliseconds(300), "connect + store + deliver took \(elapsed)")
    await client.close()
    try await server.stop()
    try log.close()
  }
}
