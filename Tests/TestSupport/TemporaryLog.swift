import EventLog
import Foundation
import Synchronization

/// Throwaway event logs for tests: a fresh directory, no fsync.
public enum TemporaryLog {
  public static func directory(_ label: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("contrail-\(label)-\(UUID())")
      .path
  }

  public static func configuration(_ directory: String, segmentBytes: Int = 256 << 20)
    -> EventLog.Configuration
  {
    var configuration = EventLog.Configuration(directory: directory)
    configuration.sync = .never
    configuration.segmentMaxBytes = segmentBytes
    return configuration
  }

  /// A new log in a new directory, which is added to `directories` for the caller to remove.
  public static func open(
    _ label: String, segmentBytes: Int = 256 << 20, directories: inout [String]
  ) throws
    -> EventLog
  {
    let path = directory(label)
    directories.append(path)
    return try EventLog(configuration(path, segmentBytes: segmentBytes))
  }

  /// A new log in a new directory (added to `directories`) that keeps `retentionMicroseconds` of
  /// events by `clock`, which the test moves to make `enforceRetention()` delete segments; they
  /// are small by default, so that a short stream fills several.
  public static func open(
    _ label: String, retentionMicroseconds: Int64, clock: TestClock,
    segmentBytes: Int = 16 << 10, directories: inout [String]
  ) throws -> EventLog {
    let path = directory(label)
    directories.append(path)
    var configuration = configuration(path, segmentBytes: segmentBytes)
    configuration.retentionMicroseconds = retentionMicroseconds
    configuration.clock = { clock.now }
    return try EventLog(configuration)
  }
}

/// A wall clock in µs that stands still until the test sets it.
public final class TestClock: Sendable {
  private let value: Atomic<Int64>

  public init(_ now: Int64) { value = Atomic(now) }

  public var now: Int64 { value.load(ordering: .relaxed) }

  public func set(_ now: Int64) { value.store(now, ordering: .relaxed) }
}

extension EventLog {
  /// Every record the log holds, oldest first, as stored.
  public func allRecords() -> [LogRecord] {
    let reader = reader(from: 0, filter: .everything)
    var records: [LogRecord] = []
    while let record = reader.next() { records.append(record) }
    return records
  }
}
