import Events
import Firehose

/// Encodes and decodes records of docs/FORMAT.md: `varint length, crc32c, body`.
enum RecordCodec {
  /// A segment's header values that every record's 32-bit offsets are added to.
  struct Bases: Sendable, Equatable {
    var time: Int64
    var seq: Int64
    var eventSeq: Int64

    /// Bases a record's offsets cannot overflow (a damaged header must not make parsing trap).
    static let range = 0...(Int64.max - Int64(UInt32.max))

    /// The offsets of `record` from these bases, if each fits 32 bits (nil, never a trap, for
    /// any values).
    func offsets(_ timeUS: Int64, _ seq: Int64, _ eventSeq: Int64) -> (UInt32, UInt32, UInt32)? {
      func offset(_ value: Int64, from base: Int64) -> UInt32? {
        let (difference, overflow) = value.subtractingReportingOverflow(base)
        return overflow ? nil : UInt32(exactly: difference)
      }
      guard let time = offset(timeUS, from: time), let seq = offset(seq, from: self.seq),
        let eventSeq = offset(eventSeq, from: self.eventSeq)
      else { return nil }
      return (time, seq, eventSeq)
    }
  }

  /// Collections stored as one byte. Frozen since format version 1: append only with a new
  /// version.
  static let collections: [String] = [
    "app.bsky.feed.like", "app.bsky.feed.post", "app.bsky.feed.repost", "app.bsky.graph.follow",
    "app.bsky.graph.block", "app.bsky.graph.listitem", "app.bsky.actor.profile",
    "app.bsky.feed.threadgate",
    "app.bsky.feed.postgate", "app.bsky.graph.list", "app.bsky.feed.generator",
    "app.bsky.graph.starterpack",
    "app.bsky.graph.listblock", "app.bsky.labeler.service", "chat.bsky.actor.declaration",
    "app.bsky.actor.status",
    "app.bsky.graph.verification", "app.bsky.notification.declaration",
  ]
  private static let collectionCodes: [String: UInt8] = Dictionary(
    uniqueKeysWithValues: collections.enumerated().map { ($1, UInt8($0 + 2)) })

  private static let plcPrefix = Array("did:plc:".utf8)

  /// Appends the record straight into `out` (no intermediate buffer: the body is written in
  /// place, then its checksum in front of it); false (nothing appended) when its time, seq or
  /// event seq does not fit the segment's 32-bit offsets.
  static func encode(_ record: LogRecord, bases: Bases, into out: inout [UInt8]) -> Bool {
    guard
      let (timeOffset, seqOffset, eventSeqOffset) = bases.offsets(
        record.timeUS, record.seq, record.eventSeq)
    else {
      return false
    }
    let packedDID = packablePLC(record.did)
    let didBytes = record.did.utf8.count
    let code = record.collection.isEmpty ? 0 : collectionCodes[record.collection] ?? 1
    let collectionBytes = record.collection.utf8.count
    let bodyLength =
      12 + (packedDID ? 16 : 1 + varintLength(didBytes) + didBytes)
      + (code == 1 ? 1 + varintLength(collectionBytes) + collectionBytes : 1)
      + record.payload.count
    out.reserveCapacity(out.count + 9 + bodyLength)
    Varint.append(bodyLength + 4, to: &out)
    let checksumAt = out.count
    appendLE(0, &out)  // the checksum, once the body is there
    let bodyStart = out.count
    appendLE(timeOffset, &out)
    appendLE(seqOffset, &out)
    appendLE(eventSeqOffset, &out)
    if packedDID {
      out.append(record.kind.rawValue | 0x04)
      packPLC(record.did, &out)
    } else {
      out.append(record.kind.rawValue)
      Varint.append(didBytes, to: &out)
      out.append(contentsOf: record.did.utf8)
    }
    out.append(code)
    if code == 1 {
      Varint.append(collectionBytes, to: &out)
      out.append(contentsOf: record.collection.utf8)
    }
    out.append(contentsOf: record.payload)
    let checksum = out.withUnsafeBytes {
      CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[bodyStart...]))
    }
    for k in 0..<4 { out[checksumAt + k] = UInt8(truncatingIfNeeded: checksum >> (8 * k)) }
    return true
  }

  private static func varintLength(_ value: Int) -> Int {
    var length = 1
    var v = value >> 7
    while v > 0 {
      length += 1
      v >>= 7
    }
    return length
  }

  /// What one parse attempt at an offset found.
  enum Parsed {
    /// A whole, valid record and the offset just past it.
    case record(LogRecord, end: Int)
    /// A valid record the filter rejected; skipped without decoding its DID or payload.
    case skipped(timeUS: Int64, eventSeq: Int64, end: Int)
    /// Not enough bytes for the record (a torn tail, or the caller must read more).
    case incomplete(needed: Int)
    /// Bad length, checksum or body.
    case corrupt
  }

  /// Parses the record at `offset`. With `keep`, records it rejects are not materialized.
  static func parse(
    _ buffer: UnsafeRawBufferPointer, at offset: Int, bases: Bases,
    keep: ((Int64, EventKind, () -> String, String) -> Bool)? = nil
  ) -> Parsed {
    guard let (length, varintLength) = Varint.read(buffer, at: offset) else {
      // A varint cut by the buffer's end is incomplete; an overlong one is corrupt.
      return buffer.count - offset < 10 ? .incomplete(needed: 10) : .corrupt
    }
    guard length >= minRecordBytes, length <= maxRecordBytes else { return .corrupt }
    let start = offset + varintLength
    guard buffer.count - start >= length else { return .incomplete(needed: varintLength + length) }
    let body = UnsafeRawBufferPointer(rebasing: buffer[(start + 4)..<(start + length)])
    let end = start + length
    let timeUS =
      bases.time + Int64(body.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian)
    let seq = bases.seq + Int64(body.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian)
    let eventSeq =
      bases.eventSeq + Int64(body.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian)
    guard let kind = EventKind(rawValue: body[12] & 0x03) else { return .corrupt }
    var position = 12
    guard let didRange = didField(body, &position), position < body.count else { return .corrupt }
    let collection: String
    let code = body[position]
    position += 1
    switch code {
    case 0: collection = ""
    case 1:
      guard let (n, used) = Varint.read(body, at: position), n <= body.count - position - used
      else { return .corrupt }
      collection = String(decoding: body[(position + used)..<(position + used + n)], as: UTF8.self)
      position += used + n
    default:
      guard Int(code) - 2 < collections.count else { return .corrupt }
      collection = collections[Int(code) - 2]
    }
    // The checksum last: the cheap checks above reject most offsets of a resync scan through
    // garbage, where a CRC over every claimed length made the scan O(bytes × record size).
    guard
      buffer.loadUnaligned(fromByteOffset: start, as: UInt32.self).littleEndian
        == CRC32C.checksum(body)
    else {
      return .corrupt
    }
    let did = { decodeDID(UnsafeRawBufferPointer(rebasing: body[didRange])) }
    if let keep, !keep(timeUS, kind, did, collection) {
      return .skipped(timeUS: timeUS, eventSeq: eventSeq, end: end)
    }
    let record = LogRecord(
      timeUS: timeUS, seq: seq, eventSeq: eventSeq, kind: kind, did: did(),
      collection: collection, payload: Array(body[position...]))
    return .record(record, end: end)
  }

  /// Larger lengths are treated as corruption.
  static let maxRecordBytes = 16 << 20
  /// Smaller ones too: checksum, three offsets, flags, and at least a one-byte DID length.
  static let minRecordBytes = 4 + 4 + 4 + 4 + 1 + 1

  // MARK: DIDs

  /// The flags byte holds the kind (bits 0–1) and whether the DID is a packed `did:plc` (bit 2):
  /// `did:plc:` and 24 base32 characters, stored as their 15 bytes.
  private static func packablePLC(_ did: String) -> Bool {
    let utf8 = did.utf8
    return utf8.count == 32 && utf8.starts(with: plcPrefix)
      && Base32.lowercase.isEncoded(utf8.dropFirst(8))
  }

  /// Appends the 15 bytes of a packable `did:plc` (24 × 5 bits = 120 bits exactly).
  private static func packPLC(_ did: String, _ out: inout [UInt8]) {
    _ = Base32.lowercase.decode(did.utf8.dropFirst(8), into: &out)
  }

  /// The range of the DID field's content (after the tag) and moves `position` past it.
  private static func didField(_ body: UnsafeRawBufferPointer, _ position: inout Int) -> Range<Int>?
  {
    guard position < body.count else { return nil }
    let flags = body[position]
    position += 1
    switch flags >> 2 {
    case 1:
      guard body.count - position >= 15 else { return nil }
      defer { position += 15 }
      return (position - 1)..<(position + 15)
    case 0:
      guard let (n, used) = Varint.read(body, at: position), n <= body.count - position - used
      else { return nil }
      defer { position += used + n }
      return (position - 1)..<(position + used + n)
    default:
      return nil
    }
  }

  /// Decodes a DID field (flags byte included).
  private static func decodeDID(_ field: UnsafeRawBufferPointer) -> String {
    if field[0] & 0x04 != 0 {
      var chars = plcPrefix
      Base32.lowercase.encode(UnsafeRawBufferPointer(rebasing: field[1...])) { chars.append($0) }
      return String(decoding: chars, as: UTF8.self)
    }
    let (n, used) = Varint.read(field, at: 1)!
    return String(decoding: field[(1 + used)..<(1 + used + n)], as: UTF8.self)
  }

  private static func appendLE(_ value: UInt32, _ out: inout [UInt8]) {
    out.append(UInt8(truncatingIfNeeded: value))
    out.append(UInt8(truncatingIfNeeded: value >> 8))
    out.append(UInt8(truncatingIfNeeded: value >> 16))
    out.append(UInt8(truncatingIfNeeded: value >> 24))
  }
}
