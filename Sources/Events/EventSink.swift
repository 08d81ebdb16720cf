/// Where the translator puts each event as it writes it. The bytes are only valid during the
/// call; `[Event]` copies them into `Event`s, other sinks can write them straight on.
public protocol EventSink {
  mutating func take(_ header: EventHeader, json: UnsafeRawBufferPointer)
}

/// An event's metadata as the translator hands it to a sink; `did` points into the frame.
public struct EventHeader {
  public var timeUS: Int64
  public var seq: Int64
  public var kind: EventKind
  public var did: UnsafeRawBufferPointer
  /// The commit's collection (interned); empty for identity and account events.
  public var collection: String
}

extension Array: EventSink where Element == Event {
  public mutating func take(_ header: EventHeader, json: UnsafeRawBufferPointer) {
    append(
      Event(
        timeUS: header.timeUS, seq: header.seq, kind: header.kind,
        did: String(decoding: header.did, as: UTF8.self), collection: header.collection,
        json: [UInt8](json)))
  }
}
