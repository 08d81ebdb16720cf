import Events
import Subscribe
import URLQuery
import XCTest

/// PROTOCOL §2.1 and §2.5: query decoding, defaults and the exact rejection bodies.
final class SubscribeOptionsTests: XCTestCase {
  private func parse(_ query: String, encoding: String? = nil) -> Result<
    SubscribeOptions, SubscribeOptions.Rejection
  > {
    SubscribeOptions.parse(query: Substring(query), socketEncoding: encoding)
  }

  private func options(_ query: String, encoding: String? = nil) throws -> SubscribeOptions {
    try parse(query, encoding: encoding).get()
  }

  private func rejection(_ query: String) -> SubscribeOptions.Rejection? {
    if case .failure(let rejection) = parse(query) { return rejection }
    return nil
  }

  func testFormDecoding() {
    let pairs = QueryString.parse(
      "a=1&b=x%20y&c=p+q&a=2&bad=%zz&semi=1;2&&empty=&novalue&%41=%e2%80%a8")
    XCTAssertEqual(pairs.map(\.key), ["a", "b", "c", "a", "empty", "novalue", "A"])
    XCTAssertEqual(pairs.map(\.value), ["1", "x y", "p q", "2", "", "", "\u{2028}"])
  }

  func testDefaultsAndFlags() throws {
    let none = try options("")
    XCTAssertEqual(none.filter, .all)
    XCTAssertNil(none.cursor)
    XCTAssertFalse(none.compress)
    XCTAssertFalse(none.requireHello)
    XCTAssertEqual(none.maxMessageSizeBytes, 0)
    XCTAssertNil(none.heartbeat)
    XCTAssertTrue(try options("compress=true").compress)
    XCTAssertFalse(try options("compress=TRUE").compress, "exactly `true`")
    XCTAssertFalse(try options("compress=false&compress=true").compress, "the first value counts")
    XCTAssertTrue(try options("", encoding: "zstd").compress)
    XCTAssertTrue(try options("", encoding: "gzip, zstd").compress)
    XCTAssertFalse(try options("", encoding: "ZSTD").compress, "case-sensitive")
    XCTAssertTrue(try options("requireHello=true").requireHello)
    XCTAssertFalse(try options("requireHello=1").requireHello)
    XCTAssertEqual(try options("heartbeat=30").heartbeat, 30)
  }

  func testMaxMessageSizeNeverFails() throws {
    XCTAssertEqual(try options("maxMessageSizeBytes=1000").maxMessageSizeBytes, 1000)
    XCTAssertEqual(
      try options("maxMessageSizeBytes=9223372036854775807").maxMessageSizeBytes, Int64.max)
    for bad in ["-5", "abc", "1.5", "9223372036854775808", "", " 7"] {
      XCTAssertEqual(try options("maxMessageSizeBytes=\(bad)").maxMessageSizeBytes, 0, bad)
    }
  }

  func testCursor() throws {
    XCTAssertEqual(try options("cursor=1783175888085434").cursor, 1_783_175_888_085_434)
    XCTAssertEqual(try options("cursor=007").cursor, 7, "leading zeros")
    XCTAssertEqual(try options("cursor=%2B5").cursor, 5, "a + sign (escaped; a bare + is a space)")
    XCTAssertEqual(try options("cursor=-5").cursor, -5)
    XCTAssertEqual(try options("cursor=-9223372036854775808").cursor, Int64.min)
    XCTAssertNil(try options("cursor=").cursor, "empty is live")
    for bad in ["abc", "1.5", "9223372036854775808", "+5", "%205", "5%20", "1e3"] {
      let decoded = QueryString.parse(Substring("cursor=\(bad)")).first?.value ?? ""
      XCTAssertEqual(rejection("cursor=\(bad)")?.body, "invalid cursor: \(decoded)", bad)
      XCTAssertEqual(rejection("cursor=\(bad)")?.reason, "invalid_cursor")
    }
  }

  func testRejectionBodiesInTableOrder() {
    XCTAssertEqual(
      rejection("wantedCollections=a,b")?.body,
      "invalid subscriber options: invalid collection: a,b")
    XCTAssertEqual(rejection("wantedCollections=*")?.reason, "invalid_collection")
    XCTAssertEqual(
      rejection("wantedDids=did:plc:")?.body, "invalid subscriber options: invalid DID: did:plc:")
    XCTAssertEqual(rejection("wantedDids=did:plc:")?.reason, "invalid_did")
    XCTAssertEqual(
      rejection("heartbeat=0")?.body, "invalid subscriber options: invalid heartbeat: 0")
    XCTAssertEqual(rejection("heartbeat=3601")?.reason, "invalid_heartbeat")
    XCTAssertEqual(
      rejection("heartbeat=abc")?.body, "invalid subscriber options: invalid heartbeat: abc")
    // Order: collections, DIDs, DID count, collection count, cursor, heartbeat.
    XCTAssertEqual(rejection("heartbeat=0&cursor=x")?.reason, "invalid_cursor")
    XCTAssertEqual(rejection("cursor=x&wantedDids=bad")?.reason, "invalid_did")
    XCTAssertEqual(rejection("wantedDids=bad&wantedCollections=bad")?.reason, "invalid_collection")
    let tooMany = (0...100).map { "wantedCollections=com.example.c\($0)" }.joined(separator: "&")
    XCTAssertEqual(
      rejection(tooMany + "&cursor=x")?.body,
      "invalid subscriber options: too many wanted collections")
    let dids = (0...10_000).map { "wantedDids=did:plc:\($0)" }.joined(separator: "&")
    XCTAssertEqual(rejection(dids + "&" + tooMany)?.reason, "too_many_dids")
    XCTAssertNil(rejection("wantedCollections=app.bsky.*&unknown=whatever"))
  }

  func testValuesAreDecodedBeforeValidation() throws {
    let decoded = try options(
      "wantedCollections=app.bsky.feed.post&wantedCollections=app%2Ebsky%2Egraph%2E%2A")
    XCTAssertEqual(decoded.filter.collections, ["app.bsky.feed.post"])
    XCTAssertEqual(decoded.filter.prefixes, ["app.bsky.graph."])
    XCTAssertEqual(
      rejection("wantedCollections=a%2Cb")?.body,
      "invalid subscriber options: invalid collection: a,b")
  }
}
