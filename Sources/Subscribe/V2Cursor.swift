import Broadcast
import EventLog
import Events
import Foundation

/// Where a v2 subscription starts (PROTOCOL §12.3), resolved before the upgrade because
/// a seq below the retention floor is a 400: a `cursor` below 10^15 is a v2 `seq` (inclusive;
/// 0 means 1), anything else a `time_us`; the future is the live tip, silently; a time older
/// than everything retained starts at the oldest event after an `#info OutdatedCursor`.
struct V2Start: Sendable {
  var start: SubscriberFeed.Start
  /// The `#info` frame to send first, if the cursor was clamped.
  var info: [UInt8]?
}

enum V2Cursor {
  /// Cursors at or above this are microsecond times, below it v2 seqs.
  static let timeThreshold: Int64 = 1_000_000_000_000_000

  /// How long an edge waits for a seq cursor just past its newest event to arrive from its
  /// primary before starting live.
  static let aheadWait: Duration = .seconds(2)

  /// Resolves `cursor` against the log (blocking file reads: call it off the event loop).
  /// `now` is the wall clock in µs. On an edge (`followsPrimary`), a cursor a little past the
  /// newest event is where the client left another instance: a seq is waited for (up to
  /// `aheadWait`), a time starts at itself.
  static func resolve(_ cursor: Int64?, log: EventLog, now: Int64, followsPrimary: Bool = false)
    -> Result<V2Start, XRPCError>
  {
    guard let cursor else { return .success(V2Start(start: .live)) }
    do {
      if followsPrimary && cursor < timeThreshold && cursor > log.lastEventSeq {
        let deadline = ContinuousClock.now + aheadWait
        while log.lastEventSeq < cursor && ContinuousClock.now < deadline {
          Thread.sleep(forTimeInterval: 0.01)
        }
      }
      return cursor < timeThreshold
        ? try seq(cursor, log: log)
        : try time(cursor, log: log, now: now, followsPrimary: followsPrimary)
    } catch {
      return .failure(.cursorResolutionFailed)
    }
  }

  private static func seq(_ cursor: Int64, log: EventLog) throws -> Result<V2Start, XRPCError> {
    let next = log.lastEventSeq + 1
    if cursor >= next { return .success(V2Start(start: .live)) }
    let wanted = max(cursor, 1)
    let floor = log.oldestEventSeq ?? next
    if wanted < floor { return .failure(.cursorTooOld(cursor: cursor, floor: floor)) }
    guard let found = try log.locate(eventSeqAtLeast: wanted) else {
      return .success(V2Start(start: .live))
    }
    return .success(V2Start(start: .cursor(found.timeUS)))
  }

  private static func time(_ cursor: Int64, log: EventLog, now: Int64, followsPrimary: Bool)
    throws -> Result<V2Start, XRPCError>
  {
    if cursor > now { return .success(V2Start(start: .live)) }
    guard let found = try log.locate(timeUSAtLeast: cursor) else {
      if followsPrimary && log.oldestEventSeq != nil {
        return .success(V2Start(start: .cursor(cursor, waitIfAhead: true)))
      }
      // Nothing at or after the time. An empty log floors to the next seq: say so.
      let empty = log.oldestEventSeq == nil
      return .success(
        V2Start(start: .live, info: empty ? outdated(startingAt: log.lastEventSeq + 1) : nil))
    }
    let clamped = log.stats.oldestTimeUS.map { cursor < $0 } ?? true
    return .success(
      V2Start(
        start: .cursor(found.timeUS), info: clamped ? outdated(startingAt: found.eventSeq) : nil))
  }

  private static func outdated(startingAt seq: Int64) -> [UInt8] {
    V2Frame.info(
      name: "OutdatedCursor",
      message: "requested timestamp cursor below retention floor; starting at seq \(seq)")
  }
}
