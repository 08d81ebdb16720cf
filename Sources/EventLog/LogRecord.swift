import Events

/// One stored event: the metadata readers filter by, uncompressed, and the zstd frame exactly as
/// subscribers receive it.
public struct LogRecord: Sendable, Equatable {
  public let timeUS: Int64
  /// The relay seq of the frame the event came from.
  public let seq: Int64
  /// The event's v2 sequence number (PROTOCOL-v2 `seq`): assigned by the store path, 1-based and
  /// strictly increasing through the log (docs/FORMAT.md §3).
  public let eventSeq: Int64
  public let kind: EventKind
  public let did: String
  public let collection: String
  public let payload: [UInt8]

  public init(
    timeUS: Int64, seq: Int64, eventSeq: Int64, kind: EventKind, did: String, collection: String,
    payload: [UInt8]
  ) {
    self.timeUS = timeUS
    self.seq = seq
    self.eventSeq = eventSeq
    self.kind = kind
    self.did = did
    self.collection = collection
    self.payload = payload
  }
}

extension LogRecord {
  /// The record for a translated event, the v2 sequence number the store path gave it, and its
  /// compressed JSON.
  public init(_ event: Event, eventSeq: Int64, payload: [UInt8]) {
    self.init(
      timeUS: event.timeUS, seq: event.seq, eventSeq: eventSeq, kind: event.kind, did: event.did,
      collection: event.collection, payload: payload)
  }
}
