import CZstd

/// Trains a zstd dictionary from event samples with libzstd's fast-cover algorithm, and
/// measures any dictionary on held-out samples.
public struct DictionaryTrainer {
  public struct Failure: Error, CustomStringConvertible {
    public let description: String
  }

  /// How a set of samples compresses with one dictionary.
  public struct Evaluation: Sendable {
    public let samples: Int
    public let rawBytes: Int
    public let compressedBytes: Int
    public var averageRaw: Double { Double(rawBytes) / Double(max(samples, 1)) }
    public var averageCompressed: Double { Double(compressedBytes) / Double(max(samples, 1)) }
    public var ratio: Double { Double(compressedBytes) / Double(max(rawBytes, 1)) }
  }

  public var size: Int
  public var id: UInt32
  public var level: Int32
  /// Search fast-cover's parameters (k, d) instead of using fixed ones.
  public var optimize: Bool
  /// Threads for the parameter search; 1 keeps the result deterministic.
  public var threads: Int

  public init(
    size: Int = 64 << 10, id: UInt32, level: Int32 = 3, optimize: Bool = true, threads: Int = 1
  ) {
    self.size = size
    self.id = id
    self.level = level
    self.optimize = optimize
    self.threads = threads
  }

  /// Trains on `samples` (each one event's JSON). Blocks until done.
  public func train(_ samples: [[UInt8]]) throws -> ZstdDictionary {
    guard samples.count >= 10 else {
      throw Failure(description: "need at least 10 samples to train, got \(samples.count)")
    }
    guard (256...(16 << 20)).contains(size) else {
      throw Failure(description: "dictionary size \(size) is outside 256 B – 16 MiB")
    }
    let joined = samples.flatMap { $0 }
    let sizes = samples.map(\.count)
    var parameters = ZDICT_fastCover_params_t()
    parameters.zParams.compressionLevel = level
    parameters.zParams.dictID = id
    parameters.zParams.notificationLevel = 0
    parameters.nbThreads = UInt32(max(threads, 1))
    parameters.f = 20
    parameters.accel = 1
    if !optimize {
      parameters.k = 200
      parameters.d = 8
    } else {
      parameters.steps = 40
      parameters.splitPoint = 0.75
    }
    var dictionary = [UInt8](repeating: 0, count: size)
    let written = dictionary.withUnsafeMutableBytes { out in
      joined.withUnsafeBytes { input in
        sizes.withUnsafeBufferPointer { sizes in
          optimize
            ? ZDICT_optimizeTrainFromBuffer_fastCover(
              out.baseAddress, out.count, input.baseAddress, sizes.baseAddress, UInt32(sizes.count),
              &parameters)
            : ZDICT_trainFromBuffer_fastCover(
              out.baseAddress, out.count, input.baseAddress, sizes.baseAddress, UInt32(sizes.count),
              parameters)
        }
      }
    }
    if ZDICT_isError(written) != 0 {
      throw Failure(description: "training failed: " + String(cString: ZDICT_getErrorName(written)))
    }
    dictionary.removeSubrange(written...)
    return try ZstdDictionary(bytes: dictionary)
  }

  /// Compresses each sample with `dictionary` at `level` and totals the sizes.
  public static func evaluate(_ dictionary: ZstdDictionary, on samples: [[UInt8]], level: Int32 = 3)
    throws
    -> Evaluation
  {
    let compressor = try EventCompressor(dictionary: dictionary, level: level)
    var compressed = 0
    for sample in samples { compressed += try compressor.compress(sample).count }
    return Evaluation(
      samples: samples.count, rawBytes: samples.reduce(0) { $0 + $1.count },
      compressedBytes: compressed)
  }

  /// Splits samples deterministically: every `100 / percent`-th sample is held out.
  public static func holdOut(_ samples: [[UInt8]], percent: Int) -> (
    training: [[UInt8]], heldOut: [[UInt8]]
  ) {
    guard percent > 0 else { return (samples, []) }
    var training: [[UInt8]] = []
    var heldOut: [[UInt8]] = []
    var credit = 0
    for sample in samples {
      credit += percent
      if credit >= 100 {
        credit -= 100
        heldOut.append(sample)
      } else {
        training.append(sample)
      }
    }
    return (training, heldOut)
  }
}
