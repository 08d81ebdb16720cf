/// Syntax checks for the identifiers subscribers filter by (PROTOCOL §2.2–2.3).
public enum Identifier {
  /// An atproto NSID: ASCII, ≤ 317 bytes, ≥ 3 segments; each segment but the last is 1–63 of
  /// `A–Z a–z 0–9 -` not starting or ending with `-` (the first starting with a letter); the last
  /// is 1–63 letters and digits starting with a letter.
  public static func isNSID(_ value: String) -> Bool {
    let bytes = Array(value.utf8)
    guard bytes.count <= 317 else { return false }
    let segments = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
    guard segments.count >= 3 else { return false }
    for (index, segment) in segments.enumerated() {
      guard (1...63).contains(segment.count) else { return false }
      let isLast = index == segments.count - 1
      for byte in segment {
        let allowed = isLetter(byte) || isDigit(byte) || (!isLast && byte == UInt8(ascii: "-"))
        guard allowed else { return false }
      }
      if index == 0 || isLast {
        guard isLetter(segment.first!) else { return false }
      }
      if !isLast && (segment.first == UInt8(ascii: "-") || segment.last == UInt8(ascii: "-")) {
        return false
      }
    }
    return true
  }

  /// A DID: `did:` + a lowercase method + `:` + `[a-zA-Z0-9._:%-]*` ending in `[a-zA-Z0-9._-]`,
  /// at most 2,048 bytes.
  public static func isDID(_ value: String) -> Bool {
    let bytes = Array(value.utf8)
    guard bytes.count <= 2_048, bytes.starts(with: Array("did:".utf8)) else { return false }
    let rest = bytes.dropFirst(4)
    guard let colon = rest.firstIndex(of: UInt8(ascii: ":")), colon > rest.startIndex,
      rest[rest.startIndex..<colon].allSatisfy({
        $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")
      })
    else { return false }
    let identifier = rest[(colon + 1)...]
    guard let last = identifier.last, last != UInt8(ascii: ":"), last != UInt8(ascii: "%") else {
      return false
    }
    return identifier.allSatisfy { byte in
      isLetter(byte) || isDigit(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
        || byte == UInt8(ascii: ":") || byte == UInt8(ascii: "%") || byte == UInt8(ascii: "-")
    }
  }

  private static func isLetter(_ b: UInt8) -> Bool {
    (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z"))
      || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
  }

  private static func isDigit(_ b: UInt8) -> Bool {
    b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")
  }
}
