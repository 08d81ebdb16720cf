import Compression
import NIOConcurrencyHelpers
import NIOCore

/// Builds cursor heartbeats (PROTOCOL §10.2), `{"kind":"heartbeat","time_us":T}`, at send time,
/// as text or as one zstd frame with the served dictionary. Never stored.
final class HeartbeatEncoder: @unchecked Sendable {
  // Heartbeats are rare (at most one per subscriber per second), so one compressor behind a
  // lock serves them all.
  private let lock = NIOLock()
  private let compressor: EventCompressor

  init(dictionary: ZstdDictionary) throws {
    compressor = try EventCompressor(dictionary: dictionary)
  }

  static func json(_ timeUS: Int64) -> [UInt8] {
    Array(#"{"kind":"heartbeat","time_us":\#(timeUS)}"#.utf8)
  }

  /// The whole websocket frame, ready to write.
  func frame(_ timeUS: Int64, compressed: Bool) throws -> ByteBuffer {
    let json = Self.json(timeUS)
    guard compressed else {
      return WebSocketWire.frame(WebSocketWire.text, ByteBuffer(bytes: json))
    }
    let bytes = try lock.withLock { try compressor.compress(json) }
    return WebSocketWire.frame(WebSocketWire.binary, ByteBuffer(bytes: bytes))
  }
}
