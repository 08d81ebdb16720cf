#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Comparing raw bytes from a frame (map keys, CIDs, collection names) without making strings.
public enum RawBytes {
  /// Byte-wise comparison, shorter first on a common prefix (Go's string order). Short inputs
  /// (map keys, mostly) are compared in place: a call to `memcmp` costs more than they do.
  @inlinable @inline(__always)
  public static func compare(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
    let n = Swift.min(a.count, b.count)
    if n > 16 {
      let c = memcmp(a.baseAddress!, b.baseAddress!, n)
      if c != 0 { return Int(c) }
    } else {
      for i in 0..<n where a[i] != b[i] { return Int(a[i]) - Int(b[i]) }
    }
    return a.count - b.count
  }

  /// Whether two byte ranges are equal. CIDs and collection names share long prefixes, so the
  /// last eight bytes (a CID's digest) are compared first and most unequal pairs end there.
  @inlinable @inline(__always)
  public static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    let n = a.count
    guard n == b.count else { return false }
    guard n >= 8 else { return compare(a, b) == 0 }
    let tailA = UnsafeRawPointer(a.baseAddress! + n - 8).loadUnaligned(as: UInt64.self)
    let tailB = UnsafeRawPointer(b.baseAddress! + n - 8).loadUnaligned(as: UInt64.self)
    return tailA == tailB && memcmp(a.baseAddress!, b.baseAddress!, n - 8) == 0
  }
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
