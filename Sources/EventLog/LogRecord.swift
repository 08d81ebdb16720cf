import Events

/// One stored event: the metadata readers filter by, uncompressed, and the zstd frame exactly as
/// subscribers receive it.
public struct LogRecord: Sendable, Equatable {
  public let meta: EventMeta
  public let payload: [UInt8]

  public init(
    timeUS: Int64, seq: Int64, eventSeq: Int64, kind: EventKind, did: String, collection: String,
    payload: [UInt8]
  ) {
    meta = EventMeta(
      timeUS: timeUS, seq: seq, eventSeq: eventSeq, kind: kind, did: did, collection: collection)
    self.payload = payload
  }

  public init(meta: EventMeta, payload: [UInt8]) {
    self.meta = meta
    self.payload = payload
  }

  public var timeUS: Int64 { meta.timeUS }
  public var seq: Int64 { meta.seq }
  public var eventSeq: Int64 { meta.eventSeq }
  public var kind: EventKind { meta.kind }
  public var did: String { meta.did }
  public var collection: String { meta.collection }
}

extension LogRecord {
  /// The record for a translated event, the v2 sequence number the store path gave it, and its
  /// compressed JSON.
  public init(_ event: Event, eventSeq: Int64, payload: [UInt8]) {
    var meta = event.meta
    meta.eventSeq = eventSeq
    self.init(meta: meta, payload: payload)
  }
}
