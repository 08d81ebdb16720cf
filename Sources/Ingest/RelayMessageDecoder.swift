import NIOCore
import NIOWebSocket

/// One websocket message from the relay, as `RelayMessageDecoder` hands it on.
enum RelayMessage {
  /// A complete binary message (a relay frame), fragments joined.
  case binary(ByteBuffer)
  case ping(ByteBuffer)
  case close
  /// A data message longer than the limit: its bytes were skipped as they arrived, never held.
  case oversize(bytes: UInt64)
  /// A complete text message; its bytes are not kept (nothing upstream sends text on purpose).
  case text
  /// Pongs: nothing for ingest.
  case other
}

/// The relay side of the websocket framing (RFC 6455 §5), in place of NIO's decoder and
/// aggregator so that a message over `maxMessageBytes` is skipped and counted instead of ending
/// the connection (which would ask the relay for the same seq again, forever). Memory stays
/// bounded by the limit: every length is checked before anything is kept.
struct RelayMessageDecoder: ByteToMessageDecoder {
  typealias InboundOut = RelayMessage

  struct ProtocolError: Error, CustomStringConvertible {
    let description: String
  }

  let maxMessageBytes: Int
  /// The fragments of the data message in progress (nil between messages).
  private var message: ByteBuffer?
  /// Whether the message in progress is binary (text messages are read and dropped).
  private var messageIsBinary = false
  /// The message in progress is over the limit: its payload is being skipped.
  private var discarding = false
  /// Bytes of the current frame's payload still to skip.
  private var skipRemaining: UInt64 = 0
  /// The declared length of the message being skipped, for the count.
  private var discardedBytes: UInt64 = 0
  private var inMessage = false
  /// The frame being skipped ends its message.
  private var skipEndsMessage = false

  /// A negative limit is taken as 0 (every data message is then over it).
  init(maxMessageBytes: Int) {
    self.maxMessageBytes = max(0, maxMessageBytes)
  }

  mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws
    -> DecodingState
  {
    if skipRemaining > 0 {
      let skip = Int(min(skipRemaining, UInt64(buffer.readableBytes)))
      buffer.moveReaderIndex(forwardBy: skip)
      skipRemaining -= UInt64(skip)
      guard skipRemaining == 0 else { return .needMoreData }
      if skipEndsMessage { endDiscarded(context) }
      return .continue
    }
    guard let header = try Self.header(buffer) else { return .needMoreData }
    if header.opcode >= 8 {
      guard header.fin, header.length <= 125 else {
        throw ProtocolError(description: "a control frame that is fragmented or too long")
      }
      let size = header.size + Int(header.length)
      guard buffer.readableBytes >= size else { return .needMoreData }
      let payload = Self.payload(buffer, header)
      buffer.moveReaderIndex(forwardBy: size)
      switch header.opcode {
      case 8: context.fireChannelRead(wrapInboundOut(.close))
      case 9: context.fireChannelRead(wrapInboundOut(.ping(payload)))
      case 10: context.fireChannelRead(wrapInboundOut(.other))
      default: throw ProtocolError(description: "unknown control opcode \(header.opcode)")
      }
      return .continue
    }
    let starting: Bool
    switch header.opcode {
    case 0:
      guard inMessage else { throw ProtocolError(description: "a continuation with no message") }
      starting = false
    case 1, 2:
      guard !inMessage else { throw ProtocolError(description: "a new message inside another") }
      starting = true
    default:
      throw ProtocolError(description: "unknown data opcode \(header.opcode)")
    }
    let held = UInt64(message?.readableBytes ?? 0)
    if (discarding && !starting) || header.length > UInt64(maxMessageBytes) - held {
      // Over the limit: drop what was held and skip this frame's payload as it arrives.
      inMessage = true
      discarding = true
      discardedBytes = discardedBytes &+ held &+ header.length
      message = nil
      buffer.moveReaderIndex(forwardBy: header.size)
      skipRemaining = header.length
      skipEndsMessage = header.fin
      if skipRemaining == 0 && header.fin { endDiscarded(context) }
      return .continue
    }
    // Nothing changes until the whole frame is here: the header is read again next time.
    let size = header.size + Int(header.length)
    guard buffer.readableBytes >= size else { return .needMoreData }
    if starting {
      inMessage = true
      messageIsBinary = header.opcode == 2
    }
    let payload = Self.payload(buffer, header)
    buffer.moveReaderIndex(forwardBy: size)
    if header.fin && message == nil {
      inMessage = false
      context.fireChannelRead(wrapInboundOut(messageIsBinary ? .binary(payload) : .text))
    } else {
      var joined = message ?? ByteBuffer()
      // Leaves `joined` the only reference to what is held, so the append grows it in place: with
      // two, every fragment copied all that was held (quadratic in 1-byte fragments).
      message = nil
      var part = payload
      joined.writeBuffer(&part)
      message = joined
      if header.fin {
        inMessage = false
        message = nil
        context.fireChannelRead(wrapInboundOut(messageIsBinary ? .binary(joined) : .text))
      }
    }
    return .continue
  }

  mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool)
    throws -> DecodingState
  {
    while try decode(context: context, buffer: &buffer) == .continue {}
    return .needMoreData
  }

  private mutating func endDiscarded(_ context: ChannelHandlerContext) {
    discarding = false
    inMessage = false
    let bytes = discardedBytes
    discardedBytes = 0
    context.fireChannelRead(wrapInboundOut(.oversize(bytes: bytes)))
  }

  private struct Header {
    var fin: Bool
    var opcode: UInt8
    var length: UInt64
    var mask: WebSocketMaskingKey?
    /// Header bytes, mask key included.
    var size: Int
  }

  /// The frame header at the reader index, or nil until all of it has arrived.
  private static func header(_ buffer: ByteBuffer) throws -> Header? {
    guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
      let second = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self)
    else { return nil }
    guard first & 0x70 == 0 else {
      throw ProtocolError(description: "reserved bits set with no extension negotiated")
    }
    var size = 2
    var length = UInt64(second & 0x7F)
    if length == 126 {
      guard let extended = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self) else {
        return nil
      }
      length = UInt64(extended)
      size = 4
    } else if length == 127 {
      guard let extended = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt64.self) else {
        return nil
      }
      guard extended >> 63 == 0 else { throw ProtocolError(description: "a 64-bit frame length") }
      length = extended
      size = 10
    }
    var mask: WebSocketMaskingKey? = nil
    if second & 0x80 != 0 {  // servers should not mask; accept it anyway
      guard let key = buffer.getBytes(at: buffer.readerIndex + size, length: 4) else { return nil }
      mask = WebSocketMaskingKey(key)
      size += 4
    }
    return Header(
      fin: first & 0x80 != 0, opcode: first & 0x0F, length: length, mask: mask, size: size)
  }

  /// The payload of a frame that is wholly in `buffer`, unmasked (a slice when it was not masked).
  private static func payload(_ buffer: ByteBuffer, _ header: Header) -> ByteBuffer {
    var payload = buffer.getSlice(at: buffer.readerIndex + header.size, length: Int(header.length))!
    if let mask = header.mask { payload.webSocketUnmask(mask) }
    return payload
  }
}
