/// A strict JSON reader for client messages (RFC 8259): numbers keep their text so integer rules
/// can be applied exactly; objects keep every key in order (duplicates resolved by the caller).
enum JSONValue: Equatable {
  case object([(String, JSONValue)])
  case array([JSONValue])
  case string(String)
  case number(String)
  case bool(Bool)
  case null

  static func == (a: JSONValue, b: JSONValue) -> Bool {
    switch (a, b) {
    case (.object(let x), .object(let y)):
      x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    case (.array(let x), .array(let y)): x == y
    case (.string(let x), .string(let y)), (.number(let x), .number(let y)): x == y
    case (.bool(let x), .bool(let y)): x == y
    case (.null, .null): true
    default: false
    }
  }

  /// Parses one complete value (surrounding whitespace allowed); nil on anything else.
  static func parse(_ bytes: [UInt8]) -> JSONValue? {
    var parser = Parser(bytes: bytes)
    parser.skipSpace()
    guard let value = parser.value(depth: 0) else { return nil }
    parser.skipSpace()
    return parser.index == bytes.count ? value : nil
  }

  private struct Parser {
    /// Objects and arrays nest at most this deep, which also bounds the recursion.
    static let maxDepth = 64

    let bytes: [UInt8]
    var index = 0

    mutating func skipSpace() {
      while index < bytes.count {
        switch bytes[index] {
        case 0x20, 0x09, 0x0A, 0x0D: index += 1
        default: return
        }
      }
    }

    mutating func literal(_ text: String) -> Bool {
      let expected = Array(text.utf8)
      guard bytes.count - index >= expected.count,
        Array(bytes[index..<(index + expected.count)]) == expected
      else {
        return false
      }
      index += expected.count
      return true
    }

    mutating func value(depth: Int) -> JSONValue? {
      guard index < bytes.count else { return nil }
      switch bytes[index] {
      case UInt8(ascii: "{"):
        guard depth < Self.maxDepth else { return nil }
        index += 1
        var members: [(String, JSONValue)] = []
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
          index += 1
          return .object(members)
        }
        while true {
          skipSpace()
          guard let key = string() else { return nil }
          skipSpace()
          guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
          index += 1
          skipSpace()
          guard let member = value(depth: depth + 1) else { return nil }
          members.append((key, member))
          skipSpace()
          guard index < bytes.count else { return nil }
          if bytes[index] == UInt8(ascii: ",") {
            index += 1
          } else if bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
          } else {
            return nil
          }
        }
      case UInt8(ascii: "["):
        guard depth < Self.maxDepth else { return nil }
        index += 1
        var items: [JSONValue] = []
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
          index += 1
          return .array(items)
        }
        while true {
          skipSpace()
          guard let item = value(depth: depth + 1) else { return nil }
          items.append(item)
          skipSpace()
          guard index < bytes.count else { return nil }
          if bytes[index] == UInt8(ascii: ",") {
            index += 1
          } else if bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(items)
          } else {
            return nil
          }
        }
      case UInt8(ascii: "\""):
        return string().map { .string($0) }
      case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
      case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
      case UInt8(ascii: "n"): return literal("null") ? .null : nil
      default:
        return number()
      }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, kept as text.
    mutating func number() -> JSONValue? {
      let start = index
      func digits() -> Int {
        let from = index
        while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 { index += 1 }
        return index - from
      }
      if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
      guard index < bytes.count else { return nil }
      if bytes[index] == UInt8(ascii: "0") {
        index += 1
      } else if digits() == 0 {
        return nil
      }
      if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
        index += 1
        guard digits() > 0 else { return nil }
      }
      if index < bytes.count, bytes[index] | 0x20 == UInt8(ascii: "e") {
        index += 1
        if index < bytes.count,
          bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")
        {
          index += 1
        }
        guard digits() > 0 else { return nil }
      }
      return .number(String(decoding: bytes[start..<index], as: UTF8.self))
    }

    /// A string with escapes decoded; control characters and bad escapes fail.
    mutating func string() -> String? {
      guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
      index += 1
      var out: [UInt8] = []
      while index < bytes.count {
        let c = bytes[index]
        index += 1
        switch c {
        case UInt8(ascii: "\""):
          return String(decoding: out, as: UTF8.self)
        case UInt8(ascii: "\\"):
          guard index < bytes.count else { return nil }
          let e = bytes[index]
          index += 1
          switch e {
          case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
          case UInt8(ascii: "b"): out.append(0x08)
          case UInt8(ascii: "f"): out.append(0x0C)
          case UInt8(ascii: "n"): out.append(0x0A)
          case UInt8(ascii: "r"): out.append(0x0D)
          case UInt8(ascii: "t"): out.append(0x09)
          case UInt8(ascii: "u"):
            guard var scalar = hex4() else { return nil }
            if (0xD800..<0xDC00).contains(scalar), let low = lowSurrogate() {
              scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            }
            // An unpaired surrogate becomes U+FFFD, as in Go's decoder; an escape after it is
            // decoded on its own.
            appendUTF8(Unicode.Scalar(scalar) ?? "\u{FFFD}", to: &out)
          default: return nil
          }
        case 0..<0x20:
          return nil
        default:
          out.append(c)
        }
      }
      return nil
    }

    /// The low half of a surrogate pair, `\uDC00`–`\uDFFF`, consumed only when it is one.
    mutating func lowSurrogate() -> UInt32? {
      guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"),
        bytes[index + 1] == UInt8(ascii: "u")
      else { return nil }
      let start = index
      index += 2
      guard let low = hex4(), (0xDC00..<0xE000).contains(low) else {
        index = start
        return nil
      }
      return low
    }

    /// Four hex digits (either case), consumed; nil if any is not one.
    mutating func hex4() -> UInt32? {
      guard bytes.count - index >= 4 else { return nil }
      var value: UInt32 = 0
      for _ in 0..<4 {
        let c = bytes[index]
        let digit: UInt32
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
        default: return nil
        }
        value = value << 4 | digit
        index += 1
      }
      return value
    }
  }
}

/// Appends the UTF-8 bytes of `scalar`.
private func appendUTF8(_ scalar: Unicode.Scalar, to out: inout [UInt8]) {
  UTF8.encode(scalar) { out.append($0) }
}
