/// Reads a Jetstream v1 event another Jetstream host sent (`serve --upstream …/subscribe`,
/// OPERATIONS §10) for the store: its `time_us`, DID, kind and collection. Only an event Contrail
/// could have written itself passes — compact JSON of a known kind whose v2 frame can be derived
/// (`V2Frame`), a DID, an NSID collection on a commit, a positive `time_us` — so whatever the
/// upstream sends, what is stored can be served on both wires. Never traps.
public enum UpstreamEvent {
  /// The event's metadata (`seq` 0: a v1 event does not carry its relay seq; `eventSeq` 0 until
  /// stored), or nil when `json` is not such an event.
  public static func meta(ofV1 json: UnsafeRawBufferPointer) -> EventMeta? {
    guard let base = json.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
    return withUnsafeTemporaryAllocation(of: ScannedMember.self, capacity: V2Frame.maxInnerMembers)
    {
      members in
      withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1) { scratch in
        var scanner = JSONScanner(base, json.count)
        guard let plan = scanner.plan(members: members, scratch: scratch.baseAddress!),
          let timeSpan = plan.timeUS, let timeUS = positiveInteger(base, timeSpan),
          let did = plainString(base, plan.did), Identifier.isDID(did)
        else { return nil }
        let kind: EventKind
        var collection = ""
        switch plan.kind {
        case .commit:
          guard let span = plan.collection, let name = plainString(base, span),
            Identifier.isNSID(name)
          else { return nil }
          kind = .commit
          collection = name
        case .identity: kind = .identity
        case .account: kind = .account
        case .sync: kind = .sync
        }
        return EventMeta(timeUS: timeUS, seq: 0, kind: kind, did: did, collection: collection)
      }
    }
  }

  /// The digits of `span` as a positive Int64 (at most 16 digits: microseconds until the year
  /// 2286); nil for anything else.
  private static func positiveInteger(_ p: UnsafePointer<UInt8>, _ span: ScannedSpan) -> Int64? {
    let count = span.end - span.start
    guard count >= 1, count <= 16, p[span.start] != UInt8(ascii: "0") else { return nil }
    var value: Int64 = 0
    for k in span.start..<span.end {
      let digit = p[k] &- UInt8(ascii: "0")
      guard digit < 10 else { return nil }
      value = value * 10 + Int64(digit)
    }
    return value
  }

  /// A string's content (quotes excluded) when it has no escapes; nil otherwise (DIDs and
  /// NSIDs are plain ASCII, so an escaped one is not one).
  private static func plainString(_ p: UnsafePointer<UInt8>, _ span: ScannedSpan) -> String? {
    let content = UnsafeBufferPointer(start: p + span.start + 1, count: span.end - span.start - 2)
    guard !content.contains(UInt8(ascii: "\\")) else { return nil }
    return String(decoding: content, as: UTF8.self)
  }
}
