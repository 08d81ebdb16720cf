/// Writes strings as JSON string literals exactly as Go's `encoding/json` does (PROTOCOL §3.5):
/// `"` `\` and controls escaped, `&<>` and U+2028/U+2029 as `\u` escapes, everything else raw UTF-8.
public enum JSONString {
  /// What to do with bytes that are not valid UTF-8.
  public enum InvalidUTF8 {
    /// Fail (records: the op is dropped).
    case reject
    /// Write `\ufffd` for each bad byte, as Go does.
    case replace
  }

  /// `text` as a JSON string literal (for logs and pages; invalid UTF-8 cannot occur in a
  /// `String`).
  public static func quoted(_ text: String) -> String {
    var sink = ByteSink(capacity: text.utf8.count + 16)
    defer { sink.release() }
    var text = text
    _ = text.withUTF8 { write(UnsafeRawBufferPointer($0), to: &sink, invalid: .replace) }
    return String(decoding: sink.bytes, as: UTF8.self)
  }

  /// Appends `"…"` for `text`. Returns false (leaving partial output) if `text` is not valid
  /// UTF-8 and `invalid` is `.reject`.
  @discardableResult
  public static func write(
    _ text: UnsafeRawBufferPointer, to out: inout ByteSink, invalid: InvalidUTF8 = .reject
  ) -> Bool {
    out.reserve(text.count + 2)
    out.append(UInt8(ascii: "\""))
    guard let base = text.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
      out.append(UInt8(ascii: "\""))
      return true
    }
    let n = text.count
    var runStart = 0  // first byte not yet copied
    var i = 0
    while i < n {
      // Skip 8 plain ASCII bytes at a time; fewer than 8 at the end (most keys are shorter) are
      // checked the same way, padded with plain letters.
      if i + 8 <= n {
        if !wordNeedsAttention(UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)) {
          i += 8
          continue
        }
      } else if !wordNeedsAttention(paddedWord(base + i, n - i)) {
        break
      }
      let c = base[i]
      if c < 0x80 {
        if !needsEscape(c) {
          i += 1
          continue
        }
        out.append(base + runStart, count: i - runStart)
        writeEscape(c, to: &out)
        i += 1
        runStart = i
        continue
      }
      let length = validSequenceLength(base, i, n)
      if length == 0 {
        guard case .replace = invalid else { return false }
        out.append(base + runStart, count: i - runStart)
        out.append("\\ufffd")
        i += 1
        runStart = i
        continue
      }
      // U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
      if length == 3, c == 0xE2, base[i + 1] == 0x80, base[i + 2] & 0xFE == 0xA8 {
        out.append(base + runStart, count: i - runStart)
        out.append(base[i + 2] == 0xA8 ? "\\u2028" : "\\u2029")
        i += 3
        runStart = i
        continue
      }
      i += length
    }
    out.append(base + runStart, count: n - runStart)
    out.append(UInt8(ascii: "\""))
    return true
  }

  @inline(__always)
  private static func writeEscape(_ c: UInt8, to out: inout ByteSink) {
    switch c {
    case UInt8(ascii: "\""): out.append("\\\"")
    case UInt8(ascii: "\\"): out.append("\\\\")
    case 0x0A: out.append("\\n")
    case 0x0D: out.append("\\r")
    case 0x09: out.append("\\t")
    default:
      // Controls, `&`, `<` and `>`: \u00XX with lowercase hex.
      out.append("\\u00")
      out.append(hexDigit(c >> 4))
      out.append(hexDigit(c & 0x0F))
    }
  }

  @inline(__always)
  private static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? v &+ 48 : v &+ 87 }

  /// Length (2–4) of the valid UTF-8 sequence starting at a non-ASCII byte, or 0 if invalid.
  @inline(__always)
  private static func validSequenceLength(
    _ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int
  ) -> Int {
    let c = p[i]
    @inline(__always) func cont(_ k: Int) -> Bool { i + k < n && p[i + k] & 0xC0 == 0x80 }
    switch c {
    case 0xC2...0xDF:
      return cont(1) ? 2 : 0
    case 0xE0...0xEF:
      guard cont(1), cont(2) else { return 0 }
      let b1 = p[i + 1]
      if c == 0xE0 && b1 < 0xA0 { return 0 }  // overlong
      if c == 0xED && b1 >= 0xA0 { return 0 }  // surrogate
      return 3
    case 0xF0...0xF4:
      guard cont(1), cont(2), cont(3) else { return 0 }
      let b1 = p[i + 1]
      if c == 0xF0 && b1 < 0x90 { return 0 }  // overlong
      if c == 0xF4 && b1 >= 0x90 { return 0 }  // past U+10FFFF
      return 4
    default:
      return 0
    }
  }
}

/// Whether any of 8 bytes is non-ASCII or needs an escape (SWAR: a zero byte of `x` shows as a
/// set high bit of `(x - 0x01…) & ~x & 0x80…`).
@inline(__always)
private func wordNeedsAttention(_ v: UInt64) -> Bool {
  let ones: UInt64 = 0x0101_0101_0101_0101
  let highs: UInt64 = 0x8080_8080_8080_8080
  @inline(__always) func hasZeroByte(_ x: UInt64) -> Bool { (x &- ones) & ~x & highs != 0 }
  if v & highs != 0 { return true }  // non-ASCII
  if (v &- ones &* 0x20) & ~v & highs != 0 { return true }  // a control byte (< 0x20)
  if hasZeroByte((v | ones &* 0x04) ^ (ones &* 0x26)) { return true }  // `"` 0x22 or `&` 0x26
  if hasZeroByte((v | ones &* 0x02) ^ (ones &* 0x3E)) { return true }  // `<` 0x3C or `>` 0x3E
  return hasZeroByte(v ^ (ones &* 0x5C))  // `\`
}

/// The `count` (< 8) bytes at `p` in a word whose other bytes are `a`s (which need no escape;
/// `wordNeedsAttention` looks at every byte alike, so their order does not matter).
@inline(__always)
private func paddedWord(_ p: UnsafePointer<UInt8>, _ count: Int) -> UInt64 {
  var word: UInt64 = 0x6161_6161_6161_6161
  withUnsafeMutableBytes(of: &word) { $0.baseAddress!.copyMemory(from: p, byteCount: count) }
  return word
}

/// Whether an ASCII byte needs an escape in Go's JSON strings: controls, `"`, `&`, `<`, `>`
/// (bits of the low mask) and `\` (the high mask).
@inline(__always)
private func needsEscape(_ c: UInt8) -> Bool {
  let low: UInt64 = 0x5000_0044_FFFF_FFFF
  let high: UInt64 = 1 << (0x5C - 64)
  return c < 64 ? (low >> UInt64(c)) & 1 != 0 : (high >> UInt64(c &- 64)) & 1 != 0
}
