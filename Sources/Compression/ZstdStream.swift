import CZstd

/// Whole-buffer zstd stream (de)compression for files, such as `.zst` frames files.
/// Event compression with dictionaries is separate; this handles multi-frame streams of any size.
public enum ZstdStream {
  public struct Failure: Error, CustomStringConvertible {
    public let description: String
  }

  /// Whether `data` starts with the zstd frame magic `28 B5 2F FD`.
  public static func isCompressed(_ data: some Collection<UInt8>) -> Bool {
    data.starts(with: [0x28, 0xB5, 0x2F, 0xFD])
  }

  /// Decompresses a zstd stream (one or more frames) completely.
  public static func decompress(_ data: [UInt8]) throws -> [UInt8] {
    guard let stream = ZSTD_createDStream() else { throw Failure(description: "out of memory") }
    defer { ZSTD_freeDStream(stream) }
    var output: [UInt8] = []
    let chunk = ZSTD_DStreamOutSize()
    var buffer = [UInt8](repeating: 0, count: chunk)
    var lastResult = 0
    try data.withUnsafeBytes { (input: UnsafeRawBufferPointer) throws in
      var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
      repeat {
        let produced = try buffer.withUnsafeMutableBytes { (out: UnsafeMutableRawBufferPointer) throws -> Int in
          var outBuffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
          let result = ZSTD_decompressStream(stream, &outBuffer, &inBuffer)
          if ZSTD_isError(result) != 0 {
            throw Failure(description: "zstd: " + String(cString: ZSTD_getErrorName(result)))
          }
          lastResult = result
          return outBuffer.pos
        }
        output.append(contentsOf: buffer[..<produced])
        // Keep going while input remains or the decoder still has output buffered.
        if inBuffer.pos == inBuffer.size && produced < chunk { break }
      } while true
    }
    if lastResult != 0 { throw Failure(description: "zstd: truncated stream") }
    return output
  }

  /// Compresses `data` into one zstd frame (content size recorded).
  public static func compress(_ data: [UInt8], level: Int32 = 19) throws -> [UInt8] {
    let bound = ZSTD_compressBound(data.count)
    var output = [UInt8](repeating: 0, count: bound)
    let written = output.withUnsafeMutableBytes { out in
      data.withUnsafeBytes { input in
        ZSTD_compress(out.baseAddress, out.count, input.baseAddress, input.count, level)
      }
    }
    if ZSTD_isError(written) != 0 {
      throw Failure(description: "zstd: " + String(cString: ZSTD_getErrorName(written)))
    }
    output.removeSubrange(written...)
    return output
  }
}
