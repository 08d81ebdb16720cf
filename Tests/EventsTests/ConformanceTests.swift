import Events
import Firehose
import SyntheticFirehose
import TestSupport
import XCTest

/// PROTOCOL §11.1: the real capture through decode → translate → encode, against production
/// Jetstream v1's output for the same frames.
final class ConformanceTests: XCTestCase {
  func testCaptureIsByteIdenticalToJetstreamV1() throws {
    guard let framesPath = SharedData.path("corpus/jetstream-v1-capture/frames.bin.zst"),
      let expectedPath = SharedData.path("corpus/jetstream-v1-capture/expected_v1.jsonl")
    else { throw XCTSkip(SharedData.skipMessage) }
    let frames = try FramesFile.read(path: framesPath)
    XCTAssertEqual(frames.frames.count, 150)
    XCTAssertEqual(frames.unreadableTailBytes, 0)
    let expectedLines = String(
      decoding: try XCTUnwrap(SharedData.read(expectedPath)), as: UTF8.self
    )
    .split(separator: "\n").map(String.init)
    XCTAssertEqual(expectedLines.count, 152)

    let translator = Translator()
    var events: [Event] = []
    for frame in frames.frames { translator.translate(frame, into: &events) }
    let produced = events.map { String(decoding: $0.json, as: UTF8.self) }

    // Match by identity key, byte for byte once time_us is blanked.
    let expectedByKey = Dictionary(
      expectedLines.map { (try! Self.key($0), Self.blankTime($0)) }, uniquingKeysWith: { a, _ in a }
    )
    XCTAssertEqual(expectedByKey.count, 152, "keys in the oracle are unique")
    var matched = 0
    var extra: [String] = []
    for line in produced {
      let key = try Self.key(line)
      if expectedByKey[key] == Self.blankTime(line) {
        matched += 1
      } else {
        extra.append(line)
      }
    }
    XCTAssertEqual(matched, 152, "byte-identical events")
    XCTAssertEqual(extra, [], "events that differ from or are missing in the oracle")
    XCTAssertEqual(produced.count, 152, "0 missing, 0 extra")

    // Relay order equals the oracle's line order, and time_us strictly increases.
    XCTAssertEqual(produced.map(Self.blankTime), expectedLines.map(Self.blankTime))
    for (a, b) in zip(events, events.dropFirst()) { XCTAssertLessThan(a.timeUS, b.timeUS) }
    for event in events {
      XCTAssertTrue(
        String(decoding: event.json, as: UTF8.self).contains("\"time_us\":\(event.timeUS),"))
    }
    XCTAssertEqual(translator.counters.totalDrops, 0)
    XCTAssertEqual(translator.counters.events(.commit), 150)
    XCTAssertEqual(translator.counters.events(.identity), 1)
    XCTAssertEqual(translator.counters.events(.account), 1)
  }

  static func blankTime(_ line: String) -> String {
    line.replacingOccurrences(
      of: #""time_us":[0-9]+"#, with: #""time_us":0"#, options: .regularExpression)
  }

  /// Commits by (did, rev, collection, rkey, operation); identity and account by (did, seq).
  static func key(_ line: String) throws -> String {
    let object = try XCTUnwrap(
      try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    let did = object["did"] as? String ?? ""
    let kind = object["kind"] as? String ?? ""
    let body = object[kind] as? [String: Any] ?? [:]
    if kind == "commit" {
      return [
        did, "\(body["rev"] ?? "")", "\(body["collection"] ?? "")", "\(body["rkey"] ?? "")",
        "\(body["operation"] ?? "")",
      ].joined(separator: "|")
    }
    return [kind, did, "\(body["seq"] ?? "")"].joined(separator: "|")
  }
}
