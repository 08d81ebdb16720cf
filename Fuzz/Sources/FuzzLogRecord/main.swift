import Events
import FuzzSupport

@testable import EventLog

/// Target (f1): event-log records in memory (`RecordCodec.parse`), read the way the segment
/// scanner reads them: record after record, and byte by byte after a bad one. The first byte
/// chooses the mode: bit 0 set = fix every record's CRC first (so bodies get parsed), bit 1 set =
/// parse through a filter (the `.skipped` path). Every record read must survive an
/// encode/parse round trip.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let input = fuzzInput(start, count)
  guard let mode = input.first else { return 0 }
  var bytes = Array(input.dropFirst())
  if mode & 1 != 0 { fixChecksums(&bytes, from: 0, checksum: CRC32C.checksum) }
  let bases = RecordCodec.Bases(time: 1_700_000_000_000_000, seq: 1_000, eventSeq: 500)
  let keep: ((Int64, EventKind, () -> String, String) -> Bool)? =
    mode & 2 == 0
    ? nil
    : { time, kind, did, collection in
      time & 1 == 0 || kind == .commit || collection.hasPrefix("app.") || did().count > 20
    }
  bytes.withUnsafeBytes { buffer in
    var offset = 0
    while offset < buffer.count {
      switch RecordCodec.parse(buffer, at: offset, bases: bases, keep: keep) {
      case .record(let record, let end):
        guard end > offset, end <= buffer.count else { fuzzFailure("bad record end", input) }
        var encoded: [UInt8] = []
        guard RecordCodec.encode(record, bases: bases, into: &encoded)
        else { fuzzFailure("a parsed record cannot be encoded again", input) }
        let again = encoded.withUnsafeBytes { RecordCodec.parse($0, at: 0, bases: bases) }
        guard case .record(let copy, let copyEnd) = again, copy == record,
          copyEnd == encoded.count
        else {
          fuzzFailure("a record does not survive encode/parse: \(record)", input)
        }
        offset = end
      case .skipped(_, _, let end):
        guard end > offset, end <= buffer.count else { fuzzFailure("bad skip end", input) }
        offset = end
      case .incomplete(let needed):
        guard needed > 0 else { fuzzFailure("incomplete with nothing needed", input) }
        offset += 1
      case .corrupt:
        offset += 1
      }
    }
  }
  return 0
}
