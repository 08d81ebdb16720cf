import Events
import Firehose
import SyntheticFirehose
import TestSupport
import XCTest

/// Damaged real frames never crash the translator and never yield events that were not in them.
final class RobustnessTests: XCTestCase {
  /// The real capture when `../shared` is there, and always the first 60 fixture frames.
  private func captureFrames() throws -> [[UInt8]] {
    let fixture = try FramesFile.read(
      path: SharedData.projectRoot + "/Fixtures/synthetic-2000.frames.zst")
    let capture = try SharedData.path("corpus/jetstream-v1-capture/frames.bin.zst").map {
      try FramesFile.read(path: $0).frames
    }
    return (capture ?? []) + fixture.frames.prefix(60)
  }

  private func lines(_ frame: [UInt8], _ translator: Translator) -> [String] {
    var events: [Event] = []
    translator.translate(frame, into: &events)
    return events.map { ConformanceTests.blankTime(String(decoding: $0.json, as: UTF8.self)) }
  }

  func testTruncatedFramesOnlyYieldEventsOfTheWholeFrame() throws {
    let frames = try captureFrames()
    let translator = Translator()
    var truncations = 0
    for (index, frame) in frames.enumerated() {
      let whole = Set(lines(frame, translator))
      // Every cut for the first frames, a sample of cuts for the rest.
      let step = index < 8 ? 1 : 23
      for cut in stride(from: 0, to: frame.count, by: step) {
        let produced = lines(Array(frame[..<cut]), translator)
        XCTAssertTrue(Set(produced).isSubset(of: whole), "frame \(index) cut at \(cut)")
        truncations += 1
      }
    }
    XCTAssertGreaterThan(truncations, 15_000)
  }

  func testBitFlipsNeverCrashOrYieldMalformedEvents() throws {
    let frames = try captureFrames()
    let translator = Translator()
    var rng = SeededRandom(seed: 7)
    var flips = 0
    for frame in frames {
      let opsBound = max(1, lines(frame, translator).count) + 1
      for _ in 0..<40 {
        var damaged = frame
        let bit = Int(rng.next() % UInt64(frame.count * 8))
        damaged[bit / 8] ^= 1 << UInt8(bit % 8)
        var events: [Event] = []
        translator.translate(damaged, into: &events)
        flips += 1
        XCTAssertLessThanOrEqual(events.count, opsBound * 8)
        for event in events {
          let object = try JSONSerialization.jsonObject(with: Data(event.json)) as? [String: Any]
          XCTAssertEqual(object?.count, 4, String(decoding: event.json, as: UTF8.self))
          XCTAssertTrue(event.json.starts(with: Array(#"{"did":"#.utf8)))
        }
      }
    }
    XCTAssertEqual(flips, frames.count * 40)
  }

  func testDeepNestingAndHugeLengthsAreRejectedQuickly() {
    let did = "did:plc:abc"
    // A record nested 100,000 levels deep.
    let bomb = CBORValue.raw(
      [0xA1, 0x61, 0x61] + [UInt8](repeating: 0x81, count: 100_000) + [0x01])
    let deepRecord = FrameBuilder.commit(
      seq: 1, repo: did, rev: "r", ops: [.init(action: "create", path: "a.b.c/1", record: bomb)])
    // A frame body with 100,000 nested arrays in an unknown field.
    let deepBody =
      CBORValue.map([("op", 1), ("t", "#commit")]).encoded + [0xA1, 0x61, 0x78]
      + [UInt8](repeating: 0x81, count: 100_000) + [0x01]
    // A record declaring a 4 GiB text string.
    let hugeString = CBORValue.raw([0xA1, 0x61, 0x61, 0x7B, 0, 0, 0, 1, 0, 0, 0, 0])
    let hugeRecord = FrameBuilder.commit(
      seq: 2, repo: did, rev: "r",
      ops: [.init(action: "create", path: "a.b.c/1", record: hugeString)])
    let translator = Translator()
    var events: [Event] = []
    let clock = ContinuousClock()
    let elapsed = clock.measure {
      translator.translate(deepRecord, into: &events)
      XCTAssertEqual(translator.translate(deepBody, into: &events), .ignored(.undecodable))
      translator.translate(hugeRecord, into: &events)
    }
    XCTAssertEqual(events.count, 0)
    XCTAssertEqual(translator.counters.drops(.op, .badRecord), 2)
    XCTAssertLessThan(elapsed, .seconds(2))
  }
}
