/// A DAG-CBOR value to encode. `map` is written in canonical key order (length, then bytes);
/// `orderedMap` and `raw` keep exactly what they are given, for building invalid input on purpose.
public indirect enum CBORValue: Sendable, Equatable {
  case int(Int64)
  /// An unsigned integer beyond Int64 (e.g. 2^63).
  case unsigned(UInt64)
  case bytes([UInt8])
  case text(String)
  case array([CBORValue])
  case map([(String, CBORValue)])
  case orderedMap([(CBORValue, CBORValue)])
  /// A tag-42 CID link to these binary CID bytes.
  case link([UInt8])
  case tag(UInt64, CBORValue)
  case bool(Bool)
  case null
  case float(Double)
  /// Pre-encoded bytes, inserted verbatim.
  case raw([UInt8])

  public static func == (a: CBORValue, b: CBORValue) -> Bool { a.encoded == b.encoded }

  /// The encoding of this value.
  public var encoded: [UInt8] {
    var out: [UInt8] = []
    encode(into: &out)
    return out
  }

  public func encode(into out: inout [UInt8]) {
    switch self {
    case .int(let v):
      if v >= 0 {
        Self.head(0, UInt64(v), &out)
      } else {
        Self.head(1, UInt64(-1 - v), &out)
      }
    case .unsigned(let v): Self.head(0, v, &out)
    case .bytes(let b):
      Self.head(2, UInt64(b.count), &out)
      out.append(contentsOf: b)
    case .text(let s):
      Self.head(3, UInt64(s.utf8.count), &out)
      out.append(contentsOf: s.utf8)
    case .array(let items):
      Self.head(4, UInt64(items.count), &out)
      for item in items { item.encode(into: &out) }
    case .map(let entries):
      Self.head(5, UInt64(entries.count), &out)
      // Canonical order: shorter keys first, then bytewise.
      let sorted = entries.sorted { a, b in
        let (x, y) = (a.0.utf8, b.0.utf8)
        return x.count != y.count ? x.count < y.count : x.lexicographicallyPrecedes(y)
      }
      for (key, value) in sorted {
        CBORValue.text(key).encode(into: &out)
        value.encode(into: &out)
      }
    case .orderedMap(let entries):
      Self.head(5, UInt64(entries.count), &out)
      for (key, value) in entries {
        key.encode(into: &out)
        value.encode(into: &out)
      }
    case .link(let cid):
      Self.head(6, 42, &out)
      Self.head(2, UInt64(cid.count + 1), &out)
      out.append(0)
      out.append(contentsOf: cid)
    case .tag(let tag, let value):
      Self.head(6, tag, &out)
      value.encode(into: &out)
    case .bool(let b): out.append(b ? 0xF5 : 0xF4)
    case .null: out.append(0xF6)
    case .float(let d):
      out.append(0xFB)
      withUnsafeBytes(of: d.bitPattern.bigEndian) { out.append(contentsOf: $0) }
    case .raw(let bytes): out.append(contentsOf: bytes)
    }
  }

  /// A major type and argument in shortest form.
  static func head(_ major: UInt8, _ argument: UInt64, _ out: inout [UInt8]) {
    let m = major << 5
    switch argument {
    case 0..<24: out.append(m | UInt8(argument))
    case 24..<0x100: out.append(contentsOf: [m | 24, UInt8(argument)])
    case 0x100..<0x1_0000:
      out.append(m | 25)
      withUnsafeBytes(of: UInt16(argument).bigEndian) { out.append(contentsOf: $0) }
    case 0x1_0000..<0x1_0000_0000:
      out.append(m | 26)
      withUnsafeBytes(of: UInt32(argument).bigEndian) { out.append(contentsOf: $0) }
    default:
      out.append(m | 27)
      withUnsafeBytes(of: argument.bigEndian) { out.append(contentsOf: $0) }
    }
  }
}

extension CBORValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
  ExpressibleByBooleanLiteral
{
  public init(stringLiteral value: String) { self = .text(value) }
  public init(integerLiteral value: Int64) { self = .int(value) }
  public init(booleanLiteral value: Bool) { self = .bool(value) }
}
