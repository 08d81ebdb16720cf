import FuzzSupport

@testable import EventLog

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A segment file rewritten for every input (on tmpfs when there is one).
private let path: String = {
  let directory = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
  return "\(directory)/contrail-fuzz-segment-\(getpid())"
}()

/// Target (f2): a whole segment file opened by `SegmentFile.load` (header check, then the
/// `SegmentScanner` over every record, with each tail mode), then scanned again as a reader does:
/// the records found have strictly increasing times and event seqs. The input is the file after a
/// valid 40-byte header; its first byte chooses the mode: bit 0 set = fix every record's CRC
/// first, bits 1–2 = the tail (report, leave, cut), bit 3 = the next 24 bytes are the
/// header's base time, seq and event seq (little-endian). `-close_fd_mask` is not needed:
/// nothing is printed.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let input = fuzzInput(start, count)
  guard let mode = input.first else { return 0 }
  var rest = input.dropFirst()
  var baseTime: UInt64 = 1_700_000_000_000_000
  var baseSeq: UInt64 = 1_000
  var baseEventSeq: UInt64 = 500
  if mode & 8 != 0, rest.count >= 24 {  // bit 3: the header's bases come next
    baseTime = rest.prefix(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    baseSeq = rest.dropFirst(8).prefix(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    baseEventSeq = rest.dropFirst(16).prefix(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    rest = rest.dropFirst(24)
  }
  var file = SegmentFile.magic
  SegmentFile.appendLE(UInt64(SegmentFile.version), &file)
  SegmentFile.appendLE(baseTime, &file)
  SegmentFile.appendLE(baseSeq, &file)
  SegmentFile.appendLE(baseEventSeq, &file)
  file.append(contentsOf: rest)
  if mode & 1 != 0 {
    fixChecksums(&file, from: SegmentFile.headerSize, checksum: CRC32C.checksum)
  }
  let tail: SegmentFile.Tail
  switch (mode >> 1) & 3 {
  case 0: tail = .report
  case 1: tail = .leave
  default: tail = .cut
  }
  let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
  guard fd >= 0 else { fuzzFailure("cannot create \(path)", input) }
  let written = file.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
  close(fd)
  guard written == file.count else { fuzzFailure("short write to \(path)", input) }
  do {
    let (segment, notes, unreadTail) = try SegmentFile.load(path: path, tail: tail)
    let inside = notes.allSatisfy {
      $0.offset >= SegmentFile.headerSize && $0.bytes > 0 && $0.offset + $0.bytes <= file.count
    }
    guard inside, unreadTail >= 0, unreadTail <= file.count else {
      fuzzFailure("bad load result: \(notes) \(unreadTail)", input)
    }
    let size = segment.fileSize
    guard size >= SegmentFile.headerSize, size <= file.count else {
      fuzzFailure("committed end \(size) outside the file (\(file.count))", input)
    }
    checkOrder(segment, end: size, input)
  } catch {
    // Only a header whose bases leave no room for a record's 32-bit offsets (or whose base
    // event seq is below 1) is refused.
    let bases = 0...UInt64(Int64.max - Int64(UInt32.max))
    guard
      !bases.contains(baseTime) || !bases.contains(baseSeq) || !bases.contains(baseEventSeq)
        || baseEventSeq == 0
    else {
      fuzzFailure("a segment with a valid header failed to load: \(error)", input)
    }
  }
  return 0
}

/// Reads the loaded segment's committed records as a reader does: times and event seqs strictly
/// increase, and the count matches what loading found.
private func checkOrder(_ segment: SegmentFile, end: Int, _ input: UnsafeRawBufferPointer) {
  let fd = open(path, O_RDONLY)
  guard fd >= 0 else { fuzzFailure("cannot reopen \(path)", input) }
  defer { close(fd) }
  var scanner = SegmentScanner(segment: segment, fd: fd, from: SegmentFile.headerSize, end: end)
  var last: (time: Int64, eventSeq: Int64)? = nil
  var count = 0
  while true {
    switch scanner.next(keep: nil) {
    case .record(let record, _, _):
      if let last, record.timeUS <= last.time || record.eventSeq <= last.eventSeq {
        fuzzFailure("records out of order: \(last) then \(record)", input)
      }
      last = (record.timeUS, record.eventSeq)
      count += 1
    case .skipped: fuzzFailure("skipped without a filter", input)
    case .corrupt: break
    case .end:
      let loaded = segment.state.withLock { $0.count }
      guard count == loaded else { fuzzFailure("read \(count) records, loaded \(loaded)", input) }
      return
    }
  }
}
