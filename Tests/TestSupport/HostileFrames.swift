import Firehose
import SyntheticFirehose

/// A structure-aware, deterministic generator of hostile relay frames: it takes valid frames and
/// rewrites one thing at a time — a CBOR head (in the frame and inside every CAR block), a CAR
/// varint, the nesting, the length — so each hostile frame is valid everywhere except where it
/// attacks. Records pass through relays unchanged, so every byte here is attacker-controlled.
public enum HostileFrames {
  /// One hostile frame and what was done to it.
  public struct Frame {
    public var label: String
    public var bytes: [UInt8]
    /// Whether the frame's relay seq was rewritten (a stream with it loses its seq order).
    public var touchesSeq: Bool
  }

  /// The arguments a rewritten head declares: the extremes of each width and "one more than
  /// remains" (filled in per head).
  static let hugeArguments: [UInt64] = [UInt64.max, 1 << 63, UInt64(UInt32.max)]

  /// Every hostile variant of `frame`, at most `limit` of them chosen evenly (deterministic).
  public static func variants(of frame: [UInt8], limit: Int = .max) -> [Frame] {
    var out: [Frame] = []
    let parts = FrameParts(frame)
    // 1. Every head of the frame itself (header and body; the CAR travels as one byte string).
    for head in CBORHeads.scan(frame) {
      for argument in hugeArguments + [UInt64(frame.count - head.end + 1)] {
        out.append(
          Frame(
            label: "frame head at \(head.offset) := \(argument)",
            bytes: head.rewritten(in: frame, argument: argument),
            touchesSeq: parts?.seqRange.map { $0.contains(head.offset) } ?? false))
      }
    }
    guard let parts, let car = CARParts(parts.car) else { return thin(out, limit) }
    // 2. Every head inside the CAR header and every block.
    for (index, section) in car.sections.enumerated() {
      let data = section.data
      for head in CBORHeads.scan(data) {
        for argument in hugeArguments + [UInt64(data.count - head.end + 1)] {
          var blocks = car.sections
          blocks[index].data = head.rewritten(in: data, argument: argument)
          out.append(
            Frame(
              label: "block \(index) head at \(head.offset) := \(argument)",
              bytes: parts.with(car: car.encoded(sections: blocks)), touchesSeq: false))
        }
      }
    }
    for head in CBORHeads.scan(car.header) {
      for argument in hugeArguments {
        out.append(
          Frame(
            label: "CAR header head at \(head.offset) := \(argument)",
            bytes: parts.with(
              car: car.encoded(header: head.rewritten(in: car.header, argument: argument))),
            touchesSeq: false))
      }
    }
    // 3. Every CAR varint: the header length and each section length.
    let varints: [[UInt8]] = [
      Varints.encode(UInt64.max), Varints.encode(UInt64(Int64.max)),
      Varints.encode(UInt64(UInt32.max)),
    ]
    for varint in varints {
      out.append(
        Frame(
          label: "CAR header length varint \(varint.count) bytes",
          bytes: parts.with(car: car.encoded(headerVarint: varint)), touchesSeq: false))
      for index in car.sections.indices {
        out.append(
          Frame(
            label: "section \(index) length varint \(varint.count) bytes",
            bytes: parts.with(car: car.encoded(sectionVarint: (index, varint))),
            touchesSeq: false))
      }
    }
    for index in car.sections.indices {
      let remaining = car.encoded().count - car.sectionOffsets[index]
      out.append(
        Frame(
          label: "section \(index) length = remaining + 1",
          bytes: parts.with(
            car: car.encoded(sectionVarint: (index, Varints.encode(UInt64(remaining + 1))))),
          touchesSeq: false))
    }
    // 4. Truncations at every section boundary: inside a well-formed frame, and of the frame.
    let encodedCAR = car.encoded()
    for boundary in car.sectionOffsets + [encodedCAR.count] {
      for cut in [boundary - 1, boundary, boundary + 1] where cut > 0 && cut < encodedCAR.count {
        out.append(
          Frame(
            label: "CAR cut at \(cut)", bytes: parts.with(car: Array(encodedCAR[..<cut])),
            touchesSeq: false))
        let inFrame = parts.carStart + cut
        if inFrame < frame.count {
          out.append(
            Frame(
              label: "frame cut at \(inFrame)", bytes: Array(frame[..<inFrame]), touchesSeq: false))
        }
      }
    }
    // 5. Deep nesting inside each record-like block (every block but the root commit).
    for index in car.sections.indices where index > 0 {
      for nest in Nesting.allCases {
        var blocks = car.sections
        blocks[index].data = nest.bytes(depth: 200_000)
        out.append(
          Frame(
            label: "block \(index) nested \(nest) 200000 deep",
            bytes: parts.with(car: car.encoded(sections: blocks)), touchesSeq: false))
      }
    }
    return thin(out, limit)
  }

  /// Frames that are hostile as a whole: nesting 200,000 deep at the body, an empty frame, the
  /// smallest trap case of the old reader, a frame of `size` random bytes.
  public static func wholeFrames(header: [UInt8]) -> [Frame] {
    var out = Nesting.allCases.map {
      Frame(
        label: "body nested \($0) 200000 deep", bytes: header + $0.bytes(depth: 200_000),
        touchesSeq: false)
    }
    out.append(
      Frame(
        label: "header nested 200000 deep", bytes: Nesting.arrays.bytes(depth: 200_000),
        touchesSeq: false))
    out.append(Frame(label: "empty frame", bytes: [], touchesSeq: false))
    out.append(
      Frame(label: "9b 80 00…", bytes: [0x9B, 0x80, 0, 0, 0, 0, 0, 0, 0], touchesSeq: false))
    out.append(
      Frame(
        label: "9b ff ff…", bytes: [0x9B] + [UInt8](repeating: 0xFF, count: 8), touchesSeq: false))
    return out
  }

  /// `frame` with `flips` random bytes replaced.
  public static func flipped(_ frame: [UInt8], flips: Int, random: inout SeededRandom) -> Frame {
    var bytes = frame
    for _ in 0..<flips where !bytes.isEmpty {
      bytes[random.below(bytes.count)] = UInt8(truncatingIfNeeded: random.next())
    }
    return Frame(label: "\(flips) random bytes", bytes: bytes, touchesSeq: true)
  }

  private static func thin(_ frames: [Frame], _ limit: Int) -> [Frame] {
    guard frames.count > limit else { return frames }
    let step = Double(frames.count) / Double(limit)
    return (0..<limit).map { frames[Int(Double($0) * step)] }
  }

  /// Containers nested deep: arrays `[[[…0]]]`, maps `{"a":{"a":…0}}`, and CID tags.
  public enum Nesting: CaseIterable, CustomStringConvertible {
    case arrays, maps, tags

    public func bytes(depth: Int) -> [UInt8] {
      let unit: [UInt8]
      switch self {
      case .arrays: unit = [0x81]
      case .maps: unit = [0xA1, 0x61, 0x61]
      case .tags: unit = [0xD8, 0x2A]
      }
      var out: [UInt8] = []
      out.reserveCapacity(unit.count * depth + 1)
      for _ in 0..<depth { out.append(contentsOf: unit) }
      out.append(0x00)
      return out
    }

    public var description: String {
      switch self {
      case .arrays: "arrays"
      case .maps: "maps"
      case .tags: "tags"
      }
    }
  }
}

/// The heads of a CBOR item sequence, found by a plain linear walk (strings' contents skipped).
enum CBORHeads {
  struct Head {
    var offset: Int
    /// Just past the head (and before a string's content).
    var end: Int
    var major: UInt8

    /// `bytes` with this head replaced by its 8-byte form declaring `argument`.
    func rewritten(in bytes: [UInt8], argument: UInt64) -> [UInt8] {
      var head: [UInt8] = [major << 5 | 27]
      for shift in stride(from: 56, through: 0, by: -8) {
        head.append(UInt8(truncatingIfNeeded: argument >> UInt64(shift)))
      }
      return Array(bytes[..<offset]) + head + bytes[end...]
    }
  }

  /// Heads that carry an argument (integers, strings, arrays, maps, tags); stops at anything it
  /// cannot walk.
  static func scan(_ bytes: [UInt8]) -> [Head] {
    var heads: [Head] = []
    var offset = 0
    while offset < bytes.count {
      let initial = bytes[offset]
      let major = initial >> 5
      let info = initial & 0x1F
      let size: Int
      switch info {
      case 0..<24: size = 0
      case 24: size = 1
      case 25: size = 2
      case 26: size = 4
      case 27: size = 8
      default: return heads
      }
      guard offset + 1 + size <= bytes.count else { return heads }
      var argument: UInt64 = info < 24 ? UInt64(info) : 0
      if size > 0 {
        for i in 1...size { argument = argument << 8 | UInt64(bytes[offset + i]) }
      }
      let end = offset + 1 + size
      if major == 7 {  // floats and simple values carry no length
        offset = end
        continue
      }
      heads.append(Head(offset: offset, end: end, major: major))
      offset = end
      if major == 2 || major == 3 {
        guard argument <= UInt64(bytes.count - end) else { return heads }
        offset += Int(argument)
      }
    }
    return heads
  }
}

/// A frame split around its CAR: the bytes before the `blocks` string's head, the CAR, the
/// bytes after it; and where the seq value sits.
struct FrameParts {
  var before: [UInt8]
  var car: [UInt8]
  var after: [UInt8]
  var carStart: Int
  var seqRange: Range<Int>?

  init?(_ frame: [UInt8]) {
    let heads = CBORHeads.scan(frame)
    var blocksHead: CBORHeads.Head? = nil
    var seq: Range<Int>? = nil
    for (index, head) in heads.enumerated() where head.major == 3 {
      let key = frame[
        head.end..<(heads.indices.contains(index + 1) ? heads[index + 1].offset : frame.count)]
      if Array(key) == Array("blocks".utf8), index + 1 < heads.count, heads[index + 1].major == 2 {
        blocksHead = heads[index + 1]
      }
      if Array(key) == Array("seq".utf8), index + 1 < heads.count {
        seq = heads[index + 1].offset..<heads[index + 1].end
      }
    }
    seqRange = seq
    guard let head = blocksHead else { return nil }
    let length = Self.argument(frame, head)
    guard head.end + length <= frame.count else { return nil }
    before = Array(frame[..<head.offset])
    car = Array(frame[head.end..<(head.end + length)])
    after = Array(frame[(head.end + length)...])
    carStart = head.end
  }

  /// The frame with another CAR in its `blocks` byte string (its head re-encoded to fit).
  func with(car: [UInt8]) -> [UInt8] {
    before + CBORValue.bytes(car).encoded + after
  }

  private static func argument(_ bytes: [UInt8], _ head: CBORHeads.Head) -> Int {
    let info = bytes[head.offset] & 0x1F
    if info < 24 { return Int(info) }
    var value = 0
    for i in (head.offset + 1)..<head.end { value = value << 8 | Int(bytes[i]) }
    return value
  }
}

/// A CARv1 split into its header and sections, to be re-encoded with one part changed.
struct CARParts {
  struct Section {
    var cid: [UInt8]
    var data: [UInt8]
  }

  var header: [UInt8]
  var sections: [Section]
  /// Where each section's varint starts in the original encoding.
  var sectionOffsets: [Int]

  init?(_ car: [UInt8]) {
    guard let (headerLength, size) = Varints.decode(car, at: 0), size + headerLength <= car.count
    else { return nil }
    header = Array(car[size..<(size + headerLength)])
    var offset = size + headerLength
    sections = []
    sectionOffsets = []
    while offset < car.count {
      guard let (length, size) = Varints.decode(car, at: offset),
        offset + size + length <= car.count
      else { return nil }
      let section = Array(car[(offset + size)..<(offset + size + length)])
      let cidLength = section.withUnsafeBytes { CID.length($0) }
      guard let cidLength else { return nil }
      sectionOffsets.append(offset)
      sections.append(
        Section(cid: Array(section[..<cidLength]), data: Array(section[cidLength...])))
      offset += size + length
    }
  }

  /// The CAR re-encoded, with the given replacements.
  func encoded(
    header: [UInt8]? = nil, sections: [Section]? = nil, headerVarint: [UInt8]? = nil,
    sectionVarint: (Int, [UInt8])? = nil
  ) -> [UInt8] {
    let header = header ?? self.header
    var out = headerVarint ?? Varints.encode(UInt64(header.count))
    out += header
    for (index, section) in (sections ?? self.sections).enumerated() {
      let body = section.cid + section.data
      if let (target, varint) = sectionVarint, target == index {
        out += varint
      } else {
        out += Varints.encode(UInt64(body.count))
      }
      out += body
    }
    return out
  }
}

/// Unsigned LEB128, any value (the production reader refuses what does not fit 63 bits).
enum Varints {
  static func encode(_ value: UInt64) -> [UInt8] {
    var v = value
    var out: [UInt8] = []
    while v >= 0x80 {
      out.append(UInt8(truncatingIfNeeded: v) | 0x80)
      v >>= 7
    }
    out.append(UInt8(v))
    return out
  }

  static func decode(_ bytes: [UInt8], at offset: Int) -> (Int, Int)? {
    var value = 0
    var shift = 0
    var i = offset
    while i < bytes.count && shift < 63 {
      value |= Int(bytes[i] & 0x7F) << shift
      i += 1
      if bytes[i - 1] & 0x80 == 0 { return (value, i - offset) }
      shift += 7
    }
    return nil
  }
}
