import Compression
import EventLog
import Events
import NIOCore

/// One subscriber's source of events: a position (`time_us` of the last event it is done with)
/// and a filter. Each batch comes from the ring when the position is inside it, else from the
/// log, so moving from disk to memory has no gap, duplicate or reordering by construction
/// (ARCHITECTURE invariant 4).
public final class SubscriberFeed {
  public private(set) var position: Int64
  public var filter: EventFilter {
    didSet { reader = nil }  // a log reader filters as it scans: start a new one
  }
  private let ring: LiveRing
  private let log: EventLog
  /// For text subscribers replaying from disk: the log keeps only the compressed form.
  private let decompressors: DecompressorPool?
  private var reader: LogReader?
  /// Events delivered from the log and from the ring, and events scanned but filtered out.
  public private(set) var fromDisk = 0
  public private(set) var fromMemory = 0
  public private(set) var filteredOut = 0

  /// Retention deleted events after the position before this subscriber read them
  /// (PROTOCOL §9: 1008 `consumer too slow`).
  public struct TooSlow: Error {}

  /// Where a subscriber starts (PROTOCOL §6).
  public enum Start {
    /// After the newest event now.
    case live
    /// At the first event with `time_us ≥ cursor` (≤ 0 or older than retention: the oldest).
    case cursor(Int64)
  }

  /// `decompressors` is needed for text subscribers (they get JSON); zstd subscribers pass nil.
  public init(
    ring: LiveRing, log: EventLog, start: Start, filter: EventFilter,
    decompressors: DecompressorPool?
  ) {
    self.ring = ring
    self.log = log
    self.filter = filter
    self.decompressors = decompressors
    switch start {
    case .live:
      position = max(ring.newestTimeUS, log.lastTimeUS ?? 0)
    case .cursor(let cursor):
      position = cursor - 1
      // Older than the oldest retained event: start at the oldest.
      if let oldest = log.stats.oldestTimeUS, cursor <= oldest { position = oldest - 1 }
      if cursor > max(ring.newestTimeUS, log.lastTimeUS ?? 0) {
        position = max(ring.newestTimeUS, log.lastTimeUS ?? 0)
      }
    }
  }

  /// Up to `limit` events after the position, advancing it; empty when caught up.
  public func nextBatch(limit: Int) throws -> [BroadcastEvent] {
    switch ring.read(after: position, limit: limit, filter: filter) {
    case .events(let events, let scannedThrough, let scanned):
      reader = nil  // in the ring from now on
      position = scannedThrough
      fromMemory += events.count
      filteredOut += scanned - events.count
      return events
    case .behind:
      return try readLog(limit: limit)
    }
  }

  private func readLog(limit: Int) throws -> [BroadcastEvent] {
    if let deleted = log.deletedThroughTimeUS, deleted > position { throw TooSlow() }
    if reader == nil { reader = log.reader(from: position + 1, filter: filter) }
    let reader = reader!
    let skippedBefore = reader.skipped
    var records: [LogRecord] = []
    while records.count < limit, let record = reader.next() { records.append(record) }
    let batch =
      try decompressors?.with { decompressor in
        try records.map { try Self.event($0, decompressor) }
      } ?? records.map { try Self.event($0, nil) }
    if let scanned = reader.scannedThrough { position = max(position, scanned) }
    fromDisk += batch.count
    filteredOut += reader.skipped - skippedBefore
    return batch
  }

  /// A log record as the ring would hold it; JSON only for text subscribers.
  private static func event(_ record: LogRecord, _ decompressor: EventDecompressor?) throws
    -> BroadcastEvent
  {
    let json = try decompressor.map { ByteBuffer(bytes: try $0.decompress(record.payload)) }
    let length =
      json?.readableBytes
      ?? record.payload.withUnsafeBytes { EventDecompressor.contentSize(of: $0) } ?? 0
    return BroadcastEvent(
      timeUS: record.timeUS, kind: record.kind, did: record.did, collection: record.collection,
      json: json, compressed: ByteBuffer(bytes: record.payload), jsonLength: length)
  }

  /// Calls `wake` once when events newer than the position may be available.
  public func notifyWhenReady(_ wake: @escaping @Sendable () -> Void) {
    ring.notify(after: position, wake)
  }
}
