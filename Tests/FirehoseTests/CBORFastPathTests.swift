import SyntheticFirehose
import XCTest

@testable import Firehose

/// `CBORReader.next()` reads heads with arguments of up to 8 bytes itself and hands the rest to libcbor: for every
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

  func testLongHeadsAgreeWithLibcborAtTheirLimits() {
    // Majors 0–6 with 2-, 4- and 8-byte arguments: just below, at and above the shortest-form
    // minimum, around the bytes that remain, and at the top of the range.
    for major in UInt8(0)...6 {
      for (info, size, minimum) in [(25, 2, UInt64(0x100)), (26, 4, 0x1_0000), (27, 8, 1 << 32)] {
        let top = size == 8 ? UInt64.max : (UInt64(1) << (8 * UInt64(size))) - 1
        for tailLength in [0, 5, 300] {
          let arguments: [UInt64] = [
            0, 23, minimum - 1, minimum, minimum + 1, UInt64(tailLength), UInt64(tailLength) + 1,
            UInt64(tailLength / 2), top >> 1, (top >> 1) + 1, top,
          ]
          for argument in arguments where argument <= top {
            var bytes = [major << 5 | UInt8(info)]
            for k in (0..<size).reversed() {
              bytes.append(UInt8(truncatingIfNeeded: argument >> (8 * UInt64(k))))
            }
            bytes += [UInt8](repeating: 0x61, count: tailLength)
            for cut in [bytes.count, 1 + size, size] where cut <= bytes.count {
              let (fast, libcbor) = both(Array(bytes.prefix(cut)))
              XCTAssertEqual(
                fast, libcbor, "major \(major) info \(info) argument \(argument) cut \(cut)")
            }
          }
        }
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
