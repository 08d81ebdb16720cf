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
/// below the newest relay seq already taken, so an overlapping resume stores nothing twice);
/// the store stage hands them to the `EventStore` (compress once, append, publish). The two
/// stages run on their own serial queues, so on two cores they overlap.
public final class IngestPipeline: @unchecked Sendable {
  /// Frames waiting beyond this pause reading from the relay socket.
  static let maxQueuedFrames = 4_096

  private let store: EventStore
  private let logger: Logger
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
  private var storedSeq: Int64
  private var storedSinceStart = false
  /// Set when an append fails: later batches are dropped too (storing them would leave a gap)
  /// until `settle` before the next connection.
  private var storeFailed = false
  /// A failed fsync has been logged (once: it is final for the process).
  private var syncFailureReported = false
  /// Frames submitted but not stored yet; and who waits for that to drop.
  private let backlog = Mutex<(frames: Int, drained: [@Sendable () -> Void])>((0, []))

  public init(store: EventStore, metrics: any MetricsFactory, logger: Logger) {
    let log = store.log
    self.store = store
    self.logger = logger
    self.metrics = IngestMetrics(factory: metrics)
    translator = Translator(sequencer: Sequencer(last: log.lastTimeUS ?? 0))
    takenSeq = log.lastWrittenSeq ?? 0
    storedSeq = takenSeq
  }

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
    /// The last relay seq stored (in the log, or this run); nil when there is none.
    public var seq: Int64?
    /// Whether this process has stored anything yet (until then a `--relay-cursor` applies).
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
  /// connections: frames taken but not stored (a failed append) are taken again.
  public func settle() async -> Resume {
    await withCheckedContinuation { continuation in
      translateQueue.async {
        self.storeQueue.async {
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
    metrics.bytesIn.increment(by: bytes)
    recordCounters()
    return (events, takenSeq, problem)
  }

  /// The seq policy (OPERATIONS: relay epochs): frames are taken in relay order; a repeat of the
  /// last seq, or a resume overlap, is dropped as a duplicate; a seq that goes backwards
  /// otherwise starts a new epoch
  /// (logged, counted, and taken: the log keeps relay order and `time_us` keeps increasing);
  /// one frame jumping absurdly ahead is dropped unless the next confirms the jump.
  private func accept(_ seq: Int64) -> Bool {
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
  private func store(_ events: [Event], through seq: Int64) -> String? {
    guard !events.isEmpty, !storeFailed else { return nil }
    let outcome = store.store(events)
    metrics.stored(events.prefix(outcome.stored))
    if let last = outcome.lastSeq {
      storedSeq = outcome.error == nil ? seq : last
      storedSinceStart = true
      metrics.upstreamSeq.record(storedSeq)
      metrics.lastFrameTime.record(Double(Sequencer.wallClockMicroseconds()) / 1e6)
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
}
