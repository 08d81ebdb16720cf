#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A bounds-checked reader of compact JSON (no insignificant whitespace, as Contrail writes it):
/// one pass over a stored or forwarded v1 event into byte ranges, for `V2Frame` and
/// `UpstreamEvent`.
struct JSONScanner {
  let p: UnsafePointer<UInt8>
  let n: Int
  var i = 0

  init(_ p: UnsafePointer<UInt8>, _ n: Int) {
    self.p = p
    self.n = n
  }

  @inline(__always) func at(_ c: UInt8) -> Bool { i < n && p[i] == c }

  /// Whether the bytes of `span` (a string's content, quotes excluded) equal `literal`.
  func content(_ span: ScannedSpan, is literal: StaticString) -> Bool {
    let count = span.end - span.start - 2
    guard count == literal.utf8CodeUnitCount else { return false }
    return memcmp(p + span.start + 1, literal.utf8Start, count) == 0
  }

  /// The top-level object: `did` (a string), `time_us` (a number), `kind` (one of the
  /// four), and the object under the kind's name; each exactly once, nothing else. One pass:
  /// the inner object's members are read into `members`, sorted by key, as they come.
  mutating func plan(
    members: UnsafeMutableBufferPointer<ScannedMember>, scratch: UnsafeMutablePointer<UInt8>
  ) -> V2Plan? {
    guard at(UInt8(ascii: "{")) else { return nil }
    i += 1
    var did: ScannedSpan? = nil
    var timeUS: ScannedSpan? = nil
    var kindValue: ScannedSpan? = nil
    var innerKey: ScannedSpan? = nil
    var memberCount = 0
    while true {
      guard let key = string(), at(UInt8(ascii: ":")) else { return nil }
      i += 1
      let start = i
      if content(key, is: "did") {
        guard did == nil, at(UInt8(ascii: "\"")), string() != nil else { return nil }
        did = ScannedSpan(start: start, end: i)
      } else if content(key, is: "time_us") {
        guard timeUS == nil, !at(UInt8(ascii: "\"")), number() else { return nil }
        timeUS = ScannedSpan(start: start, end: i)
      } else if content(key, is: "kind") {
        guard kindValue == nil, at(UInt8(ascii: "\"")), string() != nil else { return nil }
        kindValue = ScannedSpan(start: start, end: i)
      } else {
        guard innerKey == nil, let count = readMembers(into: members) else { return nil }
        innerKey = key
        memberCount = count
      }
      guard i < n else { return nil }
      let separator = p[i]
      i += 1
      if separator == UInt8(ascii: "}") { break }
      guard separator == UInt8(ascii: ",") else { return nil }
    }
    guard i == n, let did, let kindValue, let innerKey else { return nil }
    // The inner object sits under the kind's own name.
    let kindLength = kindValue.end - kindValue.start
    guard kindLength == innerKey.end - innerKey.start,
      memcmp(p + kindValue.start, p + innerKey.start, kindLength) == 0
    else { return nil }
    let kind: ScannedKind
    if content(kindValue, is: "commit") {
      kind = .commit
    } else if content(kindValue, is: "identity") {
      kind = .identity
    } else if content(kindValue, is: "account") {
      kind = .account
    } else if content(kindValue, is: "sync") {
      kind = .sync
    } else {
      return nil
    }
    var plan = V2Plan(json: p, kind: kind, did: did, members: members, scratch: scratch)
    plan.timeUS = timeUS
    plan.memberCount = memberCount
    return kind == .commit ? flattenCommit(&plan) : checkInner(plan)
  }

  /// The object at `i`, its members in `members` sorted by key; nil if it is not an object, has
  /// a key twice or more members than there is room for. Returns the member count.
  mutating func readMembers(into members: UnsafeMutableBufferPointer<ScannedMember>) -> Int? {
    guard at(UInt8(ascii: "{")) else { return nil }
    i += 1
    var count = 0
    if at(UInt8(ascii: "}")) {
      i += 1
      return 0
    }
    while true {
      guard count < members.count, let key = string(), at(UInt8(ascii: ":")) else { return nil }
      i += 1
      let start = i
      guard skipValue() else { return nil }
      // Insertion in key order; an equal key is a duplicate.
      var index = count
      while index > 0 {
        let order = compareKeys(members[index - 1].key, key)
        if order == 0 { return nil }
        if order < 0 { break }
        members[index] = members[index - 1]
        index -= 1
      }
      members[index] = ScannedMember(key: key, value: ScannedSpan(start: start, end: i))
      count += 1
      guard i < n else { return nil }
      let separator = p[i]
      i += 1
      if separator == UInt8(ascii: "}") { return count }
      guard separator == UInt8(ascii: ",") else { return nil }
    }
  }

  /// A commit's members are its six known fields (`operation` required), each of its type.
  func flattenCommit(_ plan: inout V2Plan) -> V2Plan? {
    var operation: ScannedSpan? = nil
    for index in 0..<plan.memberCount {
      let member = plan.members[index]
      let value = member.value
      let isString = p[value.start] == UInt8(ascii: "\"")
      if content(member.key, is: "cid"), isString {
        plan.cid = value
      } else if content(member.key, is: "collection"), isString {
        plan.collection = value
      } else if content(member.key, is: "operation"), isString {
        operation = value
      } else if content(member.key, is: "record"), p[value.start] == UInt8(ascii: "{") {
        plan.record = value
      } else if content(member.key, is: "rev"), isString {
        plan.rev = value
      } else if content(member.key, is: "rkey"), isString {
        plan.rkey = value
      } else {
        return nil
      }
    }
    guard let operation else { return nil }
    plan.operation = operation
    plan.memberCount = 0
    return plan
  }

  /// The other kinds' inner objects need `did` and `time` strings and `seq` a non-negative
  /// integer; other members are copied as they are.
  func checkInner(_ plan: V2Plan) -> V2Plan? {
    var found = 0
    for index in 0..<plan.memberCount {
      let member = plan.members[index]
      let isString = p[member.value.start] == UInt8(ascii: "\"")
      if content(member.key, is: "did") {
        guard isString else { return nil }
        found += 1
      } else if content(member.key, is: "seq") {
        guard isUnsignedInteger(member.value) else { return nil }
        found += 1
      } else if content(member.key, is: "time") {
        guard isString else { return nil }
        found += 1
      }
    }
    return found == 3 ? plan : nil
  }

  /// Byte order of two keys' contents, shorter first on a common prefix (Go's string order).
  func compareKeys(_ a: ScannedSpan, _ b: ScannedSpan) -> Int {
    let aCount = a.end - a.start - 2
    let bCount = b.end - b.start - 2
    let common = min(aCount, bCount)
    if common > 0 {
      let c = memcmp(p + a.start + 1, p + b.start + 1, common)
      if c != 0 { return Int(c) }
    }
    return aCount - bCount
  }

  /// Digits only, no leading zero, at most Int64.max.
  func isUnsignedInteger(_ span: ScannedSpan) -> Bool {
    let count = span.end - span.start
    guard count >= 1, count <= 19 else { return false }
    if count > 1, p[span.start] == UInt8(ascii: "0") { return false }
    for k in span.start..<span.end where p[k] < 0x30 || p[k] > 0x39 { return false }
    // Equal lengths of digits compare like their values.
    return count < 19 || memcmp(p + span.start, int64MaxDigits.utf8Start, 19) <= 0
  }

  /// A string at `i`: returns its span with the quotes and moves past it; nil if it is not a
  /// valid JSON string of valid UTF-8.
  mutating func string() -> ScannedSpan? {
    guard at(UInt8(ascii: "\"")) else { return nil }
    let start = i
    i += 1
    while i < n {
      // Eight plain ASCII bytes at a time.
      if i + 8 <= n, !needsAttention(UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)) {
        i += 8
        continue
      }
      let c = p[i]
      if c == UInt8(ascii: "\"") {
        i += 1
        return ScannedSpan(start: start, end: i)
      }
      if c == UInt8(ascii: "\\") {
        guard i + 1 < n else { return nil }
        switch p[i + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
          UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
          i += 2
        case UInt8(ascii: "u"):
          guard i + 6 <= n else { return nil }
          for k in (i + 2)..<(i + 6) where !isHexDigit(p[k]) { return nil }
          i += 6
        default:
          return nil
        }
        continue
      }
      if c < 0x20 { return nil }
      if c < 0x80 {
        i += 1
        continue
      }
      let length = utf8SequenceLength(at: i)
      guard length > 0 else { return nil }
      i += length
    }
    return nil
  }

  /// Skips one value at `i` (nesting at most `V2Frame.maxNesting` containers); false if there is
  /// none or it is malformed.
  mutating func skipValue() -> Bool {
    var stack = ContainerStack()
    while true {
      // A value.
      guard i < n else { return false }
      switch p[i] {
      case UInt8(ascii: "{"):
        guard stack.push(object: true) else { return false }
        i += 1
        if at(UInt8(ascii: "}")) {
          i += 1
          stack.pop()
        } else {
          guard string() != nil, at(UInt8(ascii: ":")) else { return false }
          i += 1
          continue
        }
      case UInt8(ascii: "["):
        guard stack.push(object: false) else { return false }
        i += 1
        if at(UInt8(ascii: "]")) {
          i += 1
          stack.pop()
        } else {
          continue
        }
      case UInt8(ascii: "\""):
        guard string() != nil else { return false }
      case UInt8(ascii: "t"):
        guard literal("true") else { return false }
      case UInt8(ascii: "f"):
        guard literal("false") else { return false }
      case UInt8(ascii: "n"):
        guard literal("null") else { return false }
      default:
        guard number() else { return false }
      }
      // After a value: close containers, or go on to the next member or element.
      while true {
        guard let inObject = stack.top else { return true }
        guard i < n else { return false }
        let c = p[i]
        i += 1
        if c == UInt8(ascii: ",") {
          if inObject {
            guard string() != nil, at(UInt8(ascii: ":")) else { return false }
            i += 1
          }
          break
        }
        guard c == (inObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) else { return false }
        stack.pop()
      }
    }
  }

  mutating func literal(_ text: StaticString) -> Bool {
    let count = text.utf8CodeUnitCount
    guard n - i >= count, memcmp(p + i, text.utf8Start, count) == 0 else { return false }
    i += count
    return true
  }

  /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, at most `maxNumberLength` bytes.
  mutating func number() -> Bool {
    let start = i
    if at(UInt8(ascii: "-")) { i += 1 }
    if at(UInt8(ascii: "0")) {
      i += 1
    } else if digits() == 0 {
      return false
    }
    if at(UInt8(ascii: ".")) {
      i += 1
      guard digits() > 0 else { return false }
    }
    if at(UInt8(ascii: "e")) || at(UInt8(ascii: "E")) {
      i += 1
      if at(UInt8(ascii: "+")) || at(UInt8(ascii: "-")) { i += 1 }
      guard digits() > 0 else { return false }
    }
    return i - start <= V2Frame.maxNumberLength
  }

  mutating func digits() -> Int {
    let start = i
    while i < n, p[i] >= 0x30, p[i] <= 0x39 { i += 1 }
    return i - start
  }

  /// Length (2–4) of the valid UTF-8 sequence starting at a non-ASCII byte, or 0.
  func utf8SequenceLength(at k: Int) -> Int {
    let c = p[k]
    func continuation(_ j: Int) -> Bool { k + j < n && p[k + j] & 0xC0 == 0x80 }
    switch c {
    case 0xC2...0xDF:
      return continuation(1) ? 2 : 0
    case 0xE0...0xEF:
      guard continuation(1), continuation(2) else { return 0 }
      if c == 0xE0 && p[k + 1] < 0xA0 { return 0 }  // overlong
      if c == 0xED && p[k + 1] >= 0xA0 { return 0 }  // surrogate
      return 3
    case 0xF0...0xF4:
      guard continuation(1), continuation(2), continuation(3) else { return 0 }
      if c == 0xF0 && p[k + 1] < 0x90 { return 0 }  // overlong
      if c == 0xF4 && p[k + 1] >= 0x90 { return 0 }  // past U+10FFFF
      return 4
    default:
      return 0
    }
  }
}

private let int64MaxDigits: StaticString = "9223372036854775807"

@inline(__always)
private func isHexDigit(_ c: UInt8) -> Bool {
  (c >= 0x30 && c <= 0x39) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x66)
}

/// Whether any of 8 bytes is non-ASCII, a control, `"` or `\` (SWAR: a zero byte of `x` shows
/// as a set high bit of `(x - 0x01…) & ~x & 0x80…`).
@inline(__always)
private func needsAttention(_ v: UInt64) -> Bool {
  let ones: UInt64 = 0x0101_0101_0101_0101
  let highs: UInt64 = 0x8080_8080_8080_8080
  @inline(__always) func hasZeroByte(_ x: UInt64) -> Bool { (x &- ones) & ~x & highs != 0 }
  if v & highs != 0 { return true }
  if (v &- ones &* 0x20) & ~v & highs != 0 { return true }  // a byte < 0x20
  return hasZeroByte(v ^ (ones &* 0x22)) || hasZeroByte(v ^ (ones &* 0x5C))
}

/// The kinds of the open containers (object or array), as bits, up to `V2Frame.maxNesting`.
private struct ContainerStack {
  private var bits: (UInt64, UInt64, UInt64) = (0, 0, 0)
  private(set) var depth = 0

  var top: Bool? {
    guard depth > 0 else { return nil }
    let index = depth - 1
    let word: UInt64
    switch index >> 6 {
    case 0: word = bits.0
    case 1: word = bits.1
    default: word = bits.2
    }
    return word >> UInt64(index & 63) & 1 != 0
  }

  mutating func push(object: Bool) -> Bool {
    guard depth < V2Frame.maxNesting else { return false }
    let mask: UInt64 = 1 << UInt64(depth & 63)
    switch depth >> 6 {
    case 0: bits.0 = object ? bits.0 | mask : bits.0 & ~mask
    case 1: bits.1 = object ? bits.1 | mask : bits.1 & ~mask
    default: bits.2 = object ? bits.2 | mask : bits.2 & ~mask
    }
    depth += 1
    return true
  }

  mutating func pop() { depth -= 1 }
}
