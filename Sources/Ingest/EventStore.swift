import Broadcast
import Compression
import EventLog
import Events
import Foundation
import NIOCore

/// The one store path (ARCHITECTURE §1, store stage): compresses each event once (or, on an
/// edge, takes the frames its upstream compressed), numbers the batch with the log's next event
/// seqs (the v2 `seq`), appends it to the log, then publishes to the ring exactly what the log
/// holds — in order, once. Used by ingest, edges, the tests and the benchmarks. Not thread-safe:
/// one caller at a time (a store queue); large batches are compressed on two threads.
public final class EventStore: @unchecked Sendable {
  /// What one `store` call did.
  public struct Outcome {
    /// Events appended and published: all of them, or, after a failed append, the prefix the
    /// log kept.
    public var stored: Int
    /// The relay seq of the last stored event.
    public var lastSeq: Int64?
    /// Why the rest was not stored (a full disk, an I/O error).
    public var error: (any Error)?
  }

  public let log: EventLog
  public let ring: LiveRing
  /// One per compressing thread (zstd contexts are single-threaded).
  private let compressors: [EventCompressor]
  /// For replicated records' JSON (`storeReplicated`).
  private let decompressor: EventDecompressor
  /// For forwarded frames' JSON (`storeForwarded`), bounded by `maxForwardedEventBytes`.
  private let forwardDecompressor: EventDecompressor
  /// Batches at least this big are compressed on two threads.
  static let parallelBatch = 64

  public init(
    log: EventLog, ring: LiveRing, dictionary: ZstdDictionary,
    level: Int32 = EventCompressor.defaultLevel
  ) throws {
    self.log = log
    self.ring = ring
    compressors = try (0..<2).map { _ in try EventCompressor(dictionary: dictionary, level: level) }
    decompressor = try EventDecompressor(dictionary: dictionary)
    forwardDecompressor = try EventDecompressor(
      dictionary: dictionary, maxSize: Self.maxForwardedEventBytes)
  }

  /// Compresses, appends, publishes. A subscriber never sees an event the log does not hold, and
  /// never sees one twice: nothing here publishes after a failure except the prefix the log kept.
  /// Event `i` of the batch gets event seq `log.lastEventSeq + 1 + i`: this is the log's one
  /// writer, so the numbers are consecutive, and after a failure the next batch continues from
  /// the last one the log kept (numbers of events it did not keep were never published).
  public func store(_ events: [Event]) -> Outcome {
    guard !events.isEmpty else { return Outcome(stored: 0, lastSeq: nil, error: nil) }
    let frames: [[UInt8]]
    do {
      frames = try compress(events)
    } catch {
      return Outcome(stored: 0, lastSeq: nil, error: error)
    }
    let firstEventSeq = log.lastEventSeq + 1
    var records: [LogRecord] = []
    var published: [BroadcastEvent] = []
    records.reserveCapacity(events.count)
    published.reserveCapacity(events.count)
    for (index, (event, frame)) in zip(events, frames).enumerated() {
      let eventSeq = firstEventSeq + Int64(index)
      records.append(LogRecord(event, eventSeq: eventSeq, payload: frame))
      published.append(BroadcastEvent(event, eventSeq: eventSeq, compressed: frame))
    }
    return appendAndPublish(records, published, failure: nil)
  }

  /// Stores records a primary stored (an edge, OPERATIONS §10) exactly as they are: their
  /// `time_us`, seqs and zstd payloads are appended unchanged — nothing is compressed — and
  /// published with their JSON (decompressed once, for text subscribers). Records at or before
  /// what the log holds are skipped, so a reconnect that repeats some never stores one twice.
  /// Nothing is stored past a record that does not continue the log (its `time_us` and event
  /// seq must both be newer, or both not: another primary's log, `Diverged`) or whose payload
  /// this dictionary cannot read: the error says which, and the edge stops there.
  public func storeReplicated(_ records: [LogRecord]) -> Outcome {
    let lastTime = log.lastTimeUS ?? Int64.min
    let lastEventSeq = log.lastEventSeq
    var fresh: [LogRecord] = []
    var events: [BroadcastEvent] = []
    var failure: (any Error)? = nil
    for record in records {
      let newerTime = record.timeUS > lastTime
      let newerSeq = record.eventSeq > lastEventSeq
      guard newerTime == newerSeq else {
        failure = Diverged(record: record, lastTimeUS: lastTime, lastEventSeq: lastEventSeq)
        break
      }
      guard newerTime else { continue }  // already stored: a reconnect's overlap
      do {
        let json = try decompressor.decompress(record.payload)
        fresh.append(record)
        events.append(
          BroadcastEvent(
            meta: record.meta, json: ByteBuffer(bytes: json),
            compressed: ByteBuffer(bytes: record.payload), jsonLength: json.count))
      } catch {
        failure = error
        break
      }
    }
    return appendAndPublish(fresh, events, failure: failure)
  }

  /// What `storeForwarded` did: the outcome, and the frames it left out, by reason.
  public struct ForwardOutcome {
    public var outcome: Outcome
    /// Frames that are not one zstd frame this dictionary can decompress within
    /// `maxForwardedEventBytes`, or over `maxForwardedFrameBytes`.
    public var unreadable = 0
    /// Frames whose JSON is not an event Contrail could store (`UpstreamEvent`).
    public var notEvents = 0
    /// Events whose `time_us` is after `notAfter` (a host clock far ahead, or a hostile host):
    /// stored, one would hold back every later event.
    public var badTime = 0
    /// Events the ingest filter rejects.
    public var filtered = 0
    /// Events not newer than the log's last `time_us`: a reconnect's overlap, or an upstream
    /// whose `time_us` went back.
    public var repeated = 0
    /// Frames left out as unreadable, not events or out of time: what tells a host whose
    /// frames this edge cannot use (another dictionary, another event format, another clock).
    public var leftOut: Int { unreadable + notEvents + badTime }
    /// Appends made: one per part of about `forwardedBatchBytes`.
    public var parts = 0
    /// Why the first and the last frame left out that way were, printable.
    public var firstProblem: String?
    public var lastProblem: String?
  }

  /// The largest zstd frame `storeForwarded` takes: a relay frame's limit (`--max-frame-size`'s
  /// default); the log and `/replicate` carry up to 16 MiB.
  public static let maxForwardedFrameBytes = 5 << 20
  /// The most JSON one forwarded frame may decompress to.
  public static let maxForwardedEventBytes = 10 << 20
  /// JSON and frames held before what is ready is appended and published (one call's memory
  /// bound, exceeded by at most one event). A property so that tests can make it small.
  var forwardedBatchBytes = 8 << 20

  /// Stores the zstd frames a Jetstream v1 host sent (`serve --upstream …/subscribe`,
  /// OPERATIONS §10) as they are: each is decompressed once (for its metadata and for text
  /// subscribers), keeps the upstream's `time_us`, gets this log's next event seq, and is
  /// appended unchanged and published, in parts of about `forwardedBatchBytes`.
  /// Frames this dictionary cannot read, JSON that is not an event, events after `notAfter`,
  /// events `filter` rejects and events not newer than the log's last (so nothing is stored
  /// twice) are left out and counted; none of them stops the batch. A failed append does.
  public func storeForwarded(_ frames: [[UInt8]], filter: EventFilter?, notAfter: Int64)
    -> ForwardOutcome
  {
    var result = ForwardOutcome(outcome: Outcome(stored: 0, lastSeq: nil, error: nil))
    var lastTime = log.lastTimeUS ?? Int64.min
    var fresh: [LogRecord] = []
    var events: [BroadcastEvent] = []
    var heldBytes = 0
    func skip(
      _ counter: WritableKeyPath<ForwardOutcome, Int>, _ problem: @autoclosure () -> String
    ) {
      result[keyPath: counter] += 1
      let text = problem()
      result.lastProblem = text
      if result.firstProblem == nil { result.firstProblem = text }
    }
    func flush() -> Bool {
      if !fresh.isEmpty { result.parts += 1 }
      let outcome = appendAndPublish(fresh, events, failure: nil)
      result.outcome.stored += outcome.stored
      result.outcome.lastSeq = outcome.lastSeq ?? result.outcome.lastSeq
      result.outcome.error = outcome.error
      (fresh, events, heldBytes) = ([], [], 0)
      return outcome.error == nil
    }
    for frame in frames {
      let json: [UInt8]
      do {
        guard !frame.isEmpty else { throw Unreadable("a text message, not a zstd frame") }
        guard frame.count <= Self.maxForwardedFrameBytes else {
          throw Unreadable("a \(frame.count)-byte frame, over \(Self.maxForwardedFrameBytes)")
        }
        json = try frame.withUnsafeBytes { bytes in
          guard EventDecompressor.isSingleFrame(bytes) else {
            throw Unreadable("not exactly one zstd frame")
          }
          return try forwardDecompressor.decompress(bytes)
        }
      } catch {
        skip(\.unreadable, "\(error)")
        continue
      }
      guard var meta = json.withUnsafeBytes({ UpstreamEvent.meta(ofV1: $0) }) else {
        skip(\.notEvents, "not a Jetstream event: \(Excerpt.of(json))")
        continue
      }
      guard meta.timeUS <= notAfter else {
        skip(\.badTime, "time_us \(meta.timeUS) is in the future")
        continue
      }
      if let filter, !filter.matches(kind: meta.kind, did: meta.did, collection: meta.collection) {
        result.filtered += 1
        continue
      }
      guard meta.timeUS > lastTime else {
        result.repeated += 1
        continue
      }
      lastTime = meta.timeUS
      meta.eventSeq = log.lastEventSeq + 1 + Int64(fresh.count)
      fresh.append(LogRecord(meta: meta, payload: frame))
      events.append(
        BroadcastEvent(
          meta: meta, json: ByteBuffer(bytes: json), compressed: ByteBuffer(bytes: frame),
          jsonLength: json.count))
      heldBytes += json.count + frame.count
      if heldBytes >= forwardedBatchBytes, !flush() { return result }
    }
    _ = flush()
    return result
  }

  /// Why a forwarded frame cannot be read (besides the decompressor's own errors).
  private struct Unreadable: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
  }

  /// Appends `records` and publishes their `events` (the prefix the log kept, after a failed
  /// append); `failure` is why the caller stopped short of its whole batch, if it did.
  private func appendAndPublish(
    _ records: [LogRecord], _ events: [BroadcastEvent], failure: (any Error)?
  ) -> Outcome {
    guard !records.isEmpty else { return Outcome(stored: 0, lastSeq: nil, error: failure) }
    var kept = records.count
    var failure = failure
    do {
      try log.append(records)
    } catch {
      // An append can fail part-way (a full disk at a segment roll). Event seqs increase
      // strictly (relay seqs need not: a new relay epoch), so they tell which records the log
      // kept.
      let writtenThrough = log.lastEventSeq
      kept = records.prefix { $0.eventSeq <= writtenThrough }.count
      failure = error
    }
    if kept > 0 { ring.publish(Array(events.prefix(kept))) }
    return Outcome(
      stored: kept, lastSeq: kept > 0 ? records[kept - 1].seq : nil, error: failure)
  }

  /// A replicated record that does not continue this log: newer in `time_us` but not in event
  /// seq, or the reverse — the primary's log is not the one this edge copied (it was replaced,
  /// or the edge's data directory came from elsewhere).
  public struct Diverged: Error, CustomStringConvertible {
    public let record: LogRecord
    public let lastTimeUS: Int64
    public let lastEventSeq: Int64
    public var description: String {
      "the primary's log does not continue this edge's: its record (time_us \(record.timeUS), "
        + "event seq \(record.eventSeq)) against this log's last (time_us \(lastTimeUS), event seq "
        + "\(lastEventSeq)); start the edge with an empty --data-dir"
    }
  }

  /// Each event's zstd frame, in order; the two halves of a large batch in parallel.
  private func compress(_ events: [Event]) throws -> [[UInt8]] {
    guard events.count >= Self.parallelBatch else {
      return try events.map { try compressors[0].compress($0.json) }
    }
    let half = events.count / 2
    let parts = [0..<half, half..<events.count]
    let results = [PartResult(), PartResult()]  // one object per thread: no shared mutation
    DispatchQueue.concurrentPerform(iterations: 2) { part in
      results[part].value = Result {
        try parts[part].map { try compressors[part].compress(events[$0].json) }
      }
    }
    return try results[0].value!.get() + results[1].value!.get()
  }
}

/// One `concurrentPerform` iteration's result, written by that iteration alone and read after
/// `concurrentPerform` returns (which orders the write before the read).
private final class PartResult: @unchecked Sendable {
  var value: Result<[[UInt8]], any Error>?
}
