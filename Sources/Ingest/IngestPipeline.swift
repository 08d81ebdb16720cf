import Broadcast
import Compression
import CoreMetrics
import EventLog
import Events
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// The stages after the socket (ARCHITECTURE §1): relay frames → translate → compress once →
/// append to the log → publish to the ring, on one serial queue off the event loops, a whole
/// socket read's worth of frames per step. Frames at or below the last stored relay seq are
/// dropped, so a resume that overlaps never stores an event twice.
public final class IngestPipeline: @unchecked Sendable {
  /// Frames waiting beyond this pause reading from the relay socket.
  static let maxQueuedFrames = 4_096

  private let log: EventLog
  private let ring: LiveRing
  private let logger: Logger
  private let metrics: IngestMetrics
  private let queue = DispatchQueue(label: "contrail.ingest")
  // Owned by `queue`.
  private let translator: Translator
  private let compressor: EventCompressor
  private var counters = TranslateCounters()
  private var events: [Event] = []
  private var lastSeq: Int64
  /// Frames submitted but not processed yet; and who waits for the queue to drain.
  private let backlog = Mutex<(frames: Int, drained: [@Sendable () -> Void])>((0, []))

  public init(
    log: EventLog, ring: LiveRing, compressor: EventCompressor, metrics: any MetricsFactory,
    logger: Logger
  ) {
    self.log = log
    self.ring = ring
    self.compressor = compressor
    self.logger = logger
    self.metrics = IngestMetrics(factory: metrics)
    translator = Translator(sequencer: Sequencer(last: log.lastTimeUS ?? 0))
    lastSeq = log.lastWrittenSeq ?? 0
  }

  /// What became of a submitted batch, for the connection that read it.
  public enum Verdict: Sendable {
    case carryOn
    /// The relay sent an error frame (or the log refused the events): reconnect with backoff.
    case reconnect(reason: String)
  }

  /// Queues frames from one socket read. `done` runs on the ingest queue once they are stored
  /// and published. Returns true when the backlog is full: the caller should stop reading until
  /// `whenDrained` calls back.
  @discardableResult
  public func submit(_ frames: [ByteBuffer], done: @escaping @Sendable (Verdict) -> Void) -> Bool {
    let full = backlog.withLock { state in
      state.frames += frames.count
      return state.frames > Self.maxQueuedFrames
    }
    queue.async {
      let verdict = self.process(frames)
      let waiters = self.backlog.withLock { state -> [@Sendable () -> Void] in
        state.frames -= frames.count
        guard state.frames <= Self.maxQueuedFrames / 2 else { return [] }
        defer { state.drained.removeAll() }
        return state.drained
      }
      done(verdict)
      for wake in waiters { wake() }
    }
    return full
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

  /// Waits until every submitted frame is processed; returns the relay seq to resume after.
  public func settle() async -> Int64? {
    await withCheckedContinuation { continuation in
      queue.async { continuation.resume(returning: self.lastSeq > 0 ? self.lastSeq : nil) }
    }
  }

  /// The translator's totals (read on the ingest queue).
  public func translateCounters() async -> TranslateCounters {
    await withCheckedContinuation { continuation in
      queue.async { continuation.resume(returning: self.translator.counters) }
    }
  }

  // MARK: On the ingest queue

  private func process(_ frames: [ByteBuffer]) -> Verdict {
    events.removeAll(keepingCapacity: true)
    var verdict = Verdict.carryOn
    var bytes = 0
    var newest = lastSeq
    for frame in frames {
      bytes += frame.readableBytes
      let before = events.count
      let outcome = frame.withUnsafeReadableBytes { translator.translate($0, into: &events) }
      switch outcome {
      case .translated(_, let seq):
        if seq <= newest {
          events.removeSubrange(before...)  // already stored: a resume overlapped
          metrics.duplicateFrames.increment()
        } else {
          newest = seq
        }
      case .error(let code, let message):
        metrics.errorFrame(code)
        logger.warning(
          "relay sent an error frame; reconnecting",
          metadata: ["code": "\(code)", "message": "\(message ?? "")"])
        if code == "FutureCursor" {
          logger.error(
            "the relay says our cursor is in its future: if you switched relays, restart with --relay-cursor live",
            metadata: ["cursor": "\(lastSeq)"])
        }
        verdict = .reconnect(reason: "error frame \(code)")
      case .info(let name, let message):
        logger.info(
          "relay info frame", metadata: ["name": "\(name)", "message": "\(message ?? "")"])
      case .ignored:
        break
      }
      if case .reconnect = verdict { break }  // the relay closes after an error frame
    }
    metrics.bytesIn.increment(by: bytes)
    let current = translator.counters
    metrics.record(current, since: counters)
    counters = current
    guard !events.isEmpty else { return verdict }
    do {
      var records: [LogRecord] = []
      var published: [BroadcastEvent] = []
      records.reserveCapacity(events.count)
      published.reserveCapacity(events.count)
      for event in events {
        let frame = try compressor.compress(event.json)
        records.append(LogRecord(event, payload: frame))
        published.append(BroadcastEvent(event, compressed: frame))
      }
      try log.append(records)  // the log first: a subscriber never sees an unstored event
      ring.publish(published)
      lastSeq = newest
      metrics.upstreamSeq.record(newest)
      metrics.lastFrameTime.record(Double(Sequencer.wallClockMicroseconds()) / 1e6)
      try log.syncIfDue()
    } catch {
      // Nothing of this batch was published; the reconnect resumes after the last stored seq.
      metrics.appendErrors.increment()
      logger.error("cannot store events; reconnecting", metadata: ["error": "\(error)"])
      return .reconnect(reason: "log append failed")
    }
    return verdict
  }
}
