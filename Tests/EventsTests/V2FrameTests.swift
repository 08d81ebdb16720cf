import Events
import Firehose
import Foundation
import SyntheticFirehose
import TestSupport
import XCTest

/// The v2 wire's frames (PROTOCOL-v2 §2) built from stored v1 events.
final class V2FrameTests: XCTestCase {
  private func v2(_ v1: String, seq: Int64, time: Int64) -> String? {
    let bytes = Array(v1.utf8)
    let frame = bytes.withUnsafeBytes { V2Frame.message(fromV1: $0, eventSeq: seq, timeUS: time) }
    // The ByteSink variant appends exactly the same bytes, after what the sink held.
    var sink = ByteSink(capacity: 16)
    defer { sink.release() }
    sink.append("prefix")
    let written = bytes.withUnsafeBytes {
      V2Frame.write(fromV1: $0, eventSeq: seq, timeUS: time, to: &sink)
    }
    XCTAssertEqual(written, frame != nil)
    XCTAssertEqual(Array(sink.bytes), Array("prefix".utf8) + (frame ?? []))
    return frame.map { String(decoding: $0, as: UTF8.self) }
  }

  private static let november2023: Int64 = 1_700_000_000_000_000

  // MARK: PROTOCOL-v2 §2.6, examples A–H

  func testExampleACommitCreate() {
    let record =
      #"{"$type":"app.bsky.feed.like","createdAt":"2026-05-25T14:23:28.778Z","subject":{"cid":"bafyreiaxf7tgbfydx3465sckitq6v564thxe2wwydbi7cwxbxvgssje3em","uri":"at://did:plc:vfnmgxg2yscfliemmcxzyfyh/app.bsky.feed.post/3mmoodizfwc2j"}}"#
    let v1 =
      #"{"did":"did:plc:mcc5yghbk7tixqryac2yxku7","time_us":1779719009132431,"kind":"commit","commit":{"rev":"3mmoojp7vgo2g","operation":"create","collection":"app.bsky.feed.like","rkey":"3mmoojp7etg2g","record":\#(record),"cid":"bafyreidqpc7si3dbimffi64lz3xsx2qt45ip7rpna2qpslcddp23itjjzm"}}"#
    XCTAssertEqual(
      v2(v1, seq: 12345, time: 1_779_719_009_132_431),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#commit","cid":"bafyreidqpc7si3dbimffi64lz3xsx2qt45ip7rpna2qpslcddp23itjjzm","collection":"app.bsky.feed.like","did":"did:plc:mcc5yghbk7tixqryac2yxku7","operation":"create","record":{"$type":"app.bsky.feed.like","createdAt":"2026-05-25T14:23:28.778Z","subject":{"cid":"bafyreiaxf7tgbfydx3465sckitq6v564thxe2wwydbi7cwxbxvgssje3em","uri":"at://did:plc:vfnmgxg2yscfliemmcxzyfyh/app.bsky.feed.post/3mmoodizfwc2j"}},"rev":"3mmoojp7vgo2g","rkey":"3mmoojp7etg2g","seq":12345,"time":"2026-05-25T14:23:29.132431Z"}}"#
    )
  }

  func testExampleBCommitWithAnEmptyRecord() {
    let v1 =
      #"{"did":"did:plc:test","time_us":1700000000000000,"kind":"commit","commit":{"rev":"rev1","operation":"create","collection":"app.bsky.feed.post","rkey":"abc","record":{},"cid":"bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"}}"#
    XCTAssertEqual(
      v2(v1, seq: 12345, time: Self.november2023),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#commit","cid":"bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua","collection":"app.bsky.feed.post","did":"did:plc:test","operation":"create","record":{},"rev":"rev1","rkey":"abc","seq":12345,"time":"2023-11-14T22:13:20.000000Z"}}"#
    )
  }

  func testExampleCDelete() {
    let v1 =
      #"{"did":"did:plc:test","time_us":123,"kind":"commit","commit":{"rev":"rev1","operation":"delete","collection":"app.bsky.feed.post","rkey":"abc"}}"#
    XCTAssertEqual(
      v2(v1, seq: 9, time: 123),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#commit","collection":"app.bsky.feed.post","did":"did:plc:test","operation":"delete","rev":"rev1","rkey":"abc","seq":9,"time":"1970-01-01T00:00:00.000123Z"}}"#
    )
  }

  func testExampleDIdentity() {
    let v1 =
      #"{"did":"did:plc:test","time_us":1700000000000000,"kind":"identity","identity":{"did":"did:plc:test","seq":99,"time":"2026-05-25T00:00:00Z"}}"#
    XCTAssertEqual(
      v2(v1, seq: 123, time: Self.november2023),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#identity","did":"did:plc:test","identity":{"did":"did:plc:test","seq":99,"time":"2026-05-25T00:00:00Z"},"seq":123,"time":"2023-11-14T22:13:20.000000Z"}}"#
    )
  }

  func testExampleEAccountWithStatus() {
    let v1 =
      #"{"did":"did:plc:acct","time_us":2,"kind":"account","account":{"active":false,"did":"did:plc:acct","seq":2,"status":"deleted","time":"2026-05-27T00:00:00Z"}}"#
    XCTAssertEqual(
      v2(v1, seq: 2, time: 2),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#account","account":{"active":false,"did":"did:plc:acct","seq":2,"status":"deleted","time":"2026-05-27T00:00:00Z"},"did":"did:plc:acct","seq":2,"time":"1970-01-01T00:00:00.000002Z"}}"#
    )
  }

  static let exampleF =
    #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#sync","did":"did:plc:test","seq":77,"sync":{"blocks":{"$bytes":"AQID"},"did":"did:plc:test","rev":"rev-sync","seq":444,"time":"2026-05-25T00:00:00Z"},"time":"2023-11-14T22:13:20.000000Z"}}"#

  func testExampleFSync() {
    let v1 =
      #"{"did":"did:plc:test","time_us":1700000000000000,"kind":"sync","sync":{"blocks":{"$bytes":"AQID"},"did":"did:plc:test","rev":"rev-sync","seq":444,"time":"2026-05-25T00:00:00Z"}}"#
    XCTAssertEqual(v2(v1, seq: 77, time: Self.november2023), Self.exampleF)
  }

  /// Example F from a relay `#sync` frame, through the translator's stored form.
  func testExampleFFromARelayFrame() throws {
    let frame = FrameBuilder.sync(
      seq: 444, did: "did:plc:test", rev: "rev-sync", time: "2026-05-25T00:00:00Z",
      blocks: [1, 2, 3])
    let translator = Translator(sequencer: Sequencer(last: 10, clock: { 0 }))
    var events: [Event] = []
    translator.translate(frame, into: &events)
    let event = try XCTUnwrap(events.first)
    let built = event.json.withUnsafeBytes {
      V2Frame.message(fromV1: $0, eventSeq: 77, timeUS: Self.november2023)
    }
    XCTAssertEqual(built.map { String(decoding: $0, as: UTF8.self) }, Self.exampleF)
  }

  func testExampleGInfo() {
    XCTAssertEqual(
      String(
        decoding: V2Frame.info(
          name: "OutdatedCursor",
          message: "requested timestamp cursor below retention floor; starting at seq 200"),
        as: UTF8.self),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#info","message":"requested timestamp cursor below retention floor; starting at seq 200","name":"OutdatedCursor"}}"#
    )
    XCTAssertEqual(
      String(decoding: V2Frame.info(name: "FutureCursor", message: nil), as: UTF8.self),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#info","name":"FutureCursor"}}"#
    )
  }

  func testExampleHError() {
    XCTAssertEqual(
      String(
        decoding: V2Frame.error(
          name: "ConsumerTooSlow",
          message:
            "reading below the floor rate 2100000 events behind the tip; reconnect with cursor=42"),
        as: UTF8.self),
      #"{"$type":"error","error":"ConsumerTooSlow","message":"reading below the floor rate 2100000 events behind the tip; reconnect with cursor=42"}"#
    )
    XCTAssertEqual(
      String(decoding: V2Frame.error(name: "InternalError", message: ""), as: UTF8.self),
      #"{"$type":"error","error":"InternalError"}"#)
  }

  func testInfoAndErrorStringsAreEscapedLikeGo() {
    XCTAssertEqual(
      String(
        decoding: V2Frame.error(name: "A<b>&\"c\"", message: "line\nbreak \u{2028} é \u{1}"),
        as: UTF8.self),
      #"{"$type":"error","error":"A\u003cb\u003e\u0026\"c\"","message":"line\nbreak \u2028 é \u0001"}"#
    )
    XCTAssertEqual(
      String(decoding: V2Frame.info(name: "x", message: "<&>"), as: UTF8.self),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#info","message":"\u003c\u0026\u003e","name":"x"}}"#
    )
  }

  // MARK: More shapes

  func testIdentityWithHandleAndAccountWithoutStatus() {
    XCTAssertEqual(
      v2(
        #"{"did":"did:plc:a","time_us":5,"kind":"identity","identity":{"did":"did:plc:a","handle":"alice.test","seq":10,"time":"2026-07-04T14:38:07.877Z"}}"#,
        seq: 1, time: 5),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#identity","did":"did:plc:a","identity":{"did":"did:plc:a","handle":"alice.test","seq":10,"time":"2026-07-04T14:38:07.877Z"},"seq":1,"time":"1970-01-01T00:00:00.000005Z"}}"#
    )
    XCTAssertEqual(
      v2(
        #"{"did":"did:plc:a","time_us":5,"kind":"account","account":{"active":true,"did":"did:plc:a","seq":11,"time":"2026-07-04T14:38:07Z"}}"#,
        seq: 2, time: 5),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#account","account":{"active":true,"did":"did:plc:a","seq":11,"time":"2026-07-04T14:38:07Z"},"did":"did:plc:a","seq":2,"time":"1970-01-01T00:00:00.000005Z"}}"#
    )
  }

  /// The inner object's keys are sorted by their bytes whatever order they are stored in, and
  /// members of the other kinds that Contrail does not write are copied too.
  func testInnerKeysAreSortedByTheirBytes() {
    XCTAssertEqual(
      v2(
        #"{"kind":"identity","identity":{"time":"t","seq":3,"handle":"h","did":"d","B":[1,{"z":null,"a":true}],"a":"x","aa":1.5e-3},"time_us":1,"did":"d"}"#,
        seq: 4, time: 0),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#identity","did":"d","identity":{"B":[1,{"z":null,"a":true}],"a":"x","aa":1.5e-3,"did":"d","handle":"h","seq":3,"time":"t"},"seq":4,"time":"1970-01-01T00:00:00.000000Z"}}"#
    )
  }

  /// Strings are copied as stored: Go's escapes stay as they are, raw UTF-8 stays raw.
  func testEscapedStringsAndNestedRecordsAreCopiedVerbatim() {
    let record =
      #"{"$type":"app.bsky.feed.post","a":[[1,[2,[3,{"b":[]}]]],{"c":{"d":[true,false,null,-0.5,1e+21]}}],"text":"\u003cb\u003e \u0026 \"q\" \\ \n\t\u0001 \u2028 é 😀 \/"}"#
    let v1 =
      #"{"did":"did:plc:\u003cx","time_us":9,"kind":"commit","commit":{"rev":"r\"1","operation":"update","collection":"app.bsky.feed.post","rkey":"k\\","record":\#(record),"cid":"bafy"}}"#
    XCTAssertEqual(
      v2(v1, seq: Int64.max, time: 9),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#commit","cid":"bafy","collection":"app.bsky.feed.post","did":"did:plc:\u003cx","operation":"update","record":\#(record),"rev":"r\"1","rkey":"k\\","seq":9223372036854775807,"time":"1970-01-01T00:00:00.000009Z"}}"#
    )
  }

  /// v2 always has `collection`, `rev` and `rkey` (strict clients require them), so the ones v1
  /// omitted when empty come back as `""`.
  func testCommitFieldsV1OmittedComeBackEmpty() {
    XCTAssertEqual(
      v2(
        #"{"did":"did:plc:a","time_us":1,"kind":"commit","commit":{"operation":"delete"}}"#, seq: 1,
        time: 1),
      #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#commit","collection":"","did":"did:plc:a","operation":"delete","rev":"","rkey":"","seq":1,"time":"1970-01-01T00:00:00.000001Z"}}"#
    )
  }

  func testEveryTranslatedKindConverts() throws {
    let did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
    let post = CBORValue.map([
      ("$type", "app.bsky.feed.post"), ("createdAt", "2026-07-04T14:38:07.517Z"),
      ("text", "<hi> & \u{2028}"),
      ("langs", .array(["en", .array([.map([("b", 1), ("a", 2)])])])),
    ])
    let frames = [
      FrameBuilder.commit(
        seq: 1, repo: did, rev: "3l3qo2vuowo2b",
        ops: [
          .init(action: "create", path: "app.bsky.feed.post/3a", record: post),
          .init(action: "delete", path: "app.bsky.feed.post/3b"),
        ]),
      FrameBuilder.identity(seq: 2, did: did, time: "2026-07-04T14:38:07.877Z", handle: "a.test"),
      FrameBuilder.account(
        seq: 3, did: did, time: "2026-07-04T14:38:07.877Z", active: false, status: "takendown"),
      FrameBuilder.sync(
        seq: 4, did: did, rev: "3l3qo2vuowo2c", time: "2026-07-04T14:38:07.877Z",
        blocks: FrameBuilder.syncCAR(did: did, rev: "3l3qo2vuowo2c", data: sha256Empty())),
    ]
    let translator = Translator()
    var events: [Event] = []
    for frame in frames { translator.translate(frame, into: &events) }
    XCTAssertEqual(events.map(\.kind), [.commit, .commit, .identity, .account, .sync])
    for (index, event) in events.enumerated() {
      let frame = try XCTUnwrap(
        event.json.withUnsafeBytes {
          V2Frame.message(fromV1: $0, eventSeq: Int64(index + 1), timeUS: event.timeUS)
        }, String(decoding: event.json, as: UTF8.self))
      try Self.checkAgainstV1(frame, v1: event.json, eventSeq: Int64(index + 1))
    }
  }

  // MARK: Inputs that are not events

  func testInputsThatAreNotEventsGiveNil() {
    let valid =
      #"{"did":"did:plc:a","time_us":1,"kind":"identity","identity":{"did":"did:plc:a","seq":1,"time":"t"}}"#
    XCTAssertNotNil(v2(valid, seq: 1, time: 1))
    let depthBomb = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
    let nested = { (depth: Int) in
      String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
    }
    let commit = { (inner: String) in
      #"{"did":"d","time_us":1,"kind":"commit","commit":{"operation":"create","record":\#(inner)}}"#
    }
    let cases: [(String, String)] = [
      ("", "empty"),
      ("{}", "no fields"),
      ("[]", "not an object"),
      ("null", "a literal"),
      (valid + " ", "trailing space"),
      (valid + "{}", "trailing bytes"),
      ("{\"did\" :\"d\"}", "whitespace"),
      (
        #"{ "did":"did:plc:a","time_us":1,"kind":"identity","identity":{"did":"did:plc:a","seq":1,"time":"t"}}"#,
        "leading space"
      ),
      (
        #"{"did":"did:plc:a","time_us":1,"kind":"heartbeat","heartbeat":{"did":"d","seq":1,"time":"t"}}"#,
        "unknown kind"
      ),
      (
        #"{"did":"did:plc:a","time_us":1,"kind":"identity","account":{"did":"d","seq":1,"time":"t"}}"#,
        "inner object under another name"
      ),
      (
        #"{"did":"did:plc:a","time_us":1,"kind":"identity","identity":{"did":"d","seq":1,"time":"t"},"x":{}}"#,
        "an extra top-level key"
      ),
      (
        #"{"did":"a","did":"b","time_us":1,"kind":"identity","identity":{"did":"d","seq":1,"time":"t"}}"#,
        "a duplicate key"
      ),
      (#"{"time_us":1,"kind":"identity","identity":{"did":"d","seq":1,"time":"t"}}"#, "no did"),
      (
        #"{"did":1,"time_us":1,"kind":"identity","identity":{"did":"d","seq":1,"time":"t"}}"#,
        "a number as did"
      ),
      (
        #"{"did":"d","time_us":"1","kind":"identity","identity":{"did":"d","seq":1,"time":"t"}}"#,
        "a string as time_us"
      ),
      (
        #"{"did":"d","time_us":1,"kind":1,"identity":{"did":"d","seq":1,"time":"t"}}"#,
        "a number as kind"
      ),
      (#"{"did":"d","time_us":1,"kind":"identity","identity":[]}"#, "an array as inner object"),
      (#"{"did":"d","time_us":1,"kind":"identity","identity":{}}"#, "an empty inner object"),
      (#"{"did":"d","time_us":1,"kind":"identity","identity":{"did":"d","time":"t"}}"#, "no seq"),
      (
        #"{"did":"d","time_us":1,"kind":"identity","identity":{"did":"d","seq":"1","time":"t"}}"#,
        "a string seq"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"identity","identity":{"did":"d","seq":1.0,"time":"t"}}"#,
        "a fractional seq"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"identity","identity":{"did":"d","seq":-1,"time":"t"}}"#,
        "a negative seq"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"identity","identity":{"did":"d","seq":9223372036854775808,"time":"t"}}"#,
        "a seq past Int64"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"identity","identity":{"did":"d","seq":01,"time":"t"}}"#,
        "a leading zero"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"identity","identity":{"did":"d","seq":1,"time":5}}"#,
        "a number as time"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"identity","identity":{"did":"d","seq":1,"seq":2,"time":"t"}}"#,
        "a duplicate inner key"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"identity","identity":{"did":"d","seq":1,"time":"t","a":1,"b":2,"c":3,"e":4,"f":5,"g":6}}"#,
        "too many inner members"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"commit","commit":{"rev":"r"}}"#,
        "a commit without operation"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"commit","commit":{"operation":"create","did":"x"}}"#,
        "an unknown commit key"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"commit","commit":{"operation":1}}"#,
        "a number as operation"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"commit","commit":{"operation":"create","record":"x"}}"#,
        "a string as record"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"commit","commit":{"operation":"create","cid":{}}}"#,
        "an object as cid"
      ),
      (
        #"{"did":"d","time_us":1,"kind":"commit","commit":{"operation":"create","rev":"a","rev":"b"}}"#,
        "a duplicate commit key"
      ),
      (commit(nested(V2Frame.maxNesting + 1)), "nesting one past the limit"),
      (commit("{\"a\":" + nested(V2Frame.maxNesting) + "}"), "an object around the limit"),
      (commit(depthBomb), "a depth bomb"),
      (commit("{\"a\":" + String(repeating: "9", count: 65) + "}"), "a 65-digit number"),
      (commit(#"{"a":1e}"#), "an exponent without digits"),
      (commit(#"{"a":-}"#), "a lone minus"),
      (commit(#"{"a":.5}"#), "no integer part"),
      (commit(#"{"a":1.}"#), "no fraction digits"),
      (commit(#"{"a":tru}"#), "a cut literal"),
      (commit(#"{"a":"\x"}"#), "a bad escape"),
      (commit(#"{"a":"\u12"}"#), "a short unicode escape"),
      (commit(#"{"a":"\u12G4"}"#), "a bad hex digit"),
      (commit(#"{"a":"x}"#), "an unterminated string"),
      (commit(#"{"a":[1,]}"#), "a trailing comma"),
      (commit(#"{"a":[1}"#), "mismatched brackets"),
      (commit(#"{"a"}"#), "a key without a value"),
      (commit(#"{1:2}"#), "a number as key"),
    ]
    for (input, what) in cases {
      XCTAssertNil(v2(input, seq: 1, time: 1), what)
    }
    XCTAssertNotNil(v2(commit("{\"a\":" + nested(V2Frame.maxNesting - 1) + "}"), seq: 1, time: 1))
    XCTAssertNotNil(
      v2(commit("{\"a\":" + String(repeating: "9", count: 64) + "}"), seq: 1, time: 1))
    XCTAssertNotNil(v2(commit(#"{"a":-0.5E+10,"b":"\u12aF\/"}"#), seq: 1, time: 1))

    // Bytes that are not UTF-8, a control character and every truncation of a valid event.
    let bad: [[UInt8]] = [
      Array(commit(#"{"a":"X"}"#).utf8).map { $0 == UInt8(ascii: "X") ? 0xFF : $0 },
      Array(commit(#"{"a":"X"}"#).utf8).map { $0 == UInt8(ascii: "X") ? 0xC3 : $0 },
      Array(commit(#"{"a":"X"}"#).utf8).map { $0 == UInt8(ascii: "X") ? 0x0A : $0 },
      Array(commit(#"{"a":"XYZ"}"#).utf8).map {
        $0 == UInt8(ascii: "X") ? 0xED : $0 == UInt8(ascii: "Y") ? 0xA0 : $0 == 0x5A ? 0x80 : $0
      },
    ]
    for input in bad {
      XCTAssertNil(input.withUnsafeBytes { V2Frame.message(fromV1: $0, eventSeq: 1, timeUS: 1) })
    }
    let whole = Array(valid.utf8)
    for cut in 0..<whole.count {
      XCTAssertNil(
        Array(whole[..<cut]).withUnsafeBytes {
          V2Frame.message(fromV1: $0, eventSeq: 1, timeUS: 1)
        }, "cut at \(cut)")
    }
    XCTAssertNil(
      V2Frame.message(fromV1: UnsafeRawBufferPointer(start: nil, count: 0), eventSeq: 1, timeUS: 1))
  }

  // MARK: Time

  func testTimeHasSixFractionalDigitsInUTC() {
    XCTAssertEqual(V2Frame.time(123), "1970-01-01T00:00:00.000123Z")
    XCTAssertEqual(V2Frame.time(1_700_000_000_000_000), "2023-11-14T22:13:20.000000Z")
    XCTAssertEqual(V2Frame.time(0), "1970-01-01T00:00:00.000000Z")
    XCTAssertEqual(V2Frame.time(-1), "1969-12-31T23:59:59.999999Z")
    XCTAssertEqual(V2Frame.time(951_782_399_999_999), "2000-02-28T23:59:59.999999Z")
    XCTAssertEqual(V2Frame.time(951_782_400_000_000), "2000-02-29T00:00:00.000000Z")
    XCTAssertEqual(V2Frame.time(4_107_542_400_000_000), "2100-03-01T00:00:00.000000Z")
    XCTAssertEqual(V2Frame.time(253_402_300_799_999_999), "9999-12-31T23:59:59.999999Z")
    XCTAssertEqual(V2Frame.time(253_402_300_800_000_000), "10000-01-01T00:00:00.000000Z")
    XCTAssertEqual(V2Frame.time(-62_135_596_800_000_000), "0001-01-01T00:00:00.000000Z")
    XCTAssertEqual(V2Frame.time(-62_167_219_200_000_001), "-0001-12-31T23:59:59.999999Z")
    XCTAssertEqual(V2Frame.time(Int64.max), "294247-01-10T04:00:54.775807Z")
    XCTAssertEqual(V2Frame.time(Int64.min), "-290308-12-21T19:59:05.224192Z")

    var sink = ByteSink()
    defer { sink.release() }
    V2Frame.appendTime(1_779_719_009_132_431, to: &sink)
    XCTAssertEqual(String(decoding: sink.bytes, as: UTF8.self), "2026-05-25T14:23:29.132431Z")
  }

  /// Against Foundation's calendar, at random instants from 1970 to 2200.
  func testTimeAgreesWithFoundation() {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    var random = SystemRandomNumberGenerator()
    for _ in 0..<2_000 {
      let micros = Int64.random(in: 0..<7_258_118_400_000_000, using: &random)
      let date = Date(timeIntervalSince1970: TimeInterval(micros / 1_000_000))
      let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
      let expected = String(
        format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", c.year!, c.month!, c.day!, c.hour!,
        c.minute!, c.second!, Int(micros % 1_000_000))
      XCTAssertEqual(V2Frame.time(micros), expected, "\(micros)")
    }
  }

  // MARK: The real capture

  /// Every event production v1 sent for the shared capture converts; the frame is JSON whose
  /// payload holds the v1 event's fields, in the v2 key order.
  func testEveryCapturedV1EventConverts() throws {
    guard let path = SharedData.path("corpus/jetstream-v1-capture/expected_v1.jsonl") else {
      throw XCTSkip(SharedData.skipMessage)
    }
    let lines = try XCTUnwrap(SharedData.read(path)).split(separator: UInt8(ascii: "\n"))
    XCTAssertEqual(lines.count, 152)
    for (index, line) in lines.enumerated() {
      let v1 = Array(line)
      let object = try XCTUnwrap(
        JSONSerialization.jsonObject(with: Data(v1)) as? [String: Any])
      let timeUS = try XCTUnwrap(object["time_us"] as? Int64)
      let frame = try XCTUnwrap(
        v1.withUnsafeBytes {
          V2Frame.message(fromV1: $0, eventSeq: Int64(index + 1), timeUS: timeUS)
        }, "line \(index + 1)")
      try Self.checkAgainstV1(frame, v1: v1, eventSeq: Int64(index + 1))
    }
  }

  /// Checks a v2 frame against the v1 event it came from: the envelope, the payload's fields
  /// (equal to the v1 fields, `seq` and `time` from the arguments) and the key order.
  static func checkAgainstV1(_ frame: [UInt8], v1: [UInt8], eventSeq: Int64) throws {
    let envelope = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(frame)) as? [String: Any])
    XCTAssertEqual(envelope.count, 2)
    XCTAssertEqual(envelope["$type"] as? String, "message")
    let payload = try XCTUnwrap(envelope["payload"] as? [String: Any])
    let event = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(v1)) as? [String: Any])
    let kind = try XCTUnwrap(event["kind"] as? String)
    let timeUS = try XCTUnwrap(event["time_us"] as? Int64)
    XCTAssertEqual(
      payload["$type"] as? String, "network.bsky.jetstream.subscribeEvents#\(kind)")
    XCTAssertEqual(payload["did"] as? String, event["did"] as? String)
    XCTAssertEqual(payload["seq"] as? Int64, eventSeq)
    XCTAssertEqual(payload["time"] as? String, V2Frame.time(timeUS))
    var expected = ["$type", "did", "seq", "time"]
    let inner = try XCTUnwrap(event[kind] as? [String: Any])
    if kind == "commit" {
      for (key, value) in inner {
        XCTAssertTrue(
          (payload[key] as? NSObject)?.isEqual(value) ?? false, "commit field \(key) differs")
      }
      expected += ["collection", "operation", "rev", "rkey"]
      if inner["record"] != nil { expected += ["cid", "record"] }
    } else {
      XCTAssertEqual(payload[kind] as? NSDictionary, inner as NSDictionary)
      expected.append(kind)
      XCTAssertEqual(
        topKeys(frame, depth: 3), inner.keys.map { Array($0.utf8) }.sorted(by: byteOrder))
    }
    XCTAssertEqual(Set(payload.keys), Set(expected))
    let order = topKeys(frame, depth: 2)
    XCTAssertEqual(order.first, Array("$type".utf8))
    XCTAssertEqual(Array(order.dropFirst()), Array(order.dropFirst()).sorted(by: byteOrder))
    XCTAssertEqual(order.count, expected.count)
  }

  static func byteOrder(_ a: [UInt8], _ b: [UInt8]) -> Bool { a.lexicographicallyPrecedes(b) }

  /// The keys of the first object at `depth` (1 = the frame), as raw bytes, in order.
  static func topKeys(_ json: [UInt8], depth target: Int) -> [[UInt8]] {
    var keys: [[UInt8]] = []
    var depth = 0
    var i = 0
    var expectKey = false
    var done = false
    while i < json.count, !done {
      let c = json[i]
      switch c {
      case UInt8(ascii: "\""):
        var j = i + 1
        while json[j] != UInt8(ascii: "\"") { j += json[j] == UInt8(ascii: "\\") ? 2 : 1 }
        if expectKey, depth == target { keys.append(Array(json[(i + 1)..<j])) }
        expectKey = false
        i = j
      case UInt8(ascii: "{"):
        depth += 1
        expectKey = true
      case UInt8(ascii: "["):
        depth += 1
      case UInt8(ascii: "}"), UInt8(ascii: "]"):
        if depth == target, !keys.isEmpty { done = true }
        depth -= 1
      case UInt8(ascii: ","):
        expectKey = true
      default:
        break
      }
      i += 1
    }
    return keys
  }
}
