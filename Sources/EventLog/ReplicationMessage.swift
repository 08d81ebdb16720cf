import Events

/// One log record as the replication stream carries it (docs/OPERATIONS.md §10, "Scaling out"):
/// a primary sends each record it stored as one binary websocket message, and an edge appends it
/// as it is — the same `time_us`, relay seq, v2 event seq, kind, DID, collection and zstd
/// payload — so that both wires' cursors mean the same event everywhere and nothing is decoded or
/// compressed again.
///
/// Layout, little-endian: `time_us` i64, relay seq i64, event seq i64, kind u8, DID length u16,
/// DID, collection length u16, collection, then the payload (the rest of the message).
public enum ReplicationMessage {
  /// Fixed fields before the DID: three i64, the kind and the DID's length.
  static let fixedBytes = 8 + 8 + 8 + 1 + 2
  /// Limits a decoder holds a message to (a hostile or broken primary gets a refusal, not a
  /// trap or a huge allocation).
  public static let maxDIDBytes = 2_048
  public static let maxCollectionBytes = 317
  public static let maxPayloadBytes = 16 << 20

  /// Why a message was refused.
  public struct Invalid: Error, CustomStringConvertible, Equatable {
    public let description: String
  }

  /// The message for `record`.
  public static func encode(_ record: LogRecord) -> [UInt8] {
    let did = Array(record.did.utf8)
    let collection = Array(record.collection.utf8)
    var out: [UInt8] = []
    out.reserveCapacity(fixedBytes + 2 + did.count + collection.count + record.payload.count)
    append(UInt64(bitPattern: record.timeUS), 8, &out)
    append(UInt64(bitPattern: record.seq), 8, &out)
    append(UInt64(bitPattern: record.eventSeq), 8, &out)
    out.append(record.kind.rawValue)
    append(UInt64(did.count), 2, &out)
    out += did
    append(UInt64(collection.count), 2, &out)
    out += collection
    out += record.payload
    return out
  }

  /// The record in `message`, every length checked against what remains before it is used.
  public static func decode(_ message: UnsafeRawBufferPointer) throws(Invalid) -> LogRecord {
    var position = 0
    func take(_ count: Int) throws(Invalid) -> UnsafeRawBufferPointer {
      guard count <= message.count - position else {
        throw Invalid(description: "a replication message ends inside its header")
      }
      defer { position += count }
      return UnsafeRawBufferPointer(rebasing: message[position..<position + count])
    }
    func integer(_ bytes: Int) throws(Invalid) -> UInt64 {
      var value: UInt64 = 0
      for (index, byte) in try take(bytes).enumerated() { value |= UInt64(byte) << (8 * index) }
      return value
    }
    let timeUS = Int64(bitPattern: try integer(8))
    let seq = Int64(bitPattern: try integer(8))
    let eventSeq = Int64(bitPattern: try integer(8))
    guard let kind = EventKind(rawValue: try take(1)[0]) else {
      throw Invalid(description: "a replication message has an unknown kind")
    }
    let didLength = Int(try integer(2))
    guard didLength > 0, didLength <= maxDIDBytes else {
      throw Invalid(description: "a replication message's DID is empty or too long")
    }
    guard let did = String(validating: try take(didLength), as: UTF8.self) else {
      throw Invalid(description: "a replication message's DID is not UTF-8")
    }
    let collectionLength = Int(try integer(2))
    guard collectionLength <= maxCollectionBytes else {
      throw Invalid(description: "a replication message's collection is too long")
    }
    guard let collection = String(validating: try take(collectionLength), as: UTF8.self) else {
      throw Invalid(description: "a replication message's collection is not UTF-8")
    }
    let payload = try take(message.count - position)
    guard !payload.isEmpty, payload.count <= maxPayloadBytes else {
      throw Invalid(description: "a replication message's payload is empty or too big")
    }
    guard timeUS > 0, EventLog.storableRange.contains(timeUS),
      EventLog.storableRange.contains(seq), eventSeq > 0, eventSeq < EventLog.eventSeqLimit
    else {
      throw Invalid(
        description: "a replication message's time_us, relay seq or event seq is out of range")
    }
    return LogRecord(
      timeUS: timeUS, seq: seq, eventSeq: eventSeq, kind: kind, did: did, collection: collection,
      payload: Array(payload))
  }

  private static func append(_ value: UInt64, _ bytes: Int, _ out: inout [UInt8]) {
    for index in 0..<bytes { out.append(UInt8(truncatingIfNeeded: value >> (8 * index))) }
  }
}
