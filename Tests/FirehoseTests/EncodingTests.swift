import Firehose
import SyntheticFirehose
import TestSupport
import XCTest

final class EncodingTests: XCTestCase {
  private func string(_ build: (inout ByteSink) -> Void) -> String {
    var sink = ByteSink()
    defer { sink.release() }
    build(&sink)
    return String(decoding: sink.bytes, as: UTF8.self)
  }

  func testVarintReadsValuesAndLengths() {
    let cases: [([UInt8], Int, Int)] = [
      ([0x00], 0, 1), ([0x7F], 127, 1), ([0x80, 0x01], 128, 2), ([0xAC, 0x02], 300, 2),
      ([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], Int.max, 9),
    ]
    for (bytes, value, length) in cases {
      let read = bytes.withUnsafeBytes { Varint.read($0, at: 0) }
      XCTAssertEqual(read?.value, value, "\(bytes)")
      XCTAssertEqual(read?.length, length, "\(bytes)")
      var encoded: [UInt8] = []
      Varint.append(value, to: &encoded)
      XCTAssertEqual(encoded, bytes)
    }
  }

  func testVarintRejectsTruncationAndOverflow() {
    for bytes: [UInt8] in [[], [0x80], [0xFF, 0xFF], [UInt8](repeating: 0xFF, count: 9) + [0x01]] {
      XCTAssertNil(bytes.withUnsafeBytes { Varint.read($0, at: 0) }, "\(bytes)")
    }
    let nonMinimal: [UInt8] = [0x81, 0x00]
    nonMinimal.withUnsafeBytes {
      XCTAssertEqual(Varint.read($0, at: 0)?.value, 1)
      XCTAssertFalse(Varint.isMinimal($0, at: 0, length: 2))
    }
  }

  func testBase64MatchesTheProtocolVectorAndRejectsPadding() {
    let bytes: [UInt8] = [0x01, 0x02, 0x03, 0xFB, 0xFF]
    XCTAssertEqual(
      string { sink in bytes.withUnsafeBytes { Multibase.appendBase64($0, to: &sink) } }, "AQID+/8")
    XCTAssertEqual(
      Array("AQID+/8".utf8).withUnsafeBytes { Multibase.decodeBase64Unpadded($0) }, bytes)
    XCTAssertNil(Array("AQI=".utf8).withUnsafeBytes { Multibase.decodeBase64Unpadded($0) })
    XCTAssertNil(Array("A".utf8).withUnsafeBytes { Multibase.decodeBase64Unpadded($0) })
    XCTAssertNil(Array("AQ-_".utf8).withUnsafeBytes { Multibase.decodeBase64Unpadded($0) })
    for length in 0..<20 {
      let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
      let text = string { sink in data.withUnsafeBytes { Multibase.appendBase64($0, to: &sink) } }
      XCTAssertEqual(Array(text.utf8).withUnsafeBytes { Multibase.decodeBase64Unpadded($0) }, data)
    }
  }

  func testBase32MatchesRFC4648InBothAlphabetsAndRejectsOtherText() {
    let vectors = [
      ("", ""), ("f", "my"), ("fo", "mzxq"), ("foo", "mzxw6"), ("foob", "mzxw6yq"),
      ("fooba", "mzxw6ytb"), ("foobar", "mzxw6ytboi"),
    ]
    let rfc4648 = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)
    for (plain, encoded) in vectors {
      let bytes = Array(plain.utf8)
      XCTAssertEqual(
        string { sink in bytes.withUnsafeBytes { Base32.lowercase.encode($0, to: &sink) } }, encoded
      )
      XCTAssertEqual(Base32.lowercase.decode(encoded.utf8), bytes, encoded)
      // The sortable alphabet is the same five-bit groups with other characters.
      let sortable = string { sink in
        bytes.withUnsafeBytes { Base32.sortable.encode($0, to: &sink) }
      }
      XCTAssertEqual(
        Array(sortable.utf8),
        encoded.utf8.map { Base32.sortable.digit(UInt64(rfc4648.firstIndex(of: $0)!)) })
      XCTAssertEqual(Base32.sortable.decode(sortable.utf8), bytes, sortable)
    }
    for length in 0..<20 {
      let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
      var text: [UInt8] = []
      data.withUnsafeBytes { Base32.lowercase.encode($0) { text.append($0) } }
      XCTAssertEqual(Base32.lowercase.decode(text), data)
    }
    for bad in ["a", "aaa", "aaaaaa", "my=", "MY", "m1", "m8"] {
      XCTAssertNil(Base32.lowercase.decode(bad.utf8), bad)
    }
    XCTAssertNil(Base32.sortable.decode("1a".utf8))
    XCTAssertTrue(Base32.lowercase.isEncoded("abcxyz234567".utf8))
    XCTAssertFalse(Base32.lowercase.isEncoded("abc1".utf8))
    // TIDs sort as their values, from "2222222222222".
    XCTAssertEqual(Identifiers.tid(microseconds: 0, clockID: 0), "2222222222222")
    XCTAssertLessThan(
      Identifiers.tid(microseconds: 1_700_000_000_000_000, clockID: 5),
      Identifiers.tid(microseconds: 1_700_000_000_000_001, clockID: 0))
  }

  func testCIDStringsMatchTheProtocolVectors() {
    let v0 = [0x12, 0x20] + sha256Empty()
    let v1raw = [0x01, 0x55, 0x12, 0x20] + sha256Empty()
    XCTAssertEqual(
      string { sink in v0.withUnsafeBytes { CID.appendString($0, to: &sink) } },
      "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n")
    XCTAssertEqual(
      string { sink in v1raw.withUnsafeBytes { CID.appendString($0, to: &sink) } },
      "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
  }

  func testCIDStringsRoundTrip() {
    for seed in 0..<50 {
      let block = (0..<(seed * 7)).map { UInt8(truncatingIfNeeded: $0 ^ seed) }
      let cid = FrameBuilder.cid(of: block, codec: seed % 2 == 0 ? 0x71 : 0x55)
      let text = string { sink in cid.withUnsafeBytes { CID.appendString($0, to: &sink) } }
      XCTAssertTrue(text.hasPrefix("bafy") || text.hasPrefix("bafk"), text)
      XCTAssertEqual(Array(text.utf8).withUnsafeBytes { CID.parse($0) }, cid)
    }
    let v0text = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
    XCTAssertEqual(
      Array(v0text.utf8).withUnsafeBytes { CID.parse($0) }, [0x12, 0x20] + sha256Empty())
  }

  func testInvalidCIDsAreRejected() {
    let digest = sha256Empty()
    let invalid: [[UInt8]] = [
      [0x02, 0x71, 0x12, 0x20] + digest,  // version 2
      [0x01, 0x71, 0x12, 0x20] + digest.dropLast(),  // digest shorter than declared
      [0x01, 0x71, 0x12, 0x20] + digest + [0x00],  // trailing byte
      [0x01, 0xF1, 0x00, 0x12, 0x20] + digest,  // non-minimal codec varint
      [0x12, 0x20] + digest.dropLast(),  // short CIDv0
      [],
    ]
    for bytes in invalid {
      XCTAssertFalse(bytes.withUnsafeBytes { CID.isValid($0) }, "\(bytes.prefix(6))")
    }
    for text in ["", "b", "bafy!", "zQm", "Qm" + String(repeating: "0", count: 44), "BAFY"] {
      XCTAssertNil(Array(text.utf8).withUnsafeBytes { CID.parse($0) }, text)
    }
  }

  func testRFC3339AcceptsGoFormsAndRejectsTheRest() {
    let valid = [
      "2026-07-04T14:38:07.517Z", "2026-07-04T14:38:07Z", "2024-02-29T00:00:00+05:30",
      "2026-07-04T23:59:59.123456789-08:00",
    ]
    let invalid = [
      "yesterday", "not-a-time", "2026-07-04 14:38:07Z", "2026-07-04t14:38:07Z",
      "2026-07-04T14:38:07z", "2026-13-04T14:38:07Z", "2025-02-29T00:00:00Z",
      "2026-07-04T24:00:00Z", "2026-07-04T14:60:00Z", "2026-07-04T14:38:60Z",
      "2026-07-04T14:38:07.Z", "2026-07-04T14:38:07", "2026-07-04T14:38:07+0530",
      "2026-07-04T14:38:07+24:00", "2026-07-04T14:38:07Zjunk", "",
    ]
    for s in valid { XCTAssertTrue(Array(s.utf8).withUnsafeBytes { RFC3339.isValid($0) }, s) }
    for s in invalid { XCTAssertFalse(Array(s.utf8).withUnsafeBytes { RFC3339.isValid($0) }, s) }
  }

  func testDecimalDigits() {
    for value: Int64 in [0, 7, 10, 99, 100, -1, Int64.max, Int64.min, 1_783_175_888_085_434] {
      XCTAssertEqual(string { $0.append(decimal: value) }, String(value))
    }
    // Every digit count, at and around each power of ten, and a spread of others.
    var values: [UInt64] = [UInt64.max, UInt64.max - 1]
    var power: UInt64 = 1
    for _ in 0...19 {
      values += [power - 1, power, power + 1, power / 10 * 9 + 1]
      if power <= UInt64.max / 10 { power *= 10 }
    }
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    for _ in 0..<2_000 {
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      values.append(state >> (state & 63))
    }
    for value in values {
      XCTAssertEqual(string { $0.append(decimal: value) }, String(value))
    }
  }
}
