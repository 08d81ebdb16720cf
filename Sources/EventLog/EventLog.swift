import Dispatch
import Events
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Contrail's 24-hour on-disk ring buffer (ARCHITECTURE §3, format in docs/FORMAT.md): append-only
/// segment files of compressed events with their filter keys, exact cursor seeks (by `time_us`
/// and by v2 event seq), many concurrent readers, group commit, retention by age and size, and
/// crash recovery on open.
///
/// One writer (the ingest pipeline) calls `append`; readers are created from any thread.
///
/// Every record carries two strictly increasing keys: its `time_us` and its event seq (the v2
/// wire's `seq`, 1-based). The event seq is never reused: `lastEventSeq` survives restarts and
/// retention, because the newest segment, which retention never deletes, records it.
///
/// Durability (docs/FORMAT.md, "Durability"): `append` returns once its records are written to the
/// file (readable, and safe from a process crash); it never waits for an fsync. fsync is a group
/// commit on a background queue, outside every lock that appenders, readers or event loops take:
/// a sync covers everything written before it started, and only then does `lastDurableSeq`
/// advance. A power loss can lose what was written after the last completed sync (at most the
/// sync interval, plus the time one sync takes).
public final class EventLog: Sendable {
  public enum SyncPolicy: Sendable, Equatable {
    /// A sync starts once this many milliseconds have passed since the last one started and
    /// something was written since: when an append (or `syncIfDue`) finds it due, or by a timer
    /// when nothing else comes, so nothing written stays unsynced much longer than this.
    case interval(milliseconds: Int)
    /// A sync starts once this many bytes have been written since the last one started.
    case bytes(Int)
    /// No background syncs and no sync thread (tests, throwaway data): only `sync()` and
    /// `close()` fsync, and only the newest segment (rolls do not sync what they seal).
    /// `lastDurableSeq` is then `lastWrittenSeq`.
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
    /// The `write` and `fdatasync` the log uses for its data (inject a slow or failing disk).
    public var storage: Storage = .system

    public init(directory: String) { self.directory = directory }
  }

  /// Totals for `inspect` and metrics.
  public struct Stats: Sendable, Equatable {
    public var segments: Int
    public var events: Int
    public var bytes: Int
    public var oldestTimeUS: Int64?
    public var newestTimeUS: Int64?
    /// The event seqs of the oldest and newest retained records.
    public var oldestEventSeq: Int64?
    public var newestEventSeq: Int64?
    /// Damaged ranges found when the log was opened: corrupt ranges in any segment and damaged
    /// tails of sealed ones (`recoveryReport` without the newest segment's cut tail).
    public var corruptions: Int
    public var deletedSegments: Int
    /// Read-only opens: bytes after the newest segment's last whole record (a write in flight,
    /// or a torn tail the writer will cut on its next open).
    public var unreadTail: Int
  }

  /// One segment, for `inspect`.
  public struct SegmentSummary: Sendable, Equatable {
    /// The file name in `<data directory>/segments`.
    public var name: String
    public var bytes: Int
    public var events: Int
    /// The header's base event seq: the first record's event seq, or the one the segment was
    /// created for when no record made it into the file.
    public var baseEventSeq: Int64
    public var firstEventSeq: Int64?
    public var lastEventSeq: Int64?
    public var firstTimeUS: Int64?
    public var lastTimeUS: Int64?
  }

  public struct Failure: Error, CustomStringConvertible {
    public let description: String
  }

  /// Event seqs must stay below this: v2 cursors at or above 10^15 are timestamps
  /// (PROTOCOL-v2 §1.3).
  public static let eventSeqLimit: Int64 = 1_000_000_000_000_000

  /// The `time_us` values and relay seqs a record can have: a segment's header holds the first
  /// record's as bases that later records' 32-bit offsets are added to, so they leave room for
  /// those (docs/FORMAT.md). Inputs are checked against it before they reach the log.
  public static let storableRange = RecordCodec.Bases.range

  let configuration: Configuration
  let segmentsDirectory: String
  /// What opening the log found damaged and what it did about it, oldest segment first: corrupt
  /// ranges skipped, sealed segments' damaged tails, the newest segment's cut tail. Empty when
  /// every byte was a whole record.
  public let recoveryReport: [RecoveryNote]

  // Locks, from the outside in; none is ever held across a write(2) or fsync except as noted,
  // and none of those is taken by readers or event loops:
  // - `writer` (the appender only, and `close`): held across an append's write(2)s, which keeps
  //   appends ordered and whole.
  // - `syncRound` (syncs only): held across one sync's fdatasyncs, so syncs run one at a time.
  // - `state`, `syncState`, a segment's own state: brief snapshots and updates, never across I/O.
  //   These and the atomics are all that readers, `stats` and the facts below touch.

  /// The segment list and what changes rarely.
  struct State {
    var segments: [SegmentFile] = []
    /// Why the last append failed; nil once one succeeds.
    var appendFailure: String? = nil
    var deletedSegments = 0
    var unreadTail = 0
  }

  /// The appender's own: the segment it writes and its descriptor.
  struct Writer {
    var segment: SegmentFile? = nil
    var file: OpenFile? = nil
    /// `State.appendFailure` is set.
    var failed = false
    var closed: String? = nil
  }

  /// What the next sync must cover, and the background sync's bookkeeping.
  struct SyncState {
    /// Every file written (or created) since the last sync started, sealed ones included: the
    /// next sync fdatasyncs them all. Holding them keeps their descriptors open until then.
    var unsynced: [OpenFile] = []
    var unsyncedBytes = 0
    /// A segment was created since the last sync started: fsync the directory too.
    var directoryUnsynced = false
    var lastSyncStart = ContinuousClock.now
    /// Syncs started so far.
    var rounds = 0
    /// A sync is due and has not started yet.
    var requested = false
    /// The background queue has been asked to run the requested syncs.
    var scheduled = false
    /// A timer will check the interval (`.interval` only): set while one is pending.
    var timerArmed = false
    /// Why the first failed sync failed; final for this process (see `syncNow`).
    var failure: String? = nil
    var closed = false
  }

  let state: Mutex<State>
  private let writer: Mutex<Writer>
  private let syncState: Mutex<SyncState>
  private let syncRound = Mutex<Void>(())
  /// Runs the background syncs, one at a time (never created work for `.never`).
  private let syncQueue = DispatchQueue(label: "contrail.eventlog.sync")

  /// The facts event loops read, without a lock (`none` is nil).
  private static let none = Int64.min
  private let lastTime: Atomic<Int64>
  private let deletedThrough: Atomic<Int64>
  private let deletedThroughEventSeqValue: Atomic<Int64>
  private let writtenSeq: Atomic<Int64>
  private let durableSeq: Atomic<Int64>
  /// The last event seq written, or recorded by the newest segment's header (0: none ever).
  private let writtenEventSeq: Atomic<Int64>

  /// Opens (creating if needed) the log in `configuration.directory`, scanning every segment
  /// (`recoveryReport` says what was damaged) and cutting the newest one's torn tail, then
  /// (unless the policy is `.never`) fsyncing what a previous process may have left unsynced, so
  /// that `lastDurableSeq` is true from the start. `readOnly` never writes or truncates (for
  /// `inspect` on a live directory).
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
    // records in it: remove it rather than refuse to start. (A whole format-1 header is shorter
    // than a format-2 one: that file is refused below with the others, not removed.)
    if !readOnly, let newest = names.last,
      Self.fileSize(segmentsDirectory + "/" + newest) < SegmentFile.headerSize,
      SegmentFile.formatVersion(path: segmentsDirectory + "/" + newest) != 1
    {
      unlink(segmentsDirectory + "/" + newest)
      names.removeLast()
    }
    var report: [RecoveryNote] = []
    for (index, name) in names.enumerated() {
      let newest = index == names.count - 1
      do {
        let (segment, notes, unread) = try SegmentFile.load(
          path: segmentsDirectory + "/" + name, tail: newest ? (readOnly ? .leave : .cut) : .report
        )
        state.segments.append(segment)
        report += notes
        if newest { state.unreadTail = unread }
      } catch let old as SegmentFile.OldFormat {
        throw Failure(
          description: Self.oldFormatMessage(configuration.directory, name, version: old.version))
      }
    }
    self.recoveryReport = report
    var writer = Writer()
    if readOnly {
      writer.closed = "the log is open read-only"
    } else {
      if configuration.sync != .never {
        try Self.syncFiles(state.segments.map(\.path), segmentsDirectory, configuration.storage)
      }
      if let newest = state.segments.last {
        let fd = openFile(newest.path, O_WRONLY | O_APPEND)
        guard fd >= 0 else {
          throw Failure(description: "cannot open \(newest.path): \(errorText())")
        }
        writer.segment = newest
        writer.file = OpenFile(fd: fd, path: newest.path)
      }
    }
    let newest = state.segments.reversed().lazy.compactMap { segment in
      segment.state.withLock { s in s.lastSeq.map { (seq: $0, time: s.lastTime!) } }
    }.first
    // The last event seq ever assigned: the newest record's, or, when the newest segment holds
    // no record (its only one was cut, or a write failed right after the header), one below
    // the base its header recorded. Retention never deletes the newest segment.
    let lastEventSeq = state.segments.reduce(Int64(0)) { last, segment in
      max(last, segment.bases.eventSeq - 1, segment.state.withLock { $0.lastEventSeq } ?? 0)
    }
    self.state = Mutex(state)
    self.writer = Mutex(writer)
    self.syncState = Mutex(SyncState())
    self.lastTime = Atomic(newest?.time ?? Self.none)
    self.deletedThrough = Atomic(Self.none)
    self.deletedThroughEventSeqValue = Atomic(Self.none)
    self.writtenSeq = Atomic(newest?.seq ?? Self.none)
    self.durableSeq = Atomic(newest?.seq ?? Self.none)
    self.writtenEventSeq = Atomic(lastEventSeq)
  }

  /// Why a data directory written by an older Contrail is refused, and what to do.
  static func oldFormatMessage(_ directory: String, _ segment: String, version: UInt32) -> String {
    "the data directory \(directory) holds segments written by an older Contrail (log format "
      + "\(version), e.g. segments/\(segment)) without v2 event sequence numbers; this Contrail "
      + "reads log format \(SegmentFile.version) only. Move the data directory aside or delete "
      + "it: the log is a 24-hour buffer and refills from the relay"
  }

  /// fdatasyncs existing files (and the directory) on open: a previous process that crashed may
  /// have left writes only in the page cache.
  private static func syncFiles(_ paths: [String], _ directory: String, _ storage: Storage) throws {
    for path in paths {
      let fd = openFile(path, O_RDONLY)
      guard fd >= 0 else { throw Failure(description: "cannot open \(path): \(errorText())") }
      defer { closeFile(fd) }
      if let code = syncRetrying(fd, storage) {
        throw Failure(description: "fsync \(path): \(errorText(code))")
      }
    }
    if !paths.isEmpty, let failure = syncDirectory(directory) {
      throw Failure(description: failure)
    }
  }

  private static func syncRetrying(_ fd: Int32, _ storage: Storage) -> Int32? {
    while true {
      let code = storage.sync(fd)
      if code == 0 { return nil }
      if code != EINTR { return code }
    }
  }

  /// fsyncs a directory (a new segment's name); the failure, if any.
  private static func syncDirectory(_ path: String) -> String? {
    let fd = openFile(path, O_RDONLY)
    guard fd >= 0 else { return "cannot open \(path): \(errorText())" }
    defer { closeFile(fd) }
    while fsync(fd) != 0 {
      if errno != EINTR { return "fsync \(path): \(errorText())" }
    }
    return nil
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

  private typealias Note = (time: Int64, seq: Int64, eventSeq: Int64, offset: Int, end: Int)

  /// Appends events in order. Their `time_us` and their event seqs must each strictly increase,
  /// from the last ones written (`lastTimeUS`, `lastEventSeq`) on, and event seqs stay below
  /// `eventSeqLimit`: otherwise nothing is written and this throws. (Relay seqs need not
  /// increase: a decrease, a new relay epoch, starts a new segment.) They are written (readable,
  /// and safe from a process crash) when this returns; it never waits for an fsync, and only
  /// asks for one when the sync policy says it is due (or a segment was sealed). A failure to
  /// write is kept in `writeFailure` until an append succeeds; an append that fails part-way
  /// keeps the whole frames written before the failure (`lastTimeUS` and `lastEventSeq` say up
  /// to where).
  public func append(_ records: [LogRecord]) throws {
    guard !records.isEmpty else { return }
    var sealed = false
    defer { requestSync(force: sealed) }
    try writer.withLock { writer in
      if let closed = writer.closed { throw Failure(description: closed) }
      try checkOrder(records)
      do {
        try append(records, &writer, sealed: &sealed)
        if writer.failed {
          writer.failed = false
          state.withLock { $0.appendFailure = nil }
        }
      } catch {
        writer.failed = true
        state.withLock { $0.appendFailure = "\(error)" }
        throw error
      }
    }
  }

  /// Throws unless `records` continue the log's `time_us` and event seq orders (called by the
  /// writer, which alone moves them).
  private func checkOrder(_ records: [LogRecord]) throws {
    var lastTime = self.lastTime.load(ordering: .relaxed)
    var lastEventSeq = writtenEventSeq.load(ordering: .relaxed)
    for record in records {
      guard Self.storableRange.contains(record.timeUS), Self.storableRange.contains(record.seq)
      else {
        throw Failure(
          description:
            "append: time_us \(record.timeUS) or relay seq \(record.seq) is outside "
            + "\(Self.storableRange)")
      }
      guard record.timeUS > lastTime else {
        throw Failure(
          description:
            "append: time_us \(record.timeUS) does not follow \(lastTime) (it must increase)")
      }
      guard record.eventSeq > lastEventSeq, record.eventSeq < Self.eventSeqLimit else {
        throw Failure(
          description:
            "append: event seq \(record.eventSeq) does not follow \(lastEventSeq) (it must increase, "
            + "below \(Self.eventSeqLimit))")
      }
      lastTime = record.timeUS
      lastEventSeq = record.eventSeq
    }
  }

  private func append(_ records: [LogRecord], _ writer: inout Writer, sealed: inout Bool) throws {
    var pending: [UInt8] = []
    var notes: [Note] = []
    var base = writer.segment?.fileSize ?? 0
    for (index, record) in records.enumerated() {
      // A frame's events share its seq and stay in one segment, so resuming by seq never
      // finds half a frame stored.
      let startsFrame = index == 0 || record.seq != records[index - 1].seq
      if let current = writer.segment, startsFrame || !fits(current, record),
        shouldRoll(current, base + pending.count, record)
      {
        try flush(&writer, &pending, &notes)
        seal(&writer)
        sealed = true
      }
      if writer.segment == nil {
        try startSegment(&writer, record)
        base = writer.segment!.fileSize
      }
      let segment = writer.segment!
      let offset = base + pending.count
      guard RecordCodec.encode(record, bases: segment.bases, into: &pending) else {
        // Unreachable: a fresh segment's bases are this record's own time and seqs.
        throw Failure(description: "record does not fit a fresh segment")
      }
      notes.append((record.timeUS, record.seq, record.eventSeq, offset, base + pending.count))
    }
    try flush(&writer, &pending, &notes)
  }

  private func fits(_ segment: SegmentFile, _ record: LogRecord) -> Bool {
    segment.bases.offsets(record.timeUS, record.seq, record.eventSeq) != nil
  }

  private func shouldRoll(_ segment: SegmentFile, _ size: Int, _ record: LogRecord) -> Bool {
    let timeOffset = record.timeUS - segment.baseTime
    return size >= configuration.segmentMaxBytes
      || timeOffset >= configuration.segmentMaxMicroseconds
      || !fits(segment, record)
  }

  /// Stops writing the current segment. Its descriptor stays open while `unsynced` holds it (the
  /// next sync fdatasyncs, then closes it) or a sync in progress does.
  private func seal(_ writer: inout Writer) {
    if configuration.sync == .never, let file = writer.file {
      syncState.withLock { $0.unsynced.removeAll { $0 === file } }
    }
    writer.segment = nil
    writer.file = nil
  }

  private func startSegment(_ writer: inout Writer, _ record: LogRecord) throws {
    // time_us strictly increases, so the new segment's name sorts after every existing one.
    let (segment, fd) = try SegmentFile.create(
      directory: segmentsDirectory,
      bases: RecordCodec.Bases(time: record.timeUS, seq: record.seq, eventSeq: record.eventSeq),
      dictionaryID: configuration.dictionaryID, storage: configuration.storage)
    let file = OpenFile(fd: fd, path: segment.path)
    syncState.withLock { sync in
      sync.unsynced.append(file)  // its header
      sync.directoryUnsynced = true  // its name
    }
    state.withLock { $0.segments.append(segment) }
    writer.segment = segment
    writer.file = file
  }

  private func flush(_ writer: inout Writer, _ pending: inout [UInt8], _ notes: inout [Note])
    throws
  {
    guard !pending.isEmpty, let segment = writer.segment, let file = writer.file else { return }
    do {
      try SegmentFile.writeAll(file.fd, pending, segment.path, configuration.storage)
    } catch {
      // A short write (a full disk) must not leave half a record before the next append's
      // bytes: cut the file back to its last committed record. If even that fails, seal the
      // segment so nothing is appended after the half record (the next append starts a new
      // segment; the next open reports the damaged tail).
      if configuration.storage.truncate(file.fd, notes.first!.offset) != 0 { seal(&writer) }
      throw error
    }
    segment.state.withLock { segmentState in
      for note in notes {
        segmentState.noteAppended(
          time: note.time, seq: note.seq, eventSeq: note.eventSeq, offset: note.offset,
          end: note.end)
      }
    }
    lastTime.store(notes.last!.time, ordering: .releasing)
    writtenEventSeq.store(notes.last!.eventSeq, ordering: .releasing)
    let bytes = pending.count
    let seq = notes.last!.seq
    // The file and the seq together: a sync that sees this seq also syncs this file.
    syncState.withLock { sync in
      if !sync.unsynced.contains(where: { $0 === file }) { sync.unsynced.append(file) }
      sync.unsyncedBytes += bytes
      writtenSeq.store(seq, ordering: .releasing)
    }
    pending.removeAll(keepingCapacity: true)
    notes.removeAll(keepingCapacity: true)
  }

  // MARK: Syncing

  /// Asks the background queue for a sync if one is due (or `force`), without waiting for it;
  /// under `.interval`, arms a timer for when the interval will have passed if it is not due yet.
  private func requestSync(force: Bool, timer: Int? = nil) {
    guard configuration.sync != .never else { return }
    let now = ContinuousClock.now
    let (start, arm) = syncState.withLock { sync -> (Bool, (after: Duration, rounds: Int)?) in
      if timer != nil { sync.timerArmed = false }
      guard !sync.closed, !sync.unsynced.isEmpty, !sync.requested else { return (false, nil) }
      var due = force || timer == sync.rounds  // no sync has started since the timer was armed
      var arm: (after: Duration, rounds: Int)? = nil
      switch configuration.sync {
      case .never: return (false, nil)
      case .bytes(let limit): due = due || sync.unsyncedBytes >= limit
      case .interval(let ms):
        let remaining = sync.lastSyncStart + .milliseconds(ms) - now
        due = due || remaining <= .zero
        if !due && !sync.timerArmed {
          sync.timerArmed = true
          arm = (remaining, sync.rounds)
        }
      }
      guard due else { return (false, arm) }
      sync.requested = true
      guard !sync.scheduled else { return (false, nil) }
      sync.scheduled = true
      return (true, nil)
    }
    if start {
      syncQueue.async { self.runRequestedSyncs() }
    } else if let arm {
      let micros =
        Int(arm.after.components.seconds) * 1_000_000
        + Int(arm.after.components.attoseconds / 1_000_000_000_000) + 1
      syncQueue.asyncAfter(deadline: .now() + .microseconds(micros)) { [weak self] in
        self?.requestSync(force: false, timer: arm.rounds)
      }
    }
  }

  private func runRequestedSyncs() {
    while syncState.withLock({ sync in
      guard sync.requested else {
        sync.scheduled = false
        return false
      }
      sync.requested = false
      return true
    }) {
      syncNow()
    }
  }

  /// One sync: fdatasyncs every file written since the previous sync started (and the directory
  /// after a roll), then publishes as durable the seq written when it started. A failure is
  /// final for this process: Linux may drop the pages a failed fsync could not write and report
  /// success on a retry, so after one nothing becomes durable any more and `syncFailure` stays
  /// set until a restart rescans the log. Returns the failure.
  @discardableResult
  private func syncNow() -> String? {
    syncRound.withLock { _ in
      let (files, directory, bytes, seq) = syncState.withLock { sync in
        defer {
          sync.unsynced = []
          sync.unsyncedBytes = 0
          sync.directoryUnsynced = false
          sync.lastSyncStart = .now
          sync.rounds += 1
        }
        return (
          sync.unsynced, sync.directoryUnsynced, sync.unsyncedBytes,
          writtenSeq.load(ordering: .acquiring)
        )
      }
      var failure: String? = nil
      for file in files {
        if let code = Self.syncRetrying(file.fd, configuration.storage) {
          failure = "fsync \(file.path): \(errorText(code))"
          break
        }
      }
      if failure == nil && directory { failure = Self.syncDirectory(segmentsDirectory) }
      syncState.withLock { sync in
        if let failure {
          sync.failure = sync.failure ?? failure
          sync.unsynced = files + sync.unsynced.filter { file in !files.contains { $0 === file } }
          sync.unsyncedBytes += bytes
          sync.directoryUnsynced = sync.directoryUnsynced || directory
        } else if sync.failure == nil {
          durableSeq.store(seq, ordering: .releasing)
        }
      }
      return failure ?? syncState.withLock { $0.failure }
    }
  }

  /// Asks for a sync if the policy says it is time, without waiting for it (also called by the
  /// maintenance task). Throws once a sync has failed (`syncFailure`, final for this process):
  /// what was written is readable but not known to be durable.
  public func syncIfDue() throws {
    requestSync(force: false)
    if let failure = syncFailure { throw Failure(description: failure) }
  }

  /// fsyncs everything written before this call and waits for it (after a sync in progress, if
  /// any): for shutdown and tools, never the live path. Throws if it fails.
  public func sync() throws {
    if let failure = syncNow() { throw Failure(description: failure) }
  }

  /// Why an fsync failed (an I/O error, a full disk); once set it stays set until the process
  /// restarts: the durable seq no longer moves, and `/readyz` says so.
  public var syncFailure: String? { syncState.withLock { $0.failure } }

  /// Why the last append failed, else why the last sync failed (a full disk, an I/O error): nil
  /// once an append succeeds and the last sync did. While it is set, the log is not storing (or
  /// not making durable) what ingest gives it.
  public var writeFailure: String? { state.withLock { $0.appendFailure } ?? syncFailure }

  /// The relay seq of the last event known to be on disk: the seq written when the last
  /// successful sync started. (`.never`: `lastWrittenSeq`.)
  public var lastDurableSeq: Int64? {
    configuration.sync == .never ? lastWrittenSeq : Self.value(durableSeq)
  }

  /// The relay seq of the last event written (readable now, maybe not yet fsynced): where a
  /// running ingest resumes after a reconnect.
  public var lastWrittenSeq: Int64? { Self.value(writtenSeq) }

  /// The largest stored `time_us` (start the sequencer above it).
  public var lastTimeUS: Int64? { Self.value(lastTime) }

  /// The event seq of the last event written (readable now, maybe not yet fsynced); 0 on a log
  /// that never held one. It never goes back: after a restart, and after retention deleted every
  /// record, it is still the last one assigned (the newest segment records it). The store path
  /// numbers the next events from `lastEventSeq + 1`.
  public var lastEventSeq: Int64 { writtenEventSeq.load(ordering: .acquiring) }

  /// The event seq of the oldest retained record (the v2 retention floor); nil when the log holds
  /// none.
  public var oldestEventSeq: Int64? {
    for segment in segments {
      if let first = segment.state.withLock({ $0.firstEventSeq }) { return first }
    }
    return nil
  }

  private static func value(_ atomic: borrowing Atomic<Int64>) -> Int64? {
    let value = atomic.load(ordering: .acquiring)
    return value == none ? nil : value
  }

  /// The dictionary IDs the segments were written with (0: not recorded), oldest first, each
  /// once: what a reader needs to decompress the payloads.
  public var dictionaryIDs: [UInt32] {
    var seen: [UInt32] = []
    for segment in segments where !seen.contains(segment.dictionaryID) {
      seen.append(segment.dictionaryID)
    }
    return seen
  }

  public var stats: Stats {
    let (segments, deleted, unreadTail) = state.withLock {
      ($0.segments, $0.deletedSegments, $0.unreadTail)
    }
    var stats = Stats(
      segments: segments.count, events: 0, bytes: 0, oldestTimeUS: nil, newestTimeUS: nil,
      oldestEventSeq: nil, newestEventSeq: nil,
      corruptions: recoveryReport.count { $0.kind != .cutTail },
      deletedSegments: deleted, unreadTail: unreadTail)
    for segment in segments {
      segment.state.withLock { s in
        stats.events += s.count
        stats.bytes += s.committedEnd
        if stats.oldestTimeUS == nil { stats.oldestTimeUS = s.firstTime }
        if let last = s.lastTime { stats.newestTimeUS = last }
        if stats.oldestEventSeq == nil { stats.oldestEventSeq = s.firstEventSeq }
        if let last = s.lastEventSeq { stats.newestEventSeq = last }
      }
    }
    return stats
  }

  /// Each segment's file, size, record count and ranges, oldest first.
  public var segmentSummaries: [SegmentSummary] {
    segments.map { segment in
      segment.state.withLock { s in
        SegmentSummary(
          name: String(segment.path.split(separator: "/").last ?? Substring(segment.path)),
          bytes: s.committedEnd, events: s.count, baseEventSeq: segment.bases.eventSeq,
          firstEventSeq: s.firstEventSeq, lastEventSeq: s.lastEventSeq, firstTimeUS: s.firstTime,
          lastTimeUS: s.lastTime)
      }
    }
  }

  /// Stops appends, waits for the background syncs to finish, then syncs whatever is left and
  /// closes the files. Later appends fail. Throws if the final sync fails.
  public func close() throws {
    writer.withLock { writer in
      if writer.closed == nil { writer.closed = "the log is closed" }
      writer.segment = nil
      writer.file = nil
    }
    syncState.withLock { $0.closed = true }
    if configuration.sync != .never { syncQueue.sync {} }  // the background syncs are done
    try sync()
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
        let (lastTime, lastEventSeq) = oldest.state.withLock { ($0.lastTime, $0.lastEventSeq) }
        if let lastTime { deletedThrough.store(lastTime, ordering: .releasing) }
        if let lastEventSeq {
          deletedThroughEventSeqValue.store(lastEventSeq, ordering: .releasing)
        }
      }
      return doomed
    }
    // Unlinking outside the lock: readers holding the file open finish it undisturbed, and a
    // sync holding its descriptor syncs the (unlinked) file harmlessly.
    for segment in doomed { unlink(segment.path) }
    return doomed.count
  }

  /// The background task the server runs: every `interval`, delete expired segments and ask for
  /// a sync if the policy says it is time (`syncIfDue`; it never waits for one).
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
  public var deletedThroughTimeUS: Int64? { Self.value(deletedThrough) }

  /// The newest event seq that retention has deleted since the log was opened (the same moment
  /// as `deletedThroughTimeUS`, by event seq).
  public var deletedThroughEventSeq: Int64? { Self.value(deletedThroughEventSeqValue) }

  /// The `time_us` and event seq of the first retained record whose event seq is `≥ eventSeq`;
  /// nil when there is none (every record is older: the target is in the future). Exact: the
  /// segment headers' bases pick the segment, its sparse index the place to start, and a scan
  /// of record headers (no payload is copied) the record. Safe from any thread, beside appends
  /// and retention; it takes only brief locks and never the writer's.
  public func locate(eventSeqAtLeast eventSeq: Int64) throws -> (timeUS: Int64, eventSeq: Int64)? {
    try locate(
      base: \.bases.eventSeq, last: \.lastEventSeq,
      start: { $0.indexOffset(forEventSeq: eventSeq) },
      reached: { _, seq in seq >= eventSeq }, target: eventSeq)
  }

  /// The `time_us` and event seq of the first retained record with `time_us ≥ timeUS`; nil when
  /// there is none. Exact, like `locate(eventSeqAtLeast:)`.
  public func locate(timeUSAtLeast timeUS: Int64) throws -> (timeUS: Int64, eventSeq: Int64)? {
    try locate(
      base: \.bases.time, last: \.lastTime, start: { $0.indexOffset(for: timeUS) },
      reached: { time, _ in time >= timeUS }, target: timeUS)
  }

  /// The first retained record `reached` holds for, `target` being the value of a key that
  /// strictly increases through the log (`base` and `last` are the key's segment header base and
  /// newest value, `start` the index offset for it).
  private func locate(
    base: (SegmentFile) -> Int64, last: (SegmentFile.State) -> Int64?,
    start: (SegmentFile) -> Int, reached: (Int64, Int64) -> Bool, target: Int64
  ) throws -> (timeUS: Int64, eventSeq: Int64)? {
    // A snapshot of the segment list; retention may delete a segment of it meanwhile. Then the
    // scan finishes undisturbed on the descriptor already open, or the file is gone and the
    // search starts again on a fresh list, where the target has moved to a later segment.
    searching: while true {
      let segments = self.segments
      // The last segment whose header base is ≤ target holds it, unless all of its records are
      // below it: then it is the first record of a later segment.
      var low = 0
      var high = segments.count
      while low < high {
        let mid = (low + high) / 2
        if base(segments[mid]) <= target { low = mid + 1 } else { high = mid }
      }
      for segment in segments[max(0, low - 1)...] {
        let (newest, end, deleted) = segment.state.withLock {
          (last($0), $0.committedEnd, $0.deleted)
        }
        if deleted { continue searching }
        guard let newest, newest >= target else { continue }
        let fd = openFile(segment.path, O_RDONLY)
        if fd < 0 {
          guard errno == ENOENT else {
            throw Failure(description: "cannot open \(segment.path): \(errorText())")
          }
          // Deleted by this log's retention (marked before the unlink): search again. Else by
          // another process (a read-only log beside a server): its records are gone.
          if segment.state.withLock({ $0.deleted }) { continue searching }
          continue
        }
        defer { closeFile(fd) }
        var scanner = SegmentScanner(segment: segment, fd: fd, from: start(segment), end: end)
        scan: while true {
          switch scanner.next(keep: { _, _, _, _ in false }) {
          case .skipped(let timeUS, let eventSeq, _, _):
            if reached(timeUS, eventSeq) { return (timeUS, eventSeq) }
          case .record(let record, _, _):
            if reached(record.timeUS, record.eventSeq) { return (record.timeUS, record.eventSeq) }
          case .corrupt: continue
          case .end: break scan
          }
        }
      }
      return nil
    }
  }

  /// A reader positioned at the first event with `time_us ≥ cursor` (PROTOCOL §6): nil or ≤ 0,
  /// or older than the oldest event, starts at the oldest; newer than the newest starts at the end.
  public func reader(from cursor: Int64?, filter: EventFilter = .all) -> LogReader {
    LogReader(log: self, cursor: cursor, filter: filter)
  }

  var segments: [SegmentFile] { state.withLock { $0.segments } }
}
