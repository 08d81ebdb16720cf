/// A request URI's query, split off its path and decoded the way Go's `url.ParseQuery` does
/// (PROTOCOL §2.1): pairs split on `&`, `%XX` and `+` decoded, keys case-sensitive and repeatable,
/// order kept, values never split on commas. A pair with a malformed escape or a `;` is an error:
/// `parse` drops it, `parseStrict` fails with the error Go reports.
public enum QueryString {
  /// The path and the query of a request URI: what precedes and what follows the first `?`
  /// (the query is empty when there is none).
  public static func split(_ uri: String) -> (path: Substring, query: Substring) {
    let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
    return (parts[0], parts.count > 1 ? parts[1] : "")
  }

  /// Every well-formed pair, in order; pairs with an error are dropped. Never fails, whatever the
  /// number of pairs.
  public static func parse(_ query: Substring) -> [(key: String, value: String)] {
    decode(query).pairs
  }

  /// Go's `url.ParseQuery` limit on the pairs of one query (its `urlmaxqueryparams` default).
  public static let maxStrictPairs = 10_000

  /// Every pair, in order, or the error Go's `url.ParseQuery` returns (Go 1.26): more than
  /// `maxStrictPairs` pairs (counting `&`s) fail before anything else; then a `;` in any pair
  /// fails with `.semicolon` (Go overwrites an earlier error with it); then the first malformed
  /// escape.
  public static func parseStrict(_ query: Substring) -> Result<
    [(key: String, value: String)], QueryError
  > {
    guard query.utf8.count(where: { $0 == UInt8(ascii: "&") }) < maxStrictPairs else {
      return .failure(.tooManyPairs)
    }
    let (pairs, error) = decode(query)
    if let error { return .failure(error) }
    return .success(pairs)
  }

  /// Go's `parseQuery` loop: the well-formed pairs, and the error it would return.
  private static func decode(_ query: Substring) -> (
    pairs: [(key: String, value: String)], error: QueryError?
  ) {
    var pairs: [(key: String, value: String)] = []
    var error: QueryError?
    for part in query.split(separator: "&", omittingEmptySubsequences: true) {
      guard !part.contains(";") else {
        error = .semicolon
        continue
      }
      let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      // The key's error first, as Go unescapes the key before the value.
      switch (unescape(kv[0]), unescape(kv.count > 1 ? kv[1] : "")) {
      case (.success(let key), .success(let value)): pairs.append((key, value))
      case (.failure(let escape), _), (_, .failure(let escape)): error = error ?? escape
      }
    }
    return (pairs, error)
  }

  /// `%XX` and `+` decoded. Bytes that are not UTF-8 become U+FFFD.
  static func unescape(_ text: Substring) -> Result<String, QueryError> {
    var bytes: [UInt8] = []
    let utf8 = text.utf8
    bytes.reserveCapacity(utf8.count)
    var i = utf8.startIndex
    while i != utf8.endIndex {
      let byte = utf8[i]
      switch byte {
      case UInt8(ascii: "+"): bytes.append(UInt8(ascii: " "))
      case UInt8(ascii: "%"):
        let escape = utf8[i...].prefix(3)
        guard escape.count == 3, let high = hexValue(escape.dropFirst().first!),
          let low = hexValue(escape.last!)
        else {
          return .failure(.badEscape(Array(escape)))
        }
        bytes.append(high << 4 | low)
        i = escape.endIndex
        continue
      default: bytes.append(byte)
      }
      i = utf8.index(after: i)
    }
    return .success(String(decoding: bytes, as: UTF8.self))
  }

  private static func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
    default: nil
    }
  }
}

/// Why a query is malformed, with Go's `url.ParseQuery` error text as `description`.
public enum QueryError: Error, Equatable, Sendable, CustomStringConvertible {
  /// More than `QueryString.maxStrictPairs` pairs.
  case tooManyPairs
  /// A pair holds a `;` (Go no longer treats it as a separator).
  case semicolon
  /// A `%` not followed by two hex digits: the bytes from the `%`, at most three.
  case badEscape([UInt8])

  public var description: String {
    switch self {
    case .tooManyPairs: "number of URL query parameters exceeded limit"
    case .semicolon: "invalid semicolon separator in query"
    case .badEscape(let bytes): "invalid URL escape " + goQuote(bytes)
    }
  }
}

/// Go's `strconv.Quote` of a string's UTF-8 (`goQuote(_:)` on its bytes).
public func goQuote(_ text: String) -> String { goQuote(Array(text.utf8)) }

/// Go's `strconv.Quote` for the few bytes of an escape error: printable characters as they are,
/// `"` and `\` escaped, control characters as `\n`-style or `\xNN` escapes, bytes that are not
/// UTF-8 as `\xNN`, other unprintable characters as `\uNNNN`.
public func goQuote(_ bytes: [UInt8]) -> String {
  func hex(_ value: UInt32, _ width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
  }
  var out = "\""
  var i = 0
  while i < bytes.count {
    let byte = bytes[i]
    if byte < 0x80 {
      switch byte {
      case 0x07: out += "\\a"
      case 0x08: out += "\\b"
      case 0x0C: out += "\\f"
      case 0x0A: out += "\\n"
      case 0x0D: out += "\\r"
      case 0x09: out += "\\t"
      case 0x0B: out += "\\v"
      case UInt8(ascii: "\""): out += "\\\""
      case UInt8(ascii: "\\"): out += "\\\\"
      case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(byte))
      default: out += "\\x" + hex(UInt32(byte), 2)
      }
      i += 1
      continue
    }
    // A whole UTF-8 sequence decodes to one scalar; anything else is one invalid byte.
    var decoder = UTF8()
    var rest = bytes[i...].makeIterator()
    guard case .scalarValue(let scalar) = decoder.decode(&rest) else {
      out += "\\x" + hex(UInt32(byte), 2)
      i += 1
      continue
    }
    i += UTF8.width(scalar)
    if isGoPrintable(scalar) {
      out.unicodeScalars.append(scalar)
    } else if scalar.value < 0x10000 {
      out += "\\u" + hex(scalar.value, 4)
    } else {
      out += "\\U" + hex(scalar.value, 8)
    }
  }
  return out + "\""
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space.
private func isGoPrintable(_ scalar: Unicode.Scalar) -> Bool {
  switch scalar.properties.generalCategory {
  case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
    .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .letterNumber, .otherNumber,
    .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
    .initialPunctuation, .finalPunctuation, .otherPunctuation, .mathSymbol, .currencySymbol,
    .modifierSymbol, .otherSymbol:
    true
  default: scalar == " "
  }
}
