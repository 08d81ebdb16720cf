#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The fuzzer's input as a buffer of exactly `count` bytes (so ASan catches any read past it).
public func fuzzInput(_ start: UnsafeRawPointer?, _ count: Int) -> UnsafeRawBufferPointer {
  UnsafeRawBufferPointer(start: count == 0 ? nil : start, count: count)
}

/// Stops the process with a message; libFuzzer records the input as a crash.
public func fuzzFailure(_ message: String, _ bytes: UnsafeRawBufferPointer) -> Never {
  let hex = bytes.prefix(256).map { byte in
    let digits = String(byte, radix: 16)
    return byte < 16 ? "0" + digits : digits
  }.joined()
  let text = Array("fuzz check failed: \(message)\ninput (first 256 bytes): \(hex)\n".utf8)
  _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
  abort()
}

/// A strict RFC 8259 check: one JSON value, valid UTF-8, nothing after it but whitespace.
public enum JSONCheck {
  public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var parser = Parser(bytes: bytes)
    parser.skipSpace()
    guard parser.value(depth: 0) else { return false }
    parser.skipSpace()
    return parser.position == bytes.count
  }

  private struct Parser {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    var peek: UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func skipSpace() {
      while let byte = peek, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D {
        position += 1
      }
    }

    mutating func literal(_ text: StaticString) -> Bool {
      let count = text.utf8CodeUnitCount
      guard bytes.count - position >= count else { return false }
      for i in 0..<count where bytes[position + i] != text.utf8Start[i] { return false }
      position += count
      return true
    }

    mutating func value(depth: Int) -> Bool {
      guard depth < 10_000, let byte = peek else { return false }
      switch byte {
      case UInt8(ascii: "{"):
        position += 1
        skipSpace()
        if peek == UInt8(ascii: "}") {
          position += 1
          return true
        }
        while true {
          skipSpace()
          guard peek == UInt8(ascii: "\""), string() else { return false }
          skipSpace()
          guard peek == UInt8(ascii: ":") else { return false }
          position += 1
          skipSpace()
          guard value(depth: depth + 1) else { return false }
          skipSpace()
          guard let next = peek else { return false }
          position += 1
          if next == UInt8(ascii: "}") { return true }
          guard next == UInt8(ascii: ",") else { return false }
        }
      case UInt8(ascii: "["):
        position += 1
        skipSpace()
        if peek == UInt8(ascii: "]") {
          position += 1
          return true
        }
        while true {
          skipSpace()
          guard value(depth: depth + 1) else { return false }
          skipSpace()
          guard let next = peek else { return false }
          position += 1
          if next == UInt8(ascii: "]") { return true }
          guard next == UInt8(ascii: ",") else { return false }
        }
      case UInt8(ascii: "\""): return string()
      case UInt8(ascii: "t"): return literal("true")
      case UInt8(ascii: "f"): return literal("false")
      case UInt8(ascii: "n"): return literal("null")
      default: return number()
      }
    }

    mutating func digits() -> Int {
      var n = 0
      while let byte = peek, byte >= 0x30, byte <= 0x39 {
        position += 1
        n += 1
      }
      return n
    }

    mutating func number() -> Bool {
      if peek == UInt8(ascii: "-") { position += 1 }
      if peek == UInt8(ascii: "0") {
        position += 1
      } else if digits() == 0 {
        return false
      }
      if peek == UInt8(ascii: ".") {
        position += 1
        guard digits() > 0 else { return false }
      }
      if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
        position += 1
        if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { position += 1 }
        guard digits() > 0 else { return false }
      }
      return true
    }

    mutating func hex4() -> UInt32? {
      guard bytes.count - position >= 4 else { return nil }
      var value: UInt32 = 0
      for _ in 0..<4 {
        let byte = bytes[position]
        position += 1
        let digit: UInt8
        switch byte {
        case 0x30...0x39: digit = byte - 0x30
        case 0x41...0x46: digit = byte - 0x41 + 10
        case 0x61...0x66: digit = byte - 0x61 + 10
        default: return nil
        }
        value = value << 4 | UInt32(digit)
      }
      return value
    }

    mutating func string() -> Bool {
      position += 1  // the opening quote
      while let byte = peek {
        switch byte {
        case UInt8(ascii: "\""):
          position += 1
          return true
        case UInt8(ascii: "\\"):
          position += 1
          guard let escape = peek else { return false }
          position += 1
          switch escape {
          case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
            UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            break
          case UInt8(ascii: "u"):
            guard hex4() != nil else { return false }
          default: return false
          }
        case 0..<0x20: return false
        case 0x20..<0x80: position += 1
        default:
          guard utf8Scalar() else { return false }
        }
      }
      return false
    }

    /// One multi-byte UTF-8 scalar, shortest form, no surrogates, ≤ U+10FFFF.
    mutating func utf8Scalar() -> Bool {
      let lead = bytes[position]
      let length: Int
      var scalar: UInt32
      switch lead {
      case 0xC2...0xDF: (length, scalar) = (2, UInt32(lead & 0x1F))
      case 0xE0...0xEF: (length, scalar) = (3, UInt32(lead & 0x0F))
      case 0xF0...0xF4: (length, scalar) = (4, UInt32(lead & 0x07))
      default: return false
      }
      guard bytes.count - position >= length else { return false }
      for i in 1..<length {
        let byte = bytes[position + i]
        guard byte & 0xC0 == 0x80 else { return false }
        scalar = scalar << 6 | UInt32(byte & 0x3F)
      }
      let minimum: UInt32 = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000
      guard scalar >= minimum, scalar <= 0x10FFFF, !(0xD800...0xDFFF).contains(scalar) else {
        return false
      }
      position += length
      return true
    }
  }
}
