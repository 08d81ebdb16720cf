import Prometheus

/// A bounded wait ran out.
public struct TimedOut: Error, CustomStringConvertible {
  public let what: String
  public var description: String { "timed out waiting: \(what)" }
}

/// Waits until `condition` holds, checking every 10 ms; throws `TimedOut` after `timeout`.
public func waitUntil(
  _ what: String, timeout: Duration = .seconds(60), _ condition: () async -> Bool
) async throws {
  let deadline = ContinuousClock.now + timeout
  while !(await condition()) {
    guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
    try await Task.sleep(for: .milliseconds(10))
  }
}

extension PrometheusCollectorRegistry {
  /// The value of one series in the Prometheus text, e.g. `name{label="x"}`; 0 when absent.
  public func value(_ series: String) -> Double {
    for line in emitToString().split(separator: "\n") where line.hasPrefix(series + " ") {
      return Double(line.dropFirst(series.count + 1)) ?? .nan
    }
    return 0
  }
}
