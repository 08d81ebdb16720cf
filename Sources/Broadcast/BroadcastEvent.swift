import Events
import NIOCore

/// One event as subscribers receive it: its filter keys and the two wire forms, built once at
/// ingest. `ByteBuffer`s are shared, so handing one to many sockets copies no payload bytes.
public struct BroadcastEvent: Sendable {
  public let timeUS: Int64
  public let kind: EventKind
  public let did: String
  public let collection: String
  /// The JSON text; nil for events replayed from disk to zstd subscribers, which never need it.
  public let json: ByteBuffer?
  /// The zstd frame; empty for events replayed from disk to text subscribers, which only need
  /// the JSON.
  public let compressed: ByteBuffer
  /// The JSON's length in bytes (for `maxMessageSizeBytes`, which compares uncompressed sizes).
  public let jsonLength: Int

  public init(
    timeUS: Int64, kind: EventKind, did: String, collection: String, json: ByteBuffer?,
    compressed: ByteBuffer, jsonLength: Int
  ) {
    self.timeUS = timeUS
    self.kind = kind
    self.did = did
    self.collection = collection
    self.json = json
    self.compressed = compressed
    self.jsonLength = jsonLength
  }

  /// The live form of a freshly translated event and its zstd frame.
  public init(_ event: Event, compressed: [UInt8]) {
    self.init(
      timeUS: event.timeUS, kind: event.kind, did: event.did, collection: event.collection,
      json: ByteBuffer(bytes: event.json), compressed: ByteBuffer(bytes: compressed),
      jsonLength: event.json.count)
  }

  /// Bytes held in memory for the ring's budget.
  var size: Int { (json?.readableBytes ?? 0) + compressed.readableBytes + did.utf8.count + 64 }
}
