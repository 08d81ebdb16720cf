import App
import EventLog
import Foundation
import Prometheus
import TestSupport
import XCTest

/// The data directory as `serve` opens it: one server at a time (a kernel lock), and what
/// recovery found is said in the log.
final class DataDirectoryTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  func testServeLogsACorruptRecordInAnOldSegment() async throws {
    let directory = TemporaryLog.directory("recovery-log")
    directories.append(directory)
    let anHourAgo = Int64(Date().timeIntervalSince1970 - 3600) * 1_000_000  // within retention
    let stream = try SyntheticStream(frames: 300, seed: 41, start: anHourAgo)
    let log = try EventLog(TemporaryLog.configuration(directory, segmentBytes: 16 << 10))
    try log.append(stream.records)
    try log.close()
    let segments = try FileManager.default.contentsOfDirectory(atPath: directory + "/segments")
      .filter { $0.hasSuffix(".seg") }.sorted()
    XCTAssertGreaterThan(segments.count, 2)
    let damaged = directory + "/segments/" + segments[1]
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: damaged)))
    bytes[bytes.count / 2] ^= 0x40
    try Data(bytes).write(to: URL(fileURLWithPath: damaged))

    let settings = try ServeSettings.offlineForTests(dataDirectory: directory)
    let captured = CapturedLog()
    let contrail = try await ContrailServer.start(settings, registry: nil, logger: captured.logger)
    let running = Task { await contrail.run() }
    let lines = captured.matching("event log recovery", "kind=corruptRange", segments[1])
    XCTAssertEqual(lines.count, 1, captured.all.joined(separator: "\n"))
    XCTAssertTrue(lines.first?.hasPrefix("error ") == true, "an error line: \(lines)")
    XCTAssertEqual(contrail.log.stats.events, stream.records.count - 1, "only one event is lost")
    await contrail.shutdown()
    await running.value
  }

  /// A second server on the same directory is refused with a clear reason while the first runs,
  /// and starts once the first has stopped.
  func testTwoServersCannotShareADataDirectory() async throws {
    let directory = TemporaryLog.directory("lock")
    directories.append(directory)
    let settings = try ServeSettings.offlineForTests(dataDirectory: directory)
    let first = try await ContrailServer.start(settings, registry: nil, logger: quietLogger)
    let running = Task { await first.run() }
    do {
      _ = try await ContrailServer.start(settings, registry: nil, logger: quietLogger)
      XCTFail("a second server started on the same data directory")
    } catch {
      XCTAssertEqual(
        "\(error)", "another contrail is already using the data directory \(directory)")
    }
    await first.shutdown()
    await running.value
    let second = try await ContrailServer.start(settings, registry: nil, logger: quietLogger)
    let again = Task { await second.run() }
    await second.shutdown()
    await again.value
  }

  /// A log written with one dictionary is not served with another (its zstd frames name the
  /// first): `serve` refuses to start and says what to do.
  func testALogWrittenWithAnotherDictionaryIsRefused() async throws {
    guard let jetstream = SharedData.path("dictionaries/jetstream-v1.zdict") else {
      throw XCTSkip(SharedData.skipMessage)
    }
    let directory = TemporaryLog.directory("dictionary")
    directories.append(directory)
    var settings = try ServeSettings.offlineForTests(dataDirectory: directory)
    let first = try await ContrailServer.start(settings, registry: nil, logger: quietLogger)
    let running = Task { await first.run() }
    try await waitUntil("some events stored", timeout: .seconds(20)) {
      first.log.stats.events > 0
    }
    await first.shutdown()
    await running.value
    settings.dictionaryPath = jetstream
    do {
      _ = try await ContrailServer.start(settings, registry: nil, logger: quietLogger)
      XCTFail("a log written with another dictionary was served")
    } catch {
      XCTAssertEqual(
        "\(error)",
        "the data directory \(directory) holds events compressed with dictionary 20261122, not "
          + "1612007021 (the one configured): run with --dictionary set to that dictionary's "
          + "file, or start with an empty --data-dir")
    }
  }
}
