import Firehose

/// A fully decoded DAG-CBOR value, for tests that inspect generated blocks.
public indirect enum CBORTree: Equatable {
  case int(Int64)
  case bytes([UInt8])
  case text(String)
  case array([CBORTree])
  case map([String: CBORTree])
  case link([UInt8])
  case bool(Bool)
  case null
  case float(Double)

  /// Decodes one complete value; nil on anything malformed or trailing bytes.
  public static func decode(_ bytes: [UInt8]) -> CBORTree? {
    bytes.withUnsafeBytes { raw in
      var reader = CBORReader(raw)
      guard let value = read(&reader), reader.isAtEnd else { return nil }
      return value
    }
  }

  private static func read(_ reader: inout CBORReader) -> CBORTree? {
    switch reader.next() {
    case .unsigned(let v): return v <= UInt64(Int64.max) ? .int(Int64(v)) : nil
    case .negative(let n): return n <= UInt64(Int64.max) ? .int(-1 - Int64(n)) : nil
    case .bytes(let b): return .bytes(Array(b))
    case .text(let t): return .text(String(decoding: t, as: UTF8.self))
    case .array(let n):
      var items: [CBORTree] = []
      for _ in 0..<n {
        guard let item = read(&reader) else { return nil }
        items.append(item)
      }
      return .array(items)
    case .map(let n):
      var entries: [String: CBORTree] = [:]
      for _ in 0..<n {
        guard case .text(let key) = reader.next(), let value = read(&reader) else { return nil }
        entries[String(decoding: key, as: UTF8.self)] = value
      }
      return .map(entries)
    case .tag(42): return reader.readLinkContent().map { .link(Array($0)) }
    case .bool(let b): return .bool(b)
    case .null: return .null
    case .float(let d): return .float(d)
    case .tag, .invalid: return nil
    }
  }

  public subscript(key: String) -> CBORTree? {
    if case .map(let m) = self { return m[key] }
    return nil
  }

  public var text: String? {
    if case .text(let t) = self { return t }
    return nil
  }
}
