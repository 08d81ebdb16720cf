import CCBOR

/// One DAG-CBOR token as read by `CBORReader`. Byte and text strings point into the input.
public enum CBORToken {
  case unsigned(UInt64)
  /// A negative integer with value `-1 - n`.
  case negative(UInt64)
  case bytes(UnsafeRawBufferPointer)
  case text(UnsafeRawBufferPointer)
  case array(Int)
  case map(Int)
  case tag(UInt64)
  case float(Double)
  case bool(Bool)
  case null
  /// Malformed or truncated input, or anything DAG-CBOR forbids: non-minimal integers, lengths
  /// or tags, indefinite lengths, `undefined` and other simple values.
  case invalid
}

/// Pulls DAG-CBOR tokens one at a time from a byte buffer with libcbor's streaming decoder
/// (`cbor_stream_decode`), adding the shortest-encoding checks that libcbor leaves out.
///
/// The reader borrows the buffer: tokens are only valid while the caller keeps it alive.
public struct CBORReader {
  public let start: UnsafePointer<UInt8>
  public let end: Int
  public var offset: Int

  public init(_ buffer: UnsafeRawBufferPointer) {
    // An empty buffer may have no address; any valid pointer works since nothing is read.
    self.start =
      buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
      ?? UnsafePointer(emptyByte)
    self.end = buffer.count
    self.offset = 0
  }

  public var isAtEnd: Bool { offset >= end }

  /// The bytes from `from` to the current position.
  public func slice(from: Int) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: start + from, count: offset - from)
  }

  /// Reads the next token; returns `.invalid` (and stops advancing) on any error.
  ///
  /// Every declared length and count is checked against the bytes that remain before it is
  /// used: a string must fit, an array of n items needs at least n more bytes and a map of n
  /// entries 2n, so a count never exceeds the input's size (and loops over it stay linear).
  @inline(__always)
  public mutating func next() -> CBORToken {
    guard offset < end else { return .invalid }
    // Heads with an argument of up to 8 bytes are read here (a call into libcbor and a callback
    // per token cost more than the token); floats, simple values, indefinite lengths and the
    // one-byte tags (libcbor refuses 6–20 as unassigned) go its way.
    let head = start[offset]
    let info = head & 0x1F
    guard head < 0xE0, info <= 27, head >> 5 != 6 || info >= 24 else { return nextFromLibcbor() }
    guard info >= 24 else {
      return token(major: head >> 5, argument: UInt64(info), headerLength: 1)
    }
    guard info == 24 else { return nextWithWideArgument(info) }
    guard end - offset >= 2 else { return .invalid }
    let argument = UInt64(start[offset + 1])
    guard argument >= 24 else { return .invalid }  // shortest form
    return token(major: head >> 5, argument: argument, headerLength: 2)
  }

  /// A head (major type 0–6) with a 2-, 4- or 8-byte argument (`info` 25–27): kept out of
  /// `next()` so that the common case stays small enough to inline.
  @inline(never)
  private mutating func nextWithWideArgument(_ info: UInt8) -> CBORToken {
    let p = UnsafeRawPointer(start + offset + 1)
    let argument: UInt64
    let headerLength: Int
    switch info {
    case 25:
      guard end - offset >= 3 else { return .invalid }
      argument = UInt64(UInt16(bigEndian: p.loadUnaligned(as: UInt16.self)))
      guard argument >= 0x100 else { return .invalid }  // shortest form
      headerLength = 3
    case 26:
      guard end - offset >= 5 else { return .invalid }
      argument = UInt64(UInt32(bigEndian: p.loadUnaligned(as: UInt32.self)))
      guard argument >= 0x1_0000 else { return .invalid }
      headerLength = 5
    default:
      guard end - offset >= 9 else { return .invalid }
      argument = UInt64(bigEndian: p.loadUnaligned(as: UInt64.self))
      guard argument >= 0x1_0000_0000 else { return .invalid }
      headerLength = 9
    }
    return token(major: start[offset] >> 5, argument: argument, headerLength: headerLength)
  }

  /// The token for a head already read (major type 0–6), with every length checked against
  /// what remains.
  @inline(__always)
  private mutating func token(major: UInt8, argument: UInt64, headerLength: Int) -> CBORToken {
    let rest = UInt64(end - offset - headerLength)
    switch major {
    case 0:
      offset += headerLength
      return .unsigned(argument)
    case 1:
      offset += headerLength
      return .negative(argument)
    case 2, 3:
      guard argument <= rest else { return .invalid }
      let count = Int(argument)
      let content = UnsafeRawBufferPointer(start: start + offset + headerLength, count: count)
      offset += headerLength + count
      return major == 2 ? .bytes(content) : .text(content)
    case 4:
      guard argument <= rest else { return .invalid }
      offset += headerLength
      return .array(Int(argument))
    case 5:
      guard argument <= rest / 2 else { return .invalid }
      offset += headerLength
      return .map(Int(argument))
    case 6:
      offset += headerLength
      return .tag(argument)
    default:
      return .invalid
    }
  }

  /// The general path through libcbor's `cbor_stream_decode`: longer arguments, floats and
  /// simple values.
  mutating func nextFromLibcbor() -> CBORToken {
    guard offset < end else { return .invalid }
    var slot = TokenSlot()
    let result = cbor_stream_decode(start + offset, end - offset, tokenCallbacks, &slot)
    // Indefinite lengths, breaks, `undefined` and unassigned simple values leave the slot empty.
    guard result.status == CBOR_DECODER_FINISHED, slot.kind != .none else { return .invalid }
    let head = start[offset]
    guard head >= 0xE0 else {
      // Shortest form: a 1/2/4/8-byte argument must not fit in the smaller form. libcbor's own
      // bounds check can wrap for huge string lengths, so `token` checks every length again.
      let (minimum, headerLength): (UInt64, Int)
      switch head & 0x1F {
      case 24: (minimum, headerLength) = (24, 2)
      case 25: (minimum, headerLength) = (0x100, 3)
      case 26: (minimum, headerLength) = (0x1_0000, 5)
      case 27: (minimum, headerLength) = (0x1_0000_0000, 9)
      default: (minimum, headerLength) = (0, 1)
      }
      guard slot.argument >= minimum else { return .invalid }
      return token(major: head >> 5, argument: slot.argument, headerLength: headerLength)
    }
    // Floats and simple values: libcbor's length is exact.
    guard result.read > 0, result.read <= end - offset else { return .invalid }
    offset += result.read
    switch slot.kind {
    case .float: return .float(slot.float)
    case .bool: return .bool(slot.argument != 0)
    case .null: return .null
    default: return .invalid
    }
  }

  /// Skips one complete value (containers included) without looking at it.
  /// Fails on invalid input or nesting deeper than `maxDepth`.
  public mutating func skipValue(maxDepth: Int = 128) -> Bool {
    switch next() {
    case .invalid: return false
    case .array(let n): return skipValues(n, maxDepth: maxDepth - 1)
    case .map(let n):
      let (both, overflow) = n.multipliedReportingOverflow(by: 2)
      return !overflow && skipValues(both, maxDepth: maxDepth - 1)
    case .tag: return maxDepth > 0 && skipValue(maxDepth: maxDepth - 1)
    default: return true
    }
  }

  private mutating func skipValues(_ count: Int, maxDepth: Int) -> Bool {
    guard maxDepth >= 0 else { return false }
    for _ in 0..<count where !skipValue(maxDepth: maxDepth) { return false }
    return true
  }
}

nonisolated(unsafe) private let emptyByte: UnsafeMutablePointer<UInt8> = {
  let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
  p.initialize(to: 0)
  return p
}()

/// What the C callbacks fill in for one `cbor_stream_decode` call.
private struct TokenSlot {
  enum Kind: UInt8 {
    case none, unsigned, negative, bytes, text, array, map, tag, float, bool, null
  }
  var kind: Kind = .none
  var argument: UInt64 = 0
  var float: Double = 0
}

@inline(__always)
private func fill(_ context: UnsafeMutableRawPointer?, _ kind: TokenSlot.Kind, _ argument: UInt64) {
  let slot = context!.assumingMemoryBound(to: TokenSlot.self)
  slot.pointee.kind = kind
  slot.pointee.argument = argument
}

@inline(__always)
private func fillString(
  _ context: UnsafeMutableRawPointer?, _ kind: TokenSlot.Kind, _ length: Int
) {
  // `size_t` arrives as `Int`: keep its bits (a length ≥ 2^63 is negative here).
  fill(context, kind, UInt64(UInt(bitPattern: length)))
}

@inline(__always)
private func fillFloat(_ context: UnsafeMutableRawPointer?, _ value: Double) {
  let slot = context!.assumingMemoryBound(to: TokenSlot.self)
  slot.pointee.kind = .float
  slot.pointee.float = value
}

/// The callback table, built once. Indefinite-length starts, breaks and `undefined` leave the
/// slot empty, which `next()` reports as `.invalid`.
nonisolated(unsafe) private let tokenCallbacks: UnsafePointer<cbor_callbacks> = {
  var table = cbor_empty_callbacks
  table.uint8 = { fill($0, .unsigned, UInt64($1)) }
  table.uint16 = { fill($0, .unsigned, UInt64($1)) }
  table.uint32 = { fill($0, .unsigned, UInt64($1)) }
  table.uint64 = { fill($0, .unsigned, $1) }
  table.negint8 = { fill($0, .negative, UInt64($1)) }
  table.negint16 = { fill($0, .negative, UInt64($1)) }
  table.negint32 = { fill($0, .negative, UInt64($1)) }
  table.negint64 = { fill($0, .negative, $1) }
  // libcbor's field names are swapped in places: `byte_string` and `string` are the definite
  // forms, `array_start` and `map_start` the definite containers.
  table.byte_string = { context, _, length in fillString(context, .bytes, length) }
  table.string = { context, _, length in fillString(context, .text, length) }
  table.array_start = { fillString($0, .array, $1) }
  table.map_start = { fillString($0, .map, $1) }
  table.tag = { fill($0, .tag, $1) }
  table.float2 = { fillFloat($0, Double($1)) }
  table.float4 = { fillFloat($0, Double($1)) }
  table.float8 = { fillFloat($0, $1) }
  table.null = { fill($0, .null, 0) }
  table.boolean = { fill($0, .bool, $1 ? 1 : 0) }
  let pointer = UnsafeMutablePointer<cbor_callbacks>.allocate(capacity: 1)
  pointer.initialize(to: table)
  return UnsafePointer(pointer)
}()
