import Broadcast
import EventLog
import Events
import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

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

/// One subscriber connection after the upgrade (ARCHITECTURE §5): pulls batches of events from
/// its feed, writes them as pre-built frames in pieces of `writeChunkBytes`, and reads the next
/// batch only while the channel is writable, so a subscriber that stops reading holds at most
/// the channel's high-water mark, one piece and a small remainder. Disk reads and text replays
/// run on the thread pool; the event loop only moves bytes.
final class SubscriberHandler: ChannelInboundHandler {
  typealias InboundIn = WebSocketFrame

  static let batchSize = 128
  /// The batch size once the client's socket has filled: small, so that what a stalled
  /// subscriber holds stays small.
  static let stalledBatchSize = 8
  /// Frames go to the channel in pieces of about this many bytes; writing stops after a piece
  /// that leaves the channel unwritable.
  static let writeChunkBytes = 64 << 10
  /// The child channels' write-buffer water marks: with `writeChunkBytes`, a subscriber that
  /// never reads holds about `high + writeChunkBytes` in its channel.
  static let writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(
    low: 32 << 10, high: 64 << 10)

  /// Client messages up to this size are read (after reassembly); larger ones close with 1009.
  static let maxMessageBytes = 10_000_000

  private let options: SubscribeOptions
  private let address: String
  private let environment: SubscriberEnvironment
  /// Every frame to the client goes out pre-encoded through this (`WebSocketWire`).
  private let writer: RawFrameWriter
  /// Creates the feed for a filter, from the subscription's start (cursor or live, resolved
  /// when it is called) or from a given one.
  private let makeFeed: (EventFilter, SubscriberFeed.Start?) -> SubscriberFeed
  /// nil until the subscription starts (at the upgrade, or at the hello with `requireHello`).
  private var feed: FeedBox?
  private var maxMessageSizeBytes: Int64
  /// An `options_update` to apply before the next batch is read.
  private var pendingUpdate: (EventFilter, Int64)?
  /// A read is in flight (or a paced pump is scheduled).
  private var pumping = false
  /// A batch read but not (entirely) written: the channel was not writable when it arrived, or
  /// stopped being writable partway.
  private var readyBatch: Batch?
  /// The channel stopped being writable after a write: reads are `stalledBatchSize` until
  /// `recoveryBatches` batches in a row go out with the channel staying writable.
  private var stalled = false {
    didSet { if stalled { cleanBatches = 0 } }
  }
  private var cleanBatches = 0
  static let recoveryBatches = 16
  /// A remainder too big to hold was dropped: the feed restarts at this `time_us`.
  private var rewindTo: Int64?
  private var waitingForWritable = false
  private var closed = false
  /// The metric label of a server-initiated close, for the disconnect log line.
  private var closeReason: String?
  /// The last batch came from disk (counted in `contrail_subscribers_replaying`).
  private var replaying = false
  /// Why the connection failed under us (a reset, a broken pipe): the client's doing, not a close.
  private var lostReason: String?
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
    writer: RawFrameWriter,
    makeFeed: @escaping (EventFilter, SubscriberFeed.Start?) -> SubscriberFeed
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
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    let loop = context.eventLoop
    let id = environment.registry.add(context.channel) {
      loop.execute { bound.value.0.close(bound.value.1, .shutdown) }
    }
    registration = id
    configuration.logger.info(
      "subscriber connected",
      metadata: [
        "id": "\(id)", "address": "\(address)", "compress": "\(options.compress)",
        "cursor": "\(options.cursor.map(String.init) ?? "live")",
        "collections": "\(options.filter.collections.count)",
        "dids": "\(options.filter.dids.count)",
      ])
    environment.metrics.started(options.cursor == nil ? "live" : "cursor")
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
    let feed = makeFeed(filter, nil)
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
    if replaying { environment.metrics.replaying(false) }
    configuration.logger.info(
      "subscriber disconnected",
      metadata: [
        "id": "\(registration.map(String.init) ?? "-")", "address": "\(address)",
        "reason": "\(closeReason ?? lostReason ?? "client")",
      ])
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
    case is NIOWebSocketError, is NIOWebSocketFrameAggregator.Error:
      close(context, CloseReason(code: 1002, text: "protocol error", metric: "protocol"))
    default:
      // The socket failed (a reset, a broken pipe): the client went away without a close frame.
      // Nothing to send and no server close to count.
      if lostReason == nil && closeReason == nil { lostReason = "connection lost: \(error)" }
      closed = true
      context.close(promise: nil)
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
    /// The first event not yet written.
    var next = 0
    /// Its reads are in the metrics.
    var counted = false
  }

  /// Moves the subscription forward: writes what was read, then, if the channel is still
  /// writable, starts reading the next batch off the event loop (so reading overlaps the
  /// socket's sending). Nothing more is read while the channel is not writable.
  private func pump(_ context: ChannelHandlerContext) {
    guard !closed, !pumping, feed != nil else { return }
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
    if pendingUpdate != nil, let ready = readyBatch {
      // Read under the old options but not written: read again under the new ones (PROTOCOL
      // §7.2, no backlog filtered under the old options remains).
      readyBatch = nil
      rewindTo = ready.events[ready.next].timeUS
    }
    if var ready = readyBatch {
      readyBatch = nil
      if !write(&ready, context) {
        keep(ready)
        waitingForWritable = true
        return
      }
    }
    guard context.channel.isWritable else {
      stalled = true
      waitingForWritable = true
      return
    }
    read(context)
  }

  /// Holds the unwritten rest of a batch until the channel is writable again, unless it is big:
  /// then it is dropped and read again later, so a stalled subscriber never holds a whole
  /// batch (a disk batch is one buffer, alive while any of its events is).
  private func keep(_ batch: Batch) {
    stalled = true
    var remaining = 0
    for event in batch.events[batch.next...] {
      remaining +=
        options.compress ? event.compressed.readableBytes : event.json?.readableBytes ?? 0
      if remaining > Self.writeChunkBytes {
        rewindTo = batch.events[batch.next].timeUS
        return
      }
    }
    readyBatch = batch
  }

  /// Reads the next batch on the thread pool; it comes back to `pump` (or, when there is nothing
  /// new, the feed calls back once there is).
  private func read(_ context: ChannelHandlerContext) {
    guard var box = feed else { return }
    if let (filter, maxSize) = pendingUpdate {
      // No read is in flight, so the feed is ours to change: the new filter applies from the
      // next event read.
      box.feed.filter = filter
      maxMessageSizeBytes = maxSize
      pendingUpdate = nil
    }
    if let resume = rewindTo {
      rewindTo = nil
      if let deleted = environment.log.deletedThroughTimeUS, deleted > deliveredThrough {
        return close(context, .tooSlow)
      }
      box = FeedBox(makeFeed(box.feed.filter, .cursor(resume)))
      feed = box
    }
    pumping = true
    let limit = stalled ? Self.stalledBatchSize : Self.batchSize
    let loop = context.eventLoop
    let bound = NIOLoopBound((self, context), eventLoop: loop)
    let feedBox = box
    NIOThreadPool.singleton.runIfActive(eventLoop: loop) { () throws -> Batch in
      let feed = feedBox.feed
      let before = (feed.fromDisk, feed.fromMemory, feed.filteredOut)
      let events = try feed.nextBatch(limit: limit)
      return Batch(
        events: events, position: feed.position, fromDisk: feed.fromDisk - before.0,
        fromMemory: feed.fromMemory - before.1, filteredOut: feed.filteredOut - before.2)
    }.whenComplete { result in
      let (handler, context) = bound.value
      handler.pumping = false
      guard !handler.closed else { return }
      switch result {
      case .success(var batch) where batch.events.isEmpty:
        _ = handler.write(&batch, context)  // the position moved: heartbeats and metrics see it
        feedBox.feed.notifyWhenReady {
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

  /// Writes the batch's frames from `batch.next` on, in pieces of about `writeChunkBytes`, each
  /// one buffer and one flush; stops after a piece that leaves the channel unwritable. True
  /// when the whole batch is written.
  private func write(_ batch: inout Batch, _ context: ChannelHandlerContext) -> Bool {
    let metrics = environment.metrics
    if !batch.counted {
      batch.counted = true
      metrics.read(disk: batch.fromDisk, memory: batch.fromMemory)
      // Replaying while reads come from disk; live again once they come from memory.
      if batch.fromDisk > 0 || batch.fromMemory > 0, replaying != (batch.fromDisk > 0) {
        replaying.toggle()
        metrics.replaying(replaying)
      }
      if batch.filteredOut > 0 { metrics.filtered.increment(by: batch.filteredOut) }
    }
    let opcode = options.compress ? WebSocketWire.binary : WebSocketWire.text
    let events = batch.events
    func payload(_ event: BroadcastEvent) -> ByteBuffer? {
      if maxMessageSizeBytes > 0 && Int64(event.jsonLength) > maxMessageSizeBytes { return nil }
      return options.compress ? event.compressed : event.json ?? ByteBuffer()
    }
    while batch.next < events.count {
      var end = batch.next
      var size = 0
      while end < events.count && size < Self.writeChunkBytes {
        if let data = payload(events[end]) {
          size += WebSocketWire.headerSize(data.readableBytes) + data.readableBytes
        }
        end += 1
      }
      var frames = ByteBuffer()
      frames.reserveCapacity(size)
      var sent = 0
      var bytes = 0
      var jsonBytes = 0
      for event in events[batch.next..<end] {
        guard let data = payload(event) else {
          metrics.oversize.increment()
          continue
        }
        WebSocketWire.append(opcode, data, to: &frames)
        sent += 1
        bytes += data.readableBytes
        jsonBytes += event.jsonLength
      }
      batch.next = end
      if sent > 0 {
        writer.send(frames)
        lastMessage = .now()
      }
      // Everything up to here is written or skipped.
      deliveredThrough = max(deliveredThrough, events[end - 1].timeUS)
      metrics.sent(
        events: sent, bytes: bytes, saved: options.compress ? jsonBytes - bytes : 0,
        compressed: options.compress)
      environment.limits.spend(sent, address)
      if !context.channel.isWritable && batch.next < events.count { return false }
    }
    deliveredThrough = max(deliveredThrough, batch.position)
    if stalled && !events.isEmpty && context.channel.isWritable {
      cleanBatches += 1
      if cleanBatches >= Self.recoveryBatches { stalled = false }
    }
    return true
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

  func remove(_ id: Int) {
    _ = state.withLock { $0.entries.removeValue(forKey: id) }
    MemoryTrim.soon()
  }

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

/// Gives memory freed by departed subscribers back to the system. glibc keeps freed memory in
/// its per-thread arenas (the thread pool's disk batches, the event loops' write buffers), so a
/// crowd that leaves would otherwise leave the process at its peak size. One trim at most per
/// second, a second after a subscriber leaves.
enum MemoryTrim {
  private static let scheduled = Atomic<Bool>(false)

  /// glibc's `malloc_trim`, looked up at run time (absent from other C libraries, and not in
  /// Swift's Glibc module).
  private static let trim: (@convention(c) (Int) -> Int32)? = {
    #if canImport(Glibc)
      guard let symbol = dlsym(nil, "malloc_trim") else { return nil }
      return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    #else
      return nil
    #endif
  }()

  static func soon() {
    guard trim != nil,
      scheduled.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
    else { return }
    MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .seconds(1)) {
      scheduled.store(false, ordering: .relaxed)
      // Off the event loop: a trim walks every arena.
      NIOThreadPool.singleton.submit { _ in _ = trim?(0) }
    }
  }
}
