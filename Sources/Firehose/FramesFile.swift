import Compression

/// A frames file: relay frames stored as `[u32 little-endian length][frame bytes]…`, plain or
/// as one zstd stream (detected by its magic). Fixtures, captures and benchmarks use it.
/// `read` holds the whole file in memory; `FramesReader` streams big or untrusted files.
public enum FramesFile {
  /// The frames of a file, and how many bytes at its end did not form a whole record.
  public struct Contents: Sendable {
    public var frames: [[UInt8]]
    public var unreadableTailBytes: Int
  }

  /// Reads the file at `path`. Throws only when the file cannot be read or its zstd stream is
  /// corrupt; a damaged tail is reported in `unreadableTailBytes`.
  public static func read(path: String) throws -> Contents {
    try parse(try FileBytes.read(path))
  }

  /// Splits file contents (decompressing them first when they are zstd) into frames.
  public static func parse(_ contents: [UInt8]) throws -> Contents {
    let bytes = ZstdStream.isCompressed(contents) ? try ZstdStream.decompress(contents) : contents
    var frames: [[UInt8]] = []
    var offset = 0
    while bytes.count - offset >= 4 {
      let length =
        Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16
        | Int(bytes[offset + 3]) << 24
      guard length <= bytes.count - offset - 4 else { break }
      frames.append(Array(bytes[(offset + 4)..<(offset + 4 + length)]))
      offset += 4 + length
    }
    return Contents(frames: frames, unreadableTailBytes: bytes.count - offset)
  }

  /// The file contents for `frames` (uncompressed).
  public static func encode(_ frames: [[UInt8]]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(frames.reduce(0) { $0 + $1.count + 4 })
    for frame in frames { append(frame, to: &out) }
    return out
  }

  /// Appends one `[u32 little-endian length][frame]` record.
  public static func append(_ frame: [UInt8], to out: inout [UInt8]) {
    let n = UInt32(frame.count)
    out.append(contentsOf: [
      UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 24),
    ])
    out.append(contentsOf: frame)
  }
}
