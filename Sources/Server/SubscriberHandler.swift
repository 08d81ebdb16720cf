import Broadcast
import Events
import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization

/// One subscriber connection after the upgrade (ARCHITECTURE §5): pulls batches of pre-built
/// frames from its feed, writes a whole batch per flush, waits for writability (never more than
/// one batch buffered), and yields to the event loop between batches. Disk reads and text
/// replays run on the thread pool; the event loop only moves bytes.
final class SubscriberHandler: ChannelInboundHandler {
  typealias InboundIn = WebSocketFrame
  typealias OutboundOut = WebSocketFrame

  static let batchSize = 128

  /// Client messages up to this size are read (after reassembly); larger ones close with 1009.
  static let maxMessageBytes = 10_000_000

  private let options: SubscribeOptions
  /// Creates the feed for a filter; the start (cursor or live) is resolved when it is called.
  private let makeFeed: (EventFilter) -> SubscriberFeed
  /// nil until the subscription starts (at the upgrade, or at the hello with `requireHello`).
  private var feed: FeedBox?
  private var maxMessageSizeBytes: Int64
  /// An `options_update` to apply before the next batch is read.
  private var pendingUpdate: (EventFilter, Int64)?
  private var pumping = false
  private var waitingForWritable = false
  private var closed = false
  private let keepalive: Keepalive
  private var lastPong = NIODeadline.now()
  private var pinger: RepeatedTask?

  /// Server pings and how long a client may stay silent (PROTOCOL §9: 30 s and 60 s).
  struct Keepalive: Sendable {
    var pingInterval: TimeAmount = .seconds(30)
    var pongTimeout: TimeAmount = .seconds(60)
  }

  private let registry: SubscriberRegistry
  private var registration: Int?

  init(
    options: SubscribeOptions, keepalive: Keepalive, registry: SubscriberRegistry,
    makeFeed: @escaping (EventFilter) -> SubscriberFeed
  ) {
    self.options = options
    self.registry = registry
    self.keepalive = keepalive
    self.makeFeed = makeFeed
    self.maxMessageSizeBytes = options.maxMessageSizeBytes
  }

  func handlerAdded(context: ChannelHandlerContext) {
    lastPong = .now()
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    let loop = context.eventLoop
    registration = registry.add {
      loop.execute { bound.value.0.shutDown(bound.value.1) }
    }
    pinger = context.eventLoop.scheduleRepeatedTask(
      initialDelay: keepalive.pingInterval, delay: keepalive.pingInterval
    ) {
      _ in
      let (handler, context) = bound.value
      handler.ping(context)
    }
    guard !options.requireHello else { return }  // nothing but pings before the hello
    feed = FeedBox(makeFeed(options.filter))
    if context.channel.isActive { pump(context) }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    pinger?.cancel()
    if let registration { registry.remove(registration) }
  }

  /// Sends a ping, or closes a client that has not answered for `pongTimeout`.
  private func ping(_ context: ChannelHandlerContext) {
    guard !closed else { return }
    if NIODeadline.now() - lastPong >= keepalive.pongTimeout {
      return close(context, CloseReason(code: 1008, text: "ping timeout", metric: "ping_timeout"))
    }
    context.writeAndFlush(
      wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())), promise: nil)
  }

  /// Graceful shutdown: close with 1001 (PROTOCOL §9).
  func shutDown(_ context: ChannelHandlerContext) {
    close(context, CloseReason(code: 1001, text: "server shutting down", metric: "shutdown"))
  }

  func channelActive(context: ChannelHandlerContext) {
    pump(context)
    context.fireChannelActive()
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    switch error {
    case NIOWebSocketError.invalidFrameLength,
      NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge:
      close(context, .tooBig)
    default:
      close(context, CloseReason(code: 1002, text: "protocol error", metric: "protocol"))
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    closed = true
    pinger?.cancel()
    if let registration { registry.remove(registration) }
    registration = nil
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
    case .pong:
      lastPong = .now()
    case .ping:
      context.writeAndFlush(
        wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)),
        promise: nil)
    case .connectionClose:
      if closed {  // the client's answer to our close
        context.close(promise: nil)
        return
      }
      // Echo the client's close, then close the connection.
      var data = frame.unmaskedData
      let code = data.readSlice(length: 2) ?? ByteBuffer()
      closed = true
      let channel = context.channel
      context.writeAndFlush(
        wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: code))
      )
      .whenComplete { _ in channel.close(promise: nil) }
    case .text:
      var data = frame.unmaskedData
      switch ClientMessage.decode(data.readBytes(length: data.readableBytes) ?? []) {
      case .ignored: break
      case .close(let reason): close(context, reason)
      case .update(let filter, let maxSize):
        if feed == nil {
          // The hello: the subscription starts now, with its filter.
          maxMessageSizeBytes = maxSize
          feed = FeedBox(makeFeed(filter))
          pump(context)
        } else {
          pendingUpdate = (filter, maxSize)
          pump(context)
        }
      }
    default:
      break  // binary messages from clients are ignored
    }
  }

  /// Reads the next batch off the event loop, then writes it here.
  private func pump(_ context: ChannelHandlerContext) {
    guard !closed, !pumping, let feed else { return }
    if let (filter, maxSize) = pendingUpdate {
      // No batch is in flight, so the feed is ours to change: the new filter applies from the
      // next event read.
      feed.feed.filter = filter
      maxMessageSizeBytes = maxSize
      pendingUpdate = nil
    }
    guard context.channel.isWritable else {
      waitingForWritable = true
      return
    }
    pumping = true
    let loop = context.eventLoop
    let bound = NIOLoopBound((self, context), eventLoop: loop)
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
        handler.close(context, .internalError)
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

  private func close(_ context: ChannelHandlerContext, _ reason: CloseReason) {
    guard !closed else { return }
    closed = true
    var data = ByteBuffer()
    data.writeInteger(reason.code)
    data.writeString(reason.wireText)
    let channel = context.channel
    context.writeAndFlush(
      wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))
    )
    .whenComplete { _ in channel.close(promise: nil) }
  }
}

/// The open subscriptions, so that shutdown can close each one with 1001.
final class SubscriberRegistry: Sendable {
  private let state = Mutex<(next: Int, closers: [Int: @Sendable () -> Void])>((0, [:]))

  func add(_ close: @escaping @Sendable () -> Void) -> Int {
    state.withLock { state in
      state.next += 1
      state.closers[state.next] = close
      return state.next
    }
  }

  func remove(_ id: Int) { _ = state.withLock { $0.closers.removeValue(forKey: id) } }

  var count: Int { state.withLock { $0.closers.count } }

  /// Asks every open subscription to close.
  func closeAll() {
    for close in state.withLock({ Array($0.closers.values) }) { close() }
  }
}

/// Hands the feed to the thread pool and back. Safe because a handler has at most one pump step
/// in flight, so the feed is never used by two threads at once.
final class FeedBox: @unchecked Sendable {
  let feed: SubscriberFeed
  init(_ feed: SubscriberFeed) { self.feed = feed }
}
