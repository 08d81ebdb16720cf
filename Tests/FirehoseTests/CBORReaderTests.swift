import Firehose
import SyntheticFirehose
import XCTest

final class CBORReaderTests: XCTestCase {
  private func tokens(_ bytes: [UInt8]) -> [String] {
    bytes.withUnsafeBytes { raw in
      var reader = CBORReader(raw)
      var out: [String] = []
      while !reader.isAtEnd {
        let token = reader.next()
        switch token {
        case .invalid:
          out.append("invalid")
          return out
        case .text(let t): out.append("text(\(String(decoding: t, as: UTF8.self)))")
        case .bytes(let b): out.append("bytes(\(Array(b)))")
        default: out.append("\(token)")
        }
      }
      return out
    }
  }

  func testReadsEveryTokenKind() {
    let value = CBORValue.orderedMap([
      ("a", .array([.int(1), .int(-1), .int(1000), .int(-1_000_000_000_000)])),
      ("b", .bytes([1, 2])), ("c", .bool(true)), ("d", .null), ("e", .float(2.5)),
      ("f", .tag(42, .bytes([0]))),
    ])
    XCTAssertEqual(
      tokens(value.encoded),
      [
        "map(6)", "text(a)", "array(4)", "unsigned(1)", "negative(0)", "unsigned(1000)",
        "negative(999999999999)", "text(b)", "bytes([1, 2])", "text(c)", "bool(true)", "text(d)",
        "null", "text(e)", "float(2.5)", "text(f)", "tag(42)", "bytes([0])",
      ])
  }

  func testRejectsWhatDAGCBORForbids() {
    let forbidden: [String: [UInt8]] = [
      "non-minimal uint8": [0x18, 0x05],
      "non-minimal uint16": [0x19, 0x00, 0xFF],
      "non-minimal uint32": [0x1A, 0x00, 0x00, 0xFF, 0xFF],
      "non-minimal uint64": [0x1B, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF],
      "non-minimal negative": [0x38, 0x00],
      "non-minimal text length": [0x78, 0x01, 0x61],
      "non-minimal map length": [0xB8, 0x00],
      "non-minimal tag": [0xD8, 0x05, 0x00],
      "indefinite text": [0x7F, 0x61, 0x61, 0xFF],
      "indefinite array": [0x9F, 0xFF],
      "indefinite map": [0xBF, 0xFF],
      "break": [0xFF],
      "undefined": [0xF7],
      "simple value": [0xF0],
      "one-byte simple": [0xF8, 0x20],
      "reserved": [0x1C],
      "truncated": [0x19, 0x01],
    ]
    for (name, bytes) in forbidden {
      XCTAssertEqual(tokens(bytes).last, "invalid", name)
    }
  }

  func testHugeDeclaredLengthsFailWithoutReading() {
    // A byte string declaring 4 GiB, and a map declaring 2^32 entries, in a tiny buffer.
    let hugeBytes: [UInt8] = [0x5B, 0, 0, 0, 1, 0, 0, 0, 0, 0x00]
    XCTAssertEqual(tokens(hugeBytes), ["invalid"])
    let hugeMap: [UInt8] = [0xBB, 0, 0, 0, 1, 0, 0, 0, 0]
    hugeMap.withUnsafeBytes { raw in
      var reader = CBORReader(raw)
      XCTAssertFalse(reader.skipValue())
    }
  }

  func testSkipValueHonoursDepth() {
    func nested(_ depth: Int) -> [UInt8] { [UInt8](repeating: 0x81, count: depth) + [0x01] }
    nested(128).withUnsafeBytes { raw in
      var reader = CBORReader(raw)
      XCTAssertTrue(reader.skipValue())
      XCTAssertTrue(reader.isAtEnd)
    }
    nested(129).withUnsafeBytes { raw in
      var reader = CBORReader(raw)
      XCTAssertFalse(reader.skipValue())
    }
    // 100,000 nested tags must not recurse without bound.
    let tags = [UInt8](repeating: 0xC1, count: 100_000) + [0x01]
    tags.withUnsafeBytes { raw in
      var reader = CBORReader(raw)
      XCTAssertFalse(reader.skipValue())
    }
  }
}
