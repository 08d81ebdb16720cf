import Events
import Synchronization

/// The shared in-memory window of the newest events (ARCHITECTURE §4): bounded by count and
/// bytes, published to once per ingest batch, read by every subscriber at its own position.
/// Subscribers waiting at the head are woken once per published batch.
public final class LiveRing: Sendable {
  public let capacity: Int
  public let maxBytes: Int

  private struct State {
    var events: [BroadcastEvent?]
    var head = 0  // index of the oldest entry
    var count = 0
    var bytes = 0
    /// Everything at or before this time is gone from the ring (or never was in it).
    var evictedThrough: Int64
    var waiters: [@Sendable () -> Void] = []
    var wakeUps = 0
  }

  private let state: Mutex<State>

  /// `startAfter`: the newest `time_us` that exists only on disk (the log's last event at
  /// start-up); readers positioned before it must read the log first.
  public init(capacity: Int = 65_536, maxBytes: Int = 128 << 20, startAfter: Int64 = 0) {
    self.capacity = max(capacity, 1)
    self.maxBytes = maxBytes
    self.state = Mutex(
      State(events: Array(repeating: nil, count: max(capacity, 1)), evictedThrough: startAfter))
  }

  /// Appends events in `time_us` order (after they are in the log), evicting the oldest beyond
  /// the bounds, then wakes every waiting subscriber once.
  public func publish(_ batch: [BroadcastEvent]) {
    guard !batch.isEmpty else { return }
    let waiters = state.withLock { state -> [@Sendable () -> Void] in
      for event in batch {
        while state.count == capacity || (state.count > 0 && state.bytes + event.size > maxBytes) {
          let oldest = state.events[state.head]!
          state.evictedThrough = oldest.timeUS
          state.bytes -= oldest.size
          state.events[state.head] = nil
          state.head = (state.head + 1) % capacity
          state.count -= 1
        }
        state.events[(state.head + state.count) % capacity] = event
        state.count += 1
        state.bytes += event.size
      }
      let waiters = state.waiters
      state.waiters.removeAll()
      if !waiters.isEmpty { state.wakeUps += 1 }
      return waiters
    }
    for wake in waiters { wake() }
  }

  /// Calls `wake` once, after the next publish (or now, if something newer than `position` is
  /// already there).
  public func notify(after position: Int64, _ wake: @escaping @Sendable () -> Void) {
    let ready = state.withLock { state -> Bool in
      if state.count > 0, state.events[(state.head + state.count - 1) % capacity]!.timeUS > position
      {
        return true
      }
      state.waiters.append(wake)
      return false
    }
    if ready { wake() }
  }

  /// What a read found.
  public enum Read {
    /// Matching events after the position (maybe none), the time scanned through, and how many
    /// entries were looked at (matching or not).
    case events([BroadcastEvent], scannedThrough: Int64, scanned: Int)
    /// Events after the position have left the ring: read them from the log.
    case behind
  }

  /// Up to `limit` events with `time_us > position` that pass `filter`, scanning at most
  /// `limit * 8` entries so one call stays short.
  public func read(after position: Int64, limit: Int, filter: EventFilter) -> Read {
    state.withLock { state in
      guard position >= state.evictedThrough else { return .behind }
      // Binary search the first entry newer than the position.
      var low = 0
      var high = state.count
      while low < high {
        let mid = (low + high) / 2
        if state.events[(state.head + mid) % capacity]!.timeUS <= position {
          low = mid + 1
        } else {
          high = mid
        }
      }
      var found: [BroadcastEvent] = []
      var scanned = position
      var index = low
      while index < state.count && found.count < limit && index - low < limit * 8 {
        let event = state.events[(state.head + index) % capacity]!
        if filter.matches(kind: event.kind, did: event.did, collection: event.collection) {
          found.append(event)
        }
        scanned = event.timeUS
        index += 1
      }
      return .events(found, scannedThrough: scanned, scanned: index - low)
    }
  }

  /// The newest `time_us` published (or the start-up position).
  public var newestTimeUS: Int64 {
    state.withLock { state in
      state.count > 0
        ? state.events[(state.head + state.count - 1) % capacity]!.timeUS : state.evictedThrough
    }
  }

  /// Publishes that woke at least one waiter (one wake-up round per batch, not per event).
  public var wakeUpRounds: Int { state.withLock { $0.wakeUps } }
}
