import Events
import NIOCore

/// One event as subscribers receive it: its filter keys and the two wire forms, built once at
/// ingest. `ByteBuffer`s are shared, so handing one to many sockets copies no payload bytes.
public struct BroadcastEvent: Sendable {
  public let meta: EventMeta
  /// The JSON's length in bytes (for `maxMessageSizeBytes`, which compares uncompressed sizes).
  public let jsonLength: Int
  /// The payloads as given, or, once framed, the block that holds the frames (each payload is
  /// its frame after the header).
  let payloads: Payloads
  /// Once framed: where the frames are in the block, and the block's identity. Plain values,
  /// so that a subscriber scanning the ring in place joins adjacent frames into runs without
  /// touching a reference count.
  let frameRanges: FrameRanges
  let blockID: ObjectIdentifier?

  enum Payloads: Sendable {
    case buffers(json: ByteBuffer?, compressed: ByteBuffer)
    /// Ingest's own arrays, held (not copied) until publish copies them into the frames.
    case arrays(json: [UInt8], compressed: [UInt8])
    case framed(FrameBlock)
  }

  public init(
    timeUS: Int64, eventSeq: Int64 = 0, kind: EventKind, did: String, collection: String,
    json: ByteBuffer?, compressed: ByteBuffer, jsonLength: Int
  ) {
    self.init(
      meta: EventMeta(
        timeUS: timeUS, seq: 0, eventSeq: eventSeq, kind: kind, did: did, collection: collection),
      json: json, compressed: compressed, jsonLength: jsonLength)
  }

  /// An event with its payloads given as buffers (a log record's, for instance).
  public init(meta: EventMeta, json: ByteBuffer?, compressed: ByteBuffer, jsonLength: Int) {
    self.init(
      meta: meta, jsonLength: jsonLength, payloads: .buffers(json: json, compressed: compressed),
      frameRanges: FrameRanges())
  }

  /// The live form of a freshly translated event and its zstd frame. The arrays are held as
  /// they are: publishing copies each payload once, into its frame.
  public init(_ event: Event, eventSeq: Int64, compressed: [UInt8]) {
    var meta = event.meta
    meta.eventSeq = eventSeq
    self.init(
      meta: meta, jsonLength: event.json.count,
      payloads: .arrays(json: event.json, compressed: compressed), frameRanges: FrameRanges())
  }

  private init(meta: EventMeta, jsonLength: Int, payloads: Payloads, frameRanges: FrameRanges) {
    self.meta = meta
    self.jsonLength = jsonLength
    self.payloads = payloads
    self.frameRanges = frameRanges
    if case .framed(let block) = payloads {
      blockID = ObjectIdentifier(block)
    } else {
      blockID = nil
    }
  }

  public var timeUS: Int64 { meta.timeUS }
  public var eventSeq: Int64 { meta.eventSeq }
  public var kind: EventKind { meta.kind }
  public var did: String { meta.did }
  public var collection: String { meta.collection }

  /// The JSON text; nil for events replayed from disk to zstd subscribers, which never need it.
  public var json: ByteBuffer? {
    switch payloads {
    case .buffers(let json, _): return json
    case .arrays(let json, _): return ByteBuffer(bytes: json)
    case .framed(let block):
      return WireFrames(block: block, ranges: frameRanges).payload(binary: false)
    }
  }

  /// The zstd frame; empty for events replayed from disk to text subscribers, which only need
  /// the JSON.
  public var compressed: ByteBuffer {
    switch payloads {
    case .buffers(_, let compressed): return compressed
    case .arrays(_, let compressed): return ByteBuffer(bytes: compressed)
    case .framed(let block):
      return WireFrames(block: block, ranges: frameRanges).payload(binary: true) ?? ByteBuffer()
    }
  }

  /// The whole websocket frames (header and payload) of both forms, built once for every
  /// subscriber: by `LiveRing.publish` for live events, by the feed's disk read for replayed ones.
  /// nil until then (an event made with one of the public initializers).
  public var frames: WireFrames? {
    if case .framed(let block) = payloads { return WireFrames(block: block, ranges: frameRanges) }
    return nil
  }

  /// The text frame (`opcode` 1) carrying the JSON, if built.
  public var textFrame: ByteBuffer? { frames?.frame(binary: false) }
  /// The binary frame (`opcode` 2) carrying the zstd frame, if built.
  public var binaryFrame: ByteBuffer? { frames?.frame(binary: true) }

  /// The payload's length in bytes, without making a buffer of it.
  public func payloadLength(binary: Bool) -> Int {
    switch payloads {
    case .buffers(let json, let compressed):
      return binary ? compressed.readableBytes : json?.readableBytes ?? 0
    case .arrays(let json, let compressed):
      return binary ? compressed.count : json.count
    case .framed:
      return frameRanges.range(binary: binary).map {
        WireFrames.payloadLength(frameLength: $0.count)
      } ?? 0
    }
  }

  /// Bytes held in memory for the ring's budget.
  var size: Int {
    payloadLength(binary: false) + payloadLength(binary: true) + did.utf8.count + 64
  }
}

/// The websocket frames of neighbouring events, written once into one shared allocation: every
/// text frame of the block back to back (`text`), then every binary frame (`binary`).
/// Consecutive events' frames are adjacent, so a subscriber sends a run of them as one slice.
public final class FrameBlock: Sendable {
  public let text: ByteBuffer
  public let binary: ByteBuffer

  /// `storage`: the text frames (its first `textBytes`), then the binary frames.
  init(storage: ByteBuffer, textBytes: Int) {
    text = storage.getSlice(at: storage.readerIndex, length: textBytes)!
    binary = storage.getSlice(
      at: storage.readerIndex + textBytes, length: storage.readableBytes - textBytes)!
  }

  /// A block takes events while its frames (both forms together) fit in this many bytes, so
  /// that it is one allocation of exactly this size (`ByteBuffer` rounds capacities up to a
  /// power of two); an event bigger than that gets a block of its own. Big enough that a
  /// subscriber's 64 KiB write is a few slices, small enough that a slice pinned by a stalled
  /// socket holds little beyond itself.
  public static let targetBytes = 32 << 10

  /// The buffer of one form.
  public func buffer(binary: Bool) -> ByteBuffer { binary ? self.binary : text }
}

/// Byte ranges of an event's frames in its block's buffers; empty for a form it has no frame of.
struct FrameRanges: Sendable {
  var textStart: UInt32 = 0
  var textEnd: UInt32 = 0
  var binaryStart: UInt32 = 0
  var binaryEnd: UInt32 = 0

  func range(binary: Bool) -> Range<Int>? {
    let (start, end) = binary ? (binaryStart, binaryEnd) : (textStart, textEnd)
    return start == end ? nil : Int(start)..<Int(end)
  }
}

/// Where one event's frames are in its `FrameBlock`.
public struct WireFrames: Sendable {
  public let block: FrameBlock
  let ranges: FrameRanges

  /// The frame's byte range in `block.buffer(binary:)`, or nil without a frame of that form.
  public func range(binary: Bool) -> Range<Int>? { ranges.range(binary: binary) }

  /// The frame as a slice of the block (shares its storage: no copy).
  public func frame(binary: Bool) -> ByteBuffer? {
    range(binary: binary).map {
      block.buffer(binary: binary).getSlice(at: $0.lowerBound, length: $0.count)!
    }
  }

  /// The length of the payload in a frame of `frameLength` bytes (the header's size follows
  /// from the payload's).
  static func payloadLength(frameLength: Int) -> Int {
    let short = frameLength - 2
    if short < 126 { return short }
    return frameLength - 4 <= 0xFFFF ? frameLength - 4 : frameLength - 10
  }

  /// The payload's length (0 without a frame of that form).
  func payloadLength(binary: Bool) -> Int {
    range(binary: binary).map { Self.payloadLength(frameLength: $0.count) } ?? 0
  }

  /// The payload: the frame after its header, a slice of the block.
  func payload(binary: Bool) -> ByteBuffer? {
    guard let range = range(binary: binary) else { return nil }
    let length = Self.payloadLength(frameLength: range.count)
    return block.buffer(binary: binary).getSlice(at: range.upperBound - length, length: length)!
  }
}

/// Websocket frame headers (RFC 6455 §5.2) of server frames: FIN set, unmasked.
public enum FrameHeader {
  public static let text: UInt8 = 0x1
  public static let binary: UInt8 = 0x2

  /// Header bytes for a payload of `length`.
  @inlinable
  public static func size(_ length: Int) -> Int {
    length < 126 ? 2 : length <= 0xFFFF ? 4 : 10
  }

  /// Appends the header of a frame with `opcode` and a payload of `length` bytes.
  @inlinable
  public static func write(_ opcode: UInt8, length: Int, to buffer: inout ByteBuffer) {
    if length < 126 {
      buffer.writeInteger(UInt16(0x80 | opcode) << 8 | UInt16(length))
    } else if length <= 0xFFFF {
      buffer.writeInteger(UInt16(0x80 | opcode) << 8 | 126)
      buffer.writeInteger(UInt16(length))
    } else {
      buffer.writeInteger(UInt16(0x80 | opcode) << 8 | 127)
      buffer.writeInteger(UInt64(length))
    }
  }
}

extension BroadcastEvent {
  /// `events` with their frames built: consecutive events without frames share blocks of at
  /// most `FrameBlock.targetBytes`, and their `json` and `compressed` become slices of those
  /// blocks (the payloads are copied once, into the frames; the events' own buffers are let go).
  /// Events that already have frames keep them.
  public static func framed(_ events: [BroadcastEvent]) -> [BroadcastEvent] {
    framedBlocks(events).flatMap { $0 }
  }

  /// `framed`, as the events of each block.
  static func framedBlocks(_ events: [BroadcastEvent]) -> [[BroadcastEvent]] {
    var blocks: [[BroadcastEvent]] = []
    var start = 0
    while start < events.count {
      if let id = events[start].blockID {
        // Already framed: kept, grouped by their block.
        var end = start + 1
        while end < events.count && events[end].blockID == id { end += 1 }
        blocks.append(Array(events[start..<end]))
        start = end
        continue
      }
      // The block: events without frames while their frames fit (at least one).
      var end = start
      var textBytes = 0
      var binaryBytes = 0
      while end < events.count, events[end].blockID == nil {
        let (text, binary) = events[end].frameSizes
        if end > start && textBytes + binaryBytes + text + binary > FrameBlock.targetBytes {
          break
        }
        textBytes += text
        binaryBytes += binary
        end += 1
      }
      var storage = ByteBuffer()
      storage.reserveCapacity(textBytes + binaryBytes)
      var ranges = [FrameRanges](repeating: FrameRanges(), count: end - start)
      for index in start..<end {
        let length = events[index].payloadLength(binary: false)
        guard length > 0 || events[index].hasJSON else { continue }
        ranges[index - start].textStart = UInt32(storage.writerIndex)
        FrameHeader.write(FrameHeader.text, length: length, to: &storage)
        events[index].writePayload(binary: false, to: &storage)
        ranges[index - start].textEnd = UInt32(storage.writerIndex)
      }
      for index in start..<end {
        let length = events[index].payloadLength(binary: true)
        guard length > 0 else { continue }
        ranges[index - start].binaryStart = UInt32(storage.writerIndex - textBytes)
        FrameHeader.write(FrameHeader.binary, length: length, to: &storage)
        events[index].writePayload(binary: true, to: &storage)
        ranges[index - start].binaryEnd = UInt32(storage.writerIndex - textBytes)
      }
      // Slices only once the storage is complete: a slice shares it, so a later write would
      // copy it.
      let block = FrameBlock(storage: storage, textBytes: textBytes)
      var framed: [BroadcastEvent] = []
      framed.reserveCapacity(end - start)
      for index in start..<end {
        framed.append(events[index].framed(in: block, ranges[index - start]))
      }
      blocks.append(framed)
      start = end
    }
    return blocks
  }

  /// Whether an event without frames has a JSON form (events replayed to zstd subscribers may
  /// have none).
  private var hasJSON: Bool {
    switch payloads {
    case .buffers(let json, _): return json != nil
    case .arrays: return true
    case .framed: return false
    }
  }

  /// Appends the payload of one form of an event without frames.
  private func writePayload(binary: Bool, to storage: inout ByteBuffer) {
    switch payloads {
    case .buffers(let json, let compressed):
      if binary {
        storage.writeImmutableBuffer(compressed)
      } else if let json {
        storage.writeImmutableBuffer(json)
      }
    case .arrays(let json, let compressed): storage.writeBytes(binary ? compressed : json)
    case .framed: break
    }
  }

  /// The sizes of the frames an event without frames gets (0: no frame of that form).
  private var frameSizes: (text: Int, binary: Int) {
    if case .framed = payloads { return (0, 0) }
    let json = payloadLength(binary: false)
    let text = hasJSON ? FrameHeader.size(json) + json : 0
    let zstd = payloadLength(binary: true)
    return (text, zstd > 0 ? FrameHeader.size(zstd) + zstd : 0)
  }

  /// This event with its frames at `ranges` of `block` (which hold its payloads) in place of
  /// its own buffers.
  func framed(in block: FrameBlock, _ ranges: FrameRanges) -> BroadcastEvent {
    BroadcastEvent(
      meta: meta, jsonLength: jsonLength, payloads: .framed(block), frameRanges: ranges)
  }
}
