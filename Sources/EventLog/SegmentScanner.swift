import Events

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Reads a segment's records in order through a large buffer, never past `limit`. After a
/// corrupt record it reports the offset once, then searches byte by byte for the next record
/// whose checksum holds and whose `time_us` and event seq both follow the last record's (both
/// strictly increase through a segment, so a match of the search that breaks the order is not a
/// record).
struct SegmentScanner {
  enum Step {
    case record(LogRecord, offset: Int, end: Int)
    /// A valid record the filter rejected (not materialized).
    case skipped(timeUS: Int64, eventSeq: Int64, offset: Int, end: Int)
    case corrupt(offset: Int)
    case end
  }

  let segment: SegmentFile
  let fd: Int32
  var position: Int
  /// Bytes of the file that may be read (`Int.max`: to the end of the file).
  var limit: Int
  private var buffer: [UInt8] = []
  private var bufferStart = 0
  private var resyncing = false
  /// The `time_us` and event seq of the last record returned (delivered or skipped).
  private var lastTime = Int64.min
  private var lastEventSeq = Int64.min
  /// The last read at `bufferStart` got fewer bytes than it asked for: the end of the file.
  private var shortRead = false
  static let chunk = 1 << 20

  init(segment: SegmentFile, fd: Int32, from position: Int, end limit: Int) {
    self.segment = segment
    self.fd = fd
    self.position = position
    self.limit = limit
  }

  /// `keep(time, kind, did, collection)` decides which valid records are materialized.
  mutating func next(keep: ((Int64, EventKind, () -> String, String) -> Bool)?) -> Step {
    while position < limit {
      var local = position - bufferStart
      if local < 0 || local >= buffer.count {
        refill(minimum: 16)
        local = 0
        if buffer.isEmpty { return .end }
      }
      let available = min(buffer.count, limit - bufferStart)
      let parsed = buffer.withUnsafeBytes { raw in
        RecordCodec.parse(
          UnsafeRawBufferPointer(rebasing: raw[..<available]), at: local,
          bases: segment.bases, keep: keep)
      }
      switch parsed {
      case .record(let record, let end)
      where record.timeUS > lastTime && record.eventSeq > lastEventSeq:
        let start = position
        position = bufferStart + end
        resyncing = false
        lastTime = record.timeUS
        lastEventSeq = record.eventSeq
        return .record(record, offset: start, end: position)
      case .skipped(let timeUS, let eventSeq, let end)
      where timeUS > lastTime && eventSeq > lastEventSeq:
        let start = position
        position = bufferStart + end
        resyncing = false
        lastTime = timeUS
        lastEventSeq = eventSeq
        return .skipped(timeUS: timeUS, eventSeq: eventSeq, offset: start, end: position)
      case .incomplete(let needed):
        // Read more if the file may hold the rest; otherwise it is as bad as a corrupt record
        // (a torn tail, or a damaged length pointing past the end).
        // While searching byte by byte, a length past the end of a buffer that already reached
        // the end of the file cannot be satisfied by reading again (re-reading at every such
        // offset made a garbage tail cost O(n²)).
        let pastEnd = shortRead && position + needed > bufferStart + buffer.count
        if position + needed <= limit && !(bufferStart == position && shortRead)
          && !(resyncing && pastEnd)
        {
          refill(minimum: needed)
          continue
        }
        fallthrough
      case .corrupt, .record, .skipped:  // a record here breaks the time or event seq order
        if resyncing {
          position += 1
          continue
        }
        resyncing = true
        let at = position
        position += 1
        return .corrupt(offset: at)
      }
    }
    return .end
  }

  /// Reads from `position` on: at least `minimum` bytes when the file has them.
  private mutating func refill(minimum: Int) {
    var size = max(Self.chunk, minimum)
    if limit != Int.max { size = min(size, limit - position) }
    buffer = [UInt8](unsafeUninitializedCapacity: size) { raw, count in
      var filled = 0
      while filled < size {
        let n = pread(fd, raw.baseAddress! + filled, size - filled, off_t(position + filled))
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        filled += n
      }
      count = filled
    }
    shortRead = buffer.count < size
    bufferStart = position
  }
}
