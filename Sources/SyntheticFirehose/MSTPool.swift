/// A shared Merkle Search Tree key space that generated commits prove their ops against.
///
/// Level `L` holds keys whose SHA-256 starts with `2L` zero bits (atproto's fanout-4 layering),
/// four times as many per level going down, like one large repository. A commit's proof is the
/// chain of nodes from a root down to the op key's level, plus some neighbouring nodes; every
/// node holds exactly the pool keys of its level inside its bounds, so keys are sorted, sit at
/// their own layer, and each op's path can be walked from the root to its CID.
struct MSTPool: Sendable {
  struct Key: Sendable {
    let bytes: [UInt8]
    /// The record CID stored under the key.
    let value: [UInt8]
    /// Stand-in CIDs for the subtrees left and right of the key (nodes not included).
    let leftTree: [UInt8]
    let rightTree: [UInt8]
  }

  /// Sorted keys per level.
  let levels: [[Key]]
  var topLevel: Int { levels.count - 1 }

  /// One pool for the whole process, built from a fixed seed (so it is the same for every
  /// generator seed and machine).
  static let shared = MSTPool(
    topLevel: 6, seed: 0x4D53_5450_6F6F_6C21,
    fixedKeys: ["app.bsky.actor.profile/self", "fm.teal.alpha.actor.status/self"])

  init(topLevel: Int, seed: UInt64, fixedKeys: [String]) {
    var random = SeededRandom(seed: seed)
    var levels = [[[UInt8]]](repeating: [], count: topLevel + 1)
    for key in fixedKeys {
      let bytes = Array(key.utf8)
      levels[min(Self.level(of: bytes), topLevel)].append(bytes)
    }
    let collections = [
      "app.bsky.feed.like", "app.bsky.feed.post", "app.bsky.feed.repost", "app.bsky.graph.follow",
    ]
    for level in 0...topLevel {
      var wanted = 1 << (2 * (topLevel - level))
      while wanted > 0 {
        let micros = 1_600_000_000_000_000 + Int64(random.below(200_000_000_000_000))
        let rkey = Identifiers.tid(microseconds: micros, clockID: random.below(1024))
        let key = Array((random.pick(collections) + "/" + rkey).utf8)
        if Self.level(of: key) == level {
          levels[level].append(key)
          wanted -= 1
        }
      }
    }
    self.levels = levels.map { keys in
      keys.sorted { $0.lexicographicallyPrecedes($1) }.map { bytes in
        Key(
          bytes: bytes, value: FrameBuilder.cid(of: bytes),
          leftTree: FrameBuilder.cid(of: bytes + [1]),
          rightTree: FrameBuilder.cid(of: bytes + [2]))
      }
    }
  }

  /// The MST layer of a key: leading zero bits of its SHA-256, counted in pairs.
  static func level(of key: [UInt8]) -> Int {
    var zeros = 0
    for byte in SHA256.hash(key) {
      zeros += byte.leadingZeroBitCount
      if byte != 0 { break }
    }
    return zeros / 2
  }

  /// The pool keys of `level` strictly between the bounds.
  func keys(at level: Int, above low: [UInt8]?, below high: [UInt8]?) -> ArraySlice<Key> {
    let keys = levels[level]
    let start =
      low.map { bound in firstIndex(keys) { bound.lexicographicallyPrecedes($0.bytes) } } ?? 0
    let end =
      high.map { bound in firstIndex(keys) { !$0.bytes.lexicographicallyPrecedes(bound) } }
      ?? keys.count
    return keys[start..<max(start, end)]
  }

  private func firstIndex(_ keys: [Key], where predicate: (Key) -> Bool) -> Int {
    var low = 0
    var high = keys.count
    while low < high {
      let mid = (low + high) / 2
      if predicate(keys[mid]) { high = mid } else { low = mid + 1 }
    }
    return low
  }

  /// What a proven op does to its key.
  enum Change {
    case put(cid: [UInt8])
    case delete
  }

  /// The node blocks proving `changes`: every changed key's path from the root (at about
  /// `rootLevel`, lower when the top of the tree would be empty) to the key's own layer, plus
  /// a neighbouring node next to a path where `neighbour()` says so. Returns the root CID.
  func proof(
    _ changes: [(key: [UInt8], change: Change)], rootLevel: Int, neighbour: () -> Bool
  ) -> (root: [UInt8], blocks: [(cid: [UInt8], data: [UInt8])]) {
    let changes = changes.map {
      (key: $0.key, change: $0.change, level: min(Self.level(of: $0.key), topLevel))
    }
    var level = topLevel
    var low: [UInt8]? = nil
    var high: [UInt8]? = nil
    // Skip levels above the root: while all keys share one gap and lie below, narrow to it.
    while level > 0 && changes.allSatisfy({ $0.level < level }) {
      let entries = keys(at: level, above: low, below: high)
      let gaps = Set(
        changes.map { change in
          entries.firstIndex { !$0.bytes.lexicographicallyPrecedes(change.key) }
        })
      guard gaps.count == 1 else { break }
      if level <= rootLevel && !entries.isEmpty { break }
      let gap = gaps.first!
      if let gap, gap > entries.startIndex { low = entries[gap - 1].bytes }
      if gap == nil, let last = entries.last { low = last.bytes }
      if let gap { high = entries[gap].bytes }
      level -= 1
    }
    var blocks: [(cid: [UInt8], data: [UInt8])] = []
    let root = build(level, low, high, changes, neighbour, &blocks)
    return (root, blocks)
  }

  private func build(
    _ level: Int, _ low: [UInt8]?, _ high: [UInt8]?,
    _ changes: [(key: [UInt8], change: Change, level: Int)], _ neighbour: () -> Bool,
    _ blocks: inout [(cid: [UInt8], data: [UInt8])]
  ) -> [UInt8] {
    var entries = keys(at: level, above: low, below: high).map {
      (key: $0.bytes, value: $0.value, right: level == 0 ? nil : Optional($0.rightTree))
    }
    var left: [UInt8]? =
      level == 0
      ? nil
      : (entries.first.map { _ in keys(at: level, above: low, below: high).first!.leftTree }
        ?? FrameBuilder.cid(of: (low ?? []) + [4]))
    // Apply the changes that live at this level.
    for change in changes where change.level == level {
      let index =
        entries.firstIndex { !$0.key.lexicographicallyPrecedes(change.key) } ?? entries.count
      let present = index < entries.count && entries[index].key == change.key
      switch change.change {
      case .put(let cid):
        if present {
          entries[index].value = cid
        } else {
          let right: [UInt8]? = level == 0 ? nil : FrameBuilder.cid(of: change.key + [3])
          entries.insert((change.key, cid, right), at: index)
        }
      case .delete:
        if present { entries.remove(at: index) }
      }
    }
    // Descend into every gap that holds a lower change, and sometimes into a neighbour.
    if level > 0 {
      let below = changes.filter { $0.level < level }
      var visited = Set<Int>()
      func gapBounds(_ gap: Int) -> ([UInt8]?, [UInt8]?) {
        (gap > 0 ? entries[gap - 1].key : low, gap < entries.count ? entries[gap].key : high)
      }
      func setPointer(_ gap: Int, _ cid: [UInt8]) {
        if gap == 0 { left = cid } else { entries[gap - 1].right = cid }
      }
      for gap in 0...entries.count {
        let (gapLow, gapHigh) = gapBounds(gap)
        let inside = below.filter { change in
          (gapLow.map { $0.lexicographicallyPrecedes(change.key) } ?? true)
            && (gapHigh.map { change.key.lexicographicallyPrecedes($0) } ?? true)
        }
        guard !inside.isEmpty else { continue }
        visited.insert(gap)
        setPointer(gap, build(level - 1, gapLow, gapHigh, inside, neighbour, &blocks))
        let side = gap > 0 ? gap - 1 : gap + 1
        if side <= entries.count, !visited.contains(side), neighbour() {
          let (sideLow, sideHigh) = gapBounds(side)
          if !keys(at: level - 1, above: sideLow, below: sideHigh).isEmpty {
            visited.insert(side)
            setPointer(side, build(level - 1, sideLow, sideHigh, [], { false }, &blocks))
          }
        }
      }
    }
    let node = Self.node(entries.map { ($0.key, $0.value) }, [left] + entries.map(\.right))
    let cid = FrameBuilder.cid(of: node)
    blocks.append((cid, node))
    return cid
  }

  /// An MST node `{e: [{k, p, t, v}…], l}` with prefix-compressed keys; `pointers[0]` is `l`
  /// and `pointers[i]` the subtree right of entry `i - 1`.
  static func node(_ entries: [(key: [UInt8], value: [UInt8])], _ pointers: [[UInt8]?]) -> [UInt8] {
    var previous: [UInt8] = []
    var encoded: [CBORValue] = []
    for (index, entry) in entries.enumerated() {
      var prefix = 0
      while prefix < min(previous.count, entry.key.count) && previous[prefix] == entry.key[prefix] {
        prefix += 1
      }
      encoded.append(
        .map([
          ("k", .bytes(Array(entry.key[prefix...]))), ("p", .int(Int64(prefix))),
          ("t", pointers[index + 1].map { .link($0) } ?? .null), ("v", .link(entry.value)),
        ]))
      previous = entry.key
    }
    return CBORValue.map([("e", .array(encoded)), ("l", pointers[0].map { .link($0) } ?? .null)])
      .encoded
  }
}
