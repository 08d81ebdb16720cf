#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Assigns `time_us`: `max(wall clock µs, previous + 1)`, so values are unique and strictly
/// increasing even when the clock steps back (PROTOCOL §3.4).
public struct Sequencer: Sendable {
  /// The last value handed out (start it at the largest stored `time_us`).
  public private(set) var last: Int64
  private let clock: @Sendable () -> Int64

  public init(
    last: Int64 = 0, clock: @escaping @Sendable () -> Int64 = Sequencer.wallClockMicroseconds
  ) {
    self.last = last
    self.clock = clock
  }

  public mutating func next() -> Int64 {
    last = Swift.max(clock(), last + 1)
    return last
  }

  @Sendable public static func wallClockMicroseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1_000
  }
}
