import App
import Compression
import EventLog
import Foundation
import Ingest
import Prometheus
import RelayFixture
import SyntheticFirehose
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// A full disk (a small tmpfs): appends fail with a log line and a metric, the server and its
/// subscribers carry on, and once there is room again ingest resumes with no gap and no
/// duplicate. Needs root to mount the tmpfs; skipped otherwise.
final class FullDiskTests: XCTestCase {
  private var mountPoint = ""
  private var relayTask: Task<Void, Never>?

  override func tearDown() {
    relayTask?.cancel()
    if !mountPoint.isEmpty {
      _ = Self.shell("/bin/umount", ["-l", mountPoint])  // lazily: a closing fd may linger
      try? FileManager.default.removeItem(atPath: mountPoint)
    }
  }

  private static func shell(_ command: String, _ arguments: [String]) -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: command)
    process.arguments = arguments
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return -1 }
    process.waitUntilExit()
    return process.terminationStatus
  }

  func testAppendsFailWhenFullAndResumeWithoutGapOnceThereIsRoom() async throws {
    let directory = TemporaryLog.directory("full-disk")
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    guard getuid() == 0,
      Self.shell("/bin/mount", ["-t", "tmpfs", "-o", "size=512k", "tmpfs", directory]) == 0
    else {
      try? FileManager.default.removeItem(atPath: directory)
      throw XCTSkip("needs root and mount(8) to put the data directory on a 512 KiB tmpfs")
    }
    mountPoint = directory
    let (frames, expected) = IngestEndToEndTests.frames(4_000, seed: 23)  // ~900 KB stored
    let relay = FixtureRelay(source: FileRelaySource(frames: frames, loop: false))
    let (relayPort, task) = try await relay.start()
    relayTask = task
    let settings = try ServeSettings.forTests(
      relay: "ws://127.0.0.1:\(relayPort)", dataDirectory: directory + "/data")
    let registry = PrometheusCollectorRegistry()
    let contrail = try await ContrailServer.start(settings, registry: registry, logger: quietLogger)
    let running = Task { await contrail.run() }
    let subscriber = try await TestWebSocketClient.connect(
      port: contrail.port, target: "/subscribe?cursor=0&wantedDids=did:plc:zzzzzzzzzzzzzzzzzzzzzzzz"
    )

    try await waitUntil("the full disk is noticed", timeout: .seconds(30)) {
      registry.value("contrail_log_append_errors_total") >= 1
    }
    let health = try RawHTTP.get(port: contrail.port, target: "/healthz")
    XCTAssertEqual(health.status, 200, "the server carries on")
    let ready = try RawHTTP.get(port: contrail.port, target: "/readyz")
    XCTAssertEqual(ready.status, 503)
    XCTAssertTrue(
      ready.body.hasPrefix("the event log cannot write: "), "readyz names the disk: \(ready.body)")
    XCTAssertTrue(ready.body.contains("No space left on device"), ready.body)
    let log = contrail.log
    XCTAssertLessThan(log.lastWrittenSeq ?? 0, expected.last!.0, "ingest is stuck on the disk")

    // Room again: ingest resumes after the last stored seq.
    XCTAssertEqual(Self.shell("/bin/mount", ["-o", "remount,size=16m", directory]), 0)
    try await waitUntil("everything stored") { (log.lastWrittenSeq ?? 0) >= expected.last!.0 }
    XCTAssertEqual(try RawHTTP.get(port: contrail.port, target: "/readyz").status, 200)
    let stored = try IngestEndToEndTests.stored(
      log, try ZstdDictionary(path: SharedData.defaultDictionaryPath))
    XCTAssertEqual(stored.count, expected.count, "no event lost or stored twice")
    let mismatch = zip(stored, expected).enumerated().first {
      $0.element.0.0 != $0.element.1.0 || $0.element.0.1 != $0.element.1.1
    }?.offset
    XCTAssertNil(mismatch, "first difference at \(String(describing: mismatch))")
    XCTAssertEqual(log.stats.corruptions, 0)
    await contrail.shutdown()
    await running.value
    let close = try await subscriber.next()
    XCTAssertEqual(close, .close(code: 1001, reason: "server shutting down"), "it stayed open")
  }
}
