import Broadcast
import Compression
import EventLog
import Events
import Foundation
import NIOCore

/// The one store path (ARCHITECTURE §1, store stage): compresses each event once, numbers the
/// batch with the log's next event seqs (the v2 `seq`), appends it to the log, then publishes to
/// the ring exactly what the log holds — in order, once.
/// Used by ingest, the tests and the benchmarks. Not thread-safe: one caller at a time (ingest's
/// store queue); large batches are compressed on two threads.
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
    records.reserveCapacity(events.count)
    for (index, (event, frame)) in zip(events, frames).enumerated() {
      records.append(LogRecord(event, eventSeq: firstEventSeq + Int64(index), payload: frame))
    }
    var kept = events.count
    var failure: (any Error)? = nil
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
    if kept > 0 {
      ring.publish(
        (0..<kept).map {
          BroadcastEvent(events[$0], eventSeq: records[$0].eventSeq, compressed: frames[$0])
        })
    }
    return Outcome(
      stored: kept, lastSeq: kept > 0 ? events[kept - 1].seq : nil, error: failure)
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
    guard !fresh.isEmpty else { return Outcome(stored: 0, lastSeq: nil, error: failure) }
    var kept = fresh.count
    do {
      try log.append(fresh)
    } catch {
      let writtenThrough = log.lastEventSeq
      kept = fresh.prefix { $0.eventSeq <= writtenThrough }.count
      failure = error
    }
    if kept > 0 { ring.publish(Array(events.prefix(kept))) }
    return Outcome(stored: kept, lastSeq: kept > 0 ? fresh[kept - 1].seq : nil, error: failure)
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
