import Firehose
import Foundation
import Logging

/// `--log-format json`: one JSON object per line on standard error, with the time, level, label,
/// message and metadata as string fields (for log shippers).
struct JSONLogHandler: LogHandler {
  let label: String
  var logLevel: Logger.Level = .info
  var metadata: Logger.Metadata = [:]

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    var fields: [(String, String)] = [
      ("time", Date().formatted(.iso8601)), ("level", event.level.rawValue), ("label", label),
      ("message", "\(event.message)"),
    ]
    for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 })
      .sorted(by: { $0.key < $1.key })
    {
      fields.append((key, "\(value)"))
    }
    let line =
      "{"
      + fields.map { "\(JSONString.quoted($0)):\(JSONString.quoted($1))" }.joined(separator: ",")
      + "}\n"
    FileHandle.standardError.write(Data(line.utf8))
  }
}
