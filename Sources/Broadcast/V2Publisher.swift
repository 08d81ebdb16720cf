import Dispatch
import Events
import Synchronization

/// Keeps `ring`, the v2 frames of the newest events, in step with the v1 ring, on a thread of
/// its own and only while v2 subscribers are connected (`retain`/`release`). Each live event is
/// rewritten and compressed once for every v2 subscriber (`V2Transcoder`); ingest and v1
/// subscribers never wait for it. While it is idle the ring is empty, so a v2 subscriber that
/// arrives reads the log up to where following resumed (`LiveRing.restart`): while idle the
/// ring is suspended, so no reader mistakes it for the whole stream.
public final class V2Publisher: Sendable {
  /// The v2 frames of the events published since following last (re)started.
  public let ring: LiveRing
  public let transcoder: V2Transcoder
  private let source: LiveRing
  private let queue = DispatchQueue(label: "contrail.v2-publisher")
  /// The most events one step reads from the v1 ring.
  static let stepEvents = 1024

  private struct State {
    /// v2 subscribers connected.
    var demand = 0
    /// Bumped at every (re)start: a step of an earlier run stops.
    var run = 0
  }
  private let state = Mutex(State())
  /// Touched on `queue` only: the v1 `time_us` followed through.
  private final class Cursor: @unchecked Sendable { var position: Int64 = 0 }
  private let cursor = Cursor()

  public init(source: LiveRing, transcoder: V2Transcoder) {
    self.source = source
    self.transcoder = transcoder
    ring = LiveRing(
      capacity: source.capacity, maxBytes: source.maxBytes, startAfter: source.newestTimeUS)
    ring.suspend()  // nothing is followed yet: v2 readers use the log
  }

  /// v2 subscribers connected now.
  public var subscribers: Int { state.withLock { $0.demand } }

  /// A v2 subscriber arrives: following starts if it was idle. Call before making its feed.
  public func retain() {
    let start = state.withLock { state -> Int? in
      state.demand += 1
      guard state.demand == 1 else { return nil }
      state.run += 1
      return state.run
    }
    guard let run = start else { return }
    queue.async { [self] in
      guard state.withLock({ $0.run }) == run else { return }  // already released
      cursor.position = source.newestTimeUS
      ring.restart(after: cursor.position)
      step(run)
    }
  }

  /// A v2 subscriber left: following stops with the last one, and the ring is suspended (it
  /// no longer gets what the log gets).
  public func release() {
    let stopped = state.withLock { state -> Int? in
      state.demand -= 1
      guard state.demand == 0 else { return nil }
      state.run += 1
      return state.run
    }
    guard let run = stopped else { return }
    queue.async { [self] in
      // Unless a subscriber arrived meanwhile (its restart is queued after this).
      if state.withLock({ $0.run }) == run { ring.suspend() }
    }
  }

  /// Rewrites what the v1 ring has after the cursor, then waits for its next publish.
  private func step(_ run: Int) {
    while state.withLock({ $0.run }) == run {
      switch source.read(after: cursor.position, limit: Self.stepEvents, filter: .everything) {
      case .behind:
        // The v1 ring moved on without us (a burst while this thread was starved): what was
        // missed is read from the log by whoever needs it.
        cursor.position = source.newestTimeUS
        ring.restart(after: cursor.position)
      case .events(let events, let scannedThrough, _):
        guard scannedThrough > cursor.position else {
          source.notify(after: cursor.position) { [self] in queue.async { self.step(run) } }
          return
        }
        do {
          ring.publish(try transcoder.live(events))
        } catch {
          // Not compressed (out of memory): never a gap in the ring — readers take this
          // stretch from the log.
          ring.restart(after: scannedThrough)
        }
        cursor.position = scannedThrough
      }
    }
  }
}
