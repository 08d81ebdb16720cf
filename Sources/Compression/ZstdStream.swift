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
        let produced = try buffer.withUnsafeMutableBytes {
          (out: UnsafeMutableRawBufferPointer) throws -> Int in
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

  /// Compresses a stream chunk by chunk into one zstd frame, for files too big to hold twice.
  public final class Writer {
    private let stream: OpaquePointer
    private var buffer: [UInt8]

    public init(level: Int32) throws {
      guard let stream = ZSTD_createCStream() else { throw Failure(description: "out of memory") }
      self.stream = stream
      self.buffer = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
      let result = ZSTD_initCStream(stream, level)
      if ZSTD_isError(result) != 0 {
        ZSTD_freeCStream(stream)
        throw Failure(description: "zstd: " + String(cString: ZSTD_getErrorName(result)))
      }
    }

    deinit { ZSTD_freeCStream(stream) }

    /// Compresses `chunk`, returning whatever output is ready.
    public func compress(_ chunk: [UInt8]) throws -> [UInt8] {
      try run(chunk, ZSTD_e_continue)
    }

    /// Ends the frame and returns the rest of the output.
    public func finish() throws -> [UInt8] {
      try run([], ZSTD_e_end)
    }

    private func run(_ chunk: [UInt8], _ directive: ZSTD_EndDirective) throws -> [UInt8] {
      var output: [UInt8] = []
      try chunk.withUnsafeBytes { input in
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        while true {
          let (remaining, produced) = try buffer.withUnsafeMutableBytes { out in
            var outBuffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
            let result = ZSTD_compressStream2(stream, &outBuffer, &inBuffer, directive)
            if ZSTD_isError(result) != 0 {
              throw Failure(description: "zstd: " + String(cString: ZSTD_getErrorName(result)))
            }
            return (result, outBuffer.pos)
          }
          output.append(contentsOf: buffer[..<produced])
          let done =
            directive == ZSTD_e_end ? remaining == 0 : inBuffer.pos == inBuffer.size
          if done { break }
        }
      }
      return output
    }
  }
}
