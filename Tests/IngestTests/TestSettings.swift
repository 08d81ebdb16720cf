import App
import Ingest
import Logging
import TestSupport

extension ServeSettings {
  /// An in-process server for tests: 127.0.0.1 on an ephemeral port, the default dictionary,
  /// reconnects within 200 ms, no watchdog.
  static func forTests(relay: String, dataDirectory: String) throws -> ServeSettings {
    var settings = ServeSettings(
      relay: try RelayEndpoint(relay), dictionaryPath: SharedData.defaultDictionaryPath)
    settings.host = "127.0.0.1"
    settings.port = 0
    settings.dataDirectory = dataDirectory
    settings.backoffBase = .milliseconds(20)
    settings.backoffCap = .milliseconds(200)
    settings.staleAfter = nil
    return settings
  }
}

/// Ingest's log lines are not the tests' output.
let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

/// `time_us` set to 0, to compare events across runs.
func blankTime(_ json: String) -> String {
  json.replacingOccurrences(
    of: #""time_us":[0-9]+"#, with: #""time_us":0"#, options: .regularExpression)
}
