import Broadcast
import NIOCore
import NIOPosix
import NIOWebSocket

/// One subscriber connection after the upgrade (ARCHITECTURE §5): pulls batches of pre-built
/// frames from its feed, writes a whole batch per flush, waits for writability (never more than
/// one batch buffered), and yields to the event loop between batches. Disk reads and text
/// replays run on the thread pool; the event loop only moves bytes.
final class SubscriberHandler: ChannelInboundHandler {
  typealias InboundIn = WebSocketFrame
  typealias OutboundOut = WebSocketFrame

  static let batchSize = 128

  private let feed: FeedBox
  private let options: SubscribeOptions
  private var pumping = false
  private var waitingForWritable = false
  private var closed = false

  init(feed: SubscriberFeed, options: SubscribeOptions) {
    self.feed = FeedBox(feed)
    self.options = options
  }

  func handlerAdded(context: ChannelHandlerContext) {
    if context.channel.isActive { pump(context) }
  }

  func channelActive(context: ChannelHandlerContext) {
    pump(context)
    context.fireChannelActive()
  }

  func channelInactive(context: ChannelHandlerContext) {
    closed = true
    context.fireChannelInactive()
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable && waitingForWritable {
      waitingForWritable = false
      pump(context)
    }
    context.fireChannelWritabilityChanged()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = unwrapInboundIn(data)
    switch frame.opcode {
    case .ping:
      context.writeAndFlush(
        wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)),
        promise: nil)
    case .connectionClose:
      // Echo the client's close, then close the connection.
      var data = frame.unmaskedData
      let code = data.readSlice(length: 2) ?? ByteBuffer()
      closed = true
      let channel = context.channel
      context.writeAndFlush(
        wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: code))
      )
      .whenComplete { _ in channel.close(promise: nil) }
    default:
      break  // client messages (options_update) are not handled yet
    }
  }

  /// Reads the next batch off the event loop, then writes it here.
  private func pump(_ context: ChannelHandlerContext) {
    guard !closed, !pumping else { return }
    guard context.channel.isWritable else {
      waitingForWritable = true
      return
    }
    pumping = true
    let loop = context.eventLoop
    let bound = NIOLoopBound((self, context), eventLoop: loop)
    let feed = self.feed
    NIOThreadPool.singleton.runIfActive(eventLoop: loop) {
      try feed.feed.nextBatch(limit: Self.batchSize)
    }.whenComplete { result in
      let (handler, context) = bound.value
      handler.pumping = false
      switch result {
      case .success(let batch) where batch.isEmpty:
        feed.feed.notifyWhenReady {
          loop.execute { bound.value.0.pump(bound.value.1) }
        }
      case .success(let batch):
        handler.write(batch, context)
        loop.execute { bound.value.0.pump(bound.value.1) }  // yield between batches
      case .failure:
        handler.close(context, code: .unexpectedServerError, reason: "internal error")
      }
    }
  }

  private func write(_ batch: [BroadcastEvent], _ context: ChannelHandlerContext) {
    for event in batch {
      if options.maxMessageSizeBytes > 0 && Int64(event.jsonLength) > options.maxMessageSizeBytes {
        continue
      }
      let frame =
        options.compress
        ? WebSocketFrame(fin: true, opcode: .binary, data: event.compressed)
        : WebSocketFrame(fin: true, opcode: .text, data: event.json ?? ByteBuffer())
      context.write(wrapOutboundOut(frame), promise: nil)
    }
    context.flush()
  }

  private func close(_ context: ChannelHandlerContext, code: WebSocketErrorCode, reason: String) {
    guard !closed else { return }
    closed = true
    var data = ByteBuffer()
    data.write(webSocketErrorCode: code)
    data.writeString(reason)
    let channel = context.channel
    context.writeAndFlush(
      wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))
    )
    .whenComplete { _ in channel.close(promise: nil) }
  }
}

/// Hands the feed to the thread pool and back. Safe because a handler has at most one pump step
/// in flight, so the feed is never used by two threads at once.
final class FeedBox: @unchecked Sendable {
  let feed: SubscriberFeed
  init(_ feed: SubscriberFeed) { self.feed = feed }
}
