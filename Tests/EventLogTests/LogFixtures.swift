import EventLog
import TestSupport

/// Stored events made from the synthetic generator, compressed with the default dictionary.
enum LogFixtures {
  /// `count` frames' events with deterministic time_us (start + 1, + 2, …).
  static func records(frames count: Int, seed: UInt64 = 3, start: Int64 = 1_700_000_000_000_000)
    throws -> [LogRecord]
  {
    try SyntheticStream(frames: count, seed: seed, start: start).records
  }

  static func directory() -> String { TemporaryLog.directory("log") }

  static func configuration(_ directory: String, segmentBytes: Int = 256 << 20)
    -> EventLog.Configuration
  {
    TemporaryLog.configuration(directory, segmentBytes: segmentBytes)
  }

  static func readAll(_ reader: LogReader) -> [LogRecord] {
    var records: [LogRecord] = []
    while let record = reader.next() { records.append(record) }
    return records
  }
}
