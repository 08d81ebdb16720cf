#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

// Comparing raw bytes from a frame (map keys, op actions) without making strings.

/// Byte-wise comparison, shorter first on a common prefix (Go's string order).
@inline(__always)
func compare(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
  let n = Swift.min(a.count, b.count)
  if n > 0 {
    let c = memcmp(a.baseAddress!, b.baseAddress!, n)
    if c != 0 { return Int(c) }
  }
  return a.count - b.count
}

extension UnsafeRawBufferPointer {
  /// Whether these bytes equal an ASCII literal.
  @inline(__always)
  public func matches(_ literal: StaticString) -> Bool {
    guard count == literal.utf8CodeUnitCount else { return false }
    let expected = literal.utf8Start
    for i in 0..<count where self[i] != expected[i] { return false }
    return true
  }
}
