import Events

/// One stored event: the metadata readers filter by, uncompressed, and the zstd frame exactly as
/// subscribers receive it.
public struct LogRecord: Sendable, Equatable {
  public let timeUS: Int64
  public let seq: Int64
  public let kind: EventKind
  public let did: String
  public let collection: String
  public let payload: [UInt8]

  public init(
    timeUS: Int64, seq: Int64, kind: EventKind, did: String, collection: String, payload: [UInt8]
  ) {
    self.timeUS = timeUS
    self.seq = seq
    self.kind = kind
    self.did = did
    self.collection = collection
    self.payload = payload
  }
}

extension LogRecord {
  /// The record for a translated event and its compressed JSON.
  public init(_ event: Event, payload: [UInt8]) {
    self.init(
      timeUS: event.timeUS, seq: event.seq, kind: event.kind, did: event.did,
      collection: event.collection,
      payload: payload)
  }
}
