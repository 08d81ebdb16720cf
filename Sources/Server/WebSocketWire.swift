import NIOCore

/// Server-to-client websocket frames (RFC 6455 §5.2: FIN set, unmasked) written straight into a
/// buffer, so a subscriber's whole batch goes out as one write instead of one NIO write per frame.
enum WebSocketWire {
  static let text: UInt8 = 0x1
  static let binary: UInt8 = 0x2
  static let close: UInt8 = 0x8
  static let ping: UInt8 = 0x9
  static let pong: UInt8 = 0xA

  /// Header bytes for a payload of `length`.
  static func headerSize(_ length: Int) -> Int {
    length < 126 ? 2 : length <= 0xFFFF ? 4 : 10
  }

  /// Appends one frame carrying `payload` (its readable bytes).
  static func append(_ opcode: UInt8, _ payload: ByteBuffer, to buffer: inout ByteBuffer) {
    let length = payload.readableBytes
    buffer.writeInteger(0x80 | opcode)
    if length < 126 {
      buffer.writeInteger(UInt8(length))
    } else if length <= 0xFFFF {
      buffer.writeInteger(UInt8(126))
      buffer.writeInteger(UInt16(length))
    } else {
      buffer.writeInteger(UInt8(127))
      buffer.writeInteger(UInt64(length))
    }
    buffer.writeImmutableBuffer(payload)
  }

  /// One frame as its own buffer.
  static func frame(_ opcode: UInt8, _ payload: ByteBuffer) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.reserveCapacity(headerSize(payload.readableBytes) + payload.readableBytes)
    append(opcode, payload, to: &buffer)
    return buffer
  }
}

/// Sits next to the socket, so that frames already encoded by `WebSocketWire` skip NIO's
/// per-frame encoder (which the upgrader installs and which cannot be removed). Everything else
/// written through the pipeline passes it unchanged.
final class RawFrameWriter: ChannelOutboundHandler {
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private var context: ChannelHandlerContext?

  func handlerAdded(context: ChannelHandlerContext) { self.context = context }
  func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

  /// Writes and flushes encoded frames; the future completes once they are written.
  @discardableResult
  func send(_ frames: ByteBuffer) -> EventLoopFuture<Void>? {
    context.map { $0.writeAndFlush(wrapOutboundOut(frames)) }
  }
}
