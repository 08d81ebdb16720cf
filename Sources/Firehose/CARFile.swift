/// A CARv1 file read in place: its first root and the (CID, data) of every block.
/// Byte ranges point into the input, which the caller keeps alive.
///
/// Blocks are found by binary search over an index sorted by CID, so looking up every op of a
/// commit costs O(ops · log blocks) rather than O(ops · blocks): a hostile frame with thousands
/// of ops and blocks stays linear-ish in its size.
public struct CARFile {
  public struct Block {
    public var cid: UnsafeRawBufferPointer
    public var data: UnsafeRawBufferPointer
  }

  public private(set) var root: UnsafeRawBufferPointer
  /// Every block, in file order.
  public private(set) var blocks: [Block]
  /// The same blocks sorted for `block(for:)`.
  private var index: [Block]

  /// Parses a CARv1; nil on a bad varint or header, `version` ≠ 1, no root, a section running
  /// past the end or an unparseable CID.
  public init?(_ car: UnsafeRawBufferPointer) {
    var storage: [Block] = []
    guard let root = Self.parse(car, into: &storage) else { return nil }
    self.root = root
    self.blocks = storage
    Self.sort(&storage)
    self.index = storage
  }

  /// The same as `init?` for hot paths: fills `blocks` (a reusable buffer, cleared first) sorted
  /// by CID, ready for `block(for:in:)`, and returns the first root.
  public static func read(_ car: UnsafeRawBufferPointer, into blocks: inout [Block])
    -> UnsafeRawBufferPointer?
  {
    guard let root = parse(car, into: &blocks) else { return nil }
    sort(&blocks)
    return root
  }

  private static func parse(_ car: UnsafeRawBufferPointer, into blocks: inout [Block])
    -> UnsafeRawBufferPointer?
  {
    blocks.removeAll(keepingCapacity: true)
    guard let (headerLength, varintLength) = Varint.read(car, at: 0),
      headerLength <= car.count - varintLength
    else { return nil }
    var offset = varintLength + headerLength
    guard
      let root = Self.firstRoot(
        UnsafeRawBufferPointer(rebasing: car[varintLength..<offset]))
    else { return nil }
    while offset < car.count {
      guard let (sectionLength, length) = Varint.read(car, at: offset),
        sectionLength <= car.count - offset - length
      else { return nil }
      let section = UnsafeRawBufferPointer(
        rebasing: car[(offset + length)..<(offset + length + sectionLength)])
      guard let cidLength = CID.length(section) else { return nil }
      blocks.append(
        Block(
          cid: UnsafeRawBufferPointer(rebasing: section[..<cidLength]),
          data: UnsafeRawBufferPointer(rebasing: section[cidLength...])))
      offset += length + sectionLength
    }
    return root
  }

  /// Up to this many blocks are searched in file order (a typical commit has fewer than ten:
  /// sorting them would cost more than it saves).
  static let linearSearchLimit = 16

  /// Orders blocks by CID bytes; blocks with the same CID keep their file order, so a lookup
  /// finds the first one, as a scan in file order would. Few blocks are left as they are.
  private static func sort(_ blocks: inout [Block]) {
    guard blocks.count > linearSearchLimit else { return }
    var sorted = true
    for i in blocks.indices.dropFirst() where before(blocks[i], blocks[i - 1]) {
      sorted = false
      break
    }
    if !sorted { blocks.sort(by: before) }
  }

  @inline(__always)
  private static func before(_ a: Block, _ b: Block) -> Bool {
    let order = RawBytes.compare(a.cid, b.cid)
    return order != 0 ? order < 0 : a.cid.baseAddress! < b.cid.baseAddress!
  }

  /// The data of the block with these CID bytes, if present.
  public func block(for cid: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
    Self.block(for: cid, in: index)
  }

  /// A lookup in blocks filled by `read(_:into:)`: a scan of a few, else a binary search.
  public static func block(for cid: UnsafeRawBufferPointer, in blocks: [Block])
    -> UnsafeRawBufferPointer?
  {
    if blocks.count <= linearSearchLimit {
      for block in blocks where RawBytes.equal(block.cid, cid) { return block.data }
      return nil
    }
    var low = 0
    var high = blocks.count
    while low < high {  // the first block whose CID is not below `cid`
      let middle = low + (high - low) / 2
      if RawBytes.compare(blocks[middle].cid, cid) < 0 { low = middle + 1 } else { high = middle }
    }
    guard low < blocks.count, RawBytes.equal(blocks[low].cid, cid) else { return nil }
    return blocks[low].data
  }

  /// The header `{roots: [CID…], version: 1}`; returns the first root.
  private static func firstRoot(_ header: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
    var reader = CBORReader(header)
    guard case .map(let count) = reader.next() else { return nil }
    var root: UnsafeRawBufferPointer? = nil
    var version: UInt64? = nil
    for _ in 0..<count {
      guard case .text(let key) = reader.next() else { return nil }
      if key.matches("version") {
        guard case .unsigned(let v) = reader.next() else { return nil }
        version = v
      } else if key.matches("roots") {
        guard case .array(let n) = reader.next(), n > 0 else { return nil }
        for index in 0..<n {
          guard let cid = reader.readLink() else { return nil }
          if index == 0 { root = cid }
        }
      } else {
        guard reader.skipValue() else { return nil }
      }
    }
    guard version == 1, reader.isAtEnd else { return nil }
    return root
  }
}

/// The fields of a signed repository commit block that Contrail reads.
public struct CommitBlock {
  public var did: UnsafeRawBufferPointer?
  public var rev: UnsafeRawBufferPointer?
  public var version: UInt64?
  public var data: UnsafeRawBufferPointer?
  public var prev: UnsafeRawBufferPointer?

  /// Decodes a commit map; nil unless it is a map with integer `version` 2 or 3.
  public init?(_ block: UnsafeRawBufferPointer) {
    var reader = CBORReader(block)
    guard case .map(let count) = reader.next() else { return nil }
    for _ in 0..<count {
      guard case .text(let key) = reader.next() else { return nil }
      if key.matches("version") {
        guard case .unsigned(let v) = reader.next() else { return nil }
        version = v
      } else if key.matches("did") {
        guard case .text(let t) = reader.next() else { return nil }
        did = t
      } else if key.matches("rev") {
        guard case .text(let t) = reader.next() else { return nil }
        rev = t
      } else if key.matches("data") {
        guard let cid = reader.readLink() else { return nil }
        data = cid
      } else if key.matches("prev") {
        let mark = reader.offset
        if case .null = reader.next() { continue }
        reader.offset = mark
        guard let cid = reader.readLink() else { return nil }
        prev = cid
      } else {
        guard reader.skipValue() else { return nil }
      }
    }
    guard version == 2 || version == 3 else { return nil }
  }
}

extension CBORReader {
  /// Reads a tag-42 CID link and returns the binary CID (without the leading 0x00).
  public mutating func readLink() -> UnsafeRawBufferPointer? {
    guard case .tag(42) = next() else { return nil }
    return readLinkContent()
  }

  /// Reads the byte string that follows a tag 42: `0x00` then one valid binary CID.
  public mutating func readLinkContent() -> UnsafeRawBufferPointer? {
    guard case .bytes(let content) = next(), content.count > 1, content[0] == 0 else {
      return nil
    }
    let cid = UnsafeRawBufferPointer(rebasing: content[1...])
    return CID.isValid(cid) ? cid : nil
  }
}
