import Firehose

/// Where a drop happened: a whole commit, one op, or an identity, account or sync event.
public enum DropScope: String, Sendable, CaseIterable {
  case commit, op, event
}

/// Why something was dropped (PROTOCOL §10.3 `contrail_translate_dropped_total{reason}`).
public enum DropReason: String, Sendable, CaseIterable {
  /// A commit the relay marked `tooBig`, or a `#sync` whose `blocks` exceed the lexicon's
  /// 10,000 bytes.
  case tooBig = "too_big"
  case badTime = "bad_time"
  case badCar = "bad_car"
  case badPath = "bad_path"
  case nullCid = "null_cid"
  case missingBlock = "missing_block"
  case badRecord = "bad_record"
  case unknownAction = "unknown_action"
  /// An op past the commit's budgets (`Translator.frameBudget`): its record would be converted
  /// again or its event would make the commit's events too large for the frame's size.
  case overBudget = "over_budget"
}

/// Plain counters of what the translator saw and dropped; the server exports them as metrics.
public struct TranslateCounters: Sendable, Equatable {
  public private(set) var frames = [Int](repeating: 0, count: FrameType.allCases.count)
  public private(set) var events = [Int](repeating: 0, count: EventKind.allCases.count)
  public private(set) var drops: [DropKey: Int] = [:]
  /// `op = -1` frames by their `error` code: the protocol's own codes and the first
  /// `maxErrorCodes` others by name, any later one as `other`, so that a relay cannot grow this
  /// (or the metric labelled from it) without bound.
  public private(set) var errorCodes: [String: Int] = [:]
  /// The codes `com.atproto.sync.subscribeRepos` defines, and the decoder's own for an error
  /// frame without a readable code: always counted by name.
  public static let knownErrorCodes: Set<String> = [
    "FutureCursor", "ConsumerTooSlow", "undecodable", "unknown",
  ]
  public static let maxErrorCodes = 16
  /// A longer code is counted as `other`.
  public static let maxErrorCodeBytes = 64

  /// A (scope, reason) pair.
  public struct DropKey: Hashable, Sendable {
    public let scope: DropScope
    public let reason: DropReason
  }

  public init() {}

  public func frames(_ type: FrameType) -> Int { frames[type.rawValue] }
  public func events(_ kind: EventKind) -> Int { events[Int(kind.rawValue)] }
  public func drops(_ scope: DropScope, _ reason: DropReason) -> Int {
    drops[DropKey(scope: scope, reason: reason)] ?? 0
  }
  public var totalDrops: Int { drops.values.reduce(0, +) }

  mutating func count(frame type: FrameType) { frames[type.rawValue] += 1 }
  mutating func count(event kind: EventKind) { events[Int(kind.rawValue)] += 1 }
  mutating func count(drop reason: DropReason, _ scope: DropScope) {
    drops[DropKey(scope: scope, reason: reason), default: 0] += 1
  }
  /// Counts an error frame; returns the name it was counted under (`code` or `other`).
  mutating func count(errorCode code: String) -> String {
    let others = errorCodes.keys.count { !Self.knownErrorCodes.contains($0) && $0 != "other" }
    let named =
      Self.knownErrorCodes.contains(code) || errorCodes[code] != nil
      || (others < Self.maxErrorCodes && code.utf8.count <= Self.maxErrorCodeBytes)
    let name = named ? code : "other"
    errorCodes[name, default: 0] += 1
    return name
  }

  /// One line: `frames N, events N, skipped N (reason N, …)`.
  public var summary: String {
    let framesTotal = frames.reduce(0, +)
    let eventsTotal = events.reduce(0, +)
    var skipped: [String] = []
    for type in [FrameType.undecodable, .oversize, .error] where frames(type) > 0 {
      skipped.append("\(type.label) frames \(frames(type))")
    }
    for (key, n) in drops.sorted(by: {
      ($0.key.scope.rawValue, $0.key.reason.rawValue) < (
        $1.key.scope.rawValue, $1.key.reason.rawValue
      )
    }) {
      skipped.append("\(key.reason.rawValue) (\(key.scope.rawValue)) \(n)")
    }
    let skippedTotal = frames(.undecodable) + frames(.oversize) + frames(.error) + totalDrops
    let detail = skipped.isEmpty ? "" : " by reason: " + skipped.joined(separator: ", ")
    return "frames \(framesTotal), events \(eventsTotal), skipped \(skippedTotal)\(detail)"
  }
}
