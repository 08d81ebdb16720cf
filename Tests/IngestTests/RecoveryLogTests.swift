import EventLog
import Foundation
import Prometheus
import Serve
import TestSupport
import XCTest

/// `serve` says what recovery found in the log it opens: a corrupt record in an old segment is
/// an error line naming the segment, with the records around it still served.
final class RecoveryLogTests: XCTestCase {
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

    var settings = try ServeSettings.forTests(relay: "ws://127.0.0.1:1", dataDirectory: directory)
    settings.offline = true
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
}
