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
  /// Runs (`nextRuns…`) skip events whose JSON is longer than this (0: none), counting them in
  /// `FeedBatch.oversize`.
  public var maxMessageSizeBytes: Int64 = 0
  /// What a subscriber is sent, and how events read from the log become it.
  public enum Form: Sendable {
    /// v1 zstd frames: the log's payloads as they are.
    case v1Compressed
    /// v1 JSON text: the log's payloads decompressed.
    case v1Text(DecompressorPool)
    /// v2 frames, zstd or text: the log's events rewritten (`V2Transcoder`).
    case v2(V2Transcoder, compressed: Bool)
    /// An edge's replication stream: each log record whole (`ReplicationMessage`), always read
    /// from the log.
    case replication
  }
  public let form: Form
  /// The form runs carry: binary zstd frames, else text.
  private let binary: Bool
  private let ring: LiveRing
  private let log: EventLog
  private var reader: LogReader?
  /// Events delivered from the log and from the ring, and events scanned but filtered out.
  public private(set) var fromDisk = 0
  public private(set) var fromMemory = 0
  public private(set) var filteredOut = 0

  /// Retention deleted events after the position before this subscriber read them
  /// (PROTOCOL §9: 1008 `consumer too slow`).
  public struct TooSlow: Error {}

  /// Where a subscriber starts (PROTOCOL §6).
  public enum Start: Sendable {
    /// After the newest event now.
    case live
    /// At the first event with `time_us ≥ cursor` (≤ 0 or older than retention: the oldest).
    /// A cursor past the newest event starts live, unless `waitIfAhead`: then it starts at the
    /// cursor itself, for an edge a little behind the instance the client came from
    /// (OPERATIONS §10), which must not send again what the client already has.
    case cursor(Int64, waitIfAhead: Bool = false)
  }

  /// The slow-consumer policy's lag limit: a subscriber whose delivered position stays more than
  /// `maxLagUS` behind the newest event for `grace` is `lagging`.
  public struct LagLimit: Sendable {
    public var maxLagUS: Int64
    public var grace: TimeAmount

    public init(maxLagUS: Int64, grace: TimeAmount) {
      self.maxLagUS = maxLagUS
      self.grace = grace
    }
  }

  /// What the slow-consumer policy says about a subscriber (PROTOCOL §9).
  public enum Health: Equatable, Sendable {
    case ok
    /// Retention deleted events after what it was delivered: 1008 `consumer too slow`.
    case tooSlow
    /// Behind the newest event by more than the lag limit for longer than its grace.
    case lagging
  }

  private let lagLimit: LagLimit?
  /// Since when the delivered position has been further behind than `lagLimit` allows. Only
  /// `health` touches it, so it may run while a disk read is in flight.
  private var laggingSince: NIODeadline?

  /// A v1 feed: `decompressors` is needed for text subscribers (they get JSON); zstd
  /// subscribers pass nil. `lagLimit`: the policy's lag limit, if any (retention always
  /// applies).
  public convenience init(
    ring: LiveRing, log: EventLog, start: Start, filter: EventFilter,
    decompressors: DecompressorPool?, lagLimit: LagLimit? = nil
  ) {
    self.init(
      ring: ring, log: log, start: start, filter: filter,
      form: decompressors.map { .v1Text($0) } ?? .v1Compressed, lagLimit: lagLimit)
  }

  /// A feed of `form` from `ring` (the v1 ring, or `V2Publisher.ring` for v2 forms).
  public init(
    ring: LiveRing, log: EventLog, start: Start, filter: EventFilter, form: Form,
    lagLimit: LagLimit? = nil
  ) {
    self.ring = ring
    self.log = log
    self.filter = filter
    self.form = form
    switch form {
    case .v1Compressed: binary = true
    case .v1Text: binary = false
    case .v2(_, let compressed): binary = compressed
    case .replication: binary = true
    }
    self.lagLimit = lagLimit
    switch start {
    case .live:
      position = max(ring.newestTimeUS, log.lastTimeUS ?? 0)
    case .cursor(let cursor, let waitIfAhead):
      // Any Int64 is a valid cursor: ≤ 0 means the oldest event, like a cursor before it.
      position = max(cursor, 1) - 1
      // Older than the oldest retained event: start at the oldest.
      if let oldest = log.stats.oldestTimeUS, cursor <= oldest { position = oldest - 1 }
      if cursor > max(ring.newestTimeUS, log.lastTimeUS ?? 0) && !waitIfAhead {
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
    try nextFromMemory(limit: limit) ?? nextFromDisk(limit: limit)
  }

  /// Up to `limit` events after the position from the ring (more to finish a frame block), or
  /// nil when the position is behind the ring and the next read must come from the log.
  func nextFromMemory(limit: Int) -> [BroadcastEvent]? {
    switch ring.read(after: position, limit: limit, filter: filter, wholeBlocks: true) {
    case .events(let events, let scannedThrough, let scanned):
      reader = nil  // in the ring from now on
      position = scannedThrough
      fromMemory += events.count
      filteredOut += scanned - events.count
      return events
    case .behind:
      return nil
    }
  }

  /// Up to `limit × diskBatchFactor` events after the position from the log (blocking file
  /// reads: call it off the event loop). Throws `TooSlow` if retention deleted the position.
  public func nextFromDisk(limit: Int) throws -> [BroadcastEvent] {
    try readLog(limit: limit * Self.diskBatchFactor)
  }

  /// A batch of runs from the ring (up to `limit` events, more to finish a frame block), or nil
  /// when the position is behind the ring and the next read must come from the log. Cheap:
  /// callers on an event loop read here directly and take only `nextRunsFromDisk` to a thread
  /// pool.
  public func nextRunsFromMemory(limit: Int) -> FeedBatch? {
    if case .replication = form {
      // The ring holds no replication messages: caught up (wait for a publish) or read the log.
      guard position >= log.lastTimeUS ?? 0 else { return nil }
      return FeedBatch(position: position, fromDisk: false)
    }
    guard
      let batch = ring.readRuns(
        after: position, limit: limit, filter: filter, binary: binary,
        maxJSONLength: maxMessageSizeBytes)
    else { return nil }
    reader = nil  // in the ring from now on
    position = batch.position
    fromMemory += batch.events
    filteredOut += batch.filteredOut
    return batch
  }

  /// A batch of runs from the log (`nextFromDisk`; blocking file reads: call it off the event
  /// loop).
  public func nextRunsFromDisk(limit: Int) throws -> FeedBatch {
    let skipped = filteredOut
    let events = try nextFromDisk(limit: limit)
    var runs = RunBuilder(binary: binary, maxJSONLength: maxMessageSizeBytes)
    runs.add(events)
    return runs.batch(position: position, fromDisk: true, filteredOut: filteredOut - skipped)
  }

  /// The next batch of runs, from the ring or else from the log.
  public func nextRuns(limit: Int) throws -> FeedBatch {
    try nextRunsFromMemory(limit: limit) ?? nextRunsFromDisk(limit: limit)
  }

  /// Moves the position back so that the next read starts at `timeUS` (a batch read but not
  /// sent, dropped to bound memory, or read again under new options).
  public func rewind(to timeUS: Int64) {
    guard timeUS - 1 < position else { return }
    position = timeUS - 1
    reader = nil
  }

  /// The slow-consumer policy for a subscriber that has been sent everything up to
  /// `delivered` (its own position may be a batch ahead). Call it periodically; `now` times the
  /// lag limit's grace.
  public func health(delivered: Int64, now: NIODeadline) -> Health {
    if let deleted = log.deletedThroughTimeUS, deleted > delivered { return .tooSlow }
    guard let lagLimit else { return .ok }
    guard ring.newestTimeUS - delivered > lagLimit.maxLagUS else {
      laggingSince = nil
      return .ok
    }
    let since = laggingSince ?? now
    laggingSince = since
    return now - since >= lagLimit.grace ? .lagging : .ok
  }

  private func readLog(limit: Int) throws -> [BroadcastEvent] {
    let start = position
    if let deleted = log.deletedThroughTimeUS, deleted > start { throw TooSlow() }
    if reader == nil { reader = log.reader(from: position + 1, filter: filter) }
    let reader = reader!
    let skippedBefore = reader.skipped
    var records: [LogRecord] = []
    while records.count < limit, let record = reader.next() { records.append(record) }
    // Retention may have deleted segments during the read; the reader then goes on with the
    // next segment it can open, which would be a gap. Too slow, rather than a gap.
    if let deleted = log.deletedThroughTimeUS, deleted > start { throw TooSlow() }
    let batch: [BroadcastEvent]
    switch form {
    case .v1Compressed: batch = try Self.events(records, decompressor: nil)
    case .v1Text(let pool): batch = try pool.with { try Self.events(records, decompressor: $0) }
    case .v2(let transcoder, let compressed):
      batch = try transcoder.replay(records, compressed: compressed)
    case .replication:
      batch = BroadcastEvent.framed(
        records.map { record in
          let message = ReplicationMessage.encode(record)
          return BroadcastEvent(
            meta: record.meta, json: nil, compressed: ByteBuffer(bytes: message),
            jsonLength: message.count)
        })
    }
    if let scanned = reader.scannedThrough { position = max(position, scanned) }
    fromDisk += batch.count
    filteredOut += reader.skipped - skippedBefore
    return batch
  }

  /// Log records as subscribers send them: framed (zstd frames as binary frames, or the JSON as
  /// text frames for text subscribers, given a decompressor), each payload written once, straight
  /// into blocks of at most `FrameBlock.targetBytes` (but for a bigger event) that the events
  /// share. A subscriber sends
  /// slices of the blocks, and one that stalls holds at most a block beyond what it sent.
  private static func events(_ records: [LogRecord], decompressor: EventDecompressor?) throws
    -> [BroadcastEvent]
  {
    let binary = decompressor == nil
    // Payload sizes: the JSON's declared size (nil: not declared, decompressed to find out).
    var sizes: [Int] = []
    var undeclared: [Int: [UInt8]] = [:]
    sizes.reserveCapacity(records.count)
    for (index, record) in records.enumerated() {
      if let decompressor {
        if let size = try record.payload.withUnsafeBytes({ try decompressor.checkedSize(of: $0) }) {
          sizes.append(size)
        } else {
          let json = try decompressor.decompress(record.payload)
          undeclared[index] = json
          sizes.append(json.count)
        }
      } else {
        sizes.append(record.payload.count)
      }
    }
    var events: [BroadcastEvent] = []
    events.reserveCapacity(records.count)
    var start = 0
    while start < records.count {
      var end = start
      var bytes = 0
      while end < records.count {
        let frame = FrameHeader.size(sizes[end]) + sizes[end]
        if end > start && bytes + frame > FrameBlock.targetBytes { break }
        bytes += frame
        end += 1
      }
      var buffer = ByteBuffer()
      buffer.reserveCapacity(bytes)
      var ranges: [(UInt32, UInt32)] = []
      ranges.reserveCapacity(end - start)
      for index in start..<end {
        let record = records[index]
        let size = sizes[index]
        let frameStart = UInt32(buffer.writerIndex)
        FrameHeader.write(binary ? FrameHeader.binary : FrameHeader.text, length: size, to: &buffer)
        if let decompressor {
          if let json = undeclared[index] {
            buffer.writeBytes(json)
          } else {
            try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { destination in
              try record.payload.withUnsafeBytes {
                try decompressor.decompress($0, size: size, into: destination)
              }
              return size
            }
          }
        } else {
          buffer.writeBytes(record.payload)
        }
        ranges.append((frameStart, UInt32(buffer.writerIndex)))
      }
      // Slices only once the block is written: a slice shares the storage, so a later write
      // would copy it.
      let block = FrameBlock(storage: buffer, textBytes: binary ? 0 : buffer.readableBytes)
      for (index, range) in zip(start..<end, ranges) {
        let record = records[index]
        let ranges =
          binary
          ? FrameRanges(binaryStart: range.0, binaryEnd: range.1)
          : FrameRanges(textStart: range.0, textEnd: range.1)
        let length =
          binary
          ? record.payload.withUnsafeBytes { EventDecompressor.contentSize(of: $0) } ?? 0
          : sizes[index]
        events.append(
          BroadcastEvent(
            meta: record.meta, json: nil, compressed: ByteBuffer(),
            jsonLength: length
          ).framed(in: block, ranges))
      }
      start = end
    }
    return events
  }

  /// Calls `wake` once when events newer than the position may be available.
  public func notifyWhenReady(_ wake: @escaping @Sendable () -> Void) {
    ring.notify(after: position, wake)
  }
}
