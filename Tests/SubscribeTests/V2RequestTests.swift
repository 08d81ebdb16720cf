import Events
import Foundation
import NIOHTTP1
import URLQuery
import XCTest

@testable import Subscribe

/// PROTOCOL-v2 §1.2 rows 2–18 and 20–21 (exact status, error name and message, in the table's
/// order), the parameter rules of §1.3 and the edge cases G9/G10; the handshake checks of §1.1.
final class V2RequestTests: XCTestCase {
  private let current: UInt32 = 20_260_811

  private func parse(_ query: String, _ headers: [(String, String)] = []) -> Result<
    V2Options, XRPCError
  > {
    V2Request.parse(
      query: Substring(query), headers: HTTPHeaders(headers), dictionaryID: current)
  }

  private func options(
    _ query: String, file: StaticString = #filePath, line: UInt = #line
  ) throws -> V2Options {
    switch parse(query) {
    case .success(let options): return options
    case .failure(let error):
      XCTFail("\(query): \(error)", file: file, line: line)
      throw error
    }
  }

  /// Asserts `query` is refused with a 400 `InvalidRequest` (or `error`) carrying `message`.
  private func assertRejected(
    _ query: String, _ message: String, headers: [(String, String)] = [],
    error: String = "InvalidRequest", status: HTTPResponseStatus = .badRequest,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    guard case .failure(let rejection) = parse(query, headers) else {
      return XCTFail("\(query) was accepted", file: file, line: line)
    }
    XCTAssertEqual(rejection.status, status, query, file: file, line: line)
    XCTAssertEqual(rejection.error, error, query, file: file, line: line)
    XCTAssertEqual(rejection.message, message, query, file: file, line: line)
  }

  private let prefix = "subscribe: invalid options: "

  // MARK: Rows

  func testRow2UnparsableQuery() {
    assertRejected("cursor=1&x=%zz", prefix + #"invalid URL escape "%zz""#)
    assertRejected("x=%4", prefix + #"invalid URL escape "%4""#)
    assertRejected("a=1;b=2", prefix + "invalid semicolon separator in query")
    // Row 2 comes before every other row. The first bad escape is the one named, but a `;`
    // anywhere wins (Go overwrites an earlier error with it).
    assertRejected("compress=true&a=%g1&b=%zz", prefix + #"invalid URL escape "%g1""#)
    assertRejected("compress=true&a=%g1&b=1;2", prefix + "invalid semicolon separator in query")
    assertRejected("wantedDids=x&%=1", prefix + #"invalid URL escape "%""#)
    // Go's limit of 10,000 pairs (`urlmaxqueryparams`), counted as `&`s before anything else.
    let pairs = Array(repeating: "dids=did:plc:abc", count: 10_001).joined(separator: "&")
    assertRejected(pairs, prefix + "number of URL query parameters exceeded limit")
    assertRejected(
      "kinds=commit&" + Array(repeating: "x", count: 10_000).joined(separator: "&"),
      prefix + "number of URL query parameters exceeded limit")
  }

  func testRow3V1Compression() {
    let message =
      "compress=true / Socket-Encoding: zstd is the /subscribe (v1) opt-in; this endpoint uses "
      + "zstdDictionary=<id> with the dictionary from getZstdDictionary"
    assertRejected("compress=true", message)
    assertRejected("compress=true&compress=false", message)
    assertRejected("", message, headers: [("Socket-Encoding", "zstd")])
    assertRejected("", message, headers: [("Socket-Encoding", "gzip, zstd")])
    assertRejected(
      "compress=true&zstdDictionary=abc&wantedDids=x", message, error: "InvalidRequest")
    // compress=false, other values and a later `true` are ignored.
    XCTAssertNoThrow(try options("compress=false"))
    XCTAssertNoThrow(try options("compress=false&compress=true"))
    XCTAssertNoThrow(try options("compress="))
    // The wire form escapes `<` and `>` as Go does.
    guard case .failure(let rejection) = parse("compress=true") else { return XCTFail() }
    XCTAssertEqual(
      String(decoding: rejection.body, as: UTF8.self),
      #"{"error":"InvalidRequest","message":"compress=true / Socket-Encoding: zstd is the "#
        + #"/subscribe (v1) opt-in; this endpoint uses zstdDictionary=\u003cid\u003e with the "#
        + #"dictionary from getZstdDictionary"}"#)
  }

  func testRow4InvalidDictionaryID() {
    let message = "zstdDictionary must be a positive integer zstd dictionary ID"
    for bad in ["0", "000", "abc", "-1", "%2B20260811", "4294967296", "1.5", "%2020260811", "0x10"]
    {
      assertRejected("zstdDictionary=\(bad)", message)
    }
    // Row 4 before row 5 and before the legacy parameters.
    assertRejected("zstdDictionary=x&wantedDids=y", message)
  }

  func testRow5UnknownDictionary() {
    assertRejected(
      "zstdDictionary=1612007021",
      "unknown zstd dictionary id 1612007021; current dictionary id is 20260811 "
        + "(fetch it via getZstdDictionary and reconnect)", error: "UnknownZstdDictionary")
    assertRejected(
      "zstdDictionary=4294967295&requireHello=true",
      "unknown zstd dictionary id 4294967295; current dictionary id is 20260811 "
        + "(fetch it via getZstdDictionary and reconnect)", error: "UnknownZstdDictionary")
    XCTAssertEqual(try options("zstdDictionary=20260811").zstdDictionary, current)
    XCTAssertEqual(try options("zstdDictionary=0020260811").zstdDictionary, current)
  }

  func testRows6To8LegacyParameters() {
    let dids = prefix + "wantedDids is the legacy /subscribe parameter; use dids"
    let collections =
      prefix + "wantedCollections is the legacy /subscribe parameter; use collections"
    let hello =
      prefix + "requireHello is not supported on this endpoint; it is server-push only "
      + "(subscriber-sourced messages were removed)"
    assertRejected("wantedDids=did:plc:abc", dids)
    assertRejected("wantedDids=", dids)
    assertRejected("wantedDids", dids)
    assertRejected("wantedCollections=app.bsky.feed.post", collections)
    assertRejected("wantedCollections=", collections)
    assertRejected("requireHello=true", hello)
    assertRejected("requireHello=false", hello)
    assertRejected("requireHello=", hello)
    // In the table's order, whatever the query's order; before the filter rows.
    assertRejected("requireHello=true&wantedCollections=a&wantedDids=b", dids)
    assertRejected("requireHello=true&wantedCollections=a", collections)
    assertRejected("kinds=bogus&requireHello=1", hello)
  }

  func testRow9TooManyKinds() {
    let five = Array(repeating: "kinds=commit", count: 5).joined(separator: "&")
    assertRejected(five, prefix + "too many kinds values: 5 > 4")
    assertRejected(
      "kinds=a&kinds=b&kinds=c&kinds=d&kinds=e&kinds=f", prefix + "too many kinds values: 6 > 4")
    XCTAssertEqual(
      try options("kinds=commit&kinds=commit&kinds=commit&kinds=commit").filter.kinds, [.commit])
  }

  func testRow10UnknownKind() {
    func message(_ quoted: String) -> String {
      prefix + "unknown kind \(quoted) (valid: commit, identity, account, sync)"
    }
    assertRejected("kinds=", message(#""""#))
    assertRejected("kinds=commit,account", message(#""commit,account""#))
    assertRejected("kinds=commit%2Caccount", message(#""commit,account""#))
    assertRejected("kinds=Commit", message(#""Commit""#))
    assertRejected("kinds=commit&kinds=heartbeat", message(#""heartbeat""#))
    assertRejected("kinds=+commit", message(#"" commit""#))
    assertRejected("kinds=a%22b%5C%0A%01%7F", message(#""a\"b\\\n\x01\x7f""#))
    assertRejected("kinds=%C3%A9%E2%80%A8", message(#""é\u2028""#))
    // Row 10 comes before the collection count.
    let collections = Array(repeating: "collections=x", count: 101).joined(separator: "&")
    assertRejected("kinds=x&" + collections, message(#""x""#))
  }

  /// A query cannot carry 10,001 DIDs past Go's pair limit (row 2), so row 11 is checked on the
  /// filter and its message on the mapping.
  func testRow11TooManyDIDs() {
    let many = Array(repeating: "did:plc:abc", count: 10_001)
    // Counted raw, before duplicates are removed, and before any DID is checked.
    XCTAssertThrowsError(
      try EventFilter(v2Kinds: [], dids: many + ["bad"], collections: ["*"])
    ) { error in
      XCTAssertEqual(error as? EventFilter.V2Invalid, .tooManyDIDs(10_002))
    }
    XCTAssertThrowsError(try EventFilter(v2Kinds: ["bad"], dids: many, collections: [])) {
      XCTAssertEqual($0 as? EventFilter.V2Invalid, .unknownKind("bad"), "row 10 first")
    }
    let error = V2Request.filterError(.tooManyDIDs(10_001))
    XCTAssertEqual(error.status, .badRequest)
    XCTAssertEqual(error.error, "InvalidRequest")
    XCTAssertEqual(error.message, prefix + "too many dids values: 10001 > 10000")
    XCTAssertEqual(error.reason, "v2_too_many_dids")
    // 10,000 DIDs, duplicates or not, are fine.
    let ok = (0..<10_000).map { "dids=did:plc:\($0)" }.joined(separator: "&")
    XCTAssertEqual(try options(ok).filter.dids.count, 10_000)
    let same = Array(repeating: "dids=did:plc:abc", count: 10_000).joined(separator: "&")
    XCTAssertEqual(try options(same).filter.dids, ["did:plc:abc"])
  }

  func testRow12TooManyCollections() {
    let collections = Array(repeating: "collections=app.bsky.feed.post", count: 101)
      .joined(separator: "&")
    assertRejected(collections, prefix + "too many collections values: 101 > 100")
    assertRejected(
      "dids=bad&" + collections, prefix + "too many collections values: 101 > 100",
      error: "InvalidRequest")
    let ok = (0..<100).map { "collections=app.bsky.n\($0)" }.joined(separator: "&")
    XCTAssertEqual(try options(ok).filter.collections.count, 100)
  }

  func testRow13InvalidDID() {
    for bad in [
      "", "DID:plc:x", "did:PLC:x", "did::x", "did:plc:", "did:plc:abc:", "did:plc:abc%",
      "did:plc:a b", "did:plc", "plc:abc", "did:pl1:x",
    ] {
      assertRejected(
        "dids=did:plc:ok&dids="
          + bad.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(
            of: " ", with: "%20"),
        prefix + "invalid DID: \(bad)")
    }
    let long = "did:web:" + String(repeating: "a", count: 2_041)
    assertRejected("dids=\(long)", prefix + "invalid DID: \(long)")
    XCTAssertNoThrow(try options("dids=did:web:" + String(repeating: "a", count: 2_040)))
    for good in ["did:web:example.com", "did:web:localhost%253A8080", "did:plc:a.b_c-d:e"] {
      XCTAssertNoThrow(try options("dids=\(good)"), good)
    }
    // DIDs are checked before collections.
    assertRejected("collections=*&dids=nope", prefix + "invalid DID: nope")
  }

  func testRow14InvalidCollectionWildcard() {
    for bad in ["app.*", ".*", "-app.bsky.*", "app..*", "app.bsky-.*", "1app.bsky.*", "*.*"] {
      assertRejected("collections=\(bad)", prefix + "invalid collection wildcard: \(bad)")
    }
    // X + ".x" may be at most 317 characters.
    let head = "a." + String(repeating: "b", count: 63) + "." + String(repeating: "c", count: 63)
    let longHead = [head, head, String(repeating: "d", count: 55)].joined(separator: ".")
    XCTAssertEqual(longHead.count, 315)
    XCTAssertNoThrow(try options("collections=\(longHead).*"))
    assertRejected(
      "collections=\(longHead)e.*", prefix + "invalid collection wildcard: \(longHead)e.*")
    XCTAssertEqual(
      try options("collections=app.bsky.*&collections=app.bsky.feed.post.*").filter.prefixes,
      ["app.bsky.", "app.bsky.feed.post."])
  }

  func testRow15InvalidCollection() {
    for bad in [
      "", "*", "app.bsky", "app.bsky.feed.2post", "-app.bsky.post", "app.bsky.post.",
      "app.bsky.fe*d", "app.bsky.feed-post", "app.bsky.p%C3%B6st",
    ] {
      let decoded = bad.removingPercentEncoding ?? bad
      assertRejected("collections=\(bad)", prefix + "invalid collection: \(decoded)")
    }
    // Wildcards and exact names are checked in one pass: the first bad value in the query wins.
    assertRejected("collections=bad&collections=app.*", prefix + "invalid collection: bad")
    assertRejected(
      "collections=app.*&collections=bad", prefix + "invalid collection wildcard: app.*")
    XCTAssertEqual(
      try options("collections=com.example.v2&collections=A-1.b-2.C3").filter.collections,
      ["com.example.v2", "A-1.b-2.C3"])
  }

  func testRow16CollectionsWithoutCommit() {
    let message = prefix + "collections filter can never apply: kinds excludes commit"
    assertRejected("kinds=identity&collections=app.bsky.feed.post", message)
    assertRejected("collections=app.bsky.*&kinds=account&kinds=sync&kinds=identity", message)
    XCTAssertNoThrow(try options("collections=app.bsky.feed.post"))
    XCTAssertNoThrow(try options("kinds=identity&kinds=commit&collections=app.bsky.feed.post"))
    // Row 16 after the collections' own checks.
    assertRejected("kinds=identity&collections=app", prefix + "invalid collection: app")
  }

  func testRow17MaxMessageSizeRepeatedOrEmpty() {
    let message = prefix + "maxMessageSizeBytes must be one unsigned 32-bit integer"
    assertRejected("maxMessageSizeBytes=10&maxMessageSizeBytes=10", message)
    assertRejected("maxMessageSizeBytes=10&maxMessageSizeBytes=", message)
    assertRejected("maxMessageSizeBytes=", message)
    assertRejected("maxMessageSizeBytes", message)
    assertRejected("maxMessageSizeBytes=abc&maxMessageSizeBytes=abc", message)
    // After the filter rows, before the cursor rows.
    assertRejected(
      "maxMessageSizeBytes=&cursor=x&kinds=x",
      prefix + #"unknown kind "x" (valid: commit, identity, account, sync)"#)
    assertRejected("cursor=x&maxMessageSizeBytes=", message)
  }

  func testRow18InvalidMaxMessageSize() {
    for (raw, quoted) in [
      ("-1", #""-1""#), ("4294967296", #""4294967296""#), ("abc", #""abc""#),
      ("%2B5", #""+5""#), ("+5", #"" 5""#), ("1.5", #""1.5""#), ("1e3", #""1e3""#),
      ("99999999999999999999", #""99999999999999999999""#),
    ] {
      assertRejected("maxMessageSizeBytes=\(raw)", prefix + "invalid maxMessageSizeBytes \(quoted)")
    }
    XCTAssertEqual(try options("maxMessageSizeBytes=4294967295").maxMessageSizeBytes, 4_294_967_295)
    XCTAssertEqual(try options("maxMessageSizeBytes=0").maxMessageSizeBytes, 0)
    XCTAssertEqual(try options("maxMessageSizeBytes=007").maxMessageSizeBytes, 7)
    XCTAssertEqual(try options("").maxMessageSizeBytes, 0)
  }

  func testRow20InvalidCursor() {
    for (raw, quoted) in [
      ("abc", #""abc""#), ("1.5", #""1.5""#), ("9223372036854775808", #""9223372036854775808""#),
      ("+5", #"" 5""#), ("0x10", #""0x10""#), ("%2D", #""-""#), ("1%0A", #""1\n""#),
    ] {
      assertRejected("cursor=\(raw)", "subscribe: invalid cursor: \(quoted)")
    }
  }

  func testRow21NegativeCursor() {
    assertRejected("cursor=-5", "subscribe: invalid cursor: negative value -5")
    assertRejected(
      "cursor=-9223372036854775808",
      "subscribe: invalid cursor: negative value -9223372036854775808")
    XCTAssertEqual(try options("cursor=-0").cursor, 0)
    XCTAssertEqual(try options("cursor=%2B5").cursor, 5)
    XCTAssertEqual(try options("cursor=0").cursor, 0)
    XCTAssertEqual(try options("cursor=9223372036854775807").cursor, Int64.max)
    XCTAssertEqual(try options("cursor=1000000000000000").cursor, 1_000_000_000_000_000)
  }

  // MARK: Parameter rules (§1.3) and G9/G10

  func testDefaults() throws {
    let none = try options("")
    XCTAssertEqual(none, V2Options())
    XCTAssertEqual(none.filter, .everything)
    XCTAssertEqual(none.filter.kinds, [.commit, .identity, .account, .sync])
    XCTAssertNil(none.cursor)
    XCTAssertNil(none.zstdDictionary)
    XCTAssertEqual(none.maxMessageSizeBytes, 0)
  }

  func testFirstOccurrenceAndEmptyScalars() throws {
    XCTAssertEqual(try options("cursor=5&cursor=abc").cursor, 5)
    XCTAssertEqual(try options("cursor=&cursor=5").cursor, nil, "the first, empty, is absent")
    XCTAssertNil(try options("cursor=").cursor)
    XCTAssertNil(try options("zstdDictionary=").zstdDictionary)
    XCTAssertNil(try options("zstdDictionary=&zstdDictionary=0").zstdDictionary)
    XCTAssertEqual(
      try options("zstdDictionary=20260811&zstdDictionary=abc").zstdDictionary, current)
    assertRejected("cursor=abc&cursor=5", #"subscribe: invalid cursor: "abc""#)
  }

  func testUnknownParametersAreIgnored() throws {
    XCTAssertEqual(try options("foo=bar&heartbeat=abc&wanted=1&Kinds=x&&=x"), V2Options())
  }

  func testFilterSemantics() throws {
    let filter = try options(
      "kinds=commit&kinds=identity&kinds=commit&dids=did:plc:a&dids=did:plc:a&dids=did:plc:b"
        + "&collections=app.bsky.feed.post&collections=app.bsky.graph.*"
    ).filter
    XCTAssertEqual(filter.kinds, [.commit, .identity])
    XCTAssertEqual(filter.dids, ["did:plc:a", "did:plc:b"])
    XCTAssertEqual(filter.collections, ["app.bsky.feed.post"])
    XCTAssertEqual(filter.prefixes, ["app.bsky.graph."])
    XCTAssertTrue(filter.matches(kind: .commit, did: "did:plc:a", collection: "app.bsky.feed.post"))
    XCTAssertTrue(
      filter.matches(kind: .commit, did: "did:plc:b", collection: "app.bsky.graph.follow"))
    XCTAssertFalse(filter.matches(kind: .commit, did: "did:plc:a", collection: "app.bsky.graph"))
    XCTAssertFalse(
      filter.matches(kind: .commit, did: "did:plc:a", collection: "app.bsky.feed.like"))
    XCTAssertFalse(
      filter.matches(kind: .commit, did: "did:plc:c", collection: "app.bsky.feed.post"))
    XCTAssertTrue(filter.matches(kind: .identity, did: "did:plc:a", collection: ""))
    XCTAssertFalse(filter.matches(kind: .account, did: "did:plc:a", collection: ""))

    // `collections` alone never hides identity, account or sync.
    let collections = try options("collections=app.bsky.*").filter
    XCTAssertTrue(collections.matches(kind: .sync, did: "did:plc:x", collection: ""))
    XCTAssertTrue(collections.matches(kind: .identity, did: "did:plc:x", collection: ""))
    XCTAssertTrue(collections.matches(kind: .commit, did: "d", collection: "app.bsky.feed.post"))
    XCTAssertFalse(collections.matches(kind: .commit, did: "d", collection: "app.bskyx.y"))
    XCTAssertFalse(collections.matches(kind: .commit, did: "d", collection: "app.bsky"))

    XCTAssertEqual(try options("kinds=sync").filter.kinds, [.sync])
    XCTAssertEqual(
      try options("kinds=commit&kinds=identity&kinds=account&kinds=sync").filter, .everything)
  }

  /// G9 and G10 in one place.
  func testGotchaEdgeCases() throws {
    let kind = " (valid: commit, identity, account, sync)"
    assertRejected("kinds=", prefix + #"unknown kind """# + kind)
    assertRejected("kinds=commit,account", prefix + #"unknown kind "commit,account""# + kind)
    assertRejected(
      Array(repeating: "kinds=commit", count: 5).joined(separator: "&"),
      prefix + "too many kinds values: 5 > 4")
    assertRejected(
      "wantedDids=", prefix + "wantedDids is the legacy /subscribe parameter; use dids")
    XCTAssertNil(try options("cursor=").cursor)
    XCTAssertEqual(try options("cursor=0").cursor, 0)
    assertRejected(
      "zstdDictionary=0", "zstdDictionary must be a positive integer zstd dictionary ID")
    let one = prefix + "maxMessageSizeBytes must be one unsigned 32-bit integer"
    assertRejected("maxMessageSizeBytes=1&maxMessageSizeBytes=2", one)
    assertRejected("maxMessageSizeBytes=", one)
    assertRejected("maxMessageSizeBytes=-1", prefix + #"invalid maxMessageSizeBytes "-1""#)
    assertRejected(
      "maxMessageSizeBytes=4294967296", prefix + #"invalid maxMessageSizeBytes "4294967296""#)
  }

  /// The Python client's query (§7) parses as it means.
  func testPythonClientQuery() throws {
    let parsed = try options(
      "collections=app.bsky.feed.post&collections=app.bsky.%2A&cursor=1&dids=did%3Aplc%3Atest"
        + "&kinds=commit&kinds=sync&maxMessageSizeBytes=1000000&zstdDictionary=20260811")
    XCTAssertEqual(parsed.filter.collections, ["app.bsky.feed.post"])
    XCTAssertEqual(parsed.filter.prefixes, ["app.bsky."])
    XCTAssertEqual(parsed.filter.dids, ["did:plc:test"])
    XCTAssertEqual(parsed.filter.kinds, [.commit, .sync])
    XCTAssertEqual(parsed.cursor, 1)
    XCTAssertEqual(parsed.maxMessageSizeBytes, 1_000_000)
    XCTAssertEqual(parsed.zstdDictionary, current)
  }

  func testErrorBodiesAndReasons() {
    guard case .failure(let error) = parse("dids=%3Cscript%3E&x=1") else { return XCTFail() }
    XCTAssertEqual(
      String(decoding: error.body, as: UTF8.self),
      #"{"error":"InvalidRequest","message":"subscribe: invalid options: invalid DID: "#
        + #"\u003cscript\u003e"}"#)
    XCTAssertEqual(error.reason, "v2_invalid_did")
    XCTAssertEqual(
      String(decoding: XRPCError.notReady("bootstrap in progress").body, as: UTF8.self),
      #"{"error":"ServiceUnavailable","message":"service not ready: bootstrap in progress"}"#)
    XCTAssertEqual(XRPCError.notReady("x").status, .serviceUnavailable)
    let tooOld = XRPCError.cursorTooOld(cursor: 5, floor: 200)
    XCTAssertEqual(tooOld.status, .badRequest)
    XCTAssertEqual(tooOld.error, "CursorTooOld")
    XCTAssertEqual(
      tooOld.message,
      "subscribe: cursor too old: cursor 5 below lookback floor 200; re-backfill from your last seq"
    )
    XCTAssertEqual(XRPCError.cursorResolutionFailed.status, .serviceUnavailable)
    XCTAssertEqual(
      String(decoding: XRPCError.cursorResolutionFailed.body, as: UTF8.self),
      #"{"error":"ServiceUnavailable","message":"service not ready: cursor resolution failed"}"#)
    // Every row has its own label (6–8 share one, as do 17–18 and 20–21; 11 is in its own test).
    let reasons = [
      "a=%zz", "compress=true", "zstdDictionary=0", "zstdDictionary=1", "wantedDids=",
      "kinds=a&kinds=a&kinds=a&kinds=a&kinds=a", "kinds=a",
      Array(repeating: "collections=a", count: 101).joined(separator: "&"), "dids=a",
      "collections=a.*", "collections=a", "kinds=sync&collections=a.b.c", "maxMessageSizeBytes=",
      "cursor=x",
    ].map { query -> String in
      guard case .failure(let error) = parse(query) else { return "accepted: \(query)" }
      return error.reason
    }
    XCTAssertEqual(
      reasons,
      [
        "v2_invalid_query", "v2_v1_compression", "v2_invalid_dictionary_id",
        "v2_unknown_dictionary", "v2_legacy_parameter", "v2_too_many_kinds", "v2_invalid_kind",
        "v2_too_many_collections", "v2_invalid_did",
        "v2_invalid_collection_wildcard", "v2_invalid_collection", "v2_collections_without_commit",
        "v2_invalid_max_message_size", "v2_invalid_cursor",
      ])
  }

  // MARK: Route

  func testRouteOnlyTakesGETOfThePath() throws {
    func head(_ method: HTTPMethod, _ uri: String) -> HTTPRequestHead {
      HTTPRequestHead(version: .http1_1, method: method, uri: uri)
    }
    let path = V2Request.path
    XCTAssertEqual(
      try Route.v2Options(head(.GET, path + "?cursor=7"), dictionaryID: current)?.get().cursor, 7)
    XCTAssertEqual(try Route.v2Options(head(.GET, path), dictionaryID: current)?.get(), V2Options())
    guard case .failure(let error)? = Route.v2Options(head(.GET, path + "?kinds="), dictionaryID: 1)
    else { return XCTFail() }
    XCTAssertEqual(error.reason, "v2_invalid_kind")
    XCTAssertNil(Route.v2Options(head(.HEAD, path), dictionaryID: current))
    XCTAssertNil(Route.v2Options(head(.POST, path), dictionaryID: current))
    XCTAssertNil(Route.v2Options(head(.GET, "/subscribe"), dictionaryID: current))
    XCTAssertNil(Route.v2Options(head(.GET, path + "/x"), dictionaryID: current))
  }

  // MARK: The handshake (§1.1)

  func testHandshakeChecks() {
    func failure(
      _ headers: [(String, String)], method: HTTPMethod = .GET,
      version: HTTPVersion = .http1_1
    ) -> V2Request.HandshakeFailure? {
      V2Request.handshakeFailure(
        HTTPRequestHead(
          version: version, method: method, uri: V2Request.path, headers: HTTPHeaders(headers)))
    }
    let good = [
      ("Connection", "keep-alive, Upgrade"), ("Upgrade", "WebSocket"),
      ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", " dGhlIHNhbXBsZSBub25jZQ== "),
    ]
    XCTAssertNil(failure(good))
    func without(_ name: String) -> [(String, String)] { good.filter { $0.0 != name } }

    let http10 = failure(good, version: .http1_0)
    XCTAssertEqual(http10?.status, .upgradeRequired)
    XCTAssertEqual(
      http10?.message,
      #"WebSocket protocol violation: handshake request must be at least HTTP/1.1: "HTTP/1.0""#)

    let noConnection = failure(without("Connection"))
    XCTAssertEqual(noConnection?.status, .upgradeRequired)
    XCTAssertEqual(
      noConnection?.message,
      #"WebSocket protocol violation: Connection header "" does not contain Upgrade"#)
    XCTAssertEqual(noConnection?.headers.map(\.name), ["Connection", "Upgrade"])
    XCTAssertEqual(
      failure(without("Connection") + [("Connection", "keep-alive")])?.message,
      #"WebSocket protocol violation: Connection header "keep-alive" does not contain Upgrade"#)

    let noUpgrade = failure(without("Upgrade") + [("Upgrade", "h2c")])
    XCTAssertEqual(noUpgrade?.status, .upgradeRequired)
    XCTAssertEqual(
      noUpgrade?.message,
      #"WebSocket protocol violation: Upgrade header "h2c" does not contain websocket"#)

    let head = failure(good, method: .HEAD)
    XCTAssertEqual(head?.status, .methodNotAllowed)
    XCTAssertEqual(
      head?.message,
      #"WebSocket protocol violation: handshake request method is not GET but "HEAD""#)

    let version = failure(without("Sec-WebSocket-Version") + [("Sec-WebSocket-Version", "8")])
    XCTAssertEqual(version?.status, .badRequest)
    XCTAssertEqual(
      version?.message, #"unsupported WebSocket protocol version (only 13 is supported): "8""#)
    XCTAssertEqual(version?.headers.map(\.value), ["13"])
    XCTAssertEqual(
      failure(without("Sec-WebSocket-Version"))?.message,
      #"unsupported WebSocket protocol version (only 13 is supported): """#)

    XCTAssertEqual(
      failure(without("Sec-WebSocket-Key"))?.message,
      "WebSocket protocol violation: missing Sec-WebSocket-Key")
    XCTAssertEqual(
      failure(good + [("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")])?.message,
      "WebSocket protocol violation: multiple Sec-WebSocket-Key headers")
    for bad in [
      "abc", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25j*Q==",
    ] {
      let key = failure(without("Sec-WebSocket-Key") + [("Sec-WebSocket-Key", bad)])
      XCTAssertEqual(key?.status, .badRequest, bad)
      XCTAssertEqual(
        key?.message, "WebSocket protocol violation: invalid Sec-WebSocket-Key \"\(bad)\"", bad)
    }
  }

  func testGoQuote() {
    XCTAssertEqual(goQuote(""), #""""#)
    XCTAssertEqual(goQuote("plain text"), #""plain text""#)
    XCTAssertEqual(goQuote("\u{07}\u{08}\u{0C}\n\r\t\u{0B}\"\\"), #""\a\b\f\n\r\t\v\"\\""#)
    XCTAssertEqual(goQuote("\u{00}\u{1F}\u{7F}"), #""\x00\x1f\x7f""#)
    XCTAssertEqual(goQuote("é日本\u{FFFD}"), "\"é日本\u{FFFD}\"")
    XCTAssertEqual(goQuote("\u{A0}\u{2028}\u{200B}"), #""\u00a0\u2028\u200b""#)
    XCTAssertEqual(goQuote("\u{E0001}😀"), "\"\\U000e0001😀\"")
  }
}
