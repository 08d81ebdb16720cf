import Foundation
import Synchronization

/// One status line on standard error, rewritten in place while work runs.
final class Progress: Sendable {
  private let label: String
  private let state = Mutex<(count: Int, total: Int?, done: Bool)>((0, nil, false))
  private let started = ContinuousClock.now

  init(_ label: String, total: Int? = nil) {
    self.label = label
    state.withLock { $0.total = total }
  }

  func update(_ count: Int) {
    state.withLock { $0.count = count }
  }

  /// Runs `work` while a background thread redraws the line twice a second.
  func run<T>(_ work: () throws -> T) rethrows -> T {
    let ticker = Thread { [self] in
      while !state.withLock({ $0.done }) {
        draw(final: false)
        Thread.sleep(forTimeInterval: 0.5)
      }
    }
    ticker.start()
    defer {
      state.withLock { $0.done = true }
      draw(final: true)
    }
    return try work()
  }

  private func draw(final: Bool) {
    let (count, total, _) = state.withLock { $0 }
    let elapsed = ContinuousClock.now - started
    let seconds =
      Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    var line = "\r\(label)"
    if let total, total > 0 {
      let width = 30
      let filled = min(width, count * width / total)
      line +=
        " [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        + "] \(count)/\(total)"
    } else if count > 0 {
      line += " \(count)"
    }
    line += String(format: " %.1fs", seconds) + (final ? "\n" : "")
    FileHandle.standardError.write(Data(line.utf8))
  }
}
