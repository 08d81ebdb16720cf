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
      // Any Int64 is a valid cursor: ≤ 0 means the oldest event, like a cursor before it.
      position = max(cursor, 1) - 1
      // Older than the oldest retained event: start at the oldest.
      if let oldest = log.stats.oldestTimeUS, cursor <= oldest { position = oldest - 1 }
      if cursor > max(ring.newestTimeUS, log.lastTimeUS ?? 0) {
        position = max(ring.newestTimeUS, log.lastTimeUS ?? 0)
      }
    }
  }

  /// Reading from the log costs a thread hop per call, so it hands out this many times `limit`
  /// per call (JSON replay to one subscriber: 420k → 700k+ events/s with 4).
  public static let diskBatchFactor = 4

  /// Up to `limit` events after the position (`limit × diskBatchFactor` from the log), advancing
  /// it; empty when caught up.
  public func nextBatch(limit: Int) throws -> [BroadcastEvent] {
    switch ring.read(after: position, limit: limit, filter: filter) {
    case .events(let events, let scannedThrough, let scanned):
      reader = nil  // in the ring from now on
      position = scannedThrough
      fromMemory += events.count
      filteredOut += scanned - events.count
      return events
    case .behind:
      return try readLog(limit: limit * Self.diskBatchFactor)
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
      try decompressors?.with { try Self.events(records, decompressor: $0) }
      ?? Self.events(records, decompressor: nil)
    if let scanned = reader.scannedThrough { position = max(position, scanned) }
    fromDisk += batch.count
    filteredOut += reader.skipped - skippedBefore
    return batch
  }

  /// Log records as the ring would hold them: zstd frames, or JSON for text subscribers (given a
  /// decompressor). All of a batch's bytes go into one buffer that the events share.
  private static func events(_ records: [LogRecord], decompressor: EventDecompressor?) throws
    -> [BroadcastEvent]
  {
    var buffer = ByteBuffer()
    var ends: [Int] = []
    ends.reserveCapacity(records.count)
    if let decompressor {
      var sizes: [Int?] = []
      sizes.reserveCapacity(records.count)
      for record in records {
        sizes.append(try record.payload.withUnsafeBytes { try decompressor.checkedSize(of: $0) })
      }
      buffer.reserveCapacity(sizes.reduce(0) { $0 + ($1 ?? 0) })
      for (record, size) in zip(records, sizes) {
        if let size {
          try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { destination in
            try record.payload.withUnsafeBytes {
              try decompressor.decompress($0, size: size, into: destination)
            }
            return size
          }
        } else {
          buffer.writeBytes(try decompressor.decompress(record.payload))  // no declared size
        }
        ends.append(buffer.writerIndex)
      }
    } else {
      buffer.reserveCapacity(records.reduce(0) { $0 + $1.payload.count })
      for record in records {
        buffer.writeBytes(record.payload)
        ends.append(buffer.writerIndex)
      }
    }
    // Slice only once everything is written: a slice shares the storage, so a later write
    // would copy it.
    var start = 0
    return zip(records, ends).map { record, end in
      let bytes = buffer.getSlice(at: start, length: end - start)!
      start = end
      let json = decompressor == nil ? nil : bytes
      let length =
        json?.readableBytes
        ?? record.payload.withUnsafeBytes { EventDecompressor.contentSize(of: $0) } ?? 0
      return BroadcastEvent(
        timeUS: record.timeUS, kind: record.kind, did: record.did, collection: record.collection,
        json: json, compressed: json == nil ? bytes : ByteBuffer(), jsonLength: length)
    }
  }

  /// Calls `wake` once when events newer than the position may be available.
  public func notifyWhenReady(_ wake: @escaping @Sendable () -> Void) {
    ring.notify(after: position, wake)
  }
}
