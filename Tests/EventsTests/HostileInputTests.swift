import Events
import Firehose
import SyntheticFirehose
import TestSupport
import XCTest

/// Hostile frames from `HostileFrames` interleaved with valid ones: the translator never traps,
/// never takes long, counts every hostile frame under a reason, and every valid frame's events
/// come out exactly as they do on their own.
final class HostileInputTests: XCTestCase {
  func testHostileFramesNeverDisturbValidOnes() throws {
    var generator = FirehoseGenerator(seed: 20_261_130)
    let valid = (0..<40).map { _ in generator.next() }
    var hostile: [HostileFrames.Frame] = []
    for frame in valid.prefix(12) {
      hostile += HostileFrames.variants(of: frame, limit: 300)
    }
    let header = CBORValue.map([("op", .int(1)), ("t", .text("#commit"))]).encoded
    hostile += HostileFrames.wholeFrames(header: header)
    var random = SeededRandom(seed: 7)
    for index in 0..<600 {
      hostile.append(
        HostileFrames.flipped(valid[index % valid.count], flips: 1 + index % 8, random: &random))
    }
    XCTAssertGreaterThan(hostile.count, 3_000)

    // What each valid frame gives on its own.
    let expected = valid.map { frame -> [String] in
      var events: [Event] = []
      Translator().translate(frame, into: &events)
      return events.map { blankTime($0.json) }
    }
    XCTAssertGreaterThan(expected.joined().count, 40)

    let translator = Translator()
    var events: [Event] = []
    var outcomes: [String: Int] = [:]
    var slowest: (Duration, String) = (.zero, "")
    let clock = ContinuousClock()
    let perValid = (hostile.count + valid.count - 1) / valid.count
    for (index, frame) in valid.enumerated() {
      for attack in hostile[
        min(index * perValid, hostile.count)..<min((index + 1) * perValid, hostile.count)]
      {
        let before = translator.counters
        events.removeAll()
        var outcome = FrameOutcome.ignored(.unknown)
        let elapsed = clock.measure { outcome = translator.translate(attack.bytes, into: &events) }
        if elapsed > slowest.0 { slowest = (elapsed, attack.label) }
        let after = translator.counters
        let reason: String
        if !events.isEmpty {
          reason = "events"
        } else if after.totalDrops > before.totalDrops {
          reason = "dropped"
        } else if case .translated(.commit, _) = outcome {
          reason = "commit with no events"
        } else {
          reason = "frame \(outcome)"
        }
        // Random flips may rename `ops` (a commit with none is fine); a targeted attack never
        // leaves a commit silently empty.
        if !attack.label.contains("random") {
          XCTAssertNotEqual(reason, "commit with no events", "\(attack.label): no reason counted")
        }
        outcomes[reason.hasPrefix("frame ") ? "frame" : reason, default: 0] += 1
      }
      events.removeAll()
      translator.translate(frame, into: &events)
      XCTAssertEqual(events.map { blankTime($0.json) }, expected[index], "valid frame \(index)")
    }
    XCTAssertLessThan(slowest.0, .seconds(1), "slowest hostile frame: \(slowest.1)")
    // Every kind of outcome occurred: the attacks reach every layer.
    XCTAssertGreaterThan(outcomes["frame"] ?? 0, 100, "\(outcomes)")
    XCTAssertGreaterThan(outcomes["dropped"] ?? 0, 100, "\(outcomes)")
    XCTAssertGreaterThan(outcomes["events"] ?? 0, 100, "\(outcomes)")
  }

  /// The smallest case of the old trap, everywhere a CBOR array or map head can sit.
  func testHugeContainerCountsAreRejectedEverywhere() {
    let translator = Translator()
    var events: [Event] = []
    for bytes: [UInt8] in [
      [0x9B, 0x80, 0, 0, 0, 0, 0, 0, 0], [0x9B] + [UInt8](repeating: 0xFF, count: 8),
      [0xBB, 0x80, 0, 0, 0, 0, 0, 0, 0], [0x5B] + [UInt8](repeating: 0xFF, count: 8),
      [0x7B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF8],
    ] {
      XCTAssertEqual(translator.translate(bytes, into: &events), .ignored(.undecodable))
      var reader = bytes.withUnsafeBytes { raw in
        var reader = CBORReader(raw)
        return reader.next()
      }
      if case .invalid = reader {} else { XCTFail("\(bytes) read as \(reader)") }
      reader = .null
    }
    XCTAssertTrue(events.isEmpty)
  }

  /// A commit with thousands of ops and blocks: finding the blocks is not quadratic.
  func testManyOpsAndBlocksTranslateInLinearTime() throws {
    func commit(ops: Int) -> [UInt8] { FrameBuilder.postsCommit(count: ops) }
    let translator = Translator()
    var events: [Event] = []
    let clock = ContinuousClock()
    translator.translate(commit(ops: 100), into: &events)  // warm up
    var times: [Double] = []
    for ops in [1_000, 8_000] {
      let frame = commit(ops: ops)
      events.removeAll()
      var best = Duration.seconds(100)
      for _ in 0..<3 {
        events.removeAll()
        best = min(best, clock.measure { translator.translate(frame, into: &events) })
      }
      XCTAssertEqual(events.count, ops)
      times.append(Double(best.components.attoseconds) / 1e18 + Double(best.components.seconds))
    }
    // 8× the ops (and blocks): well under the 64× a per-op scan would take.
    XCTAssertLessThan(times[1] / times[0], 20, "\(times)")
  }
}

/// The JSON with its `time_us` value replaced by 0.
private func blankTime(_ json: [UInt8]) -> String {
  var text = String(decoding: json, as: UTF8.self)
  guard let key = text.range(of: #""time_us":"#) else { return text }
  var end = key.upperBound
  while end < text.endIndex, text[end].isNumber { end = text.index(after: end) }
  text.replaceSubrange(key.upperBound..<end, with: "0")
  return text
}
