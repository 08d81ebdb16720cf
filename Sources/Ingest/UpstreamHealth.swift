/// Whether a Jetstream host's frames are usable, judged over windows of at least `window`
/// frames so that `/readyz` neither flaps nor misses a host it cannot follow: not ready once
/// three quarters or more of a window were left out (unreadable, not events, out of time), ready
/// again once a window has a quarter or less left out; in between, unchanged.
struct UpstreamHealth {
  static let window = 16
  private var leftOut = 0
  private var total = 0
  /// Whether the last full window said the host's frames cannot be used.
  private(set) var failing = false
  /// Why the latest frame left out was, for the message that says so.
  private(set) var lastProblem: String?

  /// Adds a batch's frames, of which `leftOut` were left out (the last for `problem`); returns
  /// whether a window closed.
  @discardableResult
  mutating func add(frames: Int, leftOut: Int, problem: String? = nil) -> Bool {
    total += frames
    self.leftOut += leftOut
    if let problem { lastProblem = problem }
    guard total >= Self.window else { return false }
    if self.leftOut * 4 >= total * 3 {
      failing = true
    } else if self.leftOut * 4 <= total {
      failing = false
    }
    (self.leftOut, total) = (0, 0)
    return true
  }
}
