/// The filter of a v2 `subscribeEvents` request (PROTOCOL-v2 §1.3): `kinds`, `dids` and
/// `collections` as repeated query values, validated strictly (§1.2 rows 9–16).
extension EventFilter {
  public static let maxV2Kinds = 4

  /// Why a v2 filter was rejected: the failing row of PROTOCOL-v2 §1.2 with what it quotes.
  /// Counts are raw, duplicates included; values are the decoded query values.
  public enum V2Invalid: Error, Equatable, Sendable {
    /// Row 9: more than 4 `kinds` values.
    case tooManyKinds(Int)
    /// Row 10: a `kinds` value that is not exactly `commit`, `identity`, `account` or `sync`.
    case unknownKind(String)
    /// Row 11: more than 10,000 `dids` values.
    case tooManyDIDs(Int)
    /// Row 12: more than 100 `collections` values.
    case tooManyCollections(Int)
    /// Row 13: a `dids` value that is not a DID.
    case did(String)
    /// Row 14: a `X.*` value whose `X.x` is not an NSID.
    case collectionWildcard(String)
    /// Row 15: any other `collections` value that is not an NSID.
    case collection(String)
    /// Row 16: `collections` given while `kinds` is given without `commit`.
    case collectionsWithoutCommit
  }

  /// Validates in PROTOCOL-v2 §1.2's order — the kind count, the kinds, the DID count, the
  /// collection count, the DIDs, the collections (wildcards and exact names in one pass, so the
  /// first bad value in the query wins), collections without `commit` — and builds the filter.
  /// No `kinds` selects all four (`sync` included); `collections` narrows commits only.
  public init(v2Kinds kinds: [String], dids: [String], collections: [String]) throws(V2Invalid) {
    if kinds.count > Self.maxV2Kinds { throw .tooManyKinds(kinds.count) }
    var kindSet: Set<EventKind> = []
    for value in kinds {
      guard let kind = EventKind.allCases.first(where: { $0.label == value }) else {
        throw .unknownKind(value)
      }
      kindSet.insert(kind)
    }
    if dids.count > Self.maxDIDs { throw .tooManyDIDs(dids.count) }
    if collections.count > Self.maxCollections { throw .tooManyCollections(collections.count) }
    for value in dids where !Identifier.isDID(value) { throw .did(value) }
    var exact: Set<String> = []
    var prefixes: Set<String> = []
    for value in collections {
      if value.hasSuffix(".*") {
        let prefix = value.dropLast()  // kept with its final dot
        guard Identifier.isNSID(prefix + "x") else { throw .collectionWildcard(value) }
        prefixes.insert(String(prefix))
      } else {
        guard Identifier.isNSID(value) else { throw .collection(value) }
        exact.insert(value)
      }
    }
    if !collections.isEmpty, !kinds.isEmpty, !kindSet.contains(.commit) {
      throw .collectionsWithoutCommit
    }
    self.init(
      kinds: kinds.isEmpty ? Set(EventKind.allCases) : kindSet, dids: Set(dids),
      collections: exact, prefixes: prefixes)
  }
}
