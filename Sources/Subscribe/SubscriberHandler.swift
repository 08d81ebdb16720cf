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
  let registry: SubscriberRegistry
  let limits: ConnectionLimits
  let metrics: SubscribeMetrics
  let heartbeats: HeartbeatEncoder
  /// The log, for what the v2 wire says when it drops a slow consumer (its resume seq).
  var log: EventLog? = nil
  /// Where reads from the log (blocking file reads) run: the thread pool.
  var offload = DiskReads.threadPool
}

/// Runs a subscriber's disk reads off its event loop, completing on it.
struct DiskReads: Sendable {
  typealias Work = @Sendable () throws -> FeedBatch
  let run: @Sendable (any EventLoop, @escaping Work) -> EventLoopFuture<FeedBatch>

  static let threadPool = DiskReads { loop, work in
    NIOThreadPool.singleton.runIfActive(eventLoop: loop, work)
  }
}

/// One subscriber connection after the upgrade (ARCHITECTURE §5): a thin adapter that does what
/// its `SubscriberState` decides. Reads from the in-memory ring run right here on the event
/// loop; only reads from the log go to the thread pool. Events go out as slices of the frames
/// built once at publish (`FramePlanner`), in pieces of about `writeChunkBytes`, and the next
/// batch is read only while the channel is writable, so a subscriber that stops reading holds at
/// most the channel's high-water mark and one piece, plus the unwritten rest of one batch, which
/// it lets go of after two periodic checks if it is bigger than a piece (`SubscriberState.keep`).
final class SubscriberHandler: ChannelInboundHandler {
  typealias InboundIn = WebSocketFrame

  /// The child channels' write-buffer water marks: with `writeChunkBytes`, a subscriber that
  /// never reads holds about `high + writeChunkBytes` in its channel.
  static let writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(
    low: 32 << 10, high: 64 << 10)

  /// Client messages up to this size are read (after reassembly); larger ones close with 1009.
  static let maxMessageBytes = 10_000_000

  private let options: SubscribeOptions
  private let wire: SubscriberWire
  private let address: String
  private let environment: SubscriberEnvironment
  /// Every frame to the client goes out pre-encoded through this (`WebSocketWire`).
  private let writer: RawFrameWriter
  /// Creates the feed for a filter, at the subscription's start (cursor or live, resolved when
  /// it is called).
  private let makeFeed: (EventFilter) -> SubscriberFeed
  /// nil until the subscription starts (at the upgrade, or at the hello with `requireHello`).
  /// A wake-up is registered with the ring (it fires once, at the next publish).
  fileprivate var wakeRegistered = false
  private var feed: FeedBox?
  private var state: SubscriberState
  private var timers: [RepeatedTask] = []
  private var registration: Int?

  init(
    options: SubscribeOptions, wire: SubscriberWire = .v1, address: String,
    environment: SubscriberEnvironment, writer: RawFrameWriter,
    makeFeed: @escaping (EventFilter) -> SubscriberFeed
  ) {
    self.writer = writer
    self.options = options
    self.wire = wire
    self.address = address
    self.environment = environment
    self.makeFeed = makeFeed
    state = SubscriberState(
      settings: .init(
        compressed: options.compress,
        heartbeat: options.heartbeat.map { .seconds(Int64($0)) },
        pongTimeout: environment.configuration.pongTimeout),
      maxMessageSizeBytes: options.maxMessageSizeBytes, now: .now())
  }

  private var configuration: SubscribeServer.Configuration { environment.configuration }

  func handlerAdded(context: ChannelHandlerContext) {
    state.pong(now: context.eventLoop.now)
    environment.metrics.opened(compressed: options.compress, wire: wire.label)
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    let loop = context.eventLoop
    let id = environment.registry.add(context.channel) {
      loop.execute {
        let (handler, context) = bound.value
        handler.run(handler.state.close(.shutdown), context)
      }
    }
    registration = id
    configuration.logger.info(
      "subscriber connected",
      metadata: [
        "id": "\(id)", "address": "\(address)", "wire": "\(wire.label)",
        "compress": "\(options.compress)",
        "cursor": "\(options.cursor.map(String.init) ?? "live")",
        "collections": "\(options.filter.collections.count)",
        "dids": "\(options.filter.dids.count)",
      ])
    environment.metrics.started(options.cursor == nil ? "live" : "cursor")
    timers.append(
      loop.scheduleRepeatedTask(
        initialDelay: configuration.pingInterval, delay: configuration.pingInterval
      ) { _ in
        let (handler, context) = bound.value
        handler.run(handler.state.ping(now: context.eventLoop.now), context)
      })
    let every = configuration.slowConsumer.checkInterval
    timers.append(
      loop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
        bound.value.0.check(bound.value.1)
      })
    guard !options.requireHello else { return }  // nothing but pings before the hello
    if case .v2(let session) = wire {
      session.publisher.retain()
      if let info = session.info { sendControl(info) }
    }
    run(.subscribe(options.filter), context)
  }

  func handlerRemoved(context: ChannelHandlerContext) { end() }

  /// Runs once when the connection goes: timers, registry and the gauge.
  private func end() {
    let replaying = state.replaying
    guard state.end() else { return }
    for timer in timers { timer.cancel() }
    if let registration { environment.registry.remove(registration) }
    environment.metrics.ended(compressed: options.compress, wire: wire.label)
    if case .v2(let session) = wire { session.publisher.release() }
    if replaying { environment.metrics.replaying(false) }
    configuration.logger.info(
      "subscriber disconnected",
      metadata: [
        "id": "\(registration.map(String.init) ?? "-")", "address": "\(address)",
        "reason": "\(state.disconnectReason)",
      ])
  }

  /// The periodic check: the feed's slow-consumer policy, then a heartbeat if one is due.
  private func check(_ context: ChannelHandlerContext) {
    guard state.isStreaming, let feed else { return }
    let now = context.eventLoop.now
    let health = feed.feed.health(delivered: state.deliveredThrough, now: now)
    run(state.check(now: now, health: health, writable: context.channel.isWritable), context)
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
      run(state.close(.tooBig), context)
    case is NIOWebSocketError, is NIOWebSocketFrameAggregator.Error:
      run(
        state.close(CloseReason(code: 1002, text: "protocol error", metric: "protocol")), context)
    default:
      // The socket failed (a reset, a broken pipe): the client went away without a close frame.
      // Nothing to send and no server close to count.
      run(state.connectionLost("connection lost: \(error)"), context)
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    end()
    context.fireChannelInactive()
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable && state.phase == .awaitingWritable { pump(context) }
    context.fireChannelWritabilityChanged()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = unwrapInboundIn(data)
    switch frame.opcode {
    case .pong:
      state.pong(now: context.eventLoop.now)
    case .ping:
      writer.send(WebSocketWire.frame(WebSocketWire.pong, frame.unmaskedData))
    case .connectionClose:
      switch state.clientClosed() {
      case .echoClose:
        // Echo the client's close code, then close the connection.
        var data = frame.unmaskedData
        let code = data.readSlice(length: 2) ?? ByteBuffer()
        let channel = context.channel
        writer.send(WebSocketWire.frame(WebSocketWire.close, code))?
          .whenComplete { _ in channel.close(promise: nil) }
      case .closeConnection:  // the client's answer to our close
        context.close(promise: nil)
      default:
        break
      }
    case .text where wire.isV2, .binary where wire.isV2:
      // The v2 wire is server-push only.
      environment.metrics.update("data_message")
      run(state.close(.unexpectedData), context)
    case .text:
      var data = frame.unmaskedData
      switch ClientMessage.decode(data.readBytes(length: data.readableBytes) ?? []) {
      case .ignored:
        environment.metrics.update("ignored")
      case .close(let reason):
        environment.metrics.update(reason.metric)
        run(state.close(reason), context)
      case .update(let filter, let maxSize):
        environment.metrics.update("applied")
        let action = state.update(
          filter: filter, maxMessageSizeBytes: maxSize, writable: context.channel.isWritable,
          pacing: pacing)
        run(action, context)
      }
    default:
      break  // binary messages from clients are ignored
    }
  }

  // MARK: Doing what the state decides

  /// How long this subscriber's address must wait before more is read (pacing), or nil.
  private var pacing: () -> TimeAmount? {
    // An edge's replication stream is never paced (`--max-events-per-second-per-ip` is for
    // subscribers).
    if case .replication = wire { return { nil } }
    return { [environment, address] in environment.limits.delay(address) }
  }

  fileprivate func pump(_ context: ChannelHandlerContext) {
    run(state.pump(writable: context.channel.isWritable, pacing: pacing), context)
  }

  /// Performs `action` and whatever the state answers to its outcome, until the state waits for
  /// something (an event-loop tick, a disk read, writability, a publish, a timer).
  private func run(_ action: SubscriberState.Action, _ context: ChannelHandlerContext) {
    var action = action
    while true {
      switch action {
      case .none:
        return
      case .subscribe(let filter):
        let feed = makeFeed(filter)
        feed.maxMessageSizeBytes = state.maxMessageSizeBytes
        self.feed = FeedBox(feed)
        state.subscribe(at: feed.position, now: context.eventLoop.now)
        guard context.channel.isActive else { return }  // `channelActive` pumps
        action = state.pump(writable: context.channel.isWritable, pacing: pacing)
      case .read(let read):
        guard let box = feed else { return }
        if let update = read.update {
          box.feed.filter = update.filter
          box.feed.maxMessageSizeBytes = update.maxMessageSizeBytes
        }
        if let rewind = read.rewind { box.feed.rewind(to: rewind) }
        guard let batch = box.feed.nextRunsFromMemory(limit: read.limit) else {
          return readFromDisk(box, limit: read.limit, context)
        }
        action = received(batch, limit: read.limit, context)
      case .write(let piece):
        writer.send(piece.buffers)
        let metrics = environment.metrics
        metrics.sent(
          events: piece.events, bytes: piece.bytes,
          saved: options.compress ? piece.jsonBytes - piece.bytes : 0,
          compressed: options.compress)
        environment.limits.spend(piece.events, address)
        action = state.wrote(
          writable: context.channel.isWritable, now: context.eventLoop.now, pacing: pacing)
      case .schedulePump(let delay):
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: delay) {
          let (handler, context) = bound.value
          let action = handler.state.pacedPumpFired(
            writable: context.channel.isWritable, pacing: handler.pacing)
          handler.run(action, context)
        }
        return
      case .yield:
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute { bound.value.0.pump(bound.value.1) }
        return
      case .awaitEvents:
        // One wake-up at a time: an update that finds nothing new must not add another.
        guard let feed, !wakeRegistered else { return }
        wakeRegistered = true
        // The ring keeps the wake-up until its next publish: it must not keep the handler (and
        // through its feed, the ring itself) alive after the connection is gone.
        let loop = context.eventLoop
        let wake = NIOLoopBound(Wake(self, context), eventLoop: loop)
        feed.feed.notifyWhenReady {
          loop.execute { wake.value.pump() }
        }
        return
      case .heartbeat(let timeUS):
        do {
          writer.send(try environment.heartbeats.frame(timeUS, compressed: options.compress))
          environment.metrics.heartbeats.increment()
          return
        } catch {
          action = state.close(.internalError)
        }
      case .ping:
        writer.send(WebSocketWire.frame(WebSocketWire.ping, ByteBuffer()))
        return
      case .close(let reason):
        return sendClose(reason, context)
      case .echoClose:
        return  // answered in `channelRead`, which has the client's code
      case .closeConnection:
        context.close(promise: nil)
        return
      }
    }
  }

  /// Reads from the log on the thread pool; the batch comes back to the state on the loop.
  private func readFromDisk(_ box: FeedBox, limit: Int, _ context: ChannelHandlerContext) {
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    environment.offload.run(context.eventLoop) {
      try box.feed.nextRuns(limit: limit)
    }.whenComplete { result in
      let (handler, context) = bound.value
      switch result {
      case .success(let batch):
        handler.run(handler.received(batch, limit: limit, context), context)
      case .failure(let error):
        handler.run(
          handler.state.readFailed(tooSlow: error is SubscriberFeed.TooSlow), context)
      }
    }
  }

  /// Counts a batch's reads, then hands it to the state.
  private func received(_ batch: FeedBatch, limit: Int, _ context: ChannelHandlerContext)
    -> SubscriberState.Action
  {
    let metrics = environment.metrics
    metrics.read(disk: batch.fromDisk ? batch.events : 0, memory: batch.fromDisk ? 0 : batch.events)
    if batch.filteredOut > 0 { metrics.filtered.increment(by: batch.filteredOut) }
    if batch.oversize > 0 { metrics.oversize.increment(by: batch.oversize) }
    let replaying = state.replaying
    let action = state.received(
      SubscriberState.Batch(batch, limit: limit), writable: context.channel.isWritable,
      pacing: pacing)
    if state.replaying != replaying { metrics.replaying(state.replaying) }
    return action
  }

  /// Sends a close frame with the reason, counts it, and drops the connection once the frame is
  /// out, or after 5 s if the client is not reading (PROTOCOL §9).
  private func sendClose(_ reason: CloseReason, _ context: ChannelHandlerContext) {
    environment.metrics.closed(reason.metric)
    if wire.isV2, reason != .shutdown, reason != .unexpectedData {
      return endV2(reason, context)
    }
    var data = ByteBuffer()
    data.writeInteger(reason.code)
    data.writeString(reason.wireText)
    let channel = context.channel
    writer.send(WebSocketWire.frame(WebSocketWire.close, data))?
      .whenComplete { _ in channel.close(promise: nil) }
    context.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
  }
}

extension SubscriberHandler {
  /// A v2 frame outside the event stream (`#info`, an error), compressed like the events on a
  /// zstd connection.
  @discardableResult
  fileprivate func sendControl(_ json: [UInt8]) -> EventLoopFuture<Void>? {
    guard case .v2(let session) = wire,
      let payload = try? session.publisher.transcoder.control(json, compressed: options.compress)
    else { return nil }
    let opcode = options.compress ? WebSocketWire.binary : WebSocketWire.text
    return writer.send(WebSocketWire.frame(opcode, payload))
  }

  /// How the v2 wire ends a stream for cause (PROTOCOL §12.6): an error frame, then the
  /// TCP connection dropped without a close frame; a ping timeout drops it at once.
  fileprivate func endV2(_ reason: CloseReason, _ context: ChannelHandlerContext) {
    let channel = context.channel
    switch reason {
    case .tooSlow, .lagging:
      // The message names the lag and where to resume: found off the event loop (it may read
      // the log).
      let delivered = state.deliveredThrough
      let log = environment.log
      let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
      NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) {
        let resume =
          (try? log?.locate(timeUSAtLeast: delivered + 1))??.eventSeq
          ?? (log?.lastEventSeq ?? 0) + 1
        let behind = max((log?.lastEventSeq ?? 0) - resume + 1, 0)
        return V2Frame.error(
          name: "ConsumerTooSlow",
          message:
            "reading below the floor rate \(behind) events behind the tip; reconnect with cursor=\(resume)"
        )
      }.whenComplete { result in
        let frame = (try? result.get()) ?? V2Frame.error(name: "ConsumerTooSlow", message: "")
        bound.value.sendControl(frame)?.whenComplete { _ in channel.close(promise: nil) }
      }
    case .internalError:
      sendControl(V2Frame.error(name: "InternalError", message: "stream read failed; reconnect"))?
        .whenComplete { _ in channel.close(promise: nil) }
    default:
      channel.close(promise: nil)
    }
    context.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
  }
}

/// Which wire a subscriber speaks, and what only the v2 wire needs.
enum SubscriberWire: Sendable {
  case v1
  case v2(V2Session)
  /// An edge's replication stream (`/replicate`): v1's closes, whole log records as frames.
  case replication

  var isV2: Bool {
    if case .v2 = self { return true }
    return false
  }

  /// The metric label.
  var label: String {
    switch self {
    case .v1: "v1"
    case .v2: "v2"
    case .replication: "replica"
    }
  }
}

/// A v2 subscription's share of the server: the publisher whose demand it holds while
/// connected, and the `#info` frame to send before any event, if the cursor was clamped.
struct V2Session: Sendable {
  let publisher: V2Publisher
  let info: [UInt8]?
}

/// A subscriber's wake-up as the ring holds it: weak, so that a departed subscriber's pending
/// wake-up keeps nothing alive.
private final class Wake {
  weak var handler: SubscriberHandler?
  weak var context: ChannelHandlerContext?

  init(_ handler: SubscriberHandler, _ context: ChannelHandlerContext) {
    self.handler = handler
    self.context = context
  }

  func pump() {
    guard let handler, let context else { return }
    handler.wakeRegistered = false
    handler.pump(context)
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

/// Hands the feed to the thread pool and back. Safe because a handler has at most one read in
/// flight, so the feed is never read by two threads at once (`health`, which the periodic check
/// calls meanwhile, touches nothing a read does).
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
