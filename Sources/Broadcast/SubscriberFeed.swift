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
  public var filter: EventFilter
  private let ring: LiveRing
  private let log: EventLog
  /// For text subscribers replaying from disk: the log keeps only the compressed form.
  private let decompressor: EventDecompressor?
  private var reader: LogReader?
  public private(set) var fromDisk = 0
  public private(set) var fromMemory = 0

  /// Where a subscriber starts (PROTOCOL §6).
  public enum Start {
    /// After the newest event now.
    case live
    /// At the first event with `time_us ≥ cursor` (≤ 0 or older than retention: the oldest).
    case cursor(Int64)
  }

  /// `decompressor` is needed for text subscribers (they get JSON); zstd subscribers pass nil.
  public init(
    ring: LiveRing, log: EventLog, start: Start, filter: EventFilter,
    decompressor: EventDecompressor?
  ) {
    self.ring = ring
    self.log = log
    self.filter = filter
    self.decompressor = decompressor
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
    case .events(let events, let scannedThrough):
      reader = nil  // in the ring from now on
      position = scannedThrough
      fromMemory += events.count
      return events
    case .behind:
      return try readLog(limit: limit)
    }
  }

  private func readLog(limit: Int) throws -> [BroadcastEvent] {
    if reader == nil { reader = log.reader(from: position + 1, filter: filter) }
    var batch: [BroadcastEvent] = []
    while batch.count < limit, let record = reader!.next() {
      let compressed = ByteBuffer(bytes: record.payload)
      let json = try decompressor.map { ByteBuffer(bytes: try $0.decompress(record.payload)) }
      let length =
        json?.readableBytes ?? record.payload.withUnsafeBytes {
          EventDecompressor.contentSize(of: $0)
        } ?? 0
      batch.append(
        BroadcastEvent(
          timeUS: record.timeUS, kind: record.kind, did: record.did, collection: record.collection,
          json: json, compressed: compressed, jsonLength: length))
    }
    if let scanned = reader!.scannedThrough { position = max(position, scanned) }
    fromDisk += batch.count
    return batch
  }

  /// Calls `wake` once when events newer than the position may be available.
  public func notifyWhenReady(_ wake: @escaping @Sendable () -> Void) {
    ring.notify(after: position, wake)
  }
}
