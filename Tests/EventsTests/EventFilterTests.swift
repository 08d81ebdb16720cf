import Events
import TestSupport
import XCTest

/// PROTOCOL §2.2–2.5 and the subscriber vectors of §11.5.
final class EventFilterTests: XCTestCase {
  func testNSIDSyntax() {
    for valid in [
      "app.bsky.feed.post", "fm.teal.alpha.actor.status", "com.example.v2", "a.b.c", "A-1.b-2.C3",
      "com.0example.x", String(repeating: "a", count: 63) + ".b.c",
    ] {
      XCTAssertTrue(Identifier.isNSID(valid), valid)
    }
    for invalid in [
      "app.bsky", "1app.bsky.post", "app..feed.post", "app.bsky.feed.post-v2",
      "app.bsky.feed.2post", "*",
      "app.bsky.graph.fo*", "a,b", "", "-app.bsky.post", "app-.bsky.post", "app.bsky.post.",
      ".app.bsky.post",
      "app.bsky.pöst", String(repeating: "a", count: 64) + ".b.c",
      (0..<80).map { _ in "abc" }.joined(separator: "."),  // 319 bytes
    ] {
      XCTAssertFalse(Identifier.isNSID(invalid), invalid)
    }
  }

  func testDIDSyntax() {
    for valid in [
      "did:plc:wq4aajammjtxdomz3e23667t", "did:web:example.com", "did:foo:bar",
      "did:web:localhost%3A8080",
      "did:plc:a.b_c-d:e",
      "did:" + String(repeating: "x", count: 3) + ":" + String(repeating: "y", count: 2_040),
    ] {
      XCTAssertTrue(Identifier.isDID(valid), valid)
    }
    for invalid in [
      "DID:plc:x", "did:plc:", "did:plc:abc:", "did:plc:ab%", "did:PLC:x", "did::x", "did:plc",
      "plc:x",
      "did:plc:a b", "did:plc:é", "did:a:" + String(repeating: "y", count: 2_043),
    ] {
      XCTAssertFalse(Identifier.isDID(invalid), invalid)
    }
  }

  private func reject(_ collections: [String], _ dids: [String] = []) -> String? {
    do {
      _ = try EventFilter(wantedCollections: collections, wantedDIDs: dids)
      return nil
    } catch {
      return error.description
    }
  }

  func testRejectionsUseTheProtocolTextsInOrder() {
    XCTAssertEqual(reject(["a,b"]), "invalid subscriber options: invalid collection: a,b")
    XCTAssertEqual(reject(["*"]), "invalid subscriber options: invalid collection: *")
    XCTAssertEqual(
      reject(["app.bsky.feed.post", "bad", "worse"]),
      "invalid subscriber options: invalid collection: bad")
    XCTAssertEqual(
      reject([], ["did:plc:ok", "did:plc:"]), "invalid subscriber options: invalid DID: did:plc:")
    // Collections are checked before DIDs, and validity before counts.
    XCTAssertEqual(reject(["x"], ["nope"]), "invalid subscriber options: invalid collection: x")
    let manyDIDs = (0...10_000).map { "did:plc:\($0)" }
    XCTAssertEqual(reject([], manyDIDs), "invalid subscriber options: too many wanted DIDs")
    XCTAssertEqual(reject([], manyDIDs + ["bad"]), "invalid subscriber options: invalid DID: bad")
    let many = (0...100).map { "com.example.c\($0)" }
    XCTAssertEqual(reject(many), "invalid subscriber options: too many wanted collections")
    XCTAssertEqual(reject(many, manyDIDs), "invalid subscriber options: too many wanted DIDs")
  }

  func testAcceptedShapes() throws {
    XCTAssertNil(reject(["app.bsky.*"]), "the head of a prefix is not validated")
    XCTAssertNil(reject([".*"]))
    let hundred = (0..<100).map { "com.example.c\($0)" }
    XCTAssertNil(reject(hundred + hundred), "100 distinct collections given with duplicates")
    XCTAssertNil(
      reject((0..<50).map { "com.example.c\($0)" } + (0..<50).map { "com.example.p\($0).*" }))
    XCTAssertEqual(
      reject((0..<50).map { "com.example.c\($0)" } + (0...50).map { "com.example.p\($0).*" }),
      "invalid subscriber options: too many wanted collections")
    let dids = (0..<10_000).map { "did:plc:\($0)" }
    XCTAssertNil(reject([], dids + dids))
  }

  func testMatching() throws {
    let follows = try EventFilter(
      wantedCollections: ["app.bsky.graph.*", "app.bsky.feed.post"], wantedDIDs: [])
    XCTAssertTrue(
      follows.matches(kind: .commit, did: "did:plc:a", collection: "app.bsky.graph.follow"))
    XCTAssertFalse(
      follows.matches(kind: .commit, did: "did:plc:a", collection: "app.bsky.graph"),
      "not the bare parent")
    XCTAssertTrue(
      follows.matches(kind: .commit, did: "did:plc:a", collection: "app.bsky.feed.post"))
    XCTAssertFalse(
      follows.matches(kind: .commit, did: "did:plc:a", collection: "app.bsky.feed.postgate"))
    XCTAssertFalse(
      follows.matches(kind: .commit, did: "did:plc:a", collection: "app.bsky.feed.like"))
    XCTAssertTrue(
      follows.matches(kind: .identity, did: "did:plc:a", collection: ""),
      "identity passes collections")
    XCTAssertTrue(
      follows.matches(kind: .account, did: "did:plc:a", collection: ""),
      "account passes collections")
    XCTAssertTrue(
      follows.matches(kind: .commit, did: "did:plc:a", collection: ""), "empty collection passes")

    let exact = try EventFilter(wantedCollections: ["app.bsky.feed.post.*"], wantedDIDs: [])
    XCTAssertFalse(exact.matches(kind: .commit, did: "x", collection: "app.bsky.feed.post"))
    XCTAssertTrue(exact.matches(kind: .commit, did: "x", collection: "app.bsky.feed.post.x"))

    let people = try EventFilter(
      wantedCollections: [], wantedDIDs: ["did:plc:a", "did:web:b.example"])
    for kind in EventFilter.v1Kinds {
      XCTAssertTrue(people.matches(kind: kind, did: "did:plc:a", collection: "app.bsky.feed.like"))
      XCTAssertFalse(
        people.matches(kind: kind, did: "did:plc:c", collection: "app.bsky.feed.like"),
        "DIDs apply to all kinds")
    }
    let both = try EventFilter(wantedCollections: ["app.bsky.feed.like"], wantedDIDs: ["did:plc:a"])
    XCTAssertTrue(both.matches(kind: .commit, did: "did:plc:a", collection: "app.bsky.feed.like"))
    XCTAssertFalse(both.matches(kind: .commit, did: "did:plc:a", collection: "app.bsky.feed.post"))
    XCTAssertFalse(both.matches(kind: .commit, did: "did:plc:b", collection: "app.bsky.feed.like"))
    XCTAssertTrue(
      EventFilter.all.matches(kind: .commit, did: "anything", collection: "any.thing.at.all"))
    XCTAssertFalse(
      people.matches(kind: .sync, did: "did:plc:a", collection: ""), "v1 filters never pass sync")
    XCTAssertFalse(EventFilter.all.matches(kind: .sync, did: "did:plc:a", collection: ""))
  }

  /// Filtering the fixture's events equals filtering its expected JSONL by parsed fields.
  func testFilteringTheFixtureMatchesTheJSON() throws {
    let lines = try XCTUnwrap(
      SharedData.read(SharedData.projectRoot + "/Fixtures/synthetic-2000.expected.jsonl")
    )
    .split(separator: UInt8(ascii: "\n"))
    let filter = try EventFilter(wantedCollections: ["app.bsky.graph.*"], wantedDIDs: [])
    var kept = 0
    for line in lines {
      let object = try XCTUnwrap(
        try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
      let kind = EventKind.allCases.first { $0.label == object["kind"] as? String }!
      let collection = (object["commit"] as? [String: Any])?["collection"] as? String ?? ""
      let expected = kind != .commit || collection.hasPrefix("app.bsky.graph.")
      XCTAssertEqual(
        filter.matches(kind: kind, did: object["did"] as! String, collection: collection), expected)
      if expected { kept += 1 }
    }
    XCTAssertGreaterThan(kept, 100)
    XCTAssertLessThan(kept, lines.count / 4)
  }
}
