import Firehose
import SyntheticFirehose
import TestSupport
import XCTest

/// The record vectors of PROTOCOL §11.4 and the data-model limits of §4.3.
final class RecordConverterTests: XCTestCase {
  let rawCID = [0x01, 0x55, 0x12, 0x20] + sha256Empty()
  let rawCIDText = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"

  private func blob(size: CBORValue = 100) -> CBORValue {
    .map([("$type", "blob"), ("ref", .link(rawCID)), ("mimeType", "image/jpeg"), ("size", size)])
  }

  private func record(_ entries: [(String, CBORValue)]) -> CBORValue {
    .map([("$type", "com.example.test")] + entries)
  }

  func testBlobsKeepStructOrderAtEveryDepth() {
    let expectedBlob =
      #"{"$type":"blob","ref":{"$link":"\#(rawCIDText)"},"mimeType":"image/jpeg","size":100}"#
    XCTAssertEqual(
      recordJSON(record([("img", blob()), ("list", .array([blob()]))])),
      #"{"$type":"com.example.test","img":\#(expectedBlob),"list":[\#(expectedBlob)]}"#)
    // A blob whose ref is a {"$link": …} map is written the same way.
    let mapRef = CBORValue.map([
      ("$type", "blob"), ("ref", .map([("$link", .text(rawCIDText))])), ("mimeType", "image/jpeg"),
      ("size", 100),
    ])
    XCTAssertEqual(
      recordJSON(record([("img", mapRef)])), #"{"$type":"com.example.test","img":\#(expectedBlob)}"#
    )
  }

  func testBlobSizeFloatBecomesInteger() {
    XCTAssertEqual(
      recordJSON(record([("b", blob(size: .float(100.0)))])),
      #"{"$type":"com.example.test","b":{"$type":"blob","ref":{"$link":"\#(rawCIDText)"},"mimeType":"image/jpeg","size":100}}"#
    )
  }

  func testInvalidBlobsAreRejected() {
    let noSize = CBORValue.map([
      ("$type", "blob"), ("ref", .link(rawCID)), ("mimeType", "image/png"),
    ])
    XCTAssertNil(recordJSON(record([("b", noSize)])))
    XCTAssertNil(recordJSON(record([("b", blob(size: -1))])))
    XCTAssertNil(recordJSON(record([("b", blob(size: .float(1.5)))])))
    let textRef = CBORValue.map([
      ("$type", "blob"), ("ref", .text(rawCIDText)), ("mimeType", "image/png"), ("size", 1),
    ])
    XCTAssertNil(recordJSON(record([("b", textRef)])))
  }

  func testLegacyBlob() {
    XCTAssertEqual(
      recordJSON(record([("b", .map([("cid", .text(rawCIDText)), ("mimeType", "image/png")]))])),
      #"{"$type":"com.example.test","b":{"cid":"\#(rawCIDText)","mimeType":"image/png"}}"#)
    XCTAssertEqual(
      recordJSON(record([("b", .map([("cid", .link(rawCID)), ("mimeType", "image/png")]))])),
      #"{"$type":"com.example.test","b":{"cid":"\#(rawCIDText)","mimeType":"image/png"}}"#)
    XCTAssertNil(recordJSON(record([("b", .map([("cid", "nope"), ("mimeType", "image/png")]))])))
    XCTAssertNil(recordJSON(record([("b", .map([("cid", .text(rawCIDText)), ("mimeType", 5)]))])))
  }

  func testBytesAndDollarBytes() {
    XCTAssertEqual(
      recordJSON(record([("d", .bytes([0x01, 0x02, 0x03, 0xFB, 0xFF]))])),
      #"{"$type":"com.example.test","d":{"$bytes":"AQID+/8"}}"#)
    XCTAssertEqual(
      recordJSON(record([("d", .map([("$bytes", "AQID+/8")]))])),
      #"{"$type":"com.example.test","d":{"$bytes":"AQID+/8"}}"#)
    XCTAssertNil(recordJSON(record([("d", .map([("$bytes", "AQI=")]))])))
    XCTAssertNil(recordJSON(record([("d", .map([("$bytes", "AQI"), ("x", 1)]))])))
  }

  func testLinks() {
    let v0 = [0x12, 0x20] + sha256Empty()
    XCTAssertEqual(
      recordJSON(record([("l", .link(v0))])),
      #"{"$type":"com.example.test","l":{"$link":"QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"}}"#
    )
    XCTAssertEqual(
      recordJSON(record([("l", .link(rawCID))])),
      #"{"$type":"com.example.test","l":{"$link":"\#(rawCIDText)"}}"#)
    XCTAssertEqual(
      recordJSON(record([("l", .map([("$link", .text(rawCIDText))]))])),
      #"{"$type":"com.example.test","l":{"$link":"\#(rawCIDText)"}}"#)
    XCTAssertNil(recordJSON(record([("l", .map([("$link", .text(rawCIDText)), ("x", 1)]))])))
    XCTAssertNil(recordJSON(record([("l", .map([("$link", "bafynotacid")]))])))
    XCTAssertNil(recordJSON(record([("l", .tag(42, .bytes([0x01] + rawCID)))])), "no 0x00 prefix")
    XCTAssertNil(recordJSON(record([("l", .tag(42, .bytes([0x00] + rawCID.dropLast())))])))
    XCTAssertNil(recordJSON(record([("l", .tag(1, .int(5)))])), "tags other than 42")
  }

  func testCIDLookalikeStringsStayStrings() {
    XCTAssertEqual(
      recordJSON(record([("subject", .map([("cid", .text(rawCIDText)), ("uri", "at://x")]))])),
      #"{"$type":"com.example.test","subject":{"cid":"\#(rawCIDText)","uri":"at://x"}}"#)
  }

  func testFloats() {
    XCTAssertNil(recordJSON(record([("f", .float(1.5))])))
    XCTAssertEqual(recordJSON(record([("f", .float(2.0))])), #"{"$type":"com.example.test","f":2}"#)
    XCTAssertEqual(
      recordJSON(record([("f", .float(-0.0))])), #"{"$type":"com.example.test","f":0}"#)
    XCTAssertNil(recordJSON(record([("f", .float(9.3e18))])))
    XCTAssertNil(recordJSON(record([("f", .float(.nan))])))
    XCTAssertNil(recordJSON(record([("f", .float(.infinity))])))
    XCTAssertEqual(
      recordJSON(record([("f", .float(-0x1p63))])),
      #"{"$type":"com.example.test","f":-9223372036854775808}"#)
    // Half and single precision are accepted too.
    XCTAssertEqual(
      recordJSON(bytes: [0xA1, 0x61, 0x66, 0xF9, 0x40, 0x00]), #"{"f":2}"#)
    XCTAssertEqual(
      recordJSON(bytes: [0xA1, 0x61, 0x66, 0xFA, 0x40, 0x40, 0x00, 0x00]), #"{"f":3}"#)
  }

  func testIntegers() {
    XCTAssertNil(recordJSON(record([("i", .unsigned(1 << 63))])))
    XCTAssertEqual(
      recordJSON(record([("i", .int(Int64.min))])),
      #"{"$type":"com.example.test","i":-9223372036854775808}"#)
    XCTAssertEqual(
      recordJSON(record([("i", .int(Int64.max))])),
      #"{"$type":"com.example.test","i":9223372036854775807}"#)
    // -1 - 2^63 does not fit: major type 1 with argument 2^63.
    XCTAssertNil(recordJSON(bytes: [0xA1, 0x61, 0x69, 0x3B, 0x80, 0, 0, 0, 0, 0, 0, 0]))
  }

  func testDollarTypeRules() {
    XCTAssertNil(recordJSON(.map([("$type", "")])))
    XCTAssertNil(recordJSON(.map([("$type", 5)])))
    XCTAssertNil(recordJSON(.map([("$type", "blob"), ("ref", .link(rawCID)), ("size", 1)])))
    XCTAssertNil(recordJSON(record([("nested", .map([("$type", .null)]))])))
  }

  func testEscapingAndKeyOrder() {
    XCTAssertEqual(
      recordJSON(record([("t", .text("a&b<c>d/e\u{2028}\u{01}\té"))])),
      #"{"$type":"com.example.test","t":"a\u0026b\u003cc\u003ed/e\u2028\u0001\té"}"#)
    XCTAssertEqual(
      recordJSON(.map([("b", 1), ("a", 2), ("B", 3), ("$type", "x.y.z"), ("aa", 4)])),
      #"{"$type":"x.y.z","B":3,"a":2,"aa":4,"b":1}"#)
    // Canonical CBOR order (length first) is not the output order.
    XCTAssertEqual(
      recordJSON(.map([("text", "hi"), ("langs", .array(["en"])), ("createdAt", "now")])),
      #"{"createdAt":"now","langs":["en"],"text":"hi"}"#)
    XCTAssertEqual(
      recordJSON(.map([("n", .null), ("t", true), ("f", false)])), #"{"f":false,"n":null,"t":true}"#
    )
  }

  func testStructuralFailures() {
    XCTAssertNil(recordJSON(.array([1])), "root must be a map")
    XCTAssertNil(recordJSON(.orderedMap([("a", 1), ("a", 2)])), "duplicate keys")
    XCTAssertNil(recordJSON(.orderedMap([(.int(1), 1)])), "non-text key")
    XCTAssertNil(recordJSON(bytes: CBORValue.map([("a", 1)]).encoded + [0x01]), "trailing bytes")
    XCTAssertNil(recordJSON(bytes: [0xA1, 0x61, 0x61, 0x18, 0x05]), "non-minimal integer")
    XCTAssertNil(recordJSON(bytes: [0xBF, 0x61, 0x61, 0x01, 0xFF]), "indefinite map")
    XCTAssertNil(recordJSON(bytes: [0xA1, 0x61, 0x61, 0xF7]), "undefined")
    XCTAssertNil(recordJSON(bytes: [0xA1, 0x61, 0x61, 0x61, 0xFF]), "invalid UTF-8 value")
    XCTAssertNil(recordJSON(bytes: [0xA1, 0x61, 0xFF, 0x01]), "invalid UTF-8 key")
    XCTAssertNil(recordJSON(bytes: []), "empty block")
  }

  func testDepthLimit() {
    func nested(_ arrays: Int) -> CBORValue {
      var value: CBORValue = 1
      for _ in 0..<arrays { value = .array([value]) }
      return .map([("a", value)])
    }
    // The root map is depth 1, so 127 arrays reach depth 128.
    XCTAssertNotNil(recordJSON(nested(127)))
    XCTAssertNil(recordJSON(nested(128)))
  }

  func testElementLimit() {
    let limit = RecordConverter.maxContainerElements
    XCTAssertNotNil(recordJSON(.map([("a", .array([CBORValue](repeating: 0, count: limit)))])))
    XCTAssertNil(recordJSON(.map([("a", .array([CBORValue](repeating: 0, count: limit + 1)))])))
    let keys = (0..<limit).map { (String($0), CBORValue.int(0)) }
    XCTAssertNotNil(recordJSON(.map(keys)))
    XCTAssertNil(recordJSON(.map(keys + [("x", 0)])))
  }

  func testKeyLengthLimit() {
    XCTAssertNotNil(recordJSON(.map([(String(repeating: "k", count: 8_192), 1)])))
    XCTAssertNil(recordJSON(.map([(String(repeating: "k", count: 8_193), 1)])))
  }

  func testBlockSizeLimit() {
    // map(1) + "a" (2 bytes) + a text header of 5 bytes = 8 bytes around the text.
    let exact = CBORValue.map([("a", .text(String(repeating: "x", count: (1 << 20) - 8)))]).encoded
    XCTAssertEqual(exact.count, 1 << 20)
    XCTAssertNotNil(recordJSON(bytes: exact))
    let over = CBORValue.map([("a", .text(String(repeating: "x", count: (1 << 20) - 7)))]).encoded
    XCTAssertNil(recordJSON(bytes: over))
  }

  func testNestingBombIsRejectedQuickly() {
    let bomb = [0xA1, 0x61, 0x61] + [UInt8](repeating: 0x81, count: 100_000) + [0x01]
    let clock = ContinuousClock()
    let elapsed = clock.measure { XCTAssertNil(recordJSON(bytes: bomb)) }
    XCTAssertLessThan(elapsed, .seconds(1))
  }
}
