import Broadcast
import Events
import NIOCore

/// Everything one subscriber connection decides, as a value (ARCHITECTURE §4, §5): told what
/// happened (a batch was read, a piece was written, the channel's writability, a timer), it
/// changes phase and answers with the one thing to do next. `SubscriberHandler` does the I/O and
/// feeds the outcome back, so every policy here runs without a socket.
///
/// One position per subscriber: what was read (the feed's position) runs at most one batch
/// ahead of what was written (`deliveredThrough`), and at most one read is in flight.
struct SubscriberState {
  struct Settings: Sendable {
    var compressed: Bool
    /// Cursor heartbeats after this long without a message (PROTOCOL §10.2); nil: none.
    var heartbeat: TimeAmount?
    var pongTimeout: TimeAmount
    var batchSize = 128
    /// The batch size once the client's socket has filled: small, so that what a stalled
    /// subscriber holds stays small.
    var stalledBatchSize = 8
    /// Batches in a row written with the channel staying writable before reads are full-size
    /// again.
    var recoveryBatches = 16
    /// Frames go to the channel in pieces of about this many bytes; writing stops after a piece
    /// that leaves the channel unwritable.
    var writeChunkBytes = 64 << 10
  }

  enum Phase: Equatable {
    /// `requireHello`: only pings until the client's first `options_update`.
    case awaitingHello
    /// Subscribed, nothing in flight: the next pump writes what is held or reads.
    case idle
    /// A read is in flight (a disk read on the thread pool; a memory read completes at once).
    case reading
    /// Paced (`maxEventsPerSecondPerIP`): a pump is scheduled.
    case paced
    /// Caught up: the feed wakes the subscriber after the next publish.
    case awaitingEvents
    /// The channel is full; the rest of a batch may be held until it drains.
    case awaitingWritable
    /// A close frame went out (ours or the echo of the client's): nothing more is sent.
    case closing
    /// The connection is gone.
    case ended
  }

  /// What a read returned, and how far it has been written.
  struct Batch: Sendable {
    var runs: [FrameRun]
    /// Events read that pass the filter (those skipped for their size included).
    var events: Int
    /// The feed's position after the read (it may have scanned past the last event).
    var position: Int64
    var fromDisk: Bool
    /// The read's limit: a memory batch that reached it may be followed by more at once.
    var limit: Int
    /// The first run not yet written.
    var next = 0
    /// Per run: sent as a slice of its frame block, or copied (`FramePlanner.slices`).
    var slices: [Bool] = []

    init(_ batch: FeedBatch, limit: Int) {
      runs = batch.runs
      events = batch.events
      position = batch.position
      fromDisk = batch.fromDisk
      self.limit = limit
    }
  }

  /// A read to start: the feed first takes the new options and moves back to `rewind`, if given.
  struct Read: Equatable {
    var limit: Int
    var update: Update?
    var rewind: Int64?
  }

  /// An `options_update`'s filter and `maxMessageSizeBytes`.
  struct Update: Equatable {
    var filter: EventFilter
    var maxMessageSizeBytes: Int64
  }

  enum Action: Equatable {
    case none
    /// Create the feed for the filter, then call `subscribe(at:now:)` and pump.
    case subscribe(EventFilter)
    /// Read a batch: from the ring on the event loop if it holds the position, else from the log
    /// on the thread pool; hand it to `received`.
    case read(Read)
    /// Write these buffers and flush them; then call `wrote`.
    case write(FramePiece)
    /// Pump again after this delay (pacing), through `pacedPumpFired`.
    case schedulePump(TimeAmount)
    /// Pump again on the next event-loop tick, letting other channels run meanwhile.
    case yield
    /// Ask the feed to wake the subscriber when newer events are published, then pump.
    case awaitEvents
    /// Send a heartbeat for this `time_us`.
    case heartbeat(Int64)
    case ping
    /// Send a close frame with the reason (and count it); drop the connection once it is out,
    /// or after 5 s.
    case close(CloseReason)
    /// Echo the client's close frame, then drop the connection.
    case echoClose
    /// Drop the connection now.
    case closeConnection
  }

  let settings: Settings
  private(set) var phase: Phase
  private(set) var maxMessageSizeBytes: Int64
  /// Everything at or before this `time_us` has been written or filtered out (heartbeat `T`).
  private(set) var deliveredThrough: Int64 = 0
  /// An `options_update` to apply at the next read.
  private var pendingUpdate: Update?
  /// A batch read but not (entirely) written.
  private var ready: Batch?
  /// When the channel filled partway through `ready`: the bytes of its rest, and the periodic
  /// checks it has been held through.
  private var heldBytes = 0
  private var heldChecks = 0
  /// A held rest too big to keep was dropped: the next read starts at this `time_us`.
  private var rewind: Int64?
  /// The channel filled: reads are `stalledBatchSize` until `recoveryBatches` clean batches.
  private(set) var stalled = false
  private var cleanBatches = 0
  /// The last batch came from disk (`contrail_subscribers_replaying`).
  private(set) var replaying = false
  private var lastPong: NIODeadline
  private var lastMessage: NIODeadline
  private var lastPieceEvents = 0
  /// The metric label of a server-initiated close, or why the connection failed under us.
  private(set) var closeReason: String?
  private(set) var lostReason: String?

  init(settings: Settings, maxMessageSizeBytes: Int64, now: NIODeadline) {
    self.settings = settings
    self.maxMessageSizeBytes = maxMessageSizeBytes
    phase = .awaitingHello
    lastPong = now
    lastMessage = now
  }

  /// Why the connection ended, for the disconnect log line.
  var disconnectReason: String { closeReason ?? lostReason ?? "client" }

  /// Subscribed and not closing: reads, writes, heartbeats and the slow-consumer policy apply.
  var isStreaming: Bool {
    switch phase {
    case .idle, .reading, .paced, .awaitingEvents, .awaitingWritable: return true
    case .awaitingHello, .closing, .ended: return false
    }
  }

  var planner: FramePlanner { FramePlanner(compressed: settings.compressed) }

  // MARK: Subscribing

  /// The subscription starts (at the upgrade, or at the hello): its feed is at `position`.
  mutating func subscribe(at position: Int64, now: NIODeadline) {
    guard phase == .awaitingHello else { return }
    deliveredThrough = position
    lastMessage = now
    phase = .idle
  }

  /// The client's `options_update`: the hello starts the subscription; later ones apply from
  /// the next read (a batch read under the old options and not yet written is read again).
  mutating func update(
    filter: EventFilter, maxMessageSizeBytes: Int64, writable: Bool,
    pacing: () -> TimeAmount?
  ) -> Action {
    if phase == .awaitingHello {
      self.maxMessageSizeBytes = maxMessageSizeBytes
      return .subscribe(filter)
    }
    guard isStreaming else { return .none }
    pendingUpdate = Update(filter: filter, maxMessageSizeBytes: maxMessageSizeBytes)
    return pump(writable: writable, pacing: pacing)
  }

  // MARK: Moving forward

  /// Moves the subscription forward: writes what is held, else reads (unless a read is in
  /// flight, the channel is full, or the subscriber is paced). `pacing` is asked only before a
  /// read: how long to wait first, or nil.
  mutating func pump(writable: Bool, pacing: () -> TimeAmount?) -> Action {
    switch phase {
    case .idle, .awaitingEvents, .awaitingWritable: break
    case .awaitingHello, .reading, .paced, .closing, .ended: return .none
    }
    guard writable else {
      phase = .awaitingWritable
      return .none
    }
    phase = .idle
    if pendingUpdate != nil, ready != nil {
      // Read under the old options but not written: read again under the new ones from just
      // after what was delivered, events the old filter rejected included (PROTOCOL §7.2: no
      // backlog filtered under the old options remains).
      ready = nil
      rewind = deliveredThrough + 1
    }
    if ready != nil { return writeNext() }
    return read(pacing: pacing)
  }

  /// The paced wait is over.
  mutating func pacedPumpFired(writable: Bool, pacing: () -> TimeAmount?) -> Action {
    guard phase == .paced else { return .none }
    phase = .idle
    return pump(writable: writable, pacing: pacing)
  }

  private mutating func read(pacing: () -> TimeAmount?) -> Action {
    if let delay = pacing() {
      phase = .paced
      return .schedulePump(delay)
    }
    phase = .reading
    // No read is in flight, so the feed is the handler's to change.
    let read = Read(
      limit: stalled ? settings.stalledBatchSize : settings.batchSize, update: pendingUpdate,
      rewind: rewind)
    if let update = pendingUpdate { maxMessageSizeBytes = update.maxMessageSizeBytes }
    pendingUpdate = nil
    rewind = nil
    return .read(read)
  }

  /// A read finished: writes it, or waits for newer events if it found none.
  mutating func received(_ batch: Batch, writable: Bool, pacing: () -> TimeAmount?) -> Action {
    guard phase == .reading else { return .none }  // closed meanwhile
    // Replaying while reads come from disk; live again once they come from memory.
    if batch.events > 0, replaying != batch.fromDisk { replaying = batch.fromDisk }
    guard !batch.runs.isEmpty else {
      if pendingUpdate != nil {
        // Everything in it was rejected under the old options: read it again under the new.
        rewind = deliveredThrough + 1
        return read(pacing: pacing)
      }
      // The position moved: heartbeats see it.
      deliveredThrough = max(deliveredThrough, batch.position)
      phase = .awaitingEvents
      return .awaitEvents
    }
    var batch = batch
    batch.slices = planner.slices(batch.runs)
    ready = batch
    phase = .idle
    return pump(writable: writable, pacing: pacing)
  }

  /// The read failed: retention passed the position (`tooSlow`), or the log failed.
  mutating func readFailed(tooSlow: Bool) -> Action {
    guard phase == .reading else { return .none }
    return close(tooSlow ? .tooSlow : .internalError)
  }

  /// The next piece of the held batch.
  private mutating func writeNext() -> Action {
    guard var batch = ready else { return .none }
    let (piece, end) = planner.piece(
      batch.runs, slices: batch.slices, from: batch.next, chunkBytes: settings.writeChunkBytes)
    batch.next = end
    // Everything up to here is written or skipped.
    deliveredThrough = max(deliveredThrough, batch.runs[end - 1].lastTimeUS)
    ready = batch
    lastPieceEvents = piece.events
    return .write(piece)
  }

  /// The piece from `.write` was written; `writable` is the channel's state after it.
  mutating func wrote(writable: Bool, now: NIODeadline, pacing: () -> TimeAmount?) -> Action {
    if lastPieceEvents > 0 { lastMessage = now }
    lastPieceEvents = 0
    guard phase == .idle, let batch = ready else { return .none }
    if batch.next < batch.runs.count {
      if writable { return writeNext() }
      // The channel filled partway: stop here.
      keep(batch)
      phase = .awaitingWritable
      return .none
    }
    ready = nil
    deliveredThrough = max(deliveredThrough, batch.position)
    guard writable else {
      stall()
      phase = .awaitingWritable
      return .none
    }
    if stalled {
      cleanBatches += 1
      if cleanBatches >= settings.recoveryBatches { stalled = false }
    }
    if batch.fromDisk || pendingUpdate != nil {
      // From disk: the next read (on the thread pool) overlaps the socket's sending.
      return read(pacing: pacing)
    }
    if batch.events >= batch.limit {
      // A full batch from memory: more is likely there; read it after other channels ran.
      return .yield
    }
    phase = .awaitingEvents
    return .awaitEvents
  }

  private mutating func stall() {
    stalled = true
    cleanBatches = 0
  }

  /// Holds the unwritten rest of a batch until the channel is writable again. A socket that
  /// fills for a moment (a reader a little slower than the server) costs nothing; a rest bigger
  /// than a piece that is still held after two periodic checks is dropped and read again later
  /// (`check`), so that a subscriber that stopped reading does not keep a batch.
  private mutating func keep(_ batch: Batch) {
    stall()
    ready = batch
    heldBytes = batch.runs[batch.next...].reduce(0) { $0 + $1.frameBytes }
    heldChecks = 0
  }

  // MARK: Timers

  /// The periodic check: the slow-consumer policy's verdict (`health`, from the feed), a big
  /// rest held since before the last check dropped, then a heartbeat if one is due and the
  /// channel can take it.
  mutating func check(now: NIODeadline, health: SubscriberFeed.Health, writable: Bool) -> Action {
    guard isStreaming else { return .none }
    switch health {
    case .tooSlow: return close(.tooSlow)
    case .lagging: return close(.lagging)
    case .ok: break
    }
    if phase == .awaitingWritable, let held = ready, heldBytes > settings.writeChunkBytes {
      heldChecks += 1
      if heldChecks >= 2 {
        ready = nil
        rewind = held.runs[held.next].firstTimeUS
      }
    }
    if let every = settings.heartbeat, now - lastMessage >= every, writable {
      lastMessage = now
      return .heartbeat(deliveredThrough)
    }
    return .none
  }

  /// A ping is due: sent, or the connection closed if no pong came for `pongTimeout`.
  mutating func ping(now: NIODeadline) -> Action {
    switch phase {
    case .closing, .ended: return .none
    default: break
    }
    if now - lastPong >= settings.pongTimeout { return close(.pingTimeout) }
    return .ping
  }

  mutating func pong(now: NIODeadline) { lastPong = now }

  // MARK: Closing

  /// A server-initiated close (counted under `reason.metric`), unless one is under way.
  mutating func close(_ reason: CloseReason) -> Action {
    switch phase {
    case .closing, .ended: return .none
    default: break
    }
    phase = .closing
    closeReason = reason.metric
    ready = nil
    return .close(reason)
  }

  /// The client's close frame: the answer to ours, or its own close, which is echoed.
  mutating func clientClosed() -> Action {
    switch phase {
    case .ended: return .none
    case .closing: return .closeConnection
    default:
      phase = .closing
      ready = nil
      return .echoClose
    }
  }

  /// The socket failed under us (a reset, a broken pipe): the client went away without a close.
  mutating func connectionLost(_ reason: String) -> Action {
    if lostReason == nil && closeReason == nil { lostReason = reason }
    guard phase != .ended else { return .none }
    phase = .closing
    ready = nil
    return .closeConnection
  }

  /// The connection is gone; true the first time.
  mutating func end() -> Bool {
    guard phase != .ended else { return false }
    phase = .ended
    ready = nil
    return true
  }
}
