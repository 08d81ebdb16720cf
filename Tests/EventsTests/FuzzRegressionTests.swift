import Events
import Firehose
import SyntheticFirehose
import XCTest

/// Frames that crashed the translator or that fuzzing (`scripts/fuzz Translator`, FUZZING.md)
/// must keep covering: CBOR heads whose 8-byte count or length is ≥ 2^63 (they trapped
/// converting to Int), or merely larger than the frame, in the header, the body, the ops, the
/// CAR header and the record blocks.
final class FuzzRegressionTests: XCTestCase {
  static let hostileHeads: [[UInt8]] = {
    var heads: [[UInt8]] = []
    for major: UInt8 in [0x9B, 0xBB, 0x5B, 0x7B] {
      heads.append([major, 0x80, 0, 0, 0, 0, 0, 0, 0])
      heads.append([major] + [UInt8](repeating: 0xFF, count: 8))
      heads.append([major, 0x7F] + [UInt8](repeating: 0xFF, count: 7))
      heads.append([major - 1] + [UInt8](repeating: 0xFF, count: 4))
    }
    heads.append([0x1B] + [UInt8](repeating: 0xFF, count: 8))
    heads.append([0x3B] + [UInt8](repeating: 0xFF, count: 8))
    return heads
  }()

  static let did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"

  static func frames(containing head: [UInt8]) -> [[UInt8]] {
    let post = CBORValue.map([("$type", .text("app.bsky.feed.post")), ("text", .text("hi"))])
    let valid = FrameBuilder.commit(
      seq: 7, repo: did, rev: "3kabc",
      ops: [.init(action: "create", path: "app.bsky.feed.post/3k", record: post)])
    let header = CBORValue.map([("op", 1), ("t", .text("#commit"))]).encoded
    let body = Array(valid[header.count...])
    func commitBody(_ fields: [(String, CBORValue)]) -> [UInt8] {
      header
        + CBORValue.map([("seq", 7), ("repo", .text(did)), ("rev", .text("3kabc"))] + fields)
        .encoded
    }
    var car: [UInt8] = []
    Varint.append(head.count, to: &car)
    car += head
    return [
      head,
      head + body,
      header + head,
      CBORValue.map([("op", 1), ("t", .raw(head))]).encoded + body,
      CBORValue.map([("op", .raw(head)), ("t", .text("#commit"))]).encoded + body,
      commitBody([("ops", .raw(head))]),
      commitBody([("ops", .array([.raw(head)]))]),
      commitBody([("ops", .array([.map([("action", .raw(head)), ("path", .text("a/b"))])]))]),
      commitBody([
        (
          "ops",
          .array([
            .map([
              ("action", .text("create")), ("path", .text("a/b")), ("cid", .tag(42, .raw(head))),
            ])
          ])
        )
      ]),
      commitBody([("blocks", .raw(head))]),
      commitBody([("seq", .raw(head))]),
      FrameBuilder.commit(
        seq: 7, repo: did, rev: "3kabc",
        ops: [.init(action: "create", path: "app.bsky.feed.post/3k", record: post)],
        blocksOverride: car),
      FrameBuilder.commit(
        seq: 7, repo: did, rev: "3kabc",
        ops: [.init(action: "create", path: "app.bsky.feed.post/3k", record: .raw(head))]),
      FrameBuilder.commit(
        seq: 7, repo: did, rev: "3kabc",
        ops: [
          .init(
            action: "update", path: "app.bsky.feed.post/3k",
            record: .map([("$type", .text("app.bsky.feed.post")), ("text", .raw(head))]))
        ]),
      FrameBuilder.frame(
        type: "#identity", body: .map([("seq", 8), ("did", .text(did)), ("handle", .raw(head))])),
      FrameBuilder.frame(
        type: "#account", body: .map([("seq", 9), ("did", .raw(head)), ("active", true)])),
      FrameBuilder.frame(
        type: nil, op: -1, body: .map([("error", .raw(head)), ("message", .text("x"))])),
    ]
  }

  func testHugeHeadsAreRejectedWithoutTrapping() {
    let translator = Translator()
    var events: [Event] = []
    for head in Self.hostileHeads {
      for frame in Self.frames(containing: head) {
        events.removeAll()
        translator.translate(frame, into: &events)
        for event in events {
          XCTAssertFalse(
            String(decoding: event.json, as: UTF8.self).contains("\u{FFFD}"),
            "\(String(decoding: event.json, as: UTF8.self))")
        }
      }
    }
    // The translator still works afterwards.
    let post = CBORValue.map([("$type", .text("app.bsky.feed.post")), ("text", .text("hi"))])
    events.removeAll()
    translator.translate(
      FrameBuilder.commit(
        seq: 100, repo: Self.did, rev: "3kabd",
        ops: [.init(action: "create", path: "app.bsky.feed.post/3k", record: post)]),
      into: &events)
    XCTAssertEqual(events.count, 1)
  }
}
