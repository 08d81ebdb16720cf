import Compression
import NIOConcurrencyHelpers

/// Decompressors shared by every text subscriber replaying from disk (the log keeps only the
/// compressed form): one per thread that needs one at a time, instead of one per subscriber.
public final class DecompressorPool: @unchecked Sendable {
  public let dictionary: ZstdDictionary
  // Each decompressor is used by one thread at a time: taken out under the lock, put back after.
  private let lock = NIOLock()
  private var idle: [EventDecompressor] = []

  public init(dictionary: ZstdDictionary) { self.dictionary = dictionary }

  /// Runs `body` with a decompressor no other thread is using.
  public func with<T>(_ body: (EventDecompressor) throws -> T) throws -> T {
    let decompressor =
      try lock.withLock { idle.popLast() } ?? EventDecompressor(dictionary: dictionary)
    defer { lock.withLock { idle.append(decompressor) } }
    return try body(decompressor)
  }
}
