import Foundation
import SyntheticFirehose
import TestSupport
import XCTest

/// `contrail translate` as a user runs it: the built binary, real files, exit codes.
final class TranslateCommandTests: XCTestCase {
  private func run(_ arguments: [String]) throws -> (status: Int32, stdout: Data, stderr: String) {
    try ContrailCommand.run(arguments)
  }

  func testTranslatesTheFixtureToItsExpectedEvents() throws {
    let fixtures = SharedData.projectRoot + "/Fixtures/"
    let result = try run(["translate", fixtures + "synthetic-2000.frames.zst"])
    XCTAssertEqual(result.status, 0)
    XCTAssertTrue(result.stderr.contains("frames 2000, events 2084, skipped 0"), result.stderr)
    let produced = String(decoding: result.stdout, as: UTF8.self).split(separator: "\n")
    let expected = String(
      decoding: try XCTUnwrap(SharedData.read(fixtures + "synthetic-2000.expected.jsonl")),
      as: UTF8.self
    )
    .split(separator: "\n")
    XCTAssertEqual(produced.count, expected.count)
    let blank = { (line: Substring) in
      line.replacingOccurrences(
        of: #""time_us":[0-9]+"#, with: "\"time_us\":0", options: .regularExpression)
    }
    XCTAssertEqual(produced.map(blank), expected.map(blank))
  }

  func testMalformedInputIsSkippedWithASummaryAndExitZero() throws {
    var generator = FirehoseGenerator(seed: 8)
    var frames = (0..<10).map { _ in generator.next() }
    frames[3] = [0xFF, 0x00, 0x01]
    var contents = FramesFile.encode(frames)
    contents += [0x9F, 0x86, 0x01, 0x00, 0x01, 0x02]  // a length prefix running past the end
    let path = FileManager.default.temporaryDirectory.appendingPathComponent(
      "contrail-bad-\(UUID()).frames"
    ).path
    try Data(contents).write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let output = path + ".jsonl"
    defer { try? FileManager.default.removeItem(atPath: output) }
    let result = try run(["translate", path, "--output", output])
    XCTAssertEqual(result.status, 0)
    XCTAssertTrue(result.stderr.contains("frames 10,"), result.stderr)
    XCTAssertTrue(result.stderr.contains("undecodable frames 1"), result.stderr)
    XCTAssertTrue(
      result.stderr.contains("6 trailing bytes do not form a whole frame"), result.stderr)
    XCTAssertGreaterThan(try Data(contentsOf: URL(fileURLWithPath: output)).count, 0)
  }

  func testUnreadableInputFailsWithAReason() throws {
    let result = try run(["translate", "/nonexistent/frames"])
    XCTAssertNotEqual(result.status, 0)
    XCTAssertTrue(
      result.stderr.contains("cannot read /nonexistent/frames: No such file or directory"),
      result.stderr)
  }
}
