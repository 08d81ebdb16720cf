/// The ingest-side filter of `contrail serve --collections … --dids …`: the same matching as a
/// subscriber's filter (DIDs apply to every kind; collections, exact NSIDs or `prefix.*`, to
/// commits only), but every kind passes, `sync` included, so identity, account and sync events
/// are subject to the DIDs alone.
extension EventFilter {
  /// Why an ingest filter value was refused; `description` says what was expected.
  public enum IngestInvalid: Error, Equatable, Sendable, CustomStringConvertible {
    case collection(String)
    case did(String)

    public var description: String {
      switch self {
      case .collection(let value):
        "\"\(value)\" is not an NSID (app.bsky.feed.post) or an NSID prefix ending in .* (app.bsky.*)"
      case .did(let value): "\"\(value)\" is not a DID (did:plc:…, did:web:…)"
      }
    }
  }

  /// Every kind passes; commits only in `collections` (none given: any collection), and only
  /// events of `dids` (none given: any DID). A prefix `X.*` needs `X` to be one or more NSID
  /// segments (`app.*`, `app.bsky.*`). Values are taken as they are: split lists first.
  public init(ingestCollections collections: [String], dids: [String]) throws(IngestInvalid) {
    var exact: Set<String> = []
    var prefixes: Set<String> = []
    for value in collections {
      if value.hasSuffix(".*") {
        let prefix = value.dropLast()  // kept with its final dot
        guard Identifier.isNSID(prefix + "x.x") else { throw .collection(value) }
        prefixes.insert(String(prefix))
      } else {
        guard Identifier.isNSID(value) else { throw .collection(value) }
        exact.insert(value)
      }
    }
    for value in dids where !Identifier.isDID(value) { throw .did(value) }
    self.init(
      kinds: Set(EventKind.allCases), dids: Set(dids), collections: exact, prefixes: prefixes)
  }

  /// The collections as they are given (`app.bsky.feed.post`, `app.bsky.graph.*`), sorted.
  public var collectionPatterns: [String] {
    (collections.sorted() + prefixes.sorted().map { $0 + "*" })
  }
}
