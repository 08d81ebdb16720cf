import CZstd

extension ZstdStream {
  /// Incremental decompression of a zstd stream (one or more frames) in bounded memory: input and
  /// output move through caller buffers of any size, and the decoder's window is capped, so a
  /// hostile stream can neither make it allocate a large window nor decode more than asked.
  /// Not thread-safe: one per stream.
  public final class Decoder {
    /// The largest window accepted: 2^24 = 16 MiB. zstd levels 1–19 use at most 8 MiB; frames
    /// asking for more (`--ultra` levels on large inputs, `--long`) are refused with an error.
    public static let defaultWindowLogMax: Int32 = 24

    public let windowLogMax: Int32
    private let stream: OpaquePointer
    /// libzstd's hint from the last call that moved bytes: 0 when no frame is partly decoded.
    private var hint = 0

    public init(windowLogMax: Int32 = Decoder.defaultWindowLogMax) throws {
      guard let stream = ZSTD_createDCtx() else { throw Failure(description: "out of memory") }
      let result = ZSTD_DCtx_setParameter(stream, ZSTD_d_windowLogMax, windowLogMax)
      if ZSTD_isError(result) != 0 {
        ZSTD_freeDCtx(stream)
        throw Failure(description: Zstd.errorName(result))
      }
      self.stream = stream
      self.windowLogMax = windowLogMax
    }

    deinit { ZSTD_freeDCtx(stream) }

    /// Decodes from `input` into `output`; returns how many bytes of each were used. Makes
    /// progress whenever `input` is non-empty or the decoder holds buffered output, and `output`
    /// is non-empty. Throws for corrupt data or a frame whose window is over the limit.
    public func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
      throws -> (consumed: Int, produced: Int)
    {
      var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
      var outBuffer = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
      let result = ZSTD_decompressStream(stream, &outBuffer, &inBuffer)
      if ZSTD_isError(result) != 0 {
        var text = Zstd.errorName(result)
        if text.hasSuffix("too much memory for decoding") {
          text += " (its window is over the \(1 << Int(windowLogMax))-byte limit)"
        }
        throw Failure(description: text)
      }
      // A call that moves nothing says nothing (after a frame ends it asks for the next header).
      if inBuffer.pos > 0 || outBuffer.pos > 0 { hint = result }
      return (inBuffer.pos, outBuffer.pos)
    }

    /// Whether the input so far ends inside a frame: true at the end of input means the stream
    /// is truncated. Check it once `decode` produces nothing more from empty input.
    public var isInsideFrame: Bool { hint != 0 }
  }
}
