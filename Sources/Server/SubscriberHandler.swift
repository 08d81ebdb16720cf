import Broadcast
import EventLog
import Events
import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization

/// What every subscriber of one server shares: policies, metrics, limits and the registry that
/// shutdown closes.
struct SubscriberEnvironment: Sendable {
  let configuration: SubscribeServer.Configuration
  let ring: LiveRing
  let log: EventLog
  let registry: SubscriberRegistry
  let limits: ConnectionLimits
  let metrics: SubscribeMetrics
  let heartbeats: HeartbeatEncoder
}

/// One subscriber connection after the upgrade (ARCHITECTURE §5): pulls batches of pre-built
/// frames from its feed, writes a whole batch per flush, waits for writability (never more than
/// one batch buffered), and yields to the event loop between batches. Disk reads and text
/// replays run on the thread pool; the event loop only moves bytes.
final class SubscriberHandler: ChannelInboundHandler {
  typealias InboundIn = WebSocketFrame

  static let batchSize = 128

  /// Client messages up to this size are read (after reassembly); larger ones close with 1009.
  static let maxMessageBytes = 10_000_000

  private let options: SubscribeOptions
  private let address: String
  private let environment: SubscriberEnvironment
  /// Every frame to the client goes out pre-encoded through this (`WebSocketWire`).
  private let writer: RawFrameWriter
  /// Creates the feed for a filter; the start (cursor or live) is resolved when it is called.
  private let makeFeed: (EventFilter) -> SubscriberFeed
  /// nil until the subscription starts (at the upgrade, or at the hello with `requireHello`).
  private var feed: FeedBox?
  private var maxMessageSizeBytes: Int64
  /// An `options_update` to apply before the next batch is read.
  private var pendingUpdate: (EventFilter, Int64)?
  /// A read is in flight (or a paced pump is scheduled).
  private var pumping = false
  /// A batch read but not yet written (the channel was not writable when it arrived).
  private var readyBatch: Batch?
  private var waitingForWritable = false
  private var closed = false
  /// The metric label of a server-initiated close, for the disconnect log line.
  private var closeReason: String?
  private var ended = false
  private var lastPong = NIODeadline.now()
  private var timers: [RepeatedTask] = []
  private var registration: Int?

  /// Everything at or before this `time_us` has been written or filtered out (heartbeat `T`).
  private var deliveredThrough: Int64 = 0
  private var lastMessage = NIODeadline.now()
  /// Since when the subscriber has lagged more than the policy allows.
  private var laggingSince: NIODeadline?

  init(
    options: SubscribeOptions, address: String, environment: SubscriberEnvironment,
    writer: RawFrameWriter, makeFeed: @escaping (EventFilter) -> SubscriberFeed
  ) {
    self.writer = writer
    self.options = options
    self.address = address
    self.environment = environment
    self.makeFeed = makeFeed
    self.maxMessageSizeBytes = options.maxMessageSizeBytes
  }

  private var configuration: SubscribeServer.Configuration { environment.configuration }

  func handlerAdded(context: ChannelHandlerContext) {
    lastPong = .now()
    environment.metrics.opened(compressed: options.compress)
    configuration.logger.info(
      "subscriber connected",
      metadata: [
        "address": "\(address)", "compress": "\(options.compress)",
        "cursor": "\(options.cursor.map(String.init) ?? "live")",
        "collections": "\(options.filter.collections.count)",
        "dids": "\(options.filter.dids.count)",
      ])
    environment.metrics.started(options.cursor == nil ? "live" : "cursor")
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    let loop = context.eventLoop
    registration = environment.registry.add(context.channel) {
      loop.execute { bound.value.0.close(bound.value.1, .shutdown) }
    }
    timers.append(
      loop.scheduleRepeatedTask(
        initialDelay: configuration.pingInterval, delay: configuration.pingInterval
      ) { _ in bound.value.0.ping(bound.value.1) })
    let every = configuration.slowConsumer.checkInterval
    timers.append(
      loop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
        bound.value.0.check(bound.value.1)
      })
    guard !options.requireHello else { return }  // nothing but pings before the hello
    start(filter: options.filter, context)
  }

  private func start(filter: EventFilter, _ context: ChannelHandlerContext) {
    let feed = makeFeed(filter)
    self.feed = FeedBox(feed)
    deliveredThrough = feed.position
    lastMessage = .now()
    if context.channel.isActive { pump(context) }
  }

  func handlerRemoved(context: ChannelHandlerContext) { end() }

  /// Runs once when the connection goes: timers, registry and the gauge.
  private func end() {
    guard !ended else { return }
    ended = true
    closed = true
    for timer in timers { timer.cancel() }
    if let registration { environment.registry.remove(registration) }
    environment.metrics.ended(compressed: options.compress)
    configuration.logger.info(
      "subscriber disconnected",
      metadata: ["address": "\(address)", "reason": "\(closeReason ?? "client")"])
  }

  /// Sends a ping, or closes a client that has not answered for `pongTimeout`.
  private func ping(_ context: ChannelHandlerContext) {
    guard !closed else { return }
    if NIODeadline.now() - lastPong >= configuration.pongTimeout {
      return close(context, .pingTimeout)
    }
    writer.send(WebSocketWire.frame(WebSocketWire.ping, ByteBuffer()))
  }

  /// The periodic check: the slow-consumer policy (retention passed the position even while the
  /// subscriber is not reading; the lag limit), then a heartbeat if one is due.
  private func check(_ context: ChannelHandlerContext) {
    guard !closed, feed != nil else { return }
    if let deleted = environment.log.deletedThroughTimeUS, deleted > deliveredThrough {
      return close(context, .tooSlow)
    }
    let now = NIODeadline.now()
    if let maxLag = configuration.slowConsumer.maxLag {
      let lag = environment.ring.newestTimeUS - deliveredThrough
      if lag > maxLag.nanoseconds / 1000 {
        let since = laggingSince ?? now
        laggingSince = since
        if now - since >= configuration.slowConsumer.grace { return close(context, .lagging) }
      } else {
        laggingSince = nil
      }
    }
    if let seconds = options.heartbeat, now - lastMessage >= .seconds(Int64(seconds)),
      context.channel.isWritable
    {
      do {
        let frame = try environment.heartbeats.frame(deliveredThrough, compressed: options.compress)
        writer.send(frame)
        environment.metrics.heartbeats.increment()
        lastMessage = now
      } catch {
        close(context, .internalError)
      }
    }
  }

  func channelActive(context: ChannelHandlerContext) {
    pump(context)
    context.fireChannelActive()
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    switch error {
    case NIOWebSocketError.invalidFrameLength,
      NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge:
      environment.metrics.update("oversize")
      close(context, .tooBig)
    default:
      close(context, CloseReason(code: 1002, text: "protocol error", metric: "protocol"))
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    end()
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
      writer.send(WebSocketWire.frame(WebSocketWire.pong, frame.unmaskedData))
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
      writer.send(WebSocketWire.frame(WebSocketWire.close, code))?
        .whenComplete { _ in channel.close(promise: nil) }
    case .text:
      var data = frame.unmaskedData
      switch ClientMessage.decode(data.readBytes(length: data.readableBytes) ?? []) {
      case .ignored:
        environment.metrics.update("ignored")
      case .close(let reason):
        environment.metrics.update(reason.metric)
        close(context, reason)
      case .update(let filter, let maxSize):
        environment.metrics.update("applied")
        if feed == nil {
          // The hello: the subscription starts now, with its filter.
          maxMessageSizeBytes = maxSize
          start(filter: filter, context)
        } else {
          pendingUpdate = (filter, maxSize)
          pump(context)
        }
      }
    default:
      break  // binary messages from clients are ignored
    }
  }

  /// What one pump step read, copied out of the feed on the thread pool.
  private struct Batch {
    var events: [BroadcastEvent]
    var position: Int64
    var fromDisk: Int
    var fromMemory: Int
    var filteredOut: Int
  }

  /// Moves the subscription forward: while the channel is writable, starts reading the next
  /// batch off the event loop and writes the batch already read here, so reading and writing
  /// overlap. At most one read batch waits beside the channel's own (bounded) write buffer.
  private func pump(_ context: ChannelHandlerContext) {
    guard !closed, !pumping, let feed else { return }
    guard context.channel.isWritable else {
      waitingForWritable = true
      return
    }
    let loop = context.eventLoop
    let bound = NIOLoopBound((self, context), eventLoop: loop)
    if let wait = environment.limits.delay(address) {
      pumping = true  // paced: nothing else may start a read meanwhile
      loop.scheduleTask(in: wait) {
        bound.value.0.pumping = false
        bound.value.0.pump(bound.value.1)
      }
      return
    }
    let ready = readyBatch
    readyBatch = nil
    read(feed, context)
    if let ready { write(ready, context) }
  }

  /// Reads the next batch on the thread pool; it comes back to `pump` (or, when there is nothing
  /// new, the feed calls back once there is).
  private func read(_ feed: FeedBox, _ context: ChannelHandlerContext) {
    if let (filter, maxSize) = pendingUpdate {
      // No read is in flight, so the feed is ours to change: the new filter applies from the
      // next event read.
      feed.feed.filter = filter
      maxMessageSizeBytes = maxSize
      pendingUpdate = nil
    }
    pumping = true
    let loop = context.eventLoop
    let bound = NIOLoopBound((self, context), eventLoop: loop)
    NIOThreadPool.singleton.runIfActive(eventLoop: loop) { () throws -> Batch in
      let feed = feed.feed
      let before = (feed.fromDisk, feed.fromMemory, feed.filteredOut)
      let events = try feed.nextBatch(limit: Self.batchSize)
      return Batch(
        events: events, position: feed.position, fromDisk: feed.fromDisk - before.0,
        fromMemory: feed.fromMemory - before.1, filteredOut: feed.filteredOut - before.2)
    }.whenComplete { result in
      let (handler, context) = bound.value
      handler.pumping = false
      guard !handler.closed else { return }
      switch result {
      case .success(let batch) where batch.events.isEmpty:
        handler.write(batch, context)  // the position moved: heartbeats and metrics see it
        feed.feed.notifyWhenReady {
          loop.execute { bound.value.0.pump(bound.value.1) }
        }
      case .success(let batch):
        handler.readyBatch = batch
        handler.pump(context)
      case .failure(let error):
        handler.close(context, error is SubscriberFeed.TooSlow ? .tooSlow : .internalError)
      }
    }
  }

  /// Writes a batch as one buffer of frames, one flush.
  private func write(_ batch: Batch, _ context: ChannelHandlerContext) {
    let opcode = options.compress ? WebSocketWire.binary : WebSocketWire.text
    var sent = 0
    var bytes = 0
    var frames = ByteBuffer()
    frames.reserveCapacity(
      batch.events.reduce(0) {
        $0 + 10 + (options.compress ? $1.compressed.readableBytes : $1.json?.readableBytes ?? 0)
      })
    for event in batch.events {
      if maxMessageSizeBytes > 0 && Int64(event.jsonLength) > maxMessageSizeBytes {
        environment.metrics.oversize.increment()
        continue
      }
      let data = options.compress ? event.compressed : event.json ?? ByteBuffer()
      WebSocketWire.append(opcode, data, to: &frames)
      sent += 1
      bytes += data.readableBytes
    }
    if sent > 0 {
      writer.send(frames)
      lastMessage = .now()
    }
    deliveredThrough = max(deliveredThrough, batch.position)
    let metrics = environment.metrics
    metrics.sent(events: sent, bytes: bytes, compressed: options.compress)
    metrics.read(disk: batch.fromDisk, memory: batch.fromMemory)
    if batch.filteredOut > 0 { metrics.filtered.increment(by: batch.filteredOut) }
    environment.limits.spend(sent, address)
  }

  /// Sends a close frame with the reason, counts it, and drops the connection once the frame is
  /// out, or after 5 s if the client is not reading (PROTOCOL §9).
  private func close(_ context: ChannelHandlerContext, _ reason: CloseReason) {
    guard !closed else { return }
    closed = true
    closeReason = reason.metric
    environment.metrics.closed(reason.metric)
    var data = ByteBuffer()
    data.writeInteger(reason.code)
    data.writeString(reason.wireText)
    let channel = context.channel
    writer.send(WebSocketWire.frame(WebSocketWire.close, data))?
      .whenComplete { _ in channel.close(promise: nil) }
    context.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
  }
}

/// The open subscriptions, so that shutdown can close each one with 1001.
final class SubscriberRegistry: Sendable {
  private typealias Entry = (channel: any Channel, close: @Sendable () -> Void)
  private let state = Mutex<(next: Int, entries: [Int: Entry])>((0, [:]))

  func add(_ channel: any Channel, close: @escaping @Sendable () -> Void) -> Int {
    state.withLock { state in
      state.next += 1
      state.entries[state.next] = (channel, close)
      return state.next
    }
  }

  func remove(_ id: Int) { _ = state.withLock { $0.entries.removeValue(forKey: id) } }

  var count: Int { state.withLock { $0.entries.count } }

  var channels: [any Channel] { state.withLock { $0.entries.values.map(\.channel) } }

  /// Asks every open subscription to close.
  func closeAll() {
    for entry in state.withLock({ Array($0.entries.values) }) { entry.close() }
  }
}

/// Hands the feed to the thread pool and back. Safe because a handler has at most one pump step
/// in flight, so the feed is never used by two threads at once.
final class FeedBox: @unchecked Sendable {
  let feed: SubscriberFeed
  init(_ feed: SubscriberFeed) { self.feed = feed }
}
