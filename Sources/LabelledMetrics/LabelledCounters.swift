import CoreMetrics
import Synchronization

/// Counters whose label values are known only when something happens (a close reason, an error
/// code), each created on its first use and kept: one `Counter` per label and values.
public final class LabelledCounters: Sendable {
  private let factory: any MetricsFactory
  private let cache = Mutex<[String: Counter]>([:])

  public init(factory: any MetricsFactory) {
    self.factory = factory
  }

  /// The counter `label{dimensions}`. A label always comes with the same dimension names, so the
  /// values alone tell its counters apart.
  public func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
    let key = label + dimensions.map { "\u{0}" + $0.1 }.joined()
    return cache.withLock { cache in
      if let counter = cache[key] { return counter }
      let counter = Counter(label: label, dimensions: dimensions, factory: factory)
      cache[key] = counter
      return counter
    }
  }
}
