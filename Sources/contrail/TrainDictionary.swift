import ArgumentParser
import Compression
import EventLog
import Events
import Firehose
import Foundation
import SyntheticFirehose

/// `contrail train-dictionary`: trains a zstd dictionary on event samples and reports how it
/// compresses held-out events, next to any dictionaries given with --compare.
struct TrainDictionary: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train-dictionary",
    abstract: "Train a zstd dictionary for event compression.",
    discussion: """
      Samples come from JSONL event files, frames files (translated first), or the synthetic \
      generator. A held-out share of the samples is not trained on; the report compares the new \
      dictionary with --compare dictionaries on it.
      """)

  @Option(name: .shortAndLong, help: "Where to write the dictionary.")
  var output: String

  @Option(help: "Dictionary size in bytes.")
  var size: Int = 64 << 10

  @Option(help: "Dictionary ID (default: today's date as YYYYMMDD, UTC).")
  var id: UInt32?

  @Option(help: "Percent of the samples held out for evaluation.")
  var holdout: Int = 10

  @Option(help: "zstd level to optimize and evaluate for.")
  var level: Int32 = 3

  @Option(parsing: .upToNextOption, help: "JSONL files of events.")
  var jsonl: [String] = []

  @Option(parsing: .upToNextOption, help: "Frames files to translate into events.")
  var frames: [String] = []

  @Option(help: "Generate this many synthetic frames and train on their events.")
  var synthetic: Int?

  @Option(help: "Seed for --synthetic.")
  var seed: UInt64 = 1

  @Option(help: "Start of the synthetic clock, µs since the epoch (default: now).")
  var syntheticStart: Int64?

  @Option(help: "Train on the newest events of a data directory (safe on a live one).")
  var dataDir: String?

  @Option(help: "With --data-dir: how many of the newest events to use.")
  var maxSamples = 100_000

  @Option(help: "With --data-dir: the dictionary its events were compressed with.")
  var dataDictionary = "Dictionaries/contrail-default.zdict"

  @Option(help: "Threads for the parameter search (default: all cores).")
  var threads: Int?

  @Option(parsing: .upToNextOption, help: "Dictionaries to compare against on the held-out events.")
  var compare: [String] = []

  func validate() throws {
    guard !jsonl.isEmpty || !frames.isEmpty || synthetic != nil || dataDir != nil else {
      throw ValidationError(
        "give samples: --jsonl FILE…, --frames FILE…, --synthetic N or --data-dir DIR")
    }
    guard (0..<100).contains(holdout) else { throw ValidationError("--holdout must be 0–99") }
  }

  func run() throws {
    let samples = try loadSamples()
    let (training, heldOut) = DictionaryTrainer.holdOut(samples, percent: holdout)
    let raw = samples.reduce(0) { $0 + $1.count }
    printError(
      "samples: \(samples.count) (\(raw) bytes); training on \(training.count), holding out \(heldOut.count)"
    )
    let trainer = DictionaryTrainer(
      size: size, id: id ?? Self.todayID(), level: level, optimize: true,
      threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
    let dictionary = try Progress("training \(size)-byte dictionary").run {
      try trainer.train(training)
    }
    try Data(dictionary.bytes).write(to: URL(fileURLWithPath: output))
    print("wrote \(output): \(dictionary.bytes.count) bytes, ID \(dictionary.id)")
    guard !heldOut.isEmpty else { return }
    print(
      "held-out events: \(heldOut.count), average \(format1(Double(heldOut.reduce(0) { $0 + $1.count }) / Double(heldOut.count))) bytes"
    )
    try report("new", dictionary, heldOut)
    for path in compare { try report(path, try ZstdDictionary(path: path), heldOut) }
  }

  private func report(_ name: String, _ dictionary: ZstdDictionary, _ samples: [[UInt8]]) throws {
    let result = try DictionaryTrainer.evaluate(dictionary, on: samples, level: level)
    print(
      "  \(name) (ID \(dictionary.id), \(dictionary.bytes.count) B): average \(format1(result.averageCompressed)) B, "
        + "ratio \(format3(result.ratio))")
  }

  private func loadSamples() throws -> [[UInt8]] {
    var samples: [[UInt8]] = []
    for path in jsonl {
      let bytes = try FileBytes.read(path)
      samples += bytes.split(separator: UInt8(ascii: "\n")).map(Array.init)
    }
    let translator = Translator()
    var events: [Event] = []
    for path in frames {
      let contents = try FramesFile.read(path: path)
      let progress = Progress("reading \(path)", total: contents.frames.count)
      progress.run {
        for (index, frame) in contents.frames.enumerated() {
          translator.translate(frame, into: &events)
          if index % 1000 == 0 { progress.update(index) }
        }
        progress.update(contents.frames.count)
      }
    }
    if let synthetic {
      let start = syntheticStart ?? Sequencer.wallClockMicroseconds()
      printError("synthetic samples: seed \(seed), clock starting at \(start) µs")
      var generator = FirehoseGenerator(seed: seed, start: start)
      // time_us counts up from the start, so the same options give the same samples.
      translator.sequencer = Sequencer(last: start, clock: { 0 })
      let progress = Progress("generating samples", total: synthetic)
      progress.run {
        for index in 0..<synthetic {
          translator.translate(generator.next(), into: &events)
          if index % 1000 == 0 { progress.update(index) }
        }
        progress.update(synthetic)
      }
    }
    if let dataDir { samples += try logSamples(dataDir) }
    return samples + events.map(\.json)
  }

  /// The newest `maxSamples` events of a log, decompressed (read-only: fine beside `serve`).
  private func logSamples(_ directory: String) throws -> [[UInt8]] {
    let log = try EventLog(EventLog.Configuration(directory: directory), readOnly: true)
    let total = log.stats.events
    guard total > 0 else { throw CLIError("\(directory) holds no events") }
    let decompressor = try EventDecompressor(dictionary: try ZstdDictionary(path: dataDictionary))
    let reader = log.reader(from: nil)
    var skip = max(0, total - maxSamples)
    var samples: [[UInt8]] = []
    let progress = Progress("reading \(directory)", total: total)
    try progress.run {
      var index = 0
      while let record = reader.next() {
        index += 1
        if index % 10_000 == 0 { progress.update(index) }
        if skip > 0 {
          skip -= 1
          continue
        }
        samples.append(try decompressor.decompress(record.payload))
      }
      progress.update(total)
    }
    return samples
  }

  /// Today's date as YYYYMMDD in UTC.
  static func todayID() -> UInt32 {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    let parts = calendar.dateComponents([.year, .month, .day], from: Date())
    return UInt32(parts.year! * 10_000 + parts.month! * 100 + parts.day!)
  }
}

func format1(_ value: Double) -> String { String(format: "%.1f", value) }
