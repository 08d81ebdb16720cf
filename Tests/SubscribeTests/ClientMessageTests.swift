import Events
import XCTest

@testable import Subscribe

/// PROTOCOL §7.1–7.2 and the reason truncation of §9.
final class ClientMessageTests: XCTestCase {
  private func decode(_ text: String) -> ClientMessage { ClientMessage.decode(Array(text.utf8)) }

  func testUpdatesReplaceAllThreeFields() throws {
    let posts = try EventFilter(wantedCollections: ["app.bsky.feed.post"], wantedDIDs: [])
    XCTAssertEqual(
      decode(
        #"{"type":"options_update","payload":{"wantedCollections":["app.bsky.feed.post"],"wantedDids":[],"maxMessageSizeBytes":0}}"#
      ),
      .update(posts, maxMessageSizeBytes: 0))
    XCTAssertEqual(
      decode(
        #"{"TYPE":"options_update","Payload":{"WantedCollections":["x.y.z"],"wantedcollections":["app.bsky.feed.post"],"maxMessageSizeBytes":-4}}"#
      ),
      .update(posts, maxMessageSizeBytes: 0),
      "names case-insensitive, last repeat wins, negative means 0")
    XCTAssertEqual(
      decode(
        #"{"type":"options_update","payload":{"wantedDids":null,"maxMessageSizeBytes":null,"other":1}}"#
      ),
      .update(.all, maxMessageSizeBytes: 0),
      "null and absent clear a field; unknown fields are ignored")
    XCTAssertEqual(
      decode(#" {"type":"options_update","payload":{"maxMessageSizeBytes":9223372036854775807}} "#),
      .update(.all, maxMessageSizeBytes: Int64.max))
  }

  func testOtherTypesAreIgnored() {
    for text in [
      "null", #"{}"#, #"{"type":""}"#, #"{"type":"heartbeat"}"#, #"{"type":null}"#,
      #"{"payload":5}"#,
    ] {
      XCTAssertEqual(decode(text), .ignored, text)
    }
  }

  func testBadEnvelopes() {
    for text in [
      "", "nope", "[1]", "5", #""x""#, #"{"type":5}"#, #"{"type":"options_update""#, "{} {}",
    ] {
      XCTAssertEqual(decode(text), .close(.badEnvelope), text)
    }
    XCTAssertEqual(ClientMessage.decode([0x7B, 0xFF, 0x7D]), .close(.badEnvelope), "not UTF-8")
  }

  func testBadPayloads() {
    for payload in [
      "", #","payload":null"#, #","payload":[]"#,
      #","payload":{"wantedCollections":"app.bsky.feed.post"}"#,
      #","payload":{"wantedDids":[1]}"#, #","payload":{"maxMessageSizeBytes":1.5}"#,
      #","payload":{"maxMessageSizeBytes":"5"}"#, #","payload":{"maxMessageSizeBytes":1e3}"#,
      #","payload":{"maxMessageSizeBytes":9223372036854775808}"#,
    ] {
      XCTAssertEqual(
        decode(#"{"type":"options_update""# + payload + "}"), .close(.badPayload), payload)
    }
  }

  func testInvalidOptionsClose1008WithTheReason() {
    guard
      case .close(let reason) = decode(
        #"{"type":"options_update","payload":{"wantedCollections":["*"]}}"#)
    else {
      return XCTFail("expected a close")
    }
    XCTAssertEqual(reason.code, 1008)
    XCTAssertEqual(reason.text, "invalid subscriber options: invalid collection: *")
    XCTAssertEqual(reason.metric, "invalid_options")
  }

  func testLongReasonsAreCutAtACharacterBoundary() {
    let reason = CloseReason(
      code: 1008,
      text: "invalid subscriber options: invalid collection: " + String(repeating: "é", count: 150),
      metric: "x")
    XCTAssertTrue(reason.wireText.hasSuffix("..."))
    XCTAssertLessThanOrEqual(reason.wireText.utf8.count, 123)
    XCTAssertLessThanOrEqual(reason.wireText.dropLast(3).utf8.count, 120)
    XCTAssertEqual(CloseReason.tooBig.wireText, "message too big")
  }

  func testJSONStrings() {
    XCTAssertEqual(
      JSONValue.parse(Array(#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00""#.utf8)),
      .string("a\"\\/\u{8}\u{c}\n\r\té😀"))
    XCTAssertNil(JSONValue.parse(Array("\"a\u{1}\"".utf8)), "control characters must be escaped")
    XCTAssertNil(JSONValue.parse(Array(#""\x""#.utf8)))
    XCTAssertNil(JSONValue.parse(Array("01".utf8)))
    XCTAssertEqual(JSONValue.parse(Array("-0.5e+3".utf8)), .number("-0.5e+3"))
  }
}
