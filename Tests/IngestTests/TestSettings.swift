import App
import Ingest
import Logging
import TestSupport
import XCTest

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

  /// `forTests` for `serve --offline` (the generator's frames; the relay is never dialed).
  static func offlineForTests(dataDirectory: String) throws -> ServeSettings {
    var settings = try forTests(relay: "ws://127.0.0.1:1", dataDirectory: dataDirectory)
    settings.offline = true
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

/// How many of `expected` (relay seq, JSON with `time_us` blanked) `subscriber` sends next, in
/// order: counting stops at the first event that differs (a test failure), at a message that is
/// not an event, or after 20 s without one.
func receivedInOrder(_ subscriber: TestWebSocketClient, _ expected: [(Int64, String)])
  async throws -> Int
{
  var received = 0
  while received < expected.count {
    guard case .text(let text)? = try await subscriber.next(timeout: .seconds(20)) else { break }
    guard blankTime(text) == expected[received].1 else {
      XCTFail("subscriber event \(received) differs")
      break
    }
    received += 1
  }
  return received
}
