import EventLog
import Foundation
import TestSupport
import XCTest

/// `contrail inspect` on real log directories.
final class InspectCommandTests: XCTestCase {
  func testReportsAndVerifies() throws {
    let records = try LogFixtures.records(frames: 300)
    let directory = LogFixtures.directory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let log = try EventLog(LogFixtures.configuration(directory, segmentBytes: 16 << 10))
    try log.append(records)
    try log.close()

    let clean = try ContrailCommand.run(["inspect", directory, "--verify"])
    XCTAssertEqual(clean.status, 0, clean.stderr)
    let report = String(decoding: clean.stdout, as: UTF8.self)
    XCTAssertTrue(report.contains("events: \(records.count) ("), report)
    XCTAssertTrue(report.contains("app.bsky.feed.like"), report)
    XCTAssertTrue(report.contains("event seqs: 1 – \(records.count)\n"), report)
    XCTAssertTrue(report.contains("last event seq assigned: \(records.count)\n"), report)
    XCTAssertTrue(report.contains(" bytes\tevent seq 1 – "), report)  // the first segment's
    XCTAssertTrue(report.contains(" – \(records.count)\n"), report)  // the newest segment's
    XCTAssertTrue(report.contains("verify: every record's checksum holds"), report)

    // Damage one sealed segment: --verify now fails, and nothing was modified by inspect.
    let segments = try FileManager.default.contentsOfDirectory(atPath: directory + "/segments")
      .sorted()
    let first = directory + "/segments/" + segments[0]
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: first)))
    bytes[bytes.count / 2] ^= 0x40
    try Data(bytes).write(to: URL(fileURLWithPath: first))
    let damaged = try ContrailCommand.run(["inspect", directory, "--verify"])
    XCTAssertEqual(damaged.status, 1)
    XCTAssertTrue(
      String(decoding: damaged.stdout, as: UTF8.self).contains("corrupt records skipped: 1"))
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: first)), Data(bytes), "read-only")

    let missing = try ContrailCommand.run(["inspect", directory + "/nope"])
    XCTAssertNotEqual(missing.status, 0)
    XCTAssertTrue(missing.stderr.contains("no such data directory"), missing.stderr)
  }

  /// `train-dictionary --data-dir` trains on the newest stored events.
  func testTrainsADictionaryFromADataDirectory() throws {
    let records = try LogFixtures.records(frames: 1_500)
    let directory = LogFixtures.directory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let log = try EventLog(LogFixtures.configuration(directory))
    try log.append(records)
    try log.close()
    let output = directory + "/trained.zdict"
    let result = try ContrailCommand.run([
      "train-dictionary", "--data-dir", directory, "--output", output, "--size", "8192",
      "--max-samples", "1000", "--id", "7", "--data-dictionary", SharedData.defaultDictionaryPath,
    ])
    XCTAssertEqual(result.status, 0, result.stderr)
    XCTAssertTrue(result.stderr.contains("samples: 1000 ("), result.stderr)
    let stdout = String(decoding: result.stdout, as: UTF8.self)
    XCTAssertTrue(stdout.contains("wrote \(output): 8192 bytes, ID 7"), stdout)
    XCTAssertTrue(stdout.contains("held-out events: 100"), stdout)
  }
}
