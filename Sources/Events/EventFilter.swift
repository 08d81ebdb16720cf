/// A subscriber's filter (PROTOCOL §2.2–2.4): wanted DIDs apply to every kind; wanted
/// collections (exact NSIDs or `prefix.*`) apply to commits only, and a commit with an empty
/// collection passes. No values means no filtering on that field.
public struct EventFilter: Sendable, Equatable {
  public static let maxDIDs = 10_000
  public static let maxCollections = 100

  /// The kinds that pass. A v1 filter passes every kind but `sync`, which only the v2 wire
  /// sends.
  public let kinds: Set<EventKind>
  /// `kinds` as bits (1 << rawValue), for the per-event check.
  private let kindMask: UInt8
  public let dids: Set<String>
  public let collections: Set<String>
  /// Prefixes kept with their final dot (`app.bsky.graph.*` → `app.bsky.graph.`).
  public let prefixes: Set<String>

  /// Why a filter was rejected; `description` is the exact 400 body of PROTOCOL §2.5.
  public enum Invalid: Error, Equatable, CustomStringConvertible {
    case collection(String)
    case did(String)
    case tooManyDIDs
    case tooManyCollections

    public var description: String {
      switch self {
      case .collection(let value): "invalid subscriber options: invalid collection: \(value)"
      case .did(let value): "invalid subscriber options: invalid DID: \(value)"
      case .tooManyDIDs: "invalid subscriber options: too many wanted DIDs"
      case .tooManyCollections: "invalid subscriber options: too many wanted collections"
      }
    }
  }

  /// The kinds the v1 wire sends.
  public static let v1Kinds: Set<EventKind> = [.commit, .identity, .account]

  /// Everything the v1 wire sends passes.
  public static let all = EventFilter(kinds: v1Kinds, dids: [], collections: [], prefixes: [])

  /// Every kind of both wires passes.
  public static let everything = EventFilter(
    kinds: Set(EventKind.allCases), dids: [], collections: [], prefixes: [])

  init(kinds: Set<EventKind>, dids: Set<String>, collections: Set<String>, prefixes: Set<String>) {
    self.kinds = kinds
    kindMask = kinds.reduce(0) { $0 | 1 << $1.rawValue }
    self.dids = dids
    self.collections = collections
    self.prefixes = prefixes
  }

  /// Validates in PROTOCOL §2.5's order: collections, DIDs, the DID count, the collection
  /// count; within a check the first failing value wins. Values are never split on commas.
  public init(wantedCollections: [String], wantedDIDs: [String]) throws(Invalid) {
    var collections: Set<String> = []
    var prefixes: Set<String> = []
    for value in wantedCollections {
      if value.hasSuffix(".*") {
        prefixes.insert(String(value.dropLast()))  // the head is not validated
      } else if Identifier.isNSID(value) {
        collections.insert(value)
      } else {
        throw .collection(value)
      }
    }
    for value in wantedDIDs where !Identifier.isDID(value) { throw .did(value) }
    let dids = Set(wantedDIDs)
    if dids.count > Self.maxDIDs { throw .tooManyDIDs }
    if collections.count + prefixes.count > Self.maxCollections { throw .tooManyCollections }
    self.init(kinds: Self.v1Kinds, dids: dids, collections: collections, prefixes: prefixes)
  }

  /// Nothing is filtered out (every kind passes, and no DID or collection is asked for).
  public var isEmpty: Bool {
    kinds.count == EventKind.allCases.count && dids.isEmpty && collections.isEmpty
      && prefixes.isEmpty
  }

  public func matches(kind: EventKind, did: String, collection: String) -> Bool {
    (dids.isEmpty || dids.contains(did)) && matches(kind: kind, collection: collection)
  }

  /// The kind and collection alone (for readers that look up the DID only when they must).
  public func matches(kind: EventKind, collection: String) -> Bool {
    guard kindMask & 1 << kind.rawValue != 0 else { return false }
    guard kind == .commit, !collection.isEmpty, !(collections.isEmpty && prefixes.isEmpty) else {
      return true
    }
    if collections.contains(collection) { return true }
    return prefixes.contains { collection.utf8.starts(with: $0.utf8) }
  }

  public func matches(_ event: Event) -> Bool {
    matches(kind: event.kind, did: event.did, collection: event.collection)
  }
}
