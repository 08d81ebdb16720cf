#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Converts one record block (DAG-CBOR) to atproto JSON byte for byte as Jetstream v1 writes it
/// (PROTOCOL §4): keys sorted by bytes, special `$link`/`$bytes`/blob maps, HTML-safe escaping,
/// integral floats as integers, and every data-model limit. Any violation fails the whole record.
///
/// Holds reusable scratch memory; the owner calls `release()` once.
public struct RecordConverter {
  public static let maxBlockBytes = 1 << 20
  public static let maxStringBytes = 1 << 20
  public static let maxContainerElements = 131_072
  public static let maxKeyBytes = 8_192
  public static let maxDepth = 128

  /// What the caller of `writeValue` needs to know about a value it wrote.
  fileprivate enum Kind { case other, text, link, linkMap, nonNegativeInteger }

  fileprivate struct Value {
    var kind: Kind
    /// The raw text for `.text` values.
    var text: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
  }

  /// One `"key":value` written to the output, by absolute output offsets.
  fileprivate struct Entry {
    var key: UnsafeRawBufferPointer
    var start: Int  // the opening quote of the key
    var valueStart: Int
    var end: Int
    var value: Value
  }

  private var entries: [Entry] = []
  private var scratch = ByteSink(capacity: 4096)

  public init() {}

  public func release() { scratch.release() }

  /// Appends the JSON for `block` to `out`. On failure returns false and leaves `out` as it was.
  public mutating func write(_ block: UnsafeRawBufferPointer, to out: inout ByteSink) -> Bool {
    let mark = out.count
    entries.removeAll(keepingCapacity: true)
    var reader = CBORReader(block)
    guard block.count <= Self.maxBlockBytes, case .map(let count) = reader.next(),
      writeMap(count, depth: 1, &reader, &out) != nil, reader.isAtEnd
    else {
      out.count = mark
      return false
    }
    return true
  }

  private mutating func writeValue(
    _ reader: inout CBORReader, _ out: inout ByteSink, depth: Int
  ) -> Value? {
    switch reader.next() {
    case .unsigned(let v):
      guard v <= UInt64(Int64.max) else { return nil }
      out.append(decimal: v)
      return Value(kind: .nonNegativeInteger)
    case .negative(let n):
      guard n <= UInt64(Int64.max) else { return nil }
      out.append(UInt8(ascii: "-"))
      out.append(decimal: n + 1)
      return Value(kind: .other)
    case .text(let text):
      guard text.count <= Self.maxStringBytes, JSONString.write(text, to: &out) else { return nil }
      return Value(kind: .text, text: text)
    case .bytes(let bytes):
      guard bytes.count <= Self.maxStringBytes else { return nil }
      out.append("{\"$bytes\":\"")
      Multibase.appendBase64(bytes, to: &out)
      out.append("\"}")
      return Value(kind: .other)
    case .tag(let tag):
      guard tag == 42, let cid = reader.readLinkContent() else { return nil }
      out.append("{\"$link\":\"")
      CID.appendString(cid, to: &out)
      out.append("\"}")
      return Value(kind: .link)
    case .float(let d):
      // Integral values in int64 range become integers; anything else fails (PROTOCOL §4.1).
      guard d.isFinite, d.rounded(.towardZero) == d, d >= -0x1p63, d < 0x1p63 else { return nil }
      let integer = Int64(d)
      out.append(decimal: integer)
      return Value(kind: integer >= 0 ? .nonNegativeInteger : .other)
    case .bool(let b):
      out.append(b ? "true" : "false")
      return Value(kind: .other)
    case .null:
      out.append("null")
      return Value(kind: .other)
    case .array(let count):
      guard depth <= Self.maxDepth, count <= Self.maxContainerElements else { return nil }
      out.append(UInt8(ascii: "["))
      for index in 0..<count {
        if index > 0 { out.append(UInt8(ascii: ",")) }
        guard writeValue(&reader, &out, depth: depth + 1) != nil else { return nil }
      }
      out.append(UInt8(ascii: "]"))
      return Value(kind: .other)
    case .map(let count):
      return writeMap(count, depth: depth, &reader, &out)
    case .invalid:
      return nil
    }
  }

  /// Writes a map whose header (`count` entries) was just read.
  private mutating func writeMap(
    _ count: Int, depth: Int, _ reader: inout CBORReader, _ out: inout ByteSink
  ) -> Value? {
    guard depth <= Self.maxDepth, count <= Self.maxContainerElements else { return nil }
    let mapStart = out.count
    out.append(UInt8(ascii: "{"))
    let first = entries.count
    for index in 0..<count {
      guard case .text(let key) = reader.next(), key.count <= Self.maxKeyBytes else { return nil }
      if index > 0 { out.append(UInt8(ascii: ",")) }
      let start = out.count
      guard JSONString.write(key, to: &out) else { return nil }
      out.append(UInt8(ascii: ":"))
      let valueStart = out.count
      guard let value = writeValue(&reader, &out, depth: depth + 1) else { return nil }
      entries.append(
        Entry(key: key, start: start, valueStart: valueStart, end: out.count, value: value))
    }
    out.append(UInt8(ascii: "}"))
    defer { entries.removeLast(entries.count - first) }
    let wasSorted = sortEntries(from: first)
    for i in (first + 1)..<Swift.max(first + 1, entries.count)
    where RawBytes.compare(entries[i - 1].key, entries[i].key) == 0 {
      return nil  // duplicate key
    }
    switch writeSpecialMap(from: first, mapStart: mapStart, &out) {
    case .rewritten(let value): return value
    case .invalid: return nil
    case .ordinary:
      if !wasSorted { rewriteSorted(from: first, mapStart: mapStart, &out) }
      return Value(kind: .other)
    }
  }

  private enum Special {
    case ordinary
    case rewritten(Value)
    case invalid
  }

  /// Applies the special maps of PROTOCOL §4.2, in order; a special map is rewritten at
  /// `mapStart`.
  private mutating func writeSpecialMap(
    from first: Int, mapStart: Int, _ out: inout ByteSink
  ) -> Special {
    let count = entries.count - first
    func find(_ name: StaticString) -> Entry? {
      for i in first..<entries.count where entries[i].key.matches(name) { return entries[i] }
      return nil
    }
    if let link = find("$link") {
      guard count == 1, link.value.kind == .text, let cid = CID.parse(link.value.text) else {
        return .invalid
      }
      out.count = mapStart
      out.append("{\"$link\":\"")
      cid.withUnsafeBytes { CID.appendString($0, to: &out) }
      out.append("\"}")
      return .rewritten(Value(kind: .linkMap))
    }
    if let bytes = find("$bytes") {
      guard count == 1, bytes.value.kind == .text,
        let decoded = Multibase.decodeBase64Unpadded(bytes.value.text)
      else { return .invalid }
      out.count = mapStart
      out.append("{\"$bytes\":\"")
      decoded.withUnsafeBytes { Multibase.appendBase64($0, to: &out) }
      out.append("\"}")
      return .rewritten(Value(kind: .other))
    }
    if let type = find("$type") {
      guard type.value.kind == .text, type.value.text.count > 0 else { return .invalid }
      guard type.value.text.matches("blob") else { return .ordinary }
      guard count == 4, let ref = find("ref"),
        ref.value.kind == .link || ref.value.kind == .linkMap,
        let mime = find("mimeType"), mime.value.kind == .text,
        let size = find("size"), size.value.kind == .nonNegativeInteger
      else { return .invalid }
      // Blobs keep struct order: $type, ref, mimeType, size.
      let region = copyToScratch(mapStart, out.count, &out)
      out.append("{\"$type\":\"blob\",\"ref\":")
      appendScratch(ref.valueStart - region, ref.end - region, &out)
      out.append(",\"mimeType\":")
      appendScratch(mime.valueStart - region, mime.end - region, &out)
      out.append(",\"size\":")
      appendScratch(size.valueStart - region, size.end - region, &out)
      out.append(UInt8(ascii: "}"))
      return .rewritten(Value(kind: .other))
    }
    if count == 2, let cid = find("cid"), let mime = find("mimeType") {
      // A legacy blob: {"cid":"<CID>","mimeType":…}.
      guard mime.value.kind == .text else { return .invalid }
      let region = copyToScratch(mapStart, out.count, &out)
      out.append("{\"cid\":\"")
      switch cid.value.kind {
      case .text:
        guard let parsed = CID.parse(cid.value.text) else { return .invalid }
        parsed.withUnsafeBytes { CID.appendString($0, to: &out) }
      case .link:
        // The value was written as {"$link":"<CID>"}; keep the CID string.
        let prefix = "{\"$link\":\"".utf8.count
        appendScratch(cid.valueStart - region + prefix, cid.end - region - 2, &out)
      default:
        return .invalid
      }
      out.append("\",\"mimeType\":")
      appendScratch(mime.valueStart - region, mime.end - region, &out)
      out.append(UInt8(ascii: "}"))
      return .rewritten(Value(kind: .other))
    }
    return .ordinary
  }

  /// Rewrites the map at `mapStart` with its entries in sorted order.
  private mutating func rewriteSorted(from first: Int, mapStart: Int, _ out: inout ByteSink) {
    let region = copyToScratch(mapStart, out.count, &out)
    out.append(UInt8(ascii: "{"))
    entries.withUnsafeBufferPointer { entries in
      for i in first..<entries.count {
        if i > first { out.append(UInt8(ascii: ",")) }
        out.append(
          scratch.base + entries[i].start - region, count: entries[i].end - entries[i].start)
      }
    }
    out.append(UInt8(ascii: "}"))
  }

  /// Moves `out[from..<to]` into the scratch buffer, truncates `out` to `from`, and returns
  /// `from` (subtract it from an output offset to get the scratch offset).
  private mutating func copyToScratch(_ from: Int, _ to: Int, _ out: inout ByteSink) -> Int {
    scratch.count = 0
    scratch.append(out.base + from, count: to - from)
    out.count = from
    return from
  }

  private func appendScratch(_ from: Int, _ to: Int, _ out: inout ByteSink) {
    out.append(scratch.base + from, count: to - from)
  }

  /// Sorts `entries[first...]` by key bytes; returns whether they were already in order.
  private mutating func sortEntries(from first: Int) -> Bool {
    let end = entries.count
    var sorted = true
    for i in (first + 1)..<Swift.max(first + 1, end)
    where RawBytes.compare(entries[i - 1].key, entries[i].key) > 0 {
      sorted = false
      break
    }
    if sorted { return true }
    guard end - first <= 16 else {
      entries[first..<end].sort { RawBytes.compare($0.key, $1.key) < 0 }
      return false
    }
    // Few entries (nearly every record's maps): an insertion sort in place.
    entries.withUnsafeMutableBufferPointer { entries in
      for i in (first + 1)..<end {
        let entry = entries[i]
        var j = i
        while j > first && RawBytes.compare(entries[j - 1].key, entry.key) > 0 {
          entries[j] = entries[j - 1]
          j -= 1
        }
        entries[j] = entry
      }
    }
    return false
  }
}
