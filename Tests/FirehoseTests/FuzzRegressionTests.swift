import Firehose
import SyntheticFirehose
import TestSupport
import XCTest

/// Inputs for the CBOR readers that crashed or that fuzzing (`scripts/fuzz`, FUZZING.md) must
/// keep covering: heads whose 8-byte count or length is ≥ 2^63 (they trapped converting to Int)
/// or merely larger than the input, in every place a record or CAR holds them.
final class FuzzRegressionTests: XCTestCase {
  /// Array, map, byte and text heads with 8-byte (and 4-byte) arguments no input can satisfy.
  static let hostileHeads: [[UInt8]] = {
    var heads: [[UInt8]] = []
    for major: UInt8 in [0x9B, 0xBB, 0x5B, 0x7B] {
      heads.append([major, 0x80, 0, 0, 0, 0, 0, 0, 0])  // 2^63
      heads.append([major] + [UInt8](repeating: 0xFF, count: 8))  // 2^64 - 1
      heads.append([major, 0x7F] + [UInt8](repeating: 0xFF, count: 7))  // Int.max
      heads.append([major - 1] + [UInt8](repeating: 0xFF, count: 4))  // 2^32 - 1
    }
    heads.append([0x1B] + [UInt8](repeating: 0xFF, count: 8))  // uint 2^64 - 1
    heads.append([0x3B] + [UInt8](repeating: 0xFF, count: 8))  // nint -2^64
    heads.append([0xD8, 0x2A, 0x5B] + [UInt8](repeating: 0xFF, count: 8))  // tag 42, huge bytes
    return heads
  }()

  /// Where a head can sit in a record: alone, as a value, as a key, in an array, in a link.
  static func records(containing head: [UInt8]) -> [[UInt8]] {
    [
      head,
      head + [0x00],
      CBORValue.map([("$type", .text("app.bsky.feed.post")), ("text", .raw(head))]).encoded,
      CBORValue.orderedMap([(.raw(head), .int(1))]).encoded,
      CBORValue.map([("$type", .text("x")), ("a", .array([.int(1), .raw(head)]))]).encoded,
      CBORValue.map([("$type", .text("x")), ("b", .map([("$link", .raw(head))]))]).encoded,
      CBORValue.map([("$type", .text("x")), ("c", .tag(42, .raw(head)))]).encoded,
    ]
  }

  func testRecordConverterRejectsHugeHeads() {
    for head in Self.hostileHeads {
      for record in Self.records(containing: head) {
        XCTAssertNil(recordJSON(bytes: record), "\(hex(record))")
      }
    }
  }

  func testCARFileRejectsHugeHeads() {
    let block = CBORValue.map([("$type", .text("x"))]).encoded
    let cid = FrameBuilder.cid(of: block)
    for head in Self.hostileHeads {
      let headers: [[UInt8]] = [
        head,
        CBORValue.map([("roots", .raw(head)), ("version", 1)]).encoded,
        CBORValue.map([("roots", .array([.raw(head)])), ("version", 1)]).encoded,
        CBORValue.map([("roots", .array([.link(cid)])), ("version", .raw(head))]).encoded,
        CBORValue.orderedMap([(.raw(head), .int(1))]).encoded,
      ]
      for header in headers {
        var car: [UInt8] = []
        Varint.append(header.count, to: &car)
        car += header
        Varint.append(cid.count + block.count, to: &car)
        car += cid + block
        XCTAssertNil(car.withUnsafeBytes { CARFile($0) }, "\(hex(car))")
      }
      // A block holding the head is found (the CAR reader does not decode blocks), and its
      // decoders reject it.
      for data in Self.records(containing: head) {
        let car = FrameBuilder.car(
          root: cid, blocks: [(cid, block), (FrameBuilder.cid(of: data), data)])
        car.withUnsafeBytes { raw in
          guard let file = CARFile(raw) else { return XCTFail("\(hex(car))") }
          XCTAssertEqual(file.blocks.count, 2)
          data.withUnsafeBytes { XCTAssertNil(CommitBlock($0)) }
        }
      }
      let commit = CBORValue.map([("did", .raw(head)), ("version", 3)]).encoded
      commit.withUnsafeBytes { XCTAssertNil(CommitBlock($0)) }
    }
  }

  private func hex(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
  }
}
