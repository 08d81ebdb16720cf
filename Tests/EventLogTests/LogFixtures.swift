import Compression
import EventLog
import Events
import Foundation
import SyntheticFirehose
import TestSupport

/// Stored events made from the synthetic generator, compressed with the default dictionary.
enum LogFixtures {
  /// `count` frames' events with deterministic time_us (start + 1, + 2, …).
  static func records(frames count: Int, seed: UInt64 = 3, start: Int64 = 1_700_000_000_000_000)
    throws
    -> [LogRecord]
  {
    let dictionary = try ZstdDictionary(
      path: SharedData.projectRoot + "/Dictionaries/contrail-default.zdict")
    let compressor = try EventCompressor(dictionary: dictionary)
    var generator = FirehoseGenerator(seed: seed)
    let translator = Translator(sequencer: Sequencer(last: start, clock: { 0 }))
    var events: [Event] = []
    for _ in 0..<count { translator.translate(generator.next(), into: &events) }
    return try events.map {
      LogRecord($0, payload: try compressor.compress($0.json))
    }
  }

  /// A fresh temporary data directory, removed by the caller.
  static func directory() -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent(
      "contrail-log-\(UUID())"
    ).path
    return path
  }

  static func configuration(_ directory: String, segmentBytes: Int = 256 << 20)
    -> EventLog.Configuration
  {
    var configuration = EventLog.Configuration(directory: directory)
    configuration.sync = .never
    configuration.segmentMaxBytes = segmentBytes
    return configuration
  }

  static func readAll(_ reader: LogReader) -> [LogRecord] {
    var records: [LogRecord] = []
    while let record = reader.next() { records.append(record) }
    return records
  }
}
