/// Unsigned LEB128 varints, as used by CAR files and CIDs (multiformats unsigned-varint).
public enum Varint {
  /// Reads a varint at `offset`. Returns the value and its encoded length, or nil if it is
  /// truncated or does not fit in 63 bits (at most 9 bytes).
  @inline(__always)
  public static func read(_ p: UnsafeRawBufferPointer, at offset: Int) -> (value: Int, length: Int)?
  {
    var value: UInt64 = 0
    var shift: UInt64 = 0
    var i = offset
    while i < p.count {
      let byte = p[i]
      value |= UInt64(byte & 0x7F) << shift
      i += 1
      if byte & 0x80 == 0 {
        guard value <= UInt64(Int.max) else { return nil }
        return (Int(value), i - offset)
      }
      shift += 7
      if shift > 56 { return nil }
    }
    return nil
  }

  /// Whether the varint of `length` bytes at `offset` is in shortest form (no trailing zero group).
  @inline(__always)
  public static func isMinimal(_ p: UnsafeRawBufferPointer, at offset: Int, length: Int) -> Bool {
    length == 1 || p[offset + length - 1] != 0
  }

  /// Appends the varint encoding of `value`.
  public static func append(_ value: Int, to out: inout [UInt8]) {
    var v = UInt64(value)
    while v >= 0x80 {
      out.append(UInt8(truncatingIfNeeded: v) | 0x80)
      v >>= 7
    }
    out.append(UInt8(v))
  }
}
