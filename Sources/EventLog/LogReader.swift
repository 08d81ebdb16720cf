import Events

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Reads the log in `time_us` order from a position, across segments, never past what the
/// writer has committed. Filtered-out records are skipped without copying their payload.
/// `next()` returning nil means caught up; call again after more appends. One consumer only.
public final class LogReader {
  private let log: EventLog
  private let filter: EventFilter
  /// Records before this time are skipped (the exact seek within the first segment).
  private var minTime: Int64
  private var segment: SegmentFile?
  private var fd: Int32 = -1
  private var scanner: SegmentScanner?
  /// Where to start in `segment` when it is opened.
  private var startOffset: Int = SegmentFile.headerSize

  /// The `time_us` of the last record read, delivered or skipped: everything up to it is done.
  public private(set) var scannedThrough: Int64? = nil
  /// The event seq of that record.
  public private(set) var scannedThroughEventSeq: Int64? = nil
  public private(set) var delivered = 0
  /// Valid records the filter (or the seek) rejected; their payloads were never copied.
  public private(set) var skipped = 0
  /// Corrupt record ranges this reader skipped.
  public private(set) var corruptions = 0

  init(log: EventLog, cursor: Int64?, filter: EventFilter) {
    self.log = log
    self.filter = filter
    self.minTime = Int64.min
    let segments = log.segments
    guard let cursor, cursor > 0, let oldest = segments.first?.state.withLock({ $0.firstTime }),
      cursor > oldest
    else {
      segment = segments.first  // from the oldest event (or the first one ever written)
      return
    }
    let newest = segments.last!.state.withLock { ($0.lastTime, $0.committedEnd) }
    if let last = newest.0, cursor > last {
      segment = segments.last  // live: after the newest event
      startOffset = newest.1
      return
    }
    // The first segment whose newest event is at or after the cursor holds the target.
    let target =
      segments.first { ($0.state.withLock { $0.lastTime } ?? Int64.min) >= cursor } ?? segments
      .last!
    segment = target
    startOffset = target.indexOffset(for: cursor)
    minTime = cursor
  }

  deinit {
    if fd >= 0 { closeFile(fd) }
  }

  /// The next matching event, or nil when everything committed so far has been read.
  public func next() -> LogRecord? {
    let filter = self.filter
    let minTime = self.minTime
    let keep: (Int64, EventKind, () -> String, String) -> Bool = { time, kind, did, collection in
      time >= minTime && filter.matches(kind: kind, collection: collection)
        && (filter.dids.isEmpty || filter.dids.contains(did()))
    }
    while true {
      if segment == nil {
        segment = log.segments.first  // the log was empty when we started
        startOffset = SegmentFile.headerSize
        guard segment != nil else { return nil }
      }
      guard var scanner = openScanner() else {
        guard advance() else { return nil }  // its file was deleted: go on with the next
        continue
      }
      scanner.limit = segment!.state.withLock { $0.committedEnd }
      let step = scanner.next(keep: keep)
      self.scanner = scanner
      switch step {
      case .record(let record, _, _):
        delivered += 1
        scannedThrough = record.timeUS
        scannedThroughEventSeq = record.eventSeq
        self.minTime = Int64.min  // past the seek point, everything is in range
        return record
      case .skipped(let timeUS, let eventSeq, _, _):
        skipped += 1
        if timeUS >= minTime {
          scannedThrough = timeUS
          scannedThroughEventSeq = eventSeq
        }
      case .corrupt:
        corruptions += 1
      case .end:
        // Only a sealed segment is left for the next one; once a newer segment exists, this
        // one's length is final, so read anything that landed just before moving on.
        guard hasNewerSegment() else { return nil }
        if segment!.state.withLock({ $0.committedEnd }) > scanner.position { continue }
        guard advance() else { return nil }
      }
    }
  }

  private func hasNewerSegment() -> Bool {
    guard let segment else { return false }
    return log.segments.contains { $0.baseTime > segment.baseTime }
  }

  /// Moves to the segment after the current one; false if there is none.
  private func advance() -> Bool {
    guard let current = segment,
      let next = log.segments.first(where: { $0.baseTime > current.baseTime })
    else {
      return false
    }
    if fd >= 0 { closeFile(fd) }
    fd = -1
    scanner = nil
    segment = next
    startOffset = SegmentFile.headerSize
    return true
  }

  private func openScanner() -> SegmentScanner? {
    if let scanner { return scanner }
    guard let segment else { return nil }
    fd = openFile(segment.path, O_RDONLY)
    guard fd >= 0 else { return nil }
    scanner = SegmentScanner(segment: segment, fd: fd, from: startOffset, end: startOffset)
    return scanner
  }
}
