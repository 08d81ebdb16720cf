import Firehose
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
  private func temporaryFile(_ bytes: [UInt8]) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent(
      "contrail-translate-\(UUID()).frames"
    ).path
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
  }

  private static func blankTimes(_ output: Data) -> [String] {
    String(decoding: output, as: UTF8.self).split(separator: "\n").map {
      $0.replacingOccurrences(
        of: #""time_us":[0-9]+"#, with: "\"time_us\":0", options: .regularExpression)
    }
  }

  func testTinyReadChunksGiveTheSameOutput() throws {
    let fixture = SharedData.projectRoot + "/Fixtures/synthetic-2000.frames.zst"
    let plain = try temporaryFile(FramesFile.encode(try FramesFile.read(path: fixture).frames))
    let reference = try run(["translate", fixture])
    XCTAssertEqual(reference.status, 0)
    for (input, chunk) in [(fixture, 1), (fixture, 7), (plain, 3), (plain, 4096)] {
      let result = try run(["translate", input, "--read-chunk-bytes", "\(chunk)"])
      XCTAssertEqual(result.status, 0, result.stderr)
      XCTAssertEqual(result.stderr, reference.stderr)
      XCTAssertEqual(Self.blankTimes(result.stdout), Self.blankTimes(reference.stdout))
    }
  }

  func testEmptyInput() throws {
    let result = try run(["translate", try temporaryFile([])])
    XCTAssertEqual(result.status, 0)
    XCTAssertEqual(result.stderr, "frames 0, events 0, skipped 0\n")
    XCTAssertEqual(result.stdout.count, 0)
  }

  func testAHugeDeclaredLengthIsTrailingBytes() throws {
    var generator = FirehoseGenerator(seed: 9)
    let frames = (0..<5).map { _ in generator.next() }
    let path = try temporaryFile(
      FramesFile.encode(frames) + [0xFF, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 100))
    let result = try run(["translate", path])
    XCTAssertEqual(result.status, 0)
    XCTAssertTrue(result.stderr.hasPrefix("frames 5,"), result.stderr)
    XCTAssertTrue(
      result.stderr.hasSuffix("; 104 trailing bytes do not form a whole frame\n"), result.stderr)
  }

  func testAFrameOverTheCapIsSkippedAndCounted() throws {
    var generator = FirehoseGenerator(seed: 10)
    let before = generator.next()
    let after = generator.next()
    let oversized = [UInt8](repeating: 0xA1, count: (5 << 20) + 1)
    let path = try temporaryFile(FramesFile.encode([before, oversized, after]))
    let result = try run(["translate", path])
    XCTAssertEqual(result.status, 0)
    XCTAssertTrue(result.stderr.hasPrefix("frames 3,"), result.stderr)
    XCTAssertTrue(result.stderr.hasSuffix("by reason: oversize frames 1\n"), result.stderr)
    let alone = try run(["translate", try temporaryFile(FramesFile.encode([before, after]))])
    XCTAssertEqual(Self.blankTimes(result.stdout), Self.blankTimes(alone.stdout))
    // A lower limit skips the ordinary frames too; a higher one lets the big frame through.
    let low = try run(["translate", path, "--max-frame-size", "1KiB"])
    XCTAssertTrue(low.stderr.contains("skipped 3 by reason: oversize frames 3"), low.stderr)
    XCTAssertEqual(low.stdout.count, 0)
    let high = try run(["translate", path, "--max-frame-size", "6MiB"])
    XCTAssertTrue(high.stderr.contains("undecodable frames 1"), high.stderr)
    XCTAssertFalse(high.stderr.contains("oversize"), high.stderr)
    let bad = try run(["translate", path, "--max-frame-size", "12"])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("--max-frame-size must be"), bad.stderr)
  }

  func testTruncatedZstdKeepsTheEventsBeforeAndFails() throws {
    let fixture = SharedData.projectRoot + "/Fixtures/synthetic-2000.frames.zst"
    let compressed = try XCTUnwrap(SharedData.read(fixture))
    let path = try temporaryFile(Array(compressed[..<(compressed.count / 2)]))
    let result = try run(["translate", path])
    XCTAssertNotEqual(result.status, 0)
    XCTAssertTrue(result.stderr.hasPrefix("frames "), result.stderr)
    XCTAssertTrue(
      result.stderr.contains("cannot read \(path): zstd: truncated stream"), result.stderr)
    let produced = Self.blankTimes(result.stdout)
    let whole = Self.blankTimes(try run(["translate", fixture]).stdout)
    XCTAssertGreaterThan(produced.count, 0)
    XCTAssertLessThan(produced.count, whole.count)
    XCTAssertEqual(produced, Array(whole.prefix(produced.count)))
  }
}
