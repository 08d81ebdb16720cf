import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// One segment file: its fixed header, what has been written to it, and a sparse time index.
/// The writer appends; any number of readers read up to `committedEnd` concurrently.
final class SegmentFile: Sendable {
  static let headerSize = 32
  static let magic = Array("CTRLSEG1".utf8)
  static let version: UInt32 = 1
  static let indexStride = 64 << 10

  let path: String
  let baseTime: Int64
  let baseSeq: Int64
  let dictionaryID: UInt32

  struct State {
    /// Bytes readers may read: the header and whole records only.
    var committedEnd = SegmentFile.headerSize
    var count = 0
    var firstTime: Int64? = nil
    var lastTime: Int64? = nil
    var lastSeq: Int64? = nil
    /// (time_us, offset) of a record every `indexStride` bytes, ascending.
    var index: [(time: Int64, offset: Int)] = []
    var lastIndexedOffset = -SegmentFile.indexStride
    var deleted = false
  }

  let state: Mutex<State>

  struct Failure: Error, CustomStringConvertible {
    let description: String
  }

  private init(path: String, baseTime: Int64, baseSeq: Int64, dictionaryID: UInt32) {
    self.path = path
    self.baseTime = baseTime
    self.baseSeq = baseSeq
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
    directory: String, baseTime: Int64, baseSeq: Int64, dictionaryID: UInt32,
    storage: EventLog.Storage
  ) throws -> (SegmentFile, fd: Int32) {
    let path = directory + "/" + fileName(baseTime: baseTime)
    var header = magic
    appendLE(UInt64(version) | UInt64(dictionaryID) << 32, &header)
    appendLE(UInt64(bitPattern: baseTime), &header)
    appendLE(UInt64(bitPattern: baseSeq), &header)
    let fd = openFile(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0o644)
    guard fd >= 0 else { throw Failure(description: "cannot create \(path): \(errorText())") }
    do {
      try writeAll(fd, header, path, storage)
    } catch {
      closeFile(fd)
      unlink(path)  // no header-less segment left behind (a full disk)
      throw error
    }
    let segment = SegmentFile(
      path: path, baseTime: baseTime, baseSeq: baseSeq, dictionaryID: dictionaryID)
    return (segment, fd)
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
    guard pread(fd, &header, headerSize, 0) == headerSize, header.starts(with: magic) else {
      throw Failure(description: "\(path) is not a Contrail segment (bad or short header)")
    }
    let versionAndID = loadLE(header, 8)
    guard UInt32(truncatingIfNeeded: versionAndID) == version else {
      throw Failure(
        description:
          "\(path) has format version \(UInt32(truncatingIfNeeded: versionAndID)), expected \(version)"
      )
    }
    // Records add 32-bit offsets to the bases: a damaged base must not overflow (a trap).
    let bases = 0...(Int64.max - Int64(UInt32.max))
    let baseTime = Int64(bitPattern: loadLE(header, 16))
    let baseSeq = Int64(bitPattern: loadLE(header, 24))
    guard bases.contains(baseTime), bases.contains(baseSeq) else {
      throw Failure(description: "\(path) has a bad header (base time \(baseTime), seq \(baseSeq))")
    }
    let segment = SegmentFile(
      path: path, baseTime: baseTime, baseSeq: baseSeq,
      dictionaryID: UInt32(truncatingIfNeeded: versionAndID >> 32))
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
          $0.noteAppended(time: record.timeUS, seq: record.seq, offset: offset, end: end)
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
    state.withLock { state in
      var low = 0
      var high = state.index.count
      while low < high {
        let mid = (low + high) / 2
        if state.index[mid].time < cursor { low = mid + 1 } else { high = mid }
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
  mutating func noteAppended(time: Int64, seq: Int64, offset: Int, end: Int) {
    if firstTime == nil { firstTime = time }
    lastTime = time
    lastSeq = seq
    count += 1
    if offset - lastIndexedOffset >= SegmentFile.indexStride {
      index.append((time, offset))
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
