import SyntheticFirehose
import XCTest

@testable import Firehose

/// `CBORReader.next()` reads short heads itself and hands the rest to libcbor: for every
/// possible head (with every one-byte argument) and for every token of real frames, it must
/// give exactly what libcbor's path gives.
final class CBORFastPathTests: XCTestCase {
  private func describe(_ token: CBORToken, _ base: UnsafeRawPointer) -> String {
    switch token {
    case .bytes(let b): "bytes@\(b.baseAddress.map { $0 - base } ?? -1)+\(b.count)"
    case .text(let t): "text@\(t.baseAddress.map { $0 - base } ?? -1)+\(t.count)"
    default: "\(token)"
    }
  }

  /// Both paths from the start of `bytes`: (token, offset after).
  private func both(_ bytes: [UInt8]) -> (fast: String, libcbor: String) {
    bytes.withUnsafeBytes { raw in
      var fast = CBORReader(raw)
      var slow = CBORReader(raw)
      let a = fast.next()
      let b = slow.nextFromLibcbor()
      return (
        "\(describe(a, raw.baseAddress!)) → \(fast.offset)",
        "\(describe(b, raw.baseAddress!)) → \(slow.offset)"
      )
    }
  }

  func testEveryShortHeadAgreesWithLibcbor() {
    for tailLength in [0, 1, 30, 600] {
      let tail = (0..<tailLength).map { UInt8(truncatingIfNeeded: $0 &* 7) }
      for first in 0...255 {
        for second in 0...255 {
          let bytes = [UInt8(first), UInt8(second)] + tail
          let (fast, libcbor) = both(bytes)
          if fast != libcbor {
            return XCTFail("\(bytes.prefix(3)) tail \(tailLength): \(fast) vs \(libcbor)")
          }
        }
        let (fast, libcbor) = both([UInt8(first)])
        XCTAssertEqual(fast, libcbor, "\(first) alone")
      }
    }
  }

  func testEveryTokenOfGeneratedFramesAgrees() {
    var generator = FirehoseGenerator(seed: 3)
    for _ in 0..<200 {
      let frame = generator.next()
      frame.withUnsafeBytes { raw in
        var fast = CBORReader(raw)
        var slow = CBORReader(raw)
        while !fast.isAtEnd {
          let a = describe(fast.next(), raw.baseAddress!)
          let b = describe(slow.nextFromLibcbor(), raw.baseAddress!)
          XCTAssertEqual(a, b)
          XCTAssertEqual(fast.offset, slow.offset)
          if a == "invalid" || a != b { return }
        }
      }
    }
  }
}
