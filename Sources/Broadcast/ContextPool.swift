import Compression
import NIOConcurrencyHelpers

/// zstd contexts shared by the threads that need one for a moment (disk replays, the v2
/// transcoder): one per thread using one at a time, instead of one per subscriber.
public final class ContextPool<Context>: @unchecked Sendable {
  // Each context is used by one thread at a time: taken out under the lock, put back after.
  private let lock = NIOLock()
  private var idle: [Context] = []
  private let make: @Sendable () throws -> Context

  public init(make: @escaping @Sendable () throws -> Context) { self.make = make }

  /// Runs `body` with a context no other thread is using.
  public func with<T>(_ body: (Context) throws -> T) throws -> T {
    let context = try lock.withLock { idle.popLast() } ?? make()
    defer { lock.withLock { idle.append(context) } }
    return try body(context)
  }
}

/// Decompressors for text subscribers replaying from disk (the log keeps only the compressed
/// form).
public typealias DecompressorPool = ContextPool<EventDecompressor>

extension ContextPool where Context == EventDecompressor {
  public convenience init(dictionary: ZstdDictionary) {
    self.init { try EventDecompressor(dictionary: dictionary) }
  }
}

extension ContextPool where Context == EventCompressor {
  public convenience init(dictionary: ZstdDictionary) {
    self.init { try EventCompressor(dictionary: dictionary) }
  }
}
