import Events
import Synchronization

/// The shared in-memory window of the newest events (ARCHITECTURE §4): bounded by count and
/// bytes, published to once per ingest batch, read by every subscriber at its own position.
/// Subscribers waiting at the head are woken once per published batch. Each event's websocket
/// frames are built once, at publish, into blocks shared by neighbouring events.
public final class LiveRing: Sendable {
  public let capacity: Int
  public let maxBytes: Int
  /// Whether `publish` builds the events' frames (`BroadcastEvent.frames`). Off only to measure
  /// the approach it replaced (`contrail bench fanout --compare`): subscribers then copy every
  /// payload into their own buffers, as they did before.
  public let framing: Bool

  /// Events published together (one frame block's), never changed once in the ring: readers
  /// take references to the segments they need under the lock and scan them outside it.
  private final class Segment: Sendable {
    let events: [BroadcastEvent]
    let lastTimeUS: Int64

    init(_ events: [BroadcastEvent]) {
      self.events = events
      lastTimeUS = events[events.count - 1].timeUS
    }
  }

  private struct State {
    /// A circular buffer of segments, oldest first; each holds at least one event of the ring,
    /// so there are never more than `capacity` (+ 1 while publishing one).
    var segments: [Segment?]
    var segmentHead = 0
    var segmentCount = 0
    /// The oldest segment's events before this index are gone.
    var firstOffset = 0
    var count = 0
    var bytes = 0
    /// Everything at or before this time is gone from the ring (or never was in it).
    var evictedThrough: Int64
    /// False while suspended (`suspend`): every read is `behind`, so readers use the log.
    var open = true
    var waiters: [@Sendable () -> Void] = []
    var wakeUps = 0
  }

  private let state: Mutex<State>

  /// `startAfter`: the newest `time_us` that exists only on disk (the log's last event at
  /// start-up); readers positioned before it must read the log first.
  public init(
    capacity: Int = 65_536, maxBytes: Int = 128 << 20, startAfter: Int64 = 0, framing: Bool = true
  ) {
    self.capacity = max(capacity, 1)
    self.maxBytes = maxBytes
    self.framing = framing
    self.state = Mutex(
      State(
        segments: Array(repeating: nil, count: max(capacity, 1) + 1), evictedThrough: startAfter))
  }

  /// Appends events in `time_us` order (after they are in the log), evicting the oldest beyond
  /// the bounds, then wakes every waiting subscriber once. The frames are built here, once for
  /// every subscriber, before the lock is taken.
  public func publish(_ batch: [BroadcastEvent]) {
    guard !batch.isEmpty else { return }
    let segments = self.segments(batch)
    let slots = capacity + 1
    // Segments evicted and waiters woken are let go of after the lock.
    let (waiters, evicted) = state.withLock { state -> ([@Sendable () -> Void], [Segment]) in
      var evicted: [Segment] = []
      for (segment, bytes) in segments {
        state.segments[(state.segmentHead + state.segmentCount) % slots] = segment
        state.segmentCount += 1
        state.count += segment.events.count
        state.bytes += bytes
        while state.count > capacity || (state.count > 1 && state.bytes > maxBytes) {
          let oldest = state.segments[state.segmentHead]!
          let event = oldest.events[state.firstOffset]
          state.evictedThrough = event.timeUS
          state.bytes -= event.size
          state.count -= 1
          state.firstOffset += 1
          if state.firstOffset == oldest.events.count {
            evicted.append(oldest)
            state.segments[state.segmentHead] = nil
            state.segmentHead = (state.segmentHead + 1) % slots
            state.segmentCount -= 1
            state.firstOffset = 0
          }
        }
      }
      let waiters = state.waiters
      state.waiters.removeAll()
      if !waiters.isEmpty { state.wakeUps += 1 }
      return (waiters, evicted)
    }
    withExtendedLifetime(evicted) {}
    for wake in waiters { wake() }
  }

  /// Empties the ring and opens it again: everything at or before `timeUS` is on disk only,
  /// and publishing resumes after it (`V2Publisher`, which follows the v1 ring only while
  /// someone needs it). Waiting subscribers are woken, so that they read what they are missing
  /// from the log.
  public func restart(after timeUS: Int64) { empty(through: timeUS, open: true) }

  /// Empties the ring until the next `restart`: every read is `behind` meanwhile (events keep
  /// arriving in the log that this ring does not get). Waiting subscribers are woken.
  public func suspend() { empty(through: newestTimeUS, open: false) }

  private func empty(through timeUS: Int64, open: Bool) {
    let slots = capacity + 1
    let (dropped, waiters) = state.withLock { state -> ([Segment], [@Sendable () -> Void]) in
      var dropped: [Segment] = []
      while state.segmentCount > 0 {
        dropped.append(state.segments[state.segmentHead]!)
        state.segments[state.segmentHead] = nil
        state.segmentHead = (state.segmentHead + 1) % slots
        state.segmentCount -= 1
      }
      state.firstOffset = 0
      state.count = 0
      state.bytes = 0
      state.evictedThrough = timeUS
      state.open = open
      let waiters = state.waiters
      state.waiters.removeAll()
      return (dropped, waiters)
    }
    withExtendedLifetime(dropped) {}
    for wake in waiters { wake() }
  }

  /// A published batch as segments: one per frame block (without framing, 64 events at most),
  /// so that a segment the ring has partly evicted holds little memory, and their byte sizes.
  private func segments(_ events: [BroadcastEvent]) -> [(Segment, bytes: Int)] {
    let groups =
      framing
      ? BroadcastEvent.framedBlocks(events)
      : stride(from: 0, to: events.count, by: 64).map {
        Array(events[$0..<min($0 + 64, events.count)])
      }
    return groups.map { group in (Segment(group), group.reduce(0) { $0 + $1.size }) }
  }

  /// The segments holding the events after `position`, up to about `events` of them, and the
  /// index of the first such event in the first segment; nil when the position is behind the
  /// ring.
  private func segments(after position: Int64, events: Int) -> (segments: [Segment], start: Int)? {
    let slots = capacity + 1
    return state.withLock { state -> ([Segment], Int)? in
      guard state.open, position >= state.evictedThrough else { return nil }
      // Binary search the first segment with events newer than the position.
      var low = 0
      var high = state.segmentCount
      while low < high {
        let mid = (low + high) / 2
        if state.segments[(state.segmentHead + mid) % slots]!.lastTimeUS <= position {
          low = mid + 1
        } else {
          high = mid
        }
      }
      guard low < state.segmentCount else { return ([], 0) }
      let first = state.segments[(state.segmentHead + low) % slots]!
      // ...and in it, the first event newer than the position.
      var start = low == 0 ? state.firstOffset : 0
      var end = first.events.count
      while start < end {
        let mid = (start + end) / 2
        if first.events[mid].timeUS <= position { start = mid + 1 } else { end = mid }
      }
      var found = [first]
      var gathered = first.events.count - start
      var index = low + 1
      while gathered < events && index < state.segmentCount {
        let segment = state.segments[(state.segmentHead + index) % slots]!
        found.append(segment)
        gathered += segment.events.count
        index += 1
      }
      return (found, start)
    }
  }

  /// Calls `body` with each event after `position` in order, until it returns false or
  /// `events` were visited; the events are looked at in place, outside the lock. nil when the
  /// position is behind the ring.
  private func scan(
    after position: Int64, events: Int, _ body: (UnsafePointer<BroadcastEvent>) -> Bool
  ) -> Bool? {
    guard let (segments, start) = self.segments(after: position, events: events) else {
      return nil
    }
    var visited = 0
    var index = start
    for segment in segments {
      let more = segment.events.withUnsafeBufferPointer { entries -> Bool in
        while index < entries.count && visited < events {
          visited += 1
          guard body(entries.baseAddress! + index) else { return false }
          index += 1
        }
        return visited < events
      }
      guard more else { break }
      index = 0
    }
    return true
  }

  /// Wake-ups registered and not yet called (at most one per waiting subscriber).
  public var waiting: Int { state.withLock { $0.waiters.count } }

  /// Calls `wake` once, after the next publish (or now, if something newer than `position` is
  /// already there).
  public func notify(after position: Int64, _ wake: @escaping @Sendable () -> Void) {
    let slots = capacity + 1
    let ready = state.withLock { state -> Bool in
      // Behind an open ring (restarted past the position): the log has what it misses.
      if state.open && position < state.evictedThrough { return true }
      if state.segmentCount > 0,
        state.segments[(state.segmentHead + state.segmentCount - 1) % slots]!.lastTimeUS
          > position
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
  /// `limit * 8` entries so one call stays short. With `wholeBlocks`, a read that reaches `limit`
  /// inside a frame block goes on to the block's end, so that a subscriber reading everything
  /// sends whole blocks and its next read starts at a block's first event.
  public func read(
    after position: Int64, limit: Int, filter: EventFilter, wholeBlocks: Bool = false
  ) -> Read {
    var found: [BroadcastEvent] = []
    var scanned = position
    var count = 0
    var block: ObjectIdentifier? = nil  // of the last event scanned
    let result = scan(after: position, events: limit * 8) { event in
      if found.count >= limit {
        guard wholeBlocks, let block, event.pointee.blockID == block else { return false }
      }
      if Self.matches(filter, event) { found.append(event.pointee) }
      scanned = event.pointee.timeUS
      count += 1
      block = event.pointee.blockID
      return true
    }
    guard result != nil else { return .behind }
    return .events(found, scannedThrough: scanned, scanned: count)
  }

  /// A subscriber's read: like `read` with `wholeBlocks`, but handing out runs of adjacent
  /// frames of one form (`binary`) instead of events, skipping events whose JSON is longer than
  /// `maxJSONLength` (0: none). nil when the position is behind the ring. A run costs one
  /// reference to its block, whatever its length.
  func readRuns(
    after position: Int64, limit: Int, filter: EventFilter, binary: Bool, maxJSONLength: Int64
  ) -> FeedBatch? {
    var runs = RunBuilder(binary: binary, maxJSONLength: maxJSONLength)
    var scanned = position
    var count = 0
    var block: ObjectIdentifier? = nil  // of the last event scanned, once at the limit
    let result = scan(after: position, events: limit * 8) { event in
      if runs.events >= limit {
        // Past the limit only to finish the block of the last event.
        guard let block, event.pointee.blockID == block else { return false }
      }
      if Self.matches(filter, event) { runs.add(event) }
      scanned = event.pointee.timeUS
      count += 1
      block = event.pointee.blockID
      return true
    }
    guard result != nil else { return nil }
    let events = runs.events
    return runs.batch(position: scanned, fromDisk: false, filteredOut: count - events)
  }

  /// Whether the event passes the filter, touching its DID and collection only if the filter
  /// asks about them.
  private static func matches(_ filter: EventFilter, _ event: UnsafePointer<BroadcastEvent>)
    -> Bool
  {
    if filter.isEmpty { return true }
    if filter.dids.isEmpty {
      return filter.matches(kind: event.pointee.kind, collection: event.pointee.collection)
    }
    return filter.matches(
      kind: event.pointee.kind, did: event.pointee.did, collection: event.pointee.collection)
  }

  /// The newest `time_us` published (or the start-up position).
  public var newestTimeUS: Int64 {
    let slots = capacity + 1
    return state.withLock { state in
      state.segmentCount > 0
        ? state.segments[(state.segmentHead + state.segmentCount - 1) % slots]!.lastTimeUS
        : state.evictedThrough
    }
  }

  /// Publishes that woke at least one waiter (one wake-up round per batch, not per event).
  public var wakeUpRounds: Int { state.withLock { $0.wakeUps } }
}
