import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// One segment file: its fixed header, what has been written to it, and a sparse index by time
/// and event seq. The writer appends; any number of readers read up to `committedEnd`
/// concurrently.
final class SegmentFile: Sendable {
  static let headerSize = 40
  static let magic = Array("CTRLSEG1".utf8)
  static let version: UInt32 = 2
  static let indexStride = 64 << 10

  let path: String
  /// The header's bases: every record's time, relay seq and event seq is its base plus the
  /// record's 32-bit offset. `bases.eventSeq` is the event seq of the segment's first record
  /// (or of the one it was created for, if that was never written).
  let bases: RecordCodec.Bases
  let dictionaryID: UInt32

  var baseTime: Int64 { bases.time }

  struct State {
    /// Bytes readers may read: the header and whole records only.
    var committedEnd = SegmentFile.headerSize
    var count = 0
    var firstTime: Int64? = nil
    var lastTime: Int64? = nil
    var lastSeq: Int64? = nil
    var firstEventSeq: Int64? = nil
    var lastEventSeq: Int64? = nil
    /// (time_us, event seq, offset) of a record every `indexStride` bytes, all ascending.
    var index: [(time: Int64, eventSeq: Int64, offset: Int)] = []
    var lastIndexedOffset = -SegmentFile.indexStride
    var deleted = false
  }

  let state: Mutex<State>

  struct Failure: Error, CustomStringConvertible {
    let description: String
  }

  /// A segment written by an older Contrail, in a format this one does not read (the log
  /// refuses the data directory; see `EventLog.init`).
  struct OldFormat: Error, CustomStringConvertible {
    let path: String
    let version: UInt32
    var description: String {
      "\(path) has log format version \(version), expected \(SegmentFile.version)"
    }
  }

  private init(path: String, bases: RecordCodec.Bases, dictionaryID: UInt32) {
    self.path = path
    self.bases = bases
    self.dictionaryID = dictionaryID
    self.state = Mutex(State())
  }

  static func fileName(baseTime: Int64) -> String {
    let digits = String(baseTime)
    return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg"
  }

  /// Creates a new segment file holding only its header and returns it with its descriptor, open
  /// for appending. The header is written with `storage` but not synced here: the log's next sync
  /// makes it (and the directory entry) durable before any record in it counts as durable.
  static func create(
    directory: String, bases: RecordCodec.Bases, dictionaryID: UInt32, storage: EventLog.Storage
  ) throws -> (SegmentFile, fd: Int32) {
    let path = directory + "/" + fileName(baseTime: bases.time)
    let header = header(bases: bases, dictionaryID: dictionaryID)
    let fd = openFile(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0o644)
    guard fd >= 0 else { throw Failure(description: "cannot create \(path): \(errorText())") }
    do {
      try writeAll(fd, header, path, storage)
    } catch {
      closeFile(fd)
      unlink(path)  // no header-less segment left behind (a full disk)
      throw error
    }
    let segment = SegmentFile(path: path, bases: bases, dictionaryID: dictionaryID)
    return (segment, fd)
  }

  /// The header of docs/FORMAT.md §2 (format version 2, 40 bytes).
  static func header(bases: RecordCodec.Bases, dictionaryID: UInt32) -> [UInt8] {
    var header = magic
    appendLE(UInt64(version) | UInt64(dictionaryID) << 32, &header)
    appendLE(UInt64(bitPattern: bases.time), &header)
    appendLE(UInt64(bitPattern: bases.seq), &header)
    appendLE(UInt64(bitPattern: bases.eventSeq), &header)
    return header
  }

  /// The format version a file's header names, if it starts with the magic and a version.
  static func formatVersion(path: String) -> UInt32? {
    let fd = openFile(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { closeFile(fd) }
    var start = [UInt8](repeating: 0, count: 12)
    guard pread(fd, &start, 12, 0) == 12, start.starts(with: magic) else { return nil }
    return (8..<12).reduce(0) { $0 | UInt32(start[$1]) << (8 * UInt32($1 - 8)) }
  }

  /// What `load` does with the bytes after a segment's last whole record. (Corrupt ranges
  /// between whole records are skipped and reported whatever the segment.)
  enum Tail {
    /// The newest segment of a log opened for writing: cut them (appends follow the last whole
    /// record) and report the cut.
    case cut
    /// A sealed segment: report them as damage; change nothing.
    case report
    /// The newest segment of a log opened read-only (maybe live, with a write in flight): count
    /// them as unread; change nothing.
    case leave
  }

  /// Opens an existing segment: checks the header and scans every record (building the index),
  /// skipping corrupt ranges, then treats what follows the last whole record as `tail` says.
  /// Returns the segment, the damage found, and the bytes left unread (`.leave`).
  static func load(path: String, tail: Tail) throws -> (
    SegmentFile, notes: [RecoveryNote], unreadTail: Int
  ) {
    let fd = openFile(path, tail == .cut ? O_RDWR : O_RDONLY)
    guard fd >= 0 else { throw Failure(description: "cannot open \(path): \(errorText())") }
    defer { closeFile(fd) }
    var header = [UInt8](repeating: 0, count: headerSize)
    let read = pread(fd, &header, headerSize, 0)
    guard read >= 12, header.starts(with: magic) else {
      throw Failure(description: "\(path) is not a Contrail segment (bad or short header)")
    }
    let versionAndID = loadLE(header, 8)
    let fileVersion = UInt32(truncatingIfNeeded: versionAndID)
    if fileVersion == 1 { throw OldFormat(path: path, version: fileVersion) }
    guard fileVersion == version else {
      throw Failure(
        description: "\(path) has log format version \(fileVersion), expected \(version)")
    }
    guard read == headerSize else {
      throw Failure(description: "\(path) is not a Contrail segment (bad or short header)")
    }
    // Records add 32-bit offsets to the bases: a damaged base must not overflow (a trap). Event
    // seqs start at 1.
    let bases = RecordCodec.Bases(
      time: Int64(bitPattern: loadLE(header, 16)), seq: Int64(bitPattern: loadLE(header, 24)),
      eventSeq: Int64(bitPattern: loadLE(header, 32)))
    guard RecordCodec.Bases.range.contains(bases.time),
      RecordCodec.Bases.range.contains(bases.seq), RecordCodec.Bases.range.contains(bases.eventSeq),
      bases.eventSeq >= 1
    else {
      throw Failure(
        description:
          "\(path) has a bad header (base time \(bases.time), seq \(bases.seq), event seq \(bases.eventSeq))"
      )
    }
    let segment = SegmentFile(
      path: path, bases: bases, dictionaryID: UInt32(truncatingIfNeeded: versionAndID >> 32))
    let name = String(path.split(separator: "/").last ?? Substring(path))
    var scanner = SegmentScanner(segment: segment, fd: fd, from: headerSize, end: Int.max)
    var notes: [RecoveryNote] = []
    var damage: Int? = nil  // where the corrupt range being skipped starts
    while true {
      switch scanner.next(keep: nil) {
      case .record(let record, let offset, let end):
        if let start = damage {
          notes.append(
            RecoveryNote(kind: .corruptRange, segment: name, offset: start, bytes: offset - start))
          damage = nil
        }
        segment.state.withLock {
          $0.noteAppended(
            time: record.timeUS, seq: record.seq, eventSeq: record.eventSeq, offset: offset,
            end: end)
        }
      case .skipped: break
      case .corrupt(let offset):
        damage = offset
      case .end:
        // A range still open runs from the end of the last whole record to the end of the file.
        guard let start = damage else { return (segment, notes, 0) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
          throw Failure(description: "cannot stat \(path): \(errorText())")
        }
        let bytes = Int(info.st_size) - start
        switch tail {
        case .cut:
          guard ftruncate(fd, off_t(start)) == 0, fsync(fd) == 0 else {
            throw Failure(description: "cannot truncate \(path): \(errorText())")
          }
          notes.append(RecoveryNote(kind: .cutTail, segment: name, offset: start, bytes: bytes))
          return (segment, notes, 0)
        case .report:
          notes.append(
            RecoveryNote(kind: .damagedTail, segment: name, offset: start, bytes: bytes))
          return (segment, notes, 0)
        case .leave:
          return (segment, notes, bytes)
        }
      }
    }
  }

  var fileSize: Int { state.withLock { $0.committedEnd } }

  /// The offset to start reading at for the first record with `time_us ≥ cursor`: the last index
  /// point before it (the reader scans forward from there).
  func indexOffset(for cursor: Int64) -> Int {
    indexOffset { $0.time < cursor }
  }

  /// The offset to start reading at for the first record with an event seq `≥ eventSeq`.
  func indexOffset(forEventSeq eventSeq: Int64) -> Int {
    indexOffset { $0.eventSeq < eventSeq }
  }

  /// The offset of the last index point `before` holds for (the index is sorted by it), or the
  /// first record's.
  private func indexOffset(
    before: ((time: Int64, eventSeq: Int64, offset: Int)) -> Bool
  ) -> Int {
    state.withLock { state in
      var low = 0
      var high = state.index.count
      while low < high {
        let mid = (low + high) / 2
        if before(state.index[mid]) { low = mid + 1 } else { high = mid }
      }
      return low == 0 ? SegmentFile.headerSize : state.index[low - 1].offset
    }
  }

  static func appendLE(_ value: UInt64, _ out: inout [UInt8]) {
    for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
  }

  static func loadLE(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
    (0..<8).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
  }

  /// Writes all of `bytes` through `storage` (retrying short writes and EINTR).
  static func writeAll(_ fd: Int32, _ bytes: [UInt8], _ path: String, _ storage: EventLog.Storage)
    throws
  {
    var written = 0
    try bytes.withUnsafeBytes { raw in
      while written < raw.count {
        let n = storage.write(fd, raw.baseAddress! + written, raw.count - written)
        if n < 0 {
          if n == -Int(EINTR) { continue }
          throw Failure(description: "write \(path): \(errorText(Int32(-n)))")
        }
        written += n
      }
    }
  }
}

extension SegmentFile.State {
  mutating func noteAppended(time: Int64, seq: Int64, eventSeq: Int64, offset: Int, end: Int) {
    if firstTime == nil {
      firstTime = time
      firstEventSeq = eventSeq
    }
    lastTime = time
    lastSeq = seq
    lastEventSeq = eventSeq
    count += 1
    if offset - lastIndexedOffset >= SegmentFile.indexStride {
      index.append((time, eventSeq, offset))
      lastIndexedOffset = offset
    }
    committedEnd = end
  }
}

func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

/// POSIX `open`/`close`, named so that types with their own `close()` can call them.
func openFile(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
  open(path, flags, mode)
}
func closeFile(_ fd: Int32) { _ = close(fd) }
