import Events
import Foundation
import TestSupport
import XCTest

/// Reading a Jetstream host's v1 events for an edge's store (`UpstreamEvent`).
final class UpstreamEventTests: XCTestCase {
  private func meta(_ json: String) -> EventMeta? {
    Array(json.utf8).withUnsafeBytes { UpstreamEvent.meta(ofV1: $0) }
  }

  /// Every event production Jetstream sent for the shared capture is read with its `time_us`,
  /// DID, kind and collection as the JSON says.
  func testEveryEventProductionJetstreamSentIsRead() throws {
    guard let path = SharedData.path("corpus/jetstream-v1-capture/expected_v1.jsonl") else {
      throw XCTSkip(SharedData.skipMessage)
    }
    let lines = try XCTUnwrap(SharedData.read(path)).split(separator: UInt8(ascii: "\n"))
    XCTAssertEqual(lines.count, 152)
    var kinds: Set<String> = []
    for line in lines {
      let object = try XCTUnwrap(
        JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
      let meta = try XCTUnwrap(
        Array(line).withUnsafeBytes { UpstreamEvent.meta(ofV1: $0) },
        String(decoding: line, as: UTF8.self))
      let kind = try XCTUnwrap(object["kind"] as? String)
      kinds.insert(kind)
      XCTAssertEqual(meta.kind.label, kind)
      XCTAssertEqual(meta.timeUS, object["time_us"] as? Int64)
      XCTAssertEqual(meta.did, object["did"] as? String)
      XCTAssertEqual(
        meta.collection, (object["commit"] as? [String: Any])?["collection"] as? String ?? "")
      XCTAssertEqual(meta.seq, 0)
      XCTAssertEqual(meta.eventSeq, 0)
    }
    XCTAssertEqual(kinds, ["commit", "identity", "account"])
  }

  /// Anything an edge could not serve on both wires, or could not file by DID, collection and
  /// time, is refused.
  func testWhatIsNotAStorableEventIsRefused() {
    let commit =
      #"{"did":"did:plc:abc","time_us":1700000000000001,"kind":"commit","commit":{"rev":"r","operation":"delete","collection":"app.bsky.feed.like","rkey":"k"}}"#
    XCTAssertEqual(
      meta(commit),
      EventMeta(
        timeUS: 1_700_000_000_000_001, seq: 0, kind: .commit, did: "did:plc:abc",
        collection: "app.bsky.feed.like"))
    let refused = [
      "", "{}", "null", "[]", commit + " ", " " + commit,
      commit.replacingOccurrences(of: "1700000000000001", with: "0"),
      commit.replacingOccurrences(of: "1700000000000001", with: "-1700000000000001"),
      commit.replacingOccurrences(of: "1700000000000001", with: "1.5"),
      commit.replacingOccurrences(of: "1700000000000001", with: "1e15"),
      commit.replacingOccurrences(of: "1700000000000001", with: "99999999999999999999"),
      commit.replacingOccurrences(of: "1700000000000001", with: "\"1700000000000001\""),
      commit.replacingOccurrences(of: #""time_us":1700000000000001,"#, with: ""),
      commit.replacingOccurrences(of: "did:plc:abc", with: #"did\u003aplc:abc"#),
      commit.replacingOccurrences(of: "did:plc:abc", with: "not-a-did"),
      commit.replacingOccurrences(of: "app.bsky.feed.like", with: "not an nsid"),
      commit.replacingOccurrences(of: #""collection":"app.bsky.feed.like","#, with: ""),
      commit.replacingOccurrences(of: #""kind":"commit""#, with: #""kind":"label""#),
      commit.replacingOccurrences(of: "{\"rev\"", with: "{\"rev\":\"r\",\"rev\""),
      String(commit.dropLast()),
    ]
    for json in refused { XCTAssertNil(meta(json), json) }
  }
}
