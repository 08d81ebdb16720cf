import ArgumentParser
import Compression
import SyntheticFirehose

/// `contrail bench compress`: per-event compression and decompression speed and size for each
/// dictionary, one thread, events held in memory.
struct BenchCompress: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "compress",
    abstract: "Compress/decompress events/s and bytes per event for each dictionary.")

  @Option(
    help:
      "A JSONL file of events (default: the capture's expected events in ../shared, else the fixture's)."
  )
  var jsonl: String?

  @Option(
    parsing: .upToNextOption,
    help: "Dictionaries (default: Contrail's and, when present, Jetstream v1's).")
  var dictionary: [String] = []

  @Option(help: "zstd level.")
  var level: Int32 = EventCompressor.defaultLevel

  @Option(help: "Passes over all events per trial.")
  var passes: Int = 200

  @Option(help: "Trials; the best is reported.")
  var trials: Int = 5

  func run() throws {
    let capture = "../shared/corpus/jetstream-v1-capture/expected_v1.jsonl"
    let path = jsonl ?? (fileExists(capture) ? capture : "Fixtures/synthetic-2000.expected.jsonl")
    let events = try FileBytes.read(path).split(separator: UInt8(ascii: "\n")).map(Array.init)
    guard !events.isEmpty else { throw CLIError("\(path) holds no events") }
    var dictionaries = dictionary
    if dictionaries.isEmpty {
      dictionaries = [
        "Dictionaries/contrail-default.zdict", "../shared/dictionaries/jetstream-v1.zdict",
      ]
      .filter(fileExists)
    }
    let raw = events.reduce(0) { $0 + $1.count }
    print(
      "events: \(path) (\(events.count), average \(format1(Double(raw) / Double(events.count))) B); level \(level), \(passes) passes × \(trials) trials, 1 thread"
    )
    for file in dictionaries {
      let dictionary = try ZstdDictionary(path: file)
      let compressor = try EventCompressor(dictionary: dictionary, level: level)
      let decompressor = try EventDecompressor(dictionary: dictionary)
      let frames = try events.map { try compressor.compress($0) }
      for (frame, event) in zip(frames, events) where try decompressor.decompress(frame) != event {
        throw CLIError("\(file): a frame did not decode to its event")
      }
      let compressed = frames.reduce(0) { $0 + $1.count }
      let compressSeconds = try best {
        for event in events { _ = try compressor.compress(event) }
      }
      let decompressSeconds = try best {
        for frame in frames { _ = try decompressor.decompress(frame) }
      }
      let perPass = Double(events.count) * Double(passes)
      print(
        "\(file) (ID \(dictionary.id), \(dictionary.bytes.count) B): average \(format1(Double(compressed) / Double(events.count))) B, "
          + "ratio \(format3(Double(compressed) / Double(raw))); compress \(Int(perPass / compressSeconds)) events/s, "
          + "decompress \(Int(perPass / decompressSeconds)) events/s")
    }
  }

  /// The fastest of `trials` runs of `passes` passes, in seconds.
  private func best(_ pass: () throws -> Void) throws -> Double {
    try pass()  // warm-up
    let clock = ContinuousClock()
    var best = Double.infinity
    for _ in 0..<trials {
      var failure: Error? = nil
      let elapsed = clock.measure {
        do { for _ in 0..<passes { try pass() } } catch { failure = error }
      }
      if let failure { throw failure }
      best = min(
        best, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
    }
    return best
  }
}
