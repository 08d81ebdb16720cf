/// Decodes a URL query the way Go's `url.ParseQuery` does (PROTOCOL §2.1): pairs split on `&`,
/// `%XX` and `+` decoded, a pair with a malformed escape or a `;` dropped, keys case-sensitive and
/// repeatable, values never split on commas.
public enum QueryString {
  public static func parse(_ query: Substring) -> [(key: String, value: String)] {
    var pairs: [(String, String)] = []
    for part in query.split(separator: "&", omittingEmptySubsequences: true)
    where !part.contains(";") {
      let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      guard let key = unescape(kv[0]), let value = unescape(kv.count > 1 ? kv[1] : "") else {
        continue
      }
      pairs.append((key, value))
    }
    return pairs
  }

  /// `%XX` and `+` decoded; nil on a malformed escape. Bytes that are not UTF-8 become U+FFFD.
  static func unescape(_ text: Substring) -> String? {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(text.utf8.count)
    var iterator = text.utf8.makeIterator()
    while let byte = iterator.next() {
      switch byte {
      case UInt8(ascii: "+"): bytes.append(UInt8(ascii: " "))
      case UInt8(ascii: "%"):
        guard let high = iterator.next().flatMap(hexValue),
          let low = iterator.next().flatMap(hexValue)
        else {
          return nil
        }
        bytes.append(high << 4 | low)
      default: bytes.append(byte)
      }
    }
    return String(decoding: bytes, as: UTF8.self)
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
