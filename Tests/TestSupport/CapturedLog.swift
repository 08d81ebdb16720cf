import Logging
import Synchronization

/// A logger whose lines are kept in memory, for tests that check what an operator would read:
/// each line is the level, the message and the metadata sorted by key (`key=value`).
public final class CapturedLog: Sendable {
  private let lines = Mutex<[String]>([])

  public init() {}

  public var logger: Logger {
    Logger(label: "test") { _ in Handler(log: self) }
  }

  /// Every line so far.
  public var all: [String] { lines.withLock { $0 } }

  /// The lines containing every one of `parts`.
  public func matching(_ parts: String...) -> [String] {
    all.filter { line in parts.allSatisfy { line.contains($0) } }
  }

  private struct Handler: LogHandler {
    let log: CapturedLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
      get { metadata[key] }
      set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
      let all = metadata.merging(event.metadata ?? [:]) { $1 }
      let fields = all.keys.sorted().map { "\($0)=\(all[$0]!)" }.joined(separator: " ")
      let text = "\(event.level) \(event.message) \(fields)"
      log.lines.withLock { $0.append(text) }
    }
  }
}
