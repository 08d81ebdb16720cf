/// Record framing of the event log (`varint length, crc32c, body`), for harnesses that want the
/// fuzzer to get past the checksum: `fixChecksums` rewrites the CRC of every record it can find
/// in order, with `checksum` (the EventLog module's CRC-32C, passed in by the caller).
public func fixChecksums(
  _ bytes: inout [UInt8], from start: Int, checksum: (UnsafeRawBufferPointer) -> UInt32
) {
  var offset = start
  while offset < bytes.count {
    var length = 0
    var shift = 0
    var i = offset
    var done = false
    while i < bytes.count, shift < 63 {
      let byte = bytes[i]
      length |= Int(byte & 0x7F) << shift
      i += 1
      if byte & 0x80 == 0 {
        done = true
        break
      }
      shift += 7
    }
    guard done, length >= 4, length <= bytes.count - i else { return }
    let crc = bytes.withUnsafeBytes {
      checksum(UnsafeRawBufferPointer(rebasing: $0[(i + 4)..<(i + length)]))
    }
    for k in 0..<4 { bytes[i + k] = UInt8(truncatingIfNeeded: crc >> (8 * k)) }
    offset = i + length
  }
}
