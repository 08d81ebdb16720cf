/// The byte-to-text encodings atproto JSON uses besides base32 (`Base32.lowercase`, for CIDv1):
/// base58btc (CIDv0) and standard base64 without padding (`$bytes`).
public enum Multibase {
  private static let base58Alphabet = Array(
    "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz".utf8)

  @inline(__always)
  private static func base64Digit(_ v: UInt32) -> UInt8 {
    let d = UInt8(truncatingIfNeeded: v)
    switch d {
    case 0..<26: return d &+ UInt8(ascii: "A")
    case 26..<52: return d &+ 71  // 'a' - 26
    case 52..<62: return d &- 4  // '0' - 52
    case 62: return UInt8(ascii: "+")
    default: return UInt8(ascii: "/")
    }
  }

  /// Appends base58btc (Bitcoin alphabet).
  public static func appendBase58(_ data: UnsafeRawBufferPointer, to out: inout ByteSink) {
    var zeros = 0
    while zeros < data.count && data[zeros] == 0 { zeros += 1 }
    // Big-endian base-58 digits, most significant first.
    var digits = [UInt8](repeating: 0, count: data.count * 138 / 100 + 1)
    var length = 0
    for byte in data[zeros...] {
      var carry = Int(byte)
      var k = 0
      var j = digits.count - 1
      while carry != 0 || k < length {
        carry += 256 * Int(digits[j])
        digits[j] = UInt8(carry % 58)
        carry /= 58
        j -= 1
        k += 1
      }
      length = k
    }
    for _ in 0..<zeros { out.append(UInt8(ascii: "1")) }
    for d in digits[(digits.count - length)...] { out.append(base58Alphabet[Int(d)]) }
  }

  /// Decodes base58btc; nil on a character outside the alphabet.
  public static func decodeBase58(_ text: some Collection<UInt8>) -> [UInt8]? {
    var zeros = 0
    for c in text {
      guard c == UInt8(ascii: "1") else { break }
      zeros += 1
    }
    var bytes: [UInt8] = []  // little-endian base-256 digits
    for c in text.dropFirst(zeros) {
      guard let value = base58Alphabet.firstIndex(of: c) else { return nil }
      var carry = value
      for k in bytes.indices {
        carry += Int(bytes[k]) * 58
        bytes[k] = UInt8(carry & 0xFF)
        carry >>= 8
      }
      while carry > 0 {
        bytes.append(UInt8(carry & 0xFF))
        carry >>= 8
      }
    }
    return [UInt8](repeating: 0, count: zeros) + bytes.reversed()
  }

  /// Appends standard base64 (`+/`) without padding.
  public static func appendBase64(_ data: UnsafeRawBufferPointer, to out: inout ByteSink) {
    let rest = data.count % 3
    let length = data.count / 3 * 4 + (rest == 0 ? 0 : rest + 1)
    out.reserve(length)
    // Room is reserved: the characters are written in place.
    let o = out.base + out.count
    var i = 0
    var j = 0
    while i + 3 <= data.count {
      let v = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
      o[j] = base64Digit(v >> 18)
      o[j + 1] = base64Digit((v >> 12) & 63)
      o[j + 2] = base64Digit((v >> 6) & 63)
      o[j + 3] = base64Digit(v & 63)
      i += 3
      j += 4
    }
    if rest > 0 {
      let v = UInt32(data[i]) << 16 | (rest == 2 ? UInt32(data[i + 1]) << 8 : 0)
      o[j] = base64Digit(v >> 18)
      o[j + 1] = base64Digit((v >> 12) & 63)
      if rest == 2 { o[j + 2] = base64Digit((v >> 6) & 63) }
    }
    out.count += length
  }

  /// Decodes standard base64 without padding; nil on `=`, other characters or a length of 4k+1.
  public static func decodeBase64Unpadded(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
    if text.count % 4 == 1 { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(text.count * 3 / 4)
    var buffer: UInt32 = 0
    var bits = 0
    for c in text {
      let v: UInt32
      switch c {
      case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - UInt8(ascii: "A"))
      case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - UInt8(ascii: "a")) + 26
      case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - UInt8(ascii: "0")) + 52
      case UInt8(ascii: "+"): v = 62
      case UInt8(ascii: "/"): v = 63
      default: return nil
      }
      buffer = (buffer << 6) | v
      bits += 6
      if bits >= 8 {
        bits -= 8
        out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
      }
    }
    return out
  }
}
