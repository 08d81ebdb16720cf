import Firehose
import XCTest

final class JSONStringTests: XCTestCase {
  private func escape(_ bytes: [UInt8], _ invalid: JSONString.InvalidUTF8 = .reject) -> String? {
    var sink = ByteSink()
    defer { sink.release() }
    let ok = bytes.withUnsafeBytes { JSONString.write($0, to: &sink, invalid: invalid) }
    return ok ? String(decoding: sink.bytes, as: UTF8.self) : nil
  }

  func testEscapesLikeGo() {
    XCTAssertEqual(
      escape(Array("a&b<c>d/e\u{2028}\u{01}\té".utf8)),
      #""a\u0026b\u003cc\u003ed/e\u2028\u0001\té""#)
    XCTAssertEqual(
      escape(Array("\"\\\n\r\u{08}\u{0C}\u{1B}\u{7F}\u{2029}".utf8)),
      "\"\\\"\\\\\\n\\r\\u0008\\u000c\\u001b\u{7F}\\u2029\"")
    XCTAssertEqual(escape(Array("日本語 🎉 ok".utf8)), "\"日本語 🎉 ok\"")
    XCTAssertEqual(escape([]), "\"\"")
  }

  /// A slow reference for PROTOCOL §3.5, scalar by scalar.
  private func reference(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case "&", "<", ">", "\u{00}"..."\u{1F}":
        out += "\\u00" + (scalar.value < 16 ? "0" : "") + String(scalar.value, radix: 16)
      case "\u{2028}": out += "\\u2028"
      case "\u{2029}": out += "\\u2029"
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }

  /// Every special byte at every position inside and across the 8-byte fast path.
  func testEscapesAtEveryPositionOfLongStrings() {
    for special in ["&", "<", ">", "\"", "\\", "\u{1F}", "\u{0}", "é", "\u{2028}", "🎉", "\t"] {
      for position in 0..<20 {
        let text =
          String(repeating: "x", count: position) + special
          + String(repeating: "y", count: 20 - position)
        XCTAssertEqual(escape(Array(text.utf8)), reference(text), "\(position) \(special)")
      }
    }
  }

  func testInvalidUTF8IsRejectedOrReplaced() {
    let invalid: [[UInt8]] = [
      [0x61, 0xFF], [0xC0, 0x80], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
      [0xE2, 0x82], [0x80], [0xF8, 0x88, 0x80, 0x80, 0x80],
    ]
    for bytes in invalid {
      XCTAssertNil(escape(bytes), "\(bytes)")
    }
    XCTAssertEqual(escape([0x61, 0xFF, 0x62], .replace), #""a\ufffdb""#)
  }
}
