import Compression
import EventLog
import Events
import NIOCore
import Synchronization

/// Makes the v2 wire's frames (PROTOCOL §12.4) from stored events: the v1 JSON the log
/// holds, rewritten by `V2Frame` with the event's v2 `seq` and witness time, then compressed
/// once with the server's dictionary. Used by `V2Publisher` for live events (once for every
/// v2 subscriber) and by v2 feeds for events replayed from disk (once per read batch). Safe to
/// call from any thread.
public final class V2Transcoder: Sendable {
  public let dictionary: ZstdDictionary
  private let decompressors: DecompressorPool
  private let compressors: ContextPool<EventCompressor>
  private let failed = Atomic<Int>(0)

  public init(dictionary: ZstdDictionary) {
    self.dictionary = dictionary
    decompressors = DecompressorPool(dictionary: dictionary)
    compressors = ContextPool<EventCompressor>(dictionary: dictionary)
  }

  /// Events whose stored JSON could not be rewritten (skipped, never sent).
  public var failures: Int { failed.load(ordering: .relaxed) }

  /// The v2 forms of live events (their v1 JSON is in memory): both the text and the zstd
  /// frame, so that every v2 subscriber shares them. Events that cannot be rewritten are left
  /// out and counted.
  public func live(_ events: [BroadcastEvent]) throws -> [BroadcastEvent] {
    try compressors.with { compressor in
      var out: [BroadcastEvent] = []
      out.reserveCapacity(events.count)
      for event in events {
        guard let json = event.json,
          let v2 = json.withUnsafeReadableBytes({
            V2Frame.message(fromV1: $0, eventSeq: event.eventSeq, timeUS: event.timeUS)
          })
        else {
          failed.add(1, ordering: .relaxed)
          continue
        }
        let zstd = try compressor.compress(v2)
        out.append(
          BroadcastEvent(
            meta: event.meta, json: ByteBuffer(bytes: v2),
            compressed: ByteBuffer(bytes: zstd), jsonLength: v2.count))
      }
      return out
    }
  }

  /// The v2 forms of log records, in one form (`compressed` or text), framed into shared blocks:
  /// what a v2 feed replaying from disk sends. Records that cannot be rewritten are left out and
  /// counted.
  public func replay(_ records: [LogRecord], compressed: Bool) throws -> [BroadcastEvent] {
    var events: [BroadcastEvent] = []
    events.reserveCapacity(records.count)
    try decompressors.with { decompressor in
      for record in records {
        let v1 = try decompressor.decompress(record.payload)
        guard
          let v2 = v1.withUnsafeBytes({
            V2Frame.message(fromV1: $0, eventSeq: record.eventSeq, timeUS: record.timeUS)
          })
        else {
          failed.add(1, ordering: .relaxed)
          continue
        }
        let zstd = compressed ? try compressors.with { try $0.compress(v2) } : []
        events.append(
          BroadcastEvent(
            meta: record.meta, json: compressed ? nil : ByteBuffer(bytes: v2),
            compressed: ByteBuffer(bytes: zstd), jsonLength: v2.count))
      }
    }
    return BroadcastEvent.framed(events)
  }

  /// A frame the server sends outside the event stream (`#info`, an error), as a text or a
  /// compressed websocket message payload.
  public func control(_ json: [UInt8], compressed: Bool) throws -> ByteBuffer {
    guard compressed else { return ByteBuffer(bytes: json) }
    return ByteBuffer(bytes: try compressors.with { try $0.compress(json) })
  }
}
