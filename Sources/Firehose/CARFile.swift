/// A CARv1 file read in place: its first root and the (CID, data) of every block.
/// Byte ranges point into the input, which the caller keeps alive.
public struct CARFile {
  public struct Block {
    public var cid: UnsafeRawBufferPointer
    public var data: UnsafeRawBufferPointer
  }

  public private(set) var root: UnsafeRawBufferPointer
  public private(set) var blocks: [Block]

  /// Parses a CARv1; nil on a bad varint or header, `version` ≠ 1, no root, a section running
  /// past the end or an unparseable CID.
  public init?(_ car: UnsafeRawBufferPointer) {
    var storage: [Block] = []
    guard let root = Self.read(car, into: &storage) else { return nil }
    self.root = root
    self.blocks = storage
  }

  /// The same as `init?` for hot paths: fills `blocks` (a reusable buffer, cleared first) and
  /// returns the first root.
  public static func read(_ car: UnsafeRawBufferPointer, into blocks: inout [Block])
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

  /// The data of the block with these CID bytes, if present.
  public func block(for cid: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
    Self.block(for: cid, in: blocks)
  }

  public static func block(for cid: UnsafeRawBufferPointer, in blocks: [Block])
    -> UnsafeRawBufferPointer?
  {
    for block in blocks where compare(block.cid, cid) == 0 { return block.data }
    return nil
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
