import Compression
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

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

  func frame(_ timeUS: Int64, compressed: Bool) throws -> WebSocketFrame {
    let json = Self.json(timeUS)
    guard compressed else {
      return WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(bytes: json))
    }
    let bytes = try lock.withLock { try compressor.compress(json) }
    return WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(bytes: bytes))
  }
}
