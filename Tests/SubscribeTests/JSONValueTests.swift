import Foundation
import XCTest

@testable import Subscribe

/// The strict client-message JSON reader: escapes, surrogates, limits, and a differential check
/// against Foundation's parser on many generated and mutated texts.
final class JSONValueTests: XCTestCase {
  private func parse(_ text: String) -> JSONValue? { JSONValue.parse(Array(text.utf8)) }

  func testSurrogatePairsAndUnpairedSurrogates() {
    XCTAssertEqual(parse(#""\ud83d\ude00""#), .string("\u{1F600}"))
    XCTAssertEqual(parse(#""\uD83D\uDE00""#), .string("\u{1F600}"), "either case")
    // A high surrogate followed by an escape that is not a low surrogate: U+FFFD, then that
    // escape decoded on its own (Go's encoding/json), not swallowed.
    XCTAssertEqual(parse(#""\ud800\u0041""#), .string("\u{FFFD}A"))
    XCTAssertEqual(parse(#""\ud800\ud800\udc00""#), .string("\u{FFFD}\u{10000}"))
    XCTAssertEqual(parse(#""\ud800\n""#), .string("\u{FFFD}\n"))
    XCTAssertEqual(parse(#""\ud800x""#), .string("\u{FFFD}x"))
    XCTAssertEqual(parse(#""\ud800""#), .string("\u{FFFD}"))
    XCTAssertEqual(parse(#""\udc00\ud800""#), .string("\u{FFFD}\u{FFFD}"), "a lone low half")
    // The escape after a high surrogate must itself be valid.
    XCTAssertNil(parse(#""\ud800\uZZZZ""#))
    XCTAssertNil(parse(#""\ud800\u00""#))
    XCTAssertNil(parse(#""\ud800\x""#))
  }

  func testHexDigitsAreOnlyHexDigits() {
    XCTAssertEqual(parse(#""\u00aF""#), .string("\u{AF}"))
    // Bytes that become digits when OR-ed with 0x20 (0x10...0x19) or letters (A-F vs others).
    for byte in [0x10, 0x11, 0x19, 0x40, 0x47, 0x60, 0x67, 0x2F, 0x3A] as [UInt8] {
      let text = Array(#""\u00"#.utf8) + [byte, UInt8(ascii: "0"), UInt8(ascii: "\"")]
      XCTAssertNil(JSONValue.parse(text), "byte \(byte) is not a hex digit")
    }
  }

  func testDepthLimitAndLinearTime() {
    func nested(_ depth: Int) -> [UInt8] {
      Array(repeating: UInt8(ascii: "["), count: depth)
        + Array(repeating: UInt8(ascii: "]"), count: depth)
    }
    XCTAssertNotNil(JSONValue.parse(nested(64)))
    XCTAssertNil(JSONValue.parse(nested(65)))
    // Deep input far past the limit fails at the limit, without recursing further.
    XCTAssertNil(JSONValue.parse(Array(repeating: UInt8(ascii: "["), count: 5_000_000)))
    XCTAssertNil(JSONValue.parse(Array(repeating: UInt8(ascii: "{"), count: 1_000_000)))
    // Time is linear in the size: 10x the input takes well under 30x the time.
    func timed(_ count: Int) -> Duration {
      let item = Array(#"{"a":["\u00e9\ud83d\ude00",1.5e3,null,true]},"#.utf8)
      var text: [UInt8] = [UInt8(ascii: "[")]
      for _ in 0..<count { text += item }
      text[text.count - 1] = UInt8(ascii: "]")
      let clock = ContinuousClock()
      var best = Duration.seconds(1_000)
      for _ in 0..<3 {
        best = min(best, clock.measure { XCTAssertNotNil(JSONValue.parse(text)) })
      }
      return best
    }
    let small = timed(2_000)
    let large = timed(20_000)
    XCTAssertLessThan(large, small * 30, "small \(small), large \(large)")
  }

  // MARK: - Differential test against Foundation

  /// SplitMix64: a deterministic generator, so every run checks the same texts.
  private struct Random {
    var state: UInt64
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
  }

  private static let numbers = [
    "0", "-0", "1", "-1", "0.5", "-0.0", "1e5", "1E+5", "1e-5", "2.5E-3", "123456789",
    "9223372036854775807", "-9223372036854775808", "9223372036854775808",
    "18446744073709551615", "18446744073709551616", "1e308", "1.7976931348623157e308",
    "4.9e-324", "1e-400", "0.000000000000000000000000001", "123456789012345678901234567890",
    "-1.5e10", "3.14159",
  ]
  private static let badNumbers = [
    "01", "-", "+1", ".5", "1.", "1e", "1e+", "0x10", "--1", "1.5.5", "Infinity", "NaN", "-01",
    "1_000",
  ]

  private func whitespace(_ random: inout Random) -> String {
    random.chance(70) ? "" : random.pick([" ", "\n", "\t", "\r\n", "  "])
  }

  private func string(_ random: inout Random) -> String {
    var out = "\""
    for _ in 0..<random.below(8) {
      switch random.below(12) {
      case 0: out += random.pick(["\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"])
      case 1:
        let value = random.pick([0, 0x1F, 0x41, 0x7F, 0x80, 0xE9, 0x7FF, 0x800, 0xFFFD, 0xFFFF])
        out += String(format: random.chance(50) ? "\\u%04x" : "\\u%04X", value)
      case 2:
        out += random.pick([
          #"\ud83d\ude00"#, #"\uD834\uDD1E"#, #"\udbff\udfff"#, #"\ud800"#, #"\udc00"#,
          #"\ud800\u0041"#, #"\ud800\ud800\udc00"#,
        ])
      case 3: out += random.pick(["é", "日本", "😀", "\u{7F}", "\u{FEFF}", "e\u{301}"])
      default:
        out += String(
          UnicodeScalar(UInt8(random.pick(Array(0x20...0x7E).filter { $0 != 0x22 && $0 != 0x5C }))))
      }
    }
    return out + "\""
  }

  private func value(_ random: inout Random, depth: Int) -> String {
    let kind = depth >= 6 ? random.below(5) : random.below(7)
    switch kind {
    case 0: return random.pick(Self.numbers)
    case 1: return string(&random)
    case 2: return random.pick(["true", "false", "null"])
    case 3: return string(&random)
    case 4: return random.pick(Self.numbers)
    case 5:
      let items = (0..<random.below(4)).map { _ in
        whitespace(&random) + value(&random, depth: depth + 1) + whitespace(&random)
      }
      return "[" + items.joined(separator: ",") + (items.isEmpty ? whitespace(&random) : "") + "]"
    default:
      let members = (0..<random.below(4)).map { _ in
        whitespace(&random) + string(&random) + whitespace(&random) + ":" + whitespace(&random)
          + value(&random, depth: depth + 1) + whitespace(&random)
      }
      return "{" + members.joined(separator: ",") + "}"
    }
  }

  /// Bytes worth putting into a text: structure, escapes, digits, controls, non-ASCII.
  private static let interesting: [UInt8] =
    Array(#"{}[],:"\/ubfnrt0123456789-+.eE aAfF"#.utf8) + [
      0x00, 0x01, 0x10, 0x19, 0x1F, 0x7F, 0x80, 0xC3, 0xE9, 0xED, 0xF0, 0xFF,
    ]

  private func mutate(_ text: [UInt8], _ random: inout Random) -> [UInt8] {
    var bytes = text
    for _ in 0..<(1 + random.below(3)) {
      switch random.below(5) {
      case 0 where !bytes.isEmpty: bytes.removeLast(1 + random.below(bytes.count))  // truncation
      case 1 where !bytes.isEmpty: bytes[random.below(bytes.count)] = random.pick(Self.interesting)
      case 2: bytes.insert(random.pick(Self.interesting), at: random.below(bytes.count + 1))
      case 3 where !bytes.isEmpty: bytes.remove(at: random.below(bytes.count))
      case 4 where !bytes.isEmpty: bytes[random.below(bytes.count)] ^= UInt8(1 << random.below(8))
      default: break
      }
    }
    return bytes
  }

  /// Texts built to sit on the edges: odd escapes, numbers, nesting around the depth limit.
  private func edgeCases() -> [[UInt8]] {
    var texts: [String] = []
    for number in Self.numbers + Self.badNumbers {
      texts += [number, "[\(number)]", "{\"n\":\(number)}", " \(number) ", "[\(number),]"]
    }
    let escapes = [
      #"\u"#, #"\u1"#, #"\u12"#, #"\u123"#, #"\u004"#, #"\u00G0"#, #"\u00g0"#, #"\U0041"#, #"\x41"#,
      #"\'"#, #"\a"#, #"\0"#, #"\uD83D\uDE00"#, #"\u0000"#, "\\", "\u{1}", "\t", "\u{7F}",
    ]
    for escape in escapes { texts += ["\"\(escape)\"", "[\"a\(escape)b\"]", "{\"\(escape)\":1}"] }
    for depth in [1, 2, 32, 63, 64, 65, 100] {
      texts.append(String(repeating: "[", count: depth) + String(repeating: "]", count: depth))
      texts.append(
        String(repeating: "{\"a\":", count: depth) + "1" + String(repeating: "}", count: depth))
      texts.append(String(repeating: "[", count: depth) + String(repeating: "]", count: depth - 1))
    }
    texts += [
      "", " ", "\u{FEFF}{}", "{}\u{0}", "{} {}", "[1 2]", "{\"a\" 1}", "{\"a\":1,}", "{,}", "[,]",
      "{\"a\":1,\"a\":2}", "{1:2}", "{'a':1}", "tru", "nul", "falsey", "[true false]", "\"\u{0}\"",
      "[\"\u{10FFFF}\"]", "\"\\/\"", "[[],{},[{}]]", "\u{A0}1", "1\u{0B}", "1\u{0C}", "[1]x",
    ]
    return texts.map { Array($0.utf8) }
  }

  /// Cases where the two readers differ on purpose; nil when the text is comparable.
  private func knownDifference(_ bytes: [UInt8]) -> String? {
    // JSONValue stops at 64 levels (client messages are 3 deep); Foundation allows 512.
    var depth = 0
    var deepest = 0
    scanOutsideStrings(bytes) { _, byte in
      switch byte {
      case UInt8(ascii: "["), UInt8(ascii: "{"):
        depth += 1
        deepest = max(deepest, depth)
      case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
      default: break
      }
    }
    if deepest > 64 { return "depth" }
    // Foundation treats a NUL byte outside strings like whitespace (`\u{0}1` parses as 1);
    // RFC 8259 allows only space, tab, LF and CR there.
    var nulOutsideStrings = false
    scanOutsideStrings(bytes) { _, byte in if byte == 0 { nulOutsideStrings = true } }
    if nulOutsideStrings { return "nul" }
    // Foundation accepts a trailing comma (`[1,]`, `{"a":1,}`); RFC 8259 and Go do not.
    if hasTrailingComma(bytes) { return "trailing comma" }
    // A number beyond Double's range (`1e400`): Foundation rejects the text; JSONValue checks
    // syntax only, as Go's decoder does (ClientMessage then requires an int64).
    if numberTokens(bytes).contains(where: { Double($0)?.isInfinite == true }) {
      return "number range"
    }
    // An unpaired surrogate escape: JSONValue decodes it as U+FFFD like Go's encoding/json
    // (PROTOCOL §7.1 follows Go); Foundation rejects the text.
    if hasUnpairedSurrogate(bytes) { return "surrogate" }
    // Foundation skips a leading UTF-8 byte order mark; RFC 8259 §8.1 says a parser MAY, and
    // Go's decoder does not.
    if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { return "bom" }
    return nil
  }

  /// Calls `body` with each byte outside strings (and its index).
  private func scanOutsideStrings(_ bytes: [UInt8], _ body: (Int, UInt8) -> Void) {
    var inString = false
    var escaped = false
    for (index, byte) in bytes.enumerated() {
      if inString {
        if escaped {
          escaped = false
        } else if byte == UInt8(ascii: "\\") {
          escaped = true
        } else if byte == UInt8(ascii: "\"") {
          inString = false
        }
      } else if byte == UInt8(ascii: "\"") {
        inString = true
      } else {
        body(index, byte)
      }
    }
  }

  private func hasTrailingComma(_ bytes: [UInt8]) -> Bool {
    var lastSignificant: UInt8 = 0
    var found = false
    scanOutsideStrings(bytes) { _, byte in
      switch byte {
      case 0x20, 0x09, 0x0A, 0x0D: return
      case UInt8(ascii: "]"), UInt8(ascii: "}"):
        if lastSignificant == UInt8(ascii: ",") { found = true }
      default: break
      }
      lastSignificant = byte
    }
    return found
  }

  /// Runs of number characters outside strings.
  private func numberTokens(_ bytes: [UInt8]) -> [String] {
    var tokens: [String] = []
    var current: [UInt8] = []
    var previous = -2
    func flush() {
      if !current.isEmpty { tokens.append(String(decoding: current, as: UTF8.self)) }
      current = []
    }
    scanOutsideStrings(bytes) { index, byte in
      if previous != index - 1 { flush() }
      previous = index
      if Array("+-.0123456789eE".utf8).contains(byte) { current.append(byte) } else { flush() }
    }
    flush()
    return tokens
  }

  /// True when a `\uD800`–`\uDFFF` escape is not half of a high-low pair.
  private func hasUnpairedSurrogate(_ bytes: [UInt8]) -> Bool {
    func hex(_ at: Int) -> UInt32? {
      guard at + 6 <= bytes.count, bytes[at] == UInt8(ascii: "\\"),
        bytes[at + 1] == UInt8(ascii: "u")
      else { return nil }
      return UInt32(String(decoding: bytes[(at + 2)..<(at + 6)], as: UTF8.self), radix: 16)
    }
    var index = 0
    while index < bytes.count {
      if bytes[index] == UInt8(ascii: "\\"), index + 1 < bytes.count {
        if let value = hex(index) {
          if (0xD800..<0xDC00).contains(value), let low = hex(index + 6),
            (0xDC00..<0xE000).contains(low)
          {
            index += 12
            continue
          }
          if (0xD800..<0xE000).contains(value) { return true }
        }
        index += 2
        continue
      }
      index += 1
    }
    return false
  }

  /// Every string (keys included) of the two trees is equal scalar by scalar, where the shapes
  /// can be compared; returns a description of the first difference.
  private func compare(_ ours: JSONValue, _ theirs: Any, path: String = "$") -> String? {
    // Foundation drops U+FEFF from decoded strings (its bridging treats it as a byte order
    // mark); JSONValue keeps every character, as Go does. Compared without it.
    func scalars(_ text: String) -> [UInt32] {
      text.unicodeScalars.filter { $0 != "\u{FEFF}" }.map(\.value)
    }
    switch ours {
    case .string(let s):
      guard let t = theirs as? String else { return "\(path): not a string in Foundation" }
      return scalars(s) == scalars(t)
        ? nil : "\(path): \(s.debugDescription) vs \(t.debugDescription)"
    case .array(let items):
      guard let t = theirs as? [Any], t.count == items.count else { return "\(path): array" }
      for (index, item) in items.enumerated() {
        if let difference = compare(item, t[index], path: "\(path)[\(index)]") { return difference }
      }
      return nil
    case .object(let members):
      guard let t = theirs as? [String: Any] else { return "\(path): object" }
      let keys = members.map { scalars($0.0) }
      guard Set(keys) == Set(t.keys.map(scalars)) else { return "\(path): keys differ" }
      // A repeated key: which value Foundation keeps is unspecified, so only unique keys'
      // values are compared.
      for (key, value) in members where keys.filter({ $0 == scalars(key) }).count == 1 {
        guard let match = t.first(where: { scalars($0.key) == scalars(key) }) else {
          return "\(path): key \(key.debugDescription) missing"
        }
        if let difference = compare(value, match.value, path: "\(path).\(key)") {
          return difference
        }
      }
      return nil
    case .bool, .number, .null:
      return nil  // numbers and literals: only acceptance is compared
    }
  }

  func testAgreesWithFoundationOnGeneratedAndMutatedTexts() throws {
    var random = Random(state: 0x5EED_C0DE)
    var texts = edgeCases()
    for _ in 0..<6_000 {
      let text = Array((whitespace(&random) + value(&random, depth: 0) + whitespace(&random)).utf8)
      texts.append(text)
      texts.append(mutate(text, &random))
      texts.append(mutate(text, &random))
    }
    var compared = 0
    var accepted = 0
    var excluded: [String: Int] = [:]
    var failures: [String] = []
    for bytes in texts {
      // ClientMessage's rule: the message must be UTF-8, then JSON.
      let ours = String(validating: bytes, as: UTF8.self) != nil ? JSONValue.parse(bytes) : nil
      let theirs = try? JSONSerialization.jsonObject(with: Data(bytes), options: .fragmentsAllowed)
      if let reason = knownDifference(bytes) {
        excluded[reason, default: 0] += 1
        continue
      }
      compared += 1
      let shown = String(decoding: bytes.prefix(200), as: UTF8.self).debugDescription
      switch (ours, theirs) {
      case (nil, nil): break
      case (let ours?, let theirs?):
        accepted += 1
        if let difference = compare(ours, theirs) { failures.append("\(shown): \(difference)") }
      case (nil, _?): failures.append("\(shown): Foundation accepts, JSONValue rejects")
      case (_?, nil): failures.append("\(shown): JSONValue accepts, Foundation rejects")
      }
    }
    XCTAssertEqual(failures.count, 0, failures.prefix(200).joined(separator: "\n"))
    // The comparison covered a real mix of both answers.
    XCTAssertGreaterThan(compared, 15_000)
    XCTAssertGreaterThan(accepted, 6_000)
    XCTAssertGreaterThan(compared - accepted, 5_000)
    XCTAssertGreaterThan(excluded["depth"] ?? 0, 0)
    XCTAssertGreaterThan(excluded["surrogate"] ?? 0, 0)
  }
}
