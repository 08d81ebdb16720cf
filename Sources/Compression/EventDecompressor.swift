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

  /// Whether `frame` is exactly one zstd frame, nothing after it (zstd alone would skip
  /// skippable frames that follow, and ignore other bytes).
  public static func isSingleFrame(_ frame: UnsafeRawBufferPointer) -> Bool {
    let length = ZSTD_findFrameCompressedSize(frame.baseAddress, frame.count)
    return ZSTD_isError(length) == 0 && length == frame.count
  }

  public func decompress(_ frame: UnsafeRawBufferPointer) throws -> [UInt8] {
    guard let size = try checkedSize(of: frame) else {
      Self.decompressed.add(1, ordering: .relaxed)
      return try decompressStream(frame)
    }
    var failure: (any Error)? = nil
    let output = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
      do {
        try decompress(frame, size: size, into: UnsafeMutableRawBufferPointer(buffer))
        count = size
      } catch {
        failure = error
        count = 0
      }
    }
    if let failure { throw failure }
    return output
  }

  /// The size a frame for this decoder declares (nil: it declares none, so only `decompress`
  /// can decode it); throws for another dictionary, a non-frame or a size over `maxSize`.
  public func checkedSize(of frame: UnsafeRawBufferPointer) throws -> Int? {
    let named = ZSTD_getDictID_fromFrame(frame.baseAddress, frame.count)
    if named != 0 && named != dictionary.id {
      throw Failure(
        description: "the frame needs dictionary \(named), but this decoder has \(dictionary.id)")
    }
    let declared = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
    if declared == ZSTD_CONTENTSIZE_ERROR {
      throw Failure(description: "not a zstd frame")
    }
    if declared == ZSTD_CONTENTSIZE_UNKNOWN { return nil }
    guard declared <= UInt64(maxSize) else {
      throw Failure(
        description: "the frame declares \(declared) bytes, over the \(maxSize)-byte limit")
    }
    return Int(declared)
  }

  /// Decodes a frame whose `checkedSize` is `size` into the first `size` bytes of `destination`
  /// (no allocation: replays decode a whole batch into one buffer).
  public func decompress(
    _ frame: UnsafeRawBufferPointer, size: Int, into destination: UnsafeMutableRawBufferPointer
  ) throws {
    precondition(destination.count >= size)
    Self.decompressed.add(1, ordering: .relaxed)
    let result = ZSTD_decompressDCtx(
      context, destination.baseAddress, size, frame.baseAddress, frame.count)
    if ZSTD_isError(result) != 0 { throw Failure(description: Zstd.errorName(result)) }
    guard result == size else {
      throw Failure(
        description: "the frame decoded to \(result) bytes, not the \(size) it declares")
    }
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
