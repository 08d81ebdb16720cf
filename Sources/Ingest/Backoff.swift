/// Reconnect delays for an upstream (a relay, a primary): exponential with jitter — the step
/// doubles from `base` to `cap`, and each delay is uniform between half the step and the whole
/// step, never below the base (1 s, 1–2 s, 2–4 s, … 15–30 s by default).
enum Backoff {
  static func delay(_ attempt: Int, base: Duration, cap: Duration) -> Duration {
    let step = min(cap, base * (1 << min(attempt, 20)))
    let nanoseconds =
      step.components.seconds * 1_000_000_000 + step.components.attoseconds / 1_000_000_000
    let jittered = Duration.nanoseconds(Int64.random(in: (nanoseconds / 2)...max(nanoseconds, 0)))
    return max(base, jittered)
  }
}
