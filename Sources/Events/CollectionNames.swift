import Firehose

/// Interns collection names: the firehose carries a few dozen distinct ones, so each event can
/// share a `String` instead of allocating one. Only the first 256 names of up to 317 bytes (the
/// longest NSID) are kept, so a hostile stream of long or many names costs at most ~80 KB here.
/// The owner calls `release()` once.
struct CollectionNames {
  /// Every known name's bytes, one after another; `spans[i]` is name `i`'s place in them.
  private var storage = ByteSink(capacity: 4096)
  private var spans: [(offset: Int, count: Int)] = []
  private var names: [String] = []
  static let limit = 256
  /// The longest NSID (atproto's lexicon rules): longer "collections" are not interned.
  static let maxNameBytes = 317

  /// How many names are interned.
  var count: Int { names.count }

  func release() { storage.release() }

  mutating func name(_ bytes: UnsafeRawBufferPointer) -> String {
    let found = spans.withUnsafeBufferPointer { spans in
      for index in spans.indices where spans[index].count == bytes.count {
        let known = UnsafeRawBufferPointer(
          start: storage.base + spans[index].offset, count: spans[index].count)
        if RawBytes.equal(known, bytes) { return index }
      }
      return -1
    }
    if found >= 0 { return names[found] }
    let name = String(decoding: bytes, as: UTF8.self)
    if names.count < Self.limit && bytes.count <= Self.maxNameBytes {
      spans.append((storage.count, bytes.count))
      storage.append(bytes)
      names.append(name)
    }
    return name
  }
}
