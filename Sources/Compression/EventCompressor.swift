import CZstd
import Synchronization

/// Compresses events one at a time, each into a self-contained zstd frame that names the
/// dictionary (its ID in the header) and records the content size. One context and one digested
/// dictionary are created up front and reused for every event. Not thread-safe: one per thread.
public final class EventCompressor {
  public let dictionary: ZstdDictionary
  public let level: Int32
  private let context: OpaquePointer
  private let digested: OpaquePointer

  public struct Failure: Error, CustomStringConvertible {
    public let description: String
  }

  /// The level events are compressed at unless configured: on real and generated events with
  /// the default dictionary, level 1 gives the same bytes per event as level 3 (215.8 vs 215.9
  /// B on the capture) for ~70 % of the CPU (Benchmarks/RESULTS.md, "zstd level").
  public static let defaultLevel: Int32 = 1

  /// `checksum` adds a 4-byte content checksum to every frame (off by default; decoders must not
  /// require it).
  public init(dictionary: ZstdDictionary, level: Int32 = defaultLevel, checksum: Bool = false)
    throws
  {
    guard (1...ZSTD_maxCLevel()).contains(level) else {
      throw Failure(description: "compression level \(level) is outside 1–\(ZSTD_maxCLevel())")
    }
    guard let context = ZSTD_createCCtx() else { throw Failure(description: "out of memory") }
    let digested = dictionary.bytes.withUnsafeBytes {
      ZSTD_createCDict($0.baseAddress, $0.count, level)
    }
    guard let digested else {
      ZSTD_freeCCtx(context)
      throw Failure(description: "zstd could not digest the dictionary")
    }
    self.dictionary = dictionary
    self.level = level
    self.context = context
    self.digested = digested
    for (parameter, value) in [
      (ZSTD_c_contentSizeFlag, 1), (ZSTD_c_dictIDFlag, 1), (ZSTD_c_checksumFlag, checksum ? 1 : 0),
    ] {
      let result = ZSTD_CCtx_setParameter(context, parameter, Int32(value))
      if ZSTD_isError(result) != 0 { throw Failure(description: Zstd.errorName(result)) }
    }
    let result = ZSTD_CCtx_refCDict(context, digested)
    if ZSTD_isError(result) != 0 { throw Failure(description: Zstd.errorName(result)) }
  }

  deinit {
    ZSTD_freeCCtx(context)
    ZSTD_freeCDict(digested)
  }

  private static let compressed = Atomic<Int>(0)

  /// Frames compressed by every compressor in this process: the fan-out test's proof that
  /// events are compressed once, not once per subscriber.
  public static var framesCompressed: Int { compressed.load(ordering: .relaxed) }

  /// One zstd frame holding exactly `input`.
  public func compress(_ input: UnsafeRawBufferPointer) throws -> [UInt8] {
    Self.compressed.add(1, ordering: .relaxed)
    let bound = ZSTD_compressBound(input.count)
    var failure: Int? = nil
    let frame = [UInt8](unsafeUninitializedCapacity: bound) { buffer, count in
      let written = ZSTD_compress2(
        context, buffer.baseAddress, bound, input.baseAddress, input.count)
      if ZSTD_isError(written) != 0 {
        failure = written
        count = 0
      } else {
        count = written
      }
    }
    if let failure { throw Failure(description: Zstd.errorName(failure)) }
    return frame
  }

  public func compress(_ input: [UInt8]) throws -> [UInt8] {
    try input.withUnsafeBytes { try compress($0) }
  }
}

/// Small helpers shared by the zstd wrappers.
enum Zstd {
  static func errorName(_ code: Int) -> String {
    "zstd: " + String(cString: ZSTD_getErrorName(code))
  }
}
