import ArgumentParser
import Compression
import EventLog
import Events
import Foundation
import SyntheticFirehose

/// `contrail bench log`: append and replay throughput of the event log on one core.
struct BenchLog: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "log",
    abstract: "Append (fsync every 100 ms) and replay events/s, and bytes on disk per event.")

  @Option(help: "Synthetic frames to turn into stored events.")
  var frames: Int = 100_000

  @Option(help: "Events per append call.")
  var batch: Int = 100

  @Option(help: "Trials; the best is reported.")
  var trials: Int = 3

  @Option(help: "The dictionary that compresses the payloads.")
  var dictionary = "Dictionaries/contrail-default.zdict"

  @Option(help: "Where to put the temporary log (default: the system's temporary directory).")
  var scratch: String?

  func run() throws {
    let records = try Self.records(frames: frames, dictionary: dictionary)
    let payload = records.reduce(0) { $0 + $1.payload.count }
    print(
      "\(records.count) events from \(frames) synthetic frames, average payload \(format1(Double(payload) / Double(records.count))) B; best of \(trials)"
    )
    let root = scratch ?? FileManager.default.temporaryDirectory.path
    var appendBest = Double.infinity
    var scanBest = Double.infinity
    var filteredBest = Double.infinity
    var bytes = 0
    let filter = try EventFilter(wantedCollections: ["app.bsky.graph.follow"], wantedDIDs: [])
    var matched = 0
    for trial in 0..<trials {
      let directory = root + "/contrail-bench-log-\(getpid())-\(trial)"
      defer { try? FileManager.default.removeItem(atPath: directory) }
      var configuration = EventLog.Configuration(directory: directory)
      configuration.sync = .interval(milliseconds: 100)
      let log = try EventLog(configuration)
      let clock = ContinuousClock()
      appendBest = min(
        appendBest,
        seconds(
          clock.measure {
            for start in stride(from: 0, to: records.count, by: batch) {
              try? log.append(Array(records[start..<min(start + batch, records.count)]))
            }
            try? log.sync()
          }))
      guard log.stats.events == records.count else { throw CLIError("append failed") }
      bytes = log.stats.bytes
      var scanned = 0
      scanBest = min(
        scanBest,
        seconds(
          clock.measure {
            let reader = log.reader(from: nil)
            while reader.next() != nil { scanned += 1 }
          }))
      guard scanned == records.count else {
        throw CLIError("the scan read \(scanned) of \(records.count) events")
      }
      filteredBest = min(
        filteredBest,
        seconds(
          clock.measure {
            let reader = log.reader(from: nil, filter: filter)
            matched = 0
            while reader.next() != nil { matched += 1 }
          }))
    }
    let n = Double(records.count)
    print("append (batches of \(batch), fsync every 100 ms): \(Int(n / appendBest)) events/s")
    print("full scan (no filter, payloads handed out compressed): \(Int(n / scanBest)) events/s")
    print(
      "filtered scan (app.bsky.graph.follow, \(matched) matches): \(Int(n / filteredBest)) events scanned/s"
    )
    print(
      "bytes on disk: \(bytes) = \(format1(Double(bytes) / n)) per event, \(format1(Double(bytes - payload) / n)) beyond the payload"
    )
  }

  private func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
  }

  /// Stored events from synthetic frames: deterministic time_us, payloads compressed once.
  static func records(frames: Int, dictionary path: String) throws -> [LogRecord] {
    let compressor = try EventCompressor(dictionary: try ZstdDictionary(path: path))
    var generator = FirehoseGenerator(seed: 1)
    let translator = Translator(
      sequencer: Sequencer(last: FirehoseGenerator.defaultStart, clock: { 0 }))
    var events: [Event] = []
    for _ in 0..<frames { translator.translate(generator.next(), into: &events) }
    return try events.enumerated().map {
      LogRecord($1, eventSeq: Int64($0 + 1), payload: try compressor.compress($1.json))
    }
  }
}

/// The writer the crash test kills: appends the synthetic stream to a log as fast as it can,
/// resuming after the last stored seq, one append per frame.
struct LogWriter: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "log-writer",
    abstract: "Append synthetic events to a log until killed (crash testing).",
    shouldDisplay: false)

  @Argument var dataDir: String
  @Option var dictionary: String
  @Option var seed: UInt64 = 1
  @Option var frames: Int = 1_000_000

  func run() throws {
    var configuration = EventLog.Configuration(directory: dataDir)
    configuration.sync = .interval(milliseconds: 5)
    configuration.segmentMaxBytes = 256 << 10  // many segments, so kills also land near rolls
    let log = try EventLog(configuration)
    let resumeAfter = log.lastDurableSeq ?? 0
    let compressor = try EventCompressor(dictionary: try ZstdDictionary(path: dictionary))
    var generator = FirehoseGenerator(seed: seed)
    let translator = Translator(
      sequencer: Sequencer(last: log.lastTimeUS ?? FirehoseGenerator.defaultStart, clock: { 0 }))
    var events: [Event] = []
    for _ in 0..<frames {
      let frame = generator.next()
      guard generator.seq - 1 > resumeAfter else { continue }  // stored before the crash
      events.removeAll(keepingCapacity: true)
      translator.translate(frame, into: &events)
      let firstEventSeq = log.lastEventSeq + 1
      try log.append(
        try events.enumerated().map {
          LogRecord(
            $1, eventSeq: firstEventSeq + Int64($0), payload: try compressor.compress($1.json))
        })
    }
    try log.close()
  }
}
