import Broadcast
import Compression
import CoreMetrics
import EventLog
import Events
import Foundation
import Logging
import NIOCore
import Synchronization

/// The stages after the socket (ARCHITECTURE §1), off the event loops and in relay order: the
/// translate stage decodes a socket read's worth of frames into events (dropping frames at or
/// below the newest relay seq already taken, so an overlapping resume stores nothing twice) and
/// applies the ingest filter (`serve --collections/--dids`); the store stage hands them to the
/// `EventStore` (compress once, append, publish). The two stages run on their own serial queues,
/// so on two cores they overlap.
///
/// Resume bookkeeping covers every frame taken, stored or not: frames whose events were all
/// filtered out (or dropped) advance the relay seq to resume after, within the process and —
/// through the cursor file, when one is given — across restarts (`RelayCursorFile`).
public final class IngestPipeline: @unchecked Sendable {
  /// Frames waiting beyond this pause reading from the relay socket.
  static let maxQueuedFrames = 4_096

  private let store: EventStore
  private let logger: Logger
  /// The ingest filter; nil stores everything.
  private let filter: EventFilter?
  private let filteredEvents: Counter
  /// Shared with `Ingest`, which counts reconnects and the connection gauge.
  let metrics: IngestMetrics
  private let translateQueue = DispatchQueue(label: "contrail.ingest.translate")
  private let storeQueue = DispatchQueue(label: "contrail.ingest.store")
  // Owned by `translateQueue`.
  private let translator: Translator
  private var counters = TranslateCounters()
  private var takenSeq: Int64
  /// Whether a frame has been taken since the current connection began (`settle`).
  private var takenOnConnection = false
  /// The seq of a frame dropped for jumping absurdly far ahead: a second, later one confirms
  /// that the relay really moved on.
  private var pendingJump: Int64?
  /// The relay answered `FutureCursor`: it does not know our seq space.
  private var futureCursor = false
  /// This connection follows a `FutureCursor`: its first seqs belong to a new epoch even when
  /// they sit just below ours (they are not a resume overlap).
  private var newEpochExpected = false
  // Owned by `storeQueue`.
  /// The relay seq of the last frame handled: stored, or taken with nothing to store.
  private var storedSeq: Int64
  private var storedSinceStart = false
  /// Where `storedSeq` is saved when it is past the log's last record (nil: nowhere).
  private let cursorFile: RelayCursorFile?
  /// `storedSeq` is past the log's last record and not yet in the cursor file.
  private var cursorUnsaved = false
  private var cursorSavedAt: ContinuousClock.Instant?
  /// Set when an append fails: later batches are dropped too (storing them would leave a gap)
  /// until `settle` before the next connection.
  private var storeFailed = false
  /// A failed fsync has been logged (once: it is final for the process).
  private var syncFailureReported = false
  /// Frames submitted but not stored yet; and who waits for that to drop.
  private let backlog = Mutex<(frames: Int, drained: [@Sendable () -> Void])>((0, []))

  /// `filter`: store only the events it passes (nil or empty: everything). `cursorFile`: a path
  /// where the relay seq to resume after is kept when the last frames handled stored nothing
  /// (the filter took every event of them), so a restart neither fetches them again nor, with an
  /// empty log, starts at the relay's live tip; read here, written by the store stage.
  public init(
    store: EventStore, metrics: any MetricsFactory, logger: Logger, filter: EventFilter? = nil,
    cursorFile: String? = nil
  ) {
    let log = store.log
    self.store = store
    self.logger = logger
    self.metrics = IngestMetrics(factory: metrics)
    self.filter = filter.flatMap { $0.isEmpty ? nil : $0 }
    filteredEvents = Counter(label: "contrail_ingest_filtered_total", factory: metrics)
    translator = Translator(sequencer: Sequencer(last: log.lastTimeUS ?? 0))
    self.cursorFile = cursorFile.map(RelayCursorFile.init)
    takenSeq = log.lastWrittenSeq ?? 0
    if let saved = self.cursorFile?.load(lastTimeUS: log.lastTimeUS ?? 0) {
      logger.info(
        "resuming after the relay seq in the cursor file: the frames after the last stored event were filtered out",
        metadata: ["last_stored_seq": "\(takenSeq)", "seq": "\(saved)"])
      takenSeq = saved
    }
    storedSeq = takenSeq
    initialSeq = takenSeq > 0 ? takenSeq : nil
  }

  /// The relay seq ingest resumes after when it starts, from the log or the cursor file (nil:
  /// the relay's live tip, unless a `--relay-cursor` says otherwise).
  public let initialSeq: Int64?

  /// Queues frames from one socket read. `reconnect` is called (from an ingest queue) if they
  /// hold an error frame or cannot be stored. Returns true when the backlog is full: the caller
  /// should stop reading until `whenDrained` calls back.
  @discardableResult
  public func submit(
    _ frames: [ByteBuffer], reconnect: @escaping @Sendable (String) -> Void = { _ in }
  ) -> Bool {
    let full = backlog.withLock { state in
      state.frames += frames.count
      return state.frames > Self.maxQueuedFrames
    }
    translateQueue.async {
      let (events, seq, problem) = self.translate(frames)
      if let problem { reconnect(problem) }
      self.storeQueue.async {
        if let problem = self.store(events, through: seq) { reconnect(problem) }
        self.release(frames.count)
      }
    }
    return full
  }

  private func release(_ count: Int) {
    let waiters = backlog.withLock { state -> [@Sendable () -> Void] in
      state.frames -= count
      guard state.frames <= Self.maxQueuedFrames / 2 else { return [] }
      defer { state.drained.removeAll() }
      return state.drained
    }
    for wake in waiters { wake() }
  }

  /// Calls `wake` once the backlog is at most half full (now, if it already is).
  public func whenDrained(_ wake: @escaping @Sendable () -> Void) {
    let now = backlog.withLock { state -> Bool in
      if state.frames <= Self.maxQueuedFrames / 2 { return true }
      state.drained.append(wake)
      return false
    }
    if now { wake() }
  }

  /// Where the next relay connection should start, as `settle` finds it.
  public struct Resume: Sendable, Equatable {
    /// The last relay seq handled (stored, or filtered out: in the log, the cursor file, or
    /// this run); nil when there is none.
    public var seq: Int64?
    /// Whether this process has handled a frame yet, stored or filtered out (until then a
    /// `--relay-cursor` applies).
    public var storedSinceStart: Bool
    /// The relay answered `FutureCursor` on the last connection: our seq is not in its space.
    public var futureCursor: Bool
  }

  /// A relay seq more than this far beyond the last one taken is an absurd jump (the whole
  /// network makes ~2·10^8 seqs a day): such a frame is dropped unless the relay confirms it.
  public static let maxSeqJump: Int64 = 1_000_000_000
  /// A seq at most this far below the last one taken, before any frame is taken on a new
  /// connection, is a resume overlap (dropped as a duplicate); anything else going backwards
  /// is a new relay epoch.
  public static let overlapWindow: Int64 = 1_000

  /// Waits until every submitted frame is stored; returns where to resume. Call between
  /// connections: frames taken but not stored (a failed append) are taken again. Saves the
  /// cursor file if it is behind.
  public func settle() async -> Resume {
    await withCheckedContinuation { continuation in
      translateQueue.async {
        self.storeQueue.async {
          self.saveCursor(force: true)
          self.storeFailed = false
          let stored = self.storedSeq
          let storedSinceStart = self.storedSinceStart
          self.translateQueue.async {
            self.takenSeq = stored
            self.takenOnConnection = false
            self.pendingJump = nil
            let future = self.futureCursor
            self.futureCursor = false
            self.newEpochExpected = future
            continuation.resume(
              returning: Resume(
                seq: stored > 0 ? stored : nil, storedSinceStart: storedSinceStart,
                futureCursor: future))
          }
        }
      }
    }
  }

  /// Counts (and logs) a relay frame that was longer than the frame-size limit and skipped
  /// unread; ingest carries on with the next frame.
  public func droppedOversize(bytes: UInt64) {
    translateQueue.async {
      self.translator.countDropped(.oversize)
      self.recordCounters()
      self.logger.warning(
        "dropped a relay frame over the size limit", metadata: ["bytes": "\(bytes)"])
    }
  }

  private func recordCounters() {
    let current = translator.counters
    metrics.record(current, since: counters)
    counters = current
  }

  // MARK: Translate stage

  /// The events of `frames`, the newest relay seq among them, and a reason to reconnect if one
  /// is an error frame (frames after it are ignored: the relay closes).
  private func translate(_ frames: [ByteBuffer]) -> ([Event], Int64, String?) {
    var events: [Event] = []
    var problem: String? = nil
    var bytes = 0
    for frame in frames {
      bytes += frame.readableBytes
      let before = events.count
      let outcome = frame.withUnsafeReadableBytes { translator.translate($0, into: &events) }
      switch outcome {
      case .translated(_, let seq):
        if accept(seq) {
          takenSeq = seq
          takenOnConnection = true
          newEpochExpected = false
        } else {
          events.removeSubrange(before...)
        }
      case .error(let code, let message):
        metrics.errorFrame(code)
        logger.warning(
          "relay sent an error frame; reconnecting",
          metadata: ["code": "\(code)", "message": "\(message ?? "")"])
        if code == "FutureCursor" {
          logger.error(
            "the relay says our cursor is in its future (a new relay, or one that restarted its sequence): reconnecting at its live tip and storing its frames as a new epoch",
            metadata: ["cursor": "\(takenSeq)"])
          futureCursor = true
        }
        problem = "error frame \(code)"
      case .info(let name, let message):
        logger.info(
          "relay info frame", metadata: ["name": "\(name)", "message": "\(message ?? "")"])
      case .ignored:
        break
      }
      if problem != nil { break }
    }
    if let filter {
      let before = events.count
      events.removeAll { !filter.matches($0) }
      if events.count < before { filteredEvents.increment(by: before - events.count) }
    }
    metrics.bytesIn.increment(by: bytes)
    recordCounters()
    return (events, takenSeq, problem)
  }

  /// The seq policy (OPERATIONS: relay epochs): frames are taken in relay order; a repeat of the
  /// last seq, or a resume overlap, is dropped as a duplicate; a seq that goes backwards
  /// otherwise starts a new epoch
  /// (logged, counted, and taken: the log keeps relay order and `time_us` keeps increasing);
  /// one frame jumping absurdly ahead is dropped unless the next confirms the jump; a seq the
  /// log cannot store (`EventLog.storableRange`) is always dropped.
  private func accept(_ seq: Int64) -> Bool {
    guard EventLog.storableRange.contains(seq) else {
      metrics.seqJumps.increment()
      logger.warning(
        "dropped a relay frame whose seq is beyond what the event log can store",
        metadata: ["seq": "\(seq)", "limit": "\(EventLog.storableRange.upperBound)"])
      return false
    }
    if seq <= takenSeq {
      let overlap = !takenOnConnection && !newEpochExpected && takenSeq - seq < Self.overlapWindow
      if seq == takenSeq || overlap {
        metrics.duplicateFrames.increment()
        return false
      }
      newEpoch(from: takenSeq, to: seq, "the relay's seq went backwards")
      return true
    }
    if takenSeq > 0 && seq - takenSeq > Self.maxSeqJump {
      if !takenOnConnection {
        newEpoch(from: takenSeq, to: seq, "the relay's seq jumped ahead on a new connection")
        return true
      }
      if let pending = pendingJump, seq > pending {
        newEpoch(from: takenSeq, to: seq, "the relay's seq jumped ahead twice")
        pendingJump = nil
        return true
      }
      pendingJump = seq
      metrics.seqJumps.increment()
      logger.warning(
        "dropped a relay frame whose seq jumps absurdly far ahead",
        metadata: ["last_seq": "\(takenSeq)", "seq": "\(seq)"])
      return false
    }
    pendingJump = nil
    return true
  }

  private func newEpoch(from old: Int64, to seq: Int64, _ why: String) {
    metrics.seqEpochs.increment()
    logger.error(
      "\(why): storing from here on as a new relay epoch",
      metadata: ["last_seq": "\(old)", "seq": "\(seq)"])
  }

  // MARK: Store stage

  /// Stores a batch through the `EventStore`; returns a reason to reconnect if the log refused
  /// it (then later batches are dropped until `settle`, so nothing after a gap is stored).
  /// `seq` is the last relay seq the batch's frames took: frames that left nothing to store
  /// (filtered out, or dropped by the translator) are handled too, and resume moves past them.
  private func store(_ events: [Event], through seq: Int64) -> String? {
    guard !storeFailed else { return nil }
    guard !events.isEmpty else {
      if seq != storedSeq { handled(through: seq) }
      return nil
    }
    let outcome = store.store(events)
    metrics.stored(events.prefix(outcome.stored))
    if let last = outcome.lastSeq {
      handled(through: outcome.error == nil ? seq : last)
    }
    if let error = outcome.error {
      storeFailed = true
      metrics.appendErrors.increment()
      logger.error("cannot store events; reconnecting", metadata: ["error": "\(error)"])
      return "log append failed"
    }
    // The batch is stored and published; a failing fsync must not publish it again (it is
    // written; only its durability is in doubt). A failed fsync is final for the process (the
    // log says why), and reconnecting cannot mend a disk: ingest carries on, serving what it
    // writes, and says so once — `/readyz` stays 503 until a restart.
    do {
      try store.log.syncIfDue()
    } catch {
      if !syncFailureReported {
        syncFailureReported = true
        metrics.appendErrors.increment()
        logger.critical(
          "the event log cannot fsync: events are still stored and served, but may not survive a power loss; fix the disk and restart",
          metadata: ["error": "\(error)"])
      }
    }
    return nil
  }

  /// Every frame through relay seq `seq` is stored or needs nothing stored.
  private func handled(through seq: Int64) {
    storedSeq = seq
    storedSinceStart = true
    metrics.upstreamSeq.record(seq)
    metrics.lastFrameTime.record(Double(Sequencer.wallClockMicroseconds()) / 1e6)
    // The log knows where to resume when its last record came from the last frame handled.
    cursorUnsaved = cursorFile != nil && store.log.lastWrittenSeq != seq
    saveCursor(force: false)
  }

  /// Writes the cursor file when it is behind: at most once a second while frames flow, and at
  /// once when `force`d (between connections, at shutdown). A kill in between costs at most a
  /// second of filtered frames fetched (and filtered) again; never a gap or a duplicate, since
  /// the file only counts when the log's last record is still the one it was written after.
  private func saveCursor(force: Bool) {
    guard cursorUnsaved, let cursorFile else { return }
    let now = ContinuousClock.now
    if !force, let saved = cursorSavedAt, now - saved < .seconds(1) { return }
    cursorSavedAt = now
    cursorUnsaved = false
    do {
      try cursorFile.save(seq: storedSeq, lastTimeUS: store.log.lastTimeUS ?? 0)
    } catch {
      logger.warning(
        "cannot write the relay cursor file; a restart fetches the frames filtered since the last stored event again",
        metadata: ["path": "\(cursorFile.path)", "error": "\(error)"])
    }
  }
}

/// The relay seq to resume after when it is past the log's last record (the frames after it
/// were all filtered out): one small text file, `contrail-relay-cursor 1`, the `time_us` of the
/// log's last record when it was written (0: an empty log) and the seq, each on its own line.
/// It counts only while the log's last record is still that one: once anything newer is stored
/// the log decides again, and a log that lost its tail (a crash before an fsync) ignores it, so
/// the file can never make ingest skip a frame whose events were stored but not kept. It is
/// replaced by a rename, never fsynced: any version a crash leaves is one that was true, and a
/// damaged one is ignored.
struct RelayCursorFile: Sendable {
  let path: String
  static let magic = "contrail-relay-cursor 1"

  init(_ path: String) { self.path = path }

  /// The saved seq, if the file is whole and was written after the record with `lastTimeUS`.
  func load(lastTimeUS: Int64) -> Int64? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    let text = String(decoding: data, as: UTF8.self)
    guard text.hasSuffix("\n") else { return nil }  // cut short
    let lines = text.dropLast().split(separator: "\n", omittingEmptySubsequences: false)
    guard lines.count == 3, lines[0] == Self.magic, let time = Int64(lines[1]),
      let seq = Int64(lines[2]), time == lastTimeUS, seq > 0
    else { return nil }
    return seq
  }

  func save(seq: Int64, lastTimeUS: Int64) throws {
    let temporary = path + ".tmp"
    try Data("\(Self.magic)\n\(lastTimeUS)\n\(seq)\n".utf8).write(
      to: URL(fileURLWithPath: temporary))
    guard rename(temporary, path) == 0 else {
      throw Failure(description: "cannot rename \(temporary): \(String(cString: strerror(errno)))")
    }
  }

  struct Failure: Error, CustomStringConvertible {
    let description: String
  }
}
