import CZstd
import Synchronization

/// Decompresses single event frames made with one dictionary. Frames naming another dictionary,
/// corrupt or truncated frames, and frames that would decode past `maxSize` are rejected with
/// a clear error. Frames without a content size are decoded as a bounded stream.
/// Not thread-safe: one per thread.
public final class EventDecompressor {
  public let dictionary: ZstdDictionary
  public let maxSize: Int
  private let context: OpaquePointer
  private let digested: OpaquePointer

  public struct Failure: Error, CustomStringConvertible, Equatable {
    public let description: String
  }

  /// `maxSize` bounds the output of any one frame (decompression bombs); the default is the
  /// largest event a subscriber could be sent plus room to spare.
  public init(dictionary: ZstdDictionary, maxSize: Int = 16 << 20) throws {
    guard let context = ZSTD_createDCtx() else { throw Failure(description: "out of memory") }
    let digested = dictionary.bytes.withUnsafeBytes { ZSTD_createDDict($0.baseAddress, $0.count) }
    guard let digested else {
      ZSTD_freeDCtx(context)
      throw Failure(description: "zstd could not digest the dictionary")
    }
    self.dictionary = dictionary
    self.maxSize = maxSize
    self.context = context
    self.digested = digested
    let result = ZSTD_DCtx_refDDict(context, digested)
    if ZSTD_isError(result) != 0 { throw Failure(description: Zstd.errorName(result)) }
  }

  deinit {
    ZSTD_freeDCtx(context)
    ZSTD_freeDDict(digested)
  }

  private static let decompressed = Atomic<Int>(0)

  /// Frames decompressed by every decompressor in this process (see
  /// `EventCompressor.framesCompressed`).
  public static var framesDecompressed: Int { decompressed.load(ordering: .relaxed) }

  public func decompress(_ frame: UnsafeRawBufferPointer) throws -> [UInt8] {
    Self.decompressed.add(1, ordering: .relaxed)
    let named = ZSTD_getDictID_fromFrame(frame.baseAddress, frame.count)
    if named != 0 && named != dictionary.id {
      throw Failure(
        description: "the frame needs dictionary \(named), but this decoder has \(dictionary.id)")
    }
    let declared = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
    if declared == ZSTD_CONTENTSIZE_ERROR {
      throw Failure(description: "not a zstd frame")
    }
    if declared != ZSTD_CONTENTSIZE_UNKNOWN {
      guard declared <= UInt64(maxSize) else {
        throw Failure(
          description: "the frame declares \(declared) bytes, over the \(maxSize)-byte limit")
      }
      var failure: Int? = nil
      let output = [UInt8](unsafeUninitializedCapacity: Int(declared)) { buffer, count in
        let result = ZSTD_decompressDCtx(
          context, buffer.baseAddress, Int(declared), frame.baseAddress, frame.count)
        if ZSTD_isError(result) != 0 {
          failure = result
          count = 0
        } else {
          count = result
        }
      }
      if let failure { throw Failure(description: Zstd.errorName(failure)) }
      guard output.count == Int(declared) else {
        throw Failure(
          description: "the frame decoded to \(output.count) bytes, not the \(declared) it declares"
        )
      }
      return output
    }
    return try decompressStream(frame)
  }

  /// The decoded size a frame declares in its header, if it declares one.
  public static func contentSize(of frame: UnsafeRawBufferPointer) -> Int? {
    let size = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
    return size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR ? nil : Int(size)
  }

  public func decompress(_ frame: [UInt8]) throws -> [UInt8] {
    try frame.withUnsafeBytes { try decompress($0) }
  }

  /// A frame without a content size: decode into a buffer that may grow up to `maxSize`.
  private func decompressStream(_ frame: UnsafeRawBufferPointer) throws -> [UInt8] {
    ZSTD_DCtx_reset(context, ZSTD_reset_session_only)
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: min(maxSize + 1, 64 << 10))
    var input = ZSTD_inBuffer(src: frame.baseAddress, size: frame.count, pos: 0)
    while true {
      let (remaining, produced) = try chunk.withUnsafeMutableBytes { out -> (Int, Int) in
        var buffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
        let result = ZSTD_decompressStream(context, &buffer, &input)
        if ZSTD_isError(result) != 0 { throw Failure(description: Zstd.errorName(result)) }
        return (result, buffer.pos)
      }
      output.append(contentsOf: chunk[..<produced])
      if output.count > maxSize {
        ZSTD_DCtx_reset(context, ZSTD_reset_session_only)
        throw Failure(description: "the frame decodes to more than the \(maxSize)-byte limit")
      }
      if remaining == 0 { return output }  // frame complete
      if input.pos == input.size && produced == 0 {
        ZSTD_DCtx_reset(context, ZSTD_reset_session_only)
        throw Failure(description: "the frame is truncated")
      }
    }
  }
}
