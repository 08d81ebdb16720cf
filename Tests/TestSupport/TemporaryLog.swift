import EventLog
import Foundation

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
}
