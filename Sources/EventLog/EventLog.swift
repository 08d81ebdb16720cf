import Events
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Contrail's 24-hour on-disk ring buffer (ARCHITECTURE §3, format in FORMAT.md): append-only
/// segment files of compressed events with their filter keys, exact cursor seeks, many
/// concurrent readers, group commit, retention by age and size, and crash recovery on open.
///
/// One writer (the ingest pipeline) calls `append`; readers are created from any thread.
public final class EventLog: Sendable {
  public enum SyncPolicy: Sendable, Equatable {
    /// fsync when this many milliseconds have passed since the last one (checked on append
    /// and by `syncIfDue`).
    case interval(milliseconds: Int)
    /// fsync after this many bytes.
    case bytes(Int)
    /// Never fsync (tests, throwaway data).
    case never
  }

  public struct Configuration: Sendable {
    public var directory: String
    /// Events older than this many microseconds are deleted with their segment.
    public var retentionMicroseconds: Int64 = 24 * 3_600_000_000
    /// Keep the files under this many bytes, oldest segments first (the newest always stays).
    public var maxDiskBytes: Int? = nil
    public var segmentMaxBytes = 256 << 20
    public var segmentMaxMicroseconds: Int64 = 3_600_000_000
    public var sync: SyncPolicy = .interval(milliseconds: 100)
    /// The ID of the dictionary that compressed the payloads, recorded in new segments.
    public var dictionaryID: UInt32 = 0
    /// The wall clock in µs (injectable for retention tests).
    public var clock: @Sendable () -> Int64 = Sequencer.wallClockMicroseconds

    public init(directory: String) { self.directory = directory }
  }

  /// Totals for `inspect` and metrics.
  public struct Stats: Sendable, Equatable {
    public var segments: Int
    public var events: Int
    public var bytes: Int
    public var oldestTimeUS: Int64?
    public var newestTimeUS: Int64?
    /// Damaged ranges found when the log was opened: corrupt ranges in any segment and damaged
    /// tails of sealed ones (`recoveryReport` without the newest segment's cut tail).
    public var corruptions: Int
    public var deletedSegments: Int
    /// Read-only opens: bytes after the newest segment's last whole record (a write in flight,
    /// or a torn tail the writer will cut on its next open).
    public var unreadTail: Int
  }

  public struct Failure: Error, CustomStringConvertible {
    public let description: String
  }

  let configuration: Configuration
  let segmentsDirectory: String
  /// What opening the log found damaged and what it did about it, oldest segment first: corrupt
  /// ranges skipped, sealed segments' damaged tails, the newest segment's cut tail. Empty when
  /// every byte was a whole record.
  public let recoveryReport: [RecoveryNote]

  struct State {
    var segments: [SegmentFile] = []
    var writer: Int32 = -1  // fd of the newest segment, opened for appending
    var unsyncedBytes = 0
    var lastSync: Int64 = 0
    var durableSeq: Int64? = nil
    var writtenSeq: Int64? = nil
    var writeFailure: String? = nil
    var deletedSegments = 0
    /// The newest `time_us` retention has deleted.
    var deletedThrough: Int64? = nil
    var unreadTail = 0
    var closed = false
  }

  let state: Mutex<State>

  /// Opens (creating if needed) the log in `configuration.directory`, scanning every segment
  /// (`recoveryReport` says what was damaged) and cutting the newest one's torn tail.
  /// `readOnly` never writes or truncates (for `inspect` on a live directory).
  public init(_ configuration: Configuration, readOnly: Bool = false) throws {
    self.configuration = configuration
    self.segmentsDirectory = configuration.directory + "/segments"
    if !readOnly {
      for path in [configuration.directory, segmentsDirectory]
      where mkdir(path, 0o755) != 0 && errno != EEXIST {
        throw Failure(description: "cannot create \(path): \(errorText())")
      }
    }
    var state = State()
    var names = try Self.segmentNames(segmentsDirectory)
    // A crash between creating the newest segment and writing its header leaves a file with no
    // records in it: remove it rather than refuse to start.
    if !readOnly, let newest = names.last,
      Self.fileSize(segmentsDirectory + "/" + newest) < SegmentFile.headerSize
    {
      unlink(segmentsDirectory + "/" + newest)
      names.removeLast()
    }
    var report: [RecoveryNote] = []
    for (index, name) in names.enumerated() {
      let newest = index == names.count - 1
      let (segment, notes, unread) = try SegmentFile.load(
        path: segmentsDirectory + "/" + name, tail: newest ? (readOnly ? .leave : .cut) : .report)
      state.segments.append(segment)
      report += notes
      if newest { state.unreadTail = unread }
    }
    self.recoveryReport = report
    if !readOnly, let newest = state.segments.last {
      state.writer = openFile(newest.path, O_WRONLY | O_APPEND)
      guard state.writer >= 0 else {
        throw Failure(description: "cannot open \(newest.path): \(errorText())")
      }
    }
    let lastSeq = state.segments.reversed().lazy.compactMap { $0.state.withLock { $0.lastSeq } }
      .first
    state.durableSeq = lastSeq
    state.writtenSeq = lastSeq
    state.lastSync = configuration.clock()
    self.state = Mutex(state)
  }

  deinit {
    state.withLock { state in
      if state.writer >= 0 { closeFile(state.writer) }
    }
  }

  static func fileSize(_ path: String) -> Int {
    var info = stat()
    return stat(path, &info) == 0 ? Int(info.st_size) : 0
  }

  static func segmentNames(_ directory: String) throws -> [String] {
    guard let dir = opendir(directory) else {
      if errno == ENOENT { return [] }
      throw Failure(description: "cannot list \(directory): \(errorText())")
    }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name.hasSuffix(".seg") && name.count == 24 { names.append(name) }
    }
    return names.sorted()
  }

  // MARK: Writing

  /// Appends events in order (time and seq must not decrease within a segment; a decrease starts
  /// a new one). They are readable as soon as this returns; fsync follows the sync policy.
  /// A failure is kept in `writeFailure` until an append succeeds.
  public func append(_ records: [LogRecord]) throws {
    guard !records.isEmpty else { return }
    try state.withLock { state in
      guard !state.closed else { throw Failure(description: "the log is closed") }
      do {
        try append(records, &state)
        state.writeFailure = nil
      } catch {
        state.writeFailure = "\(error)"
        throw error
      }
    }
  }

  private func append(_ records: [LogRecord], _ state: inout State) throws {
    var pending: [UInt8] = []
    var notes: [(time: Int64, seq: Int64, offset: Int, end: Int)] = []
    var segment = state.segments.last
    var base = segment?.fileSize ?? 0
    for (index, record) in records.enumerated() {
      // A frame's events share its seq and stay in one segment, so resuming by seq never
      // finds half a frame stored.
      let startsFrame = index == 0 || record.seq != records[index - 1].seq
      if let current = segment, startsFrame || !fits(current, record),
        shouldRoll(current, base + pending.count, record)
      {
        try flush(&state, current, &pending, &notes)
        segment = nil
      }
      if segment == nil {
        try startSegment(&state, record)
        segment = state.segments.last
        base = segment!.fileSize
      }
      let offset = base + pending.count
      guard
        RecordCodec.encode(
          record, baseTime: segment!.baseTime, baseSeq: segment!.baseSeq, into: &pending)
      else {
        // Unreachable: a fresh segment's bases are this record's own time and seq.
        throw Failure(description: "record does not fit a fresh segment")
      }
      notes.append((record.timeUS, record.seq, offset, base + pending.count))
    }
    if let segment { try flush(&state, segment, &pending, &notes) }
    try syncIfDue(&state, force: false)
  }

  private func fits(_ segment: SegmentFile, _ record: LogRecord) -> Bool {
    (0...Int64(UInt32.max)).contains(record.timeUS - segment.baseTime)
      && (0...Int64(UInt32.max)).contains(record.seq - segment.baseSeq)
  }

  private func shouldRoll(_ segment: SegmentFile, _ size: Int, _ record: LogRecord) -> Bool {
    let timeOffset = record.timeUS - segment.baseTime
    return size >= configuration.segmentMaxBytes
      || timeOffset >= configuration.segmentMaxMicroseconds
      || !fits(segment, record)
  }

  private func startSegment(_ state: inout State, _ record: LogRecord) throws {
    if state.writer >= 0 {
      try syncIfDue(&state, force: true)  // seal the previous segment durably
      closeFile(state.writer)
      state.writer = -1
    }
    // time_us strictly increases, so the new segment's name sorts after every existing one.
    let segment = try SegmentFile.create(
      directory: segmentsDirectory, baseTime: record.timeUS, baseSeq: record.seq,
      dictionaryID: configuration.dictionaryID)
    state.writer = openFile(segment.path, O_WRONLY | O_APPEND)
    guard state.writer >= 0 else {
      throw Failure(description: "cannot open \(segment.path): \(errorText())")
    }
    state.segments.append(segment)
  }

  private func flush(
    _ state: inout State, _ segment: SegmentFile, _ pending: inout [UInt8],
    _ notes: inout [(time: Int64, seq: Int64, offset: Int, end: Int)]
  ) throws {
    guard !pending.isEmpty else { return }
    do {
      try SegmentFile.writeAll(state.writer, pending, segment.path)
    } catch {
      // A short write (a full disk) must not leave half a record before the next append's
      // bytes: cut the file back to its last committed record.
      _ = ftruncate(state.writer, off_t(notes.first!.offset))
      throw error
    }
    state.unsyncedBytes += pending.count
    state.writtenSeq = notes.last!.seq
    segment.state.withLock { segmentState in
      for note in notes {
        segmentState.noteAppended(
          time: note.time, seq: note.seq, offset: note.offset, end: note.end)
      }
    }
    pending.removeAll(keepingCapacity: true)
    notes.removeAll(keepingCapacity: true)
  }

  /// fsyncs now if the policy says it is time (call it from a timer so quiet periods still sync).
  public func syncIfDue() throws {
    try state.withLock { try syncIfDue(&$0, force: false) }
  }

  /// fsyncs whatever was written.
  public func sync() throws {
    try state.withLock { try syncIfDue(&$0, force: true) }
  }

  private func syncIfDue(_ state: inout State, force: Bool) throws {
    guard state.writer >= 0, state.unsyncedBytes > 0 else { return }
    let now = configuration.clock()
    let due: Bool
    switch configuration.sync {
    case .never: due = force
    case .bytes(let limit): due = force || state.unsyncedBytes >= limit
    case .interval(let ms): due = force || now - state.lastSync >= Int64(ms) * 1_000
    }
    guard due else { return }
    guard fdatasync(state.writer) == 0 else {
      let failure = Failure(description: "fsync: \(errorText())")
      state.writeFailure = failure.description
      throw failure
    }
    state.unsyncedBytes = 0
    state.lastSync = now
    state.durableSeq = state.writtenSeq
  }

  /// Why the last append or fsync failed (a full disk, an I/O error); nil again once an append
  /// succeeds. While it is set, the log is not storing what ingest gives it.
  public var writeFailure: String? { state.withLock { $0.writeFailure } }

  /// The relay seq of the last event known to be on disk (resume the relay after it).
  public var lastDurableSeq: Int64? {
    state.withLock { configuration.sync == .never ? $0.writtenSeq : $0.durableSeq }
  }

  /// The relay seq of the last event written (readable now, maybe not yet fsynced): where a
  /// running ingest resumes after a reconnect.
  public var lastWrittenSeq: Int64? { state.withLock { $0.writtenSeq } }

  /// The largest stored `time_us` (start the sequencer above it).
  public var lastTimeUS: Int64? {
    state.withLock {
      $0.segments.reversed().lazy.compactMap { $0.state.withLock { $0.lastTime } }.first
    }
  }

  public var stats: Stats {
    state.withLock { state in
      var stats = Stats(
        segments: state.segments.count, events: 0, bytes: 0, oldestTimeUS: nil, newestTimeUS: nil,
        corruptions: recoveryReport.count { $0.kind != .cutTail },
        deletedSegments: state.deletedSegments,
        unreadTail: state.unreadTail)
      for segment in state.segments {
        segment.state.withLock { s in
          stats.events += s.count
          stats.bytes += s.committedEnd
          if stats.oldestTimeUS == nil { stats.oldestTimeUS = s.firstTime }
          if let last = s.lastTime { stats.newestTimeUS = last }
        }
      }
      return stats
    }
  }

  /// Syncs and closes; later appends fail.
  public func close() throws {
    try state.withLock { state in
      try syncIfDue(&state, force: true)
      if state.writer >= 0 { closeFile(state.writer) }
      state.writer = -1
      state.closed = true
    }
  }

  // MARK: Retention

  /// Deletes whole segments whose newest event is older than the retention window, then the
  /// oldest ones while the total exceeds `maxDiskBytes`. The newest segment always stays.
  /// Returns how many were deleted.
  @discardableResult
  public func enforceRetention() -> Int {
    let cutoff = configuration.clock() - configuration.retentionMicroseconds
    let doomed: [SegmentFile] = state.withLock { state in
      var doomed: [SegmentFile] = []
      var total = state.segments.reduce(0) { $0 + $1.fileSize }
      while state.segments.count > 1 {
        let oldest = state.segments[0]
        let expired = (oldest.state.withLock { $0.lastTime } ?? Int64.min) < cutoff
        let overBudget = configuration.maxDiskBytes.map { total > $0 } ?? false
        guard expired || overBudget else { break }
        total -= oldest.fileSize
        oldest.state.withLock { $0.deleted = true }
        doomed.append(state.segments.removeFirst())
        state.deletedSegments += 1
        if let last = oldest.state.withLock({ $0.lastTime }) { state.deletedThrough = last }
      }
      return doomed
    }
    // Unlinking outside the lock: readers holding the file open finish it undisturbed.
    for segment in doomed { unlink(segment.path) }
    return doomed.count
  }

  /// The background task the server runs: every `interval`, delete expired segments and fsync
  /// if the sync policy says it is time (so a quiet relay still gets its data synced).
  /// Returns when the calling task is cancelled.
  public func runMaintenance(every interval: Duration = .seconds(1)) async {
    while !Task.isCancelled {
      enforceRetention()
      try? syncIfDue()
      try? await Task.sleep(for: interval)
    }
  }

  // MARK: Reading

  /// The newest `time_us` that retention has deleted since the log was opened: a reader whose
  /// position is older has lost events it never read.
  public var deletedThroughTimeUS: Int64? { state.withLock { $0.deletedThrough } }

  /// A reader positioned at the first event with `time_us ≥ cursor` (PROTOCOL §6): nil or ≤ 0,
  /// or older than the oldest event, starts at the oldest; newer than the newest starts at the end.
  public func reader(from cursor: Int64?, filter: EventFilter = .all) -> LogReader {
    LogReader(log: self, cursor: cursor, filter: filter)
  }

  var segments: [SegmentFile] { state.withLock { $0.segments } }
}
