import Events
import Firehose
import SyntheticFirehose
import TestSupport
import XCTest

/// The committed fixtures are exactly what `Fixtures/README.md`'s commands produce.
final class FixturesTests: XCTestCase {
  func testFixturesRegenerateByteForByte() throws {
    let directory = SharedData.projectRoot + "/Fixtures/"
    let committed = try FramesFile.read(path: directory + "synthetic-2000.frames.zst")
    XCTAssertEqual(committed.unreadableTailBytes, 0)
    var generator = FirehoseGenerator(seed: 1, firstSeq: 1)
    let frames = (0..<2_000).map { _ in generator.next() }
    XCTAssertEqual(committed.frames.count, frames.count)
    XCTAssertTrue(committed.frames == frames, "frames differ from `contrail generate --seed 1`")

    let translator = Translator(
      sequencer: Sequencer(last: FirehoseGenerator.defaultStart, clock: { 0 }))
    var events: [Event] = []
    for frame in frames { translator.translate(frame, into: &events) }
    var jsonl: [UInt8] = []
    for event in events { jsonl += event.json + [UInt8(ascii: "\n")] }
    let expected = try XCTUnwrap(SharedData.read(directory + "synthetic-2000.expected.jsonl"))
    XCTAssertEqual(events.count, 2_084)
    XCTAssertEqual(translator.counters.frames(.sync), 0, "no #sync without syncEvery")
    XCTAssertTrue(jsonl == expected, "expected events differ from the translator's output")
    XCTAssertEqual(translator.counters.totalDrops, 0)
  }

  func testSHA256KnownVectors() {
    func hex(_ s: String) -> String {
      SHA256.hash(Array(s.utf8)).map { String(format: "%02x", $0) }.joined()
    }
    XCTAssertEqual(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    XCTAssertEqual(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    XCTAssertEqual(
      hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    XCTAssertEqual(
      hex(String(repeating: "a", count: 1_000)),
      "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
  }
}
