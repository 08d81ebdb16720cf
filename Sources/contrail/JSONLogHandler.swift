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
      "{" + fields.map { "\(Self.quote($0)):\(Self.quote($1))" }.joined(separator: ",") + "}\n"
    FileHandle.standardError.write(Data(line.utf8))
  }

  static func quote(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case let c where c.value < 0x20: out += String(format: "\\u%04x", c.value)
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}
