import Events
import Firehose
import SyntheticFirehose
import TestSupport
import XCTest

/// The frame-level translation vectors of PROTOCOL §11.4.
final class TranslatorTests: XCTestCase {
  let did = "did:plc:wq4aajammjtxdomz3e23667t"

  private func like(_ n: Int) -> CBORValue {
    .map([
      ("$type", "app.bsky.feed.like"), ("createdAt", "2026-07-04T14:38:08.999Z"),
      (
        "subject",
        .map([("cid", "bafyreiftot7e"), ("uri", .text("at://did:plc:x/app.bsky.feed.post/\(n)"))])
      ),
    ])
  }

  /// Translates frames with a clock stuck at 1000 µs (so time_us counts 1001, 1002, …) and returns the JSON lines.
  private func translate(_ frames: [[UInt8]], translator: Translator? = nil) -> (
    lines: [String], translator: Translator
  ) {
    let t = translator ?? Translator(sequencer: Sequencer(last: 1000, clock: { 1000 }))
    var events: [Event] = []
    for frame in frames { t.translate(frame, into: &events) }
    return (events.map { String(decoding: $0.json, as: UTF8.self) }, t)
  }

  func testCreateUpdateDeleteShapes() {
    let frame = FrameBuilder.commit(
      seq: 7, repo: did, rev: "3mptbypluud2a",
      ops: [
        .init(action: "create", path: "app.bsky.feed.like/3a", record: like(1)),
        .init(action: "update", path: "app.bsky.feed.like/3b", record: like(2)),
        .init(action: "delete", path: "app.bsky.graph.follow/3c"),
      ])
    let (lines, translator) = translate([frame])
    let cid1 = cidText(like(1))
    let cid2 = cidText(like(2))
    XCTAssertEqual(
      lines,
      [
        #"{"did":"\#(did)","time_us":1001,"kind":"commit","commit":{"rev":"3mptbypluud2a","operation":"create","collection":"app.bsky.feed.like","rkey":"3a","record":{"$type":"app.bsky.feed.like","createdAt":"2026-07-04T14:38:08.999Z","subject":{"cid":"bafyreiftot7e","uri":"at://did:plc:x/app.bsky.feed.post/1"}},"cid":"\#(cid1)"}}"#,
        #"{"did":"\#(did)","time_us":1002,"kind":"commit","commit":{"rev":"3mptbypluud2a","operation":"update","collection":"app.bsky.feed.like","rkey":"3b","record":{"$type":"app.bsky.feed.like","createdAt":"2026-07-04T14:38:08.999Z","subject":{"cid":"bafyreiftot7e","uri":"at://did:plc:x/app.bsky.feed.post/2"}},"cid":"\#(cid2)"}}"#,
        #"{"did":"\#(did)","time_us":1003,"kind":"commit","commit":{"rev":"3mptbypluud2a","operation":"delete","collection":"app.bsky.graph.follow","rkey":"3c"}}"#,
      ])
    XCTAssertEqual(translator.counters.events(.commit), 3)
    XCTAssertEqual(translator.counters.frames(.commit), 1)
  }

  func testEventMetadata() {
    let frame = FrameBuilder.commit(
      seq: 42, repo: did, rev: "r",
      ops: [.init(action: "create", path: "app.bsky.feed.like/3a", record: like(1))])
    let translator = Translator(sequencer: Sequencer(clock: { 5 }))
    var events: [Event] = []
    XCTAssertEqual(translator.translate(frame, into: &events), .translated(.commit, seq: 42))
    XCTAssertEqual(events.count, 1)
    XCTAssertEqual(events[0].seq, 42)
    XCTAssertEqual(events[0].kind, .commit)
    XCTAssertEqual(events[0].did, did)
    XCTAssertEqual(events[0].collection, "app.bsky.feed.like")
    XCTAssertEqual(events[0].timeUS, 5)
  }

  func testMissingBlockDropsOnlyThatOp() {
    let frame = FrameBuilder.commit(
      seq: 1, repo: did, rev: "r",
      ops: [
        .init(action: "create", path: "app.bsky.feed.like/1", record: like(1)),
        .init(action: "create", path: "app.bsky.feed.like/2", record: like(2), omitBlock: true),
        .init(action: "create", path: "app.bsky.feed.like/3", record: like(3)),
      ])
    let (lines, translator) = translate([frame])
    XCTAssertEqual(lines.count, 2)
    XCTAssertTrue(lines[0].contains(#""rkey":"1""#))
    XCTAssertTrue(lines[1].contains(#""rkey":"3""#))
    XCTAssertEqual(translator.counters.drops(.op, .missingBlock), 1)
  }

  func testTooBigDropsTheCommit() {
    let frame = FrameBuilder.commit(
      seq: 1, repo: did, rev: "r", ops: [.init(action: "create", path: "a.b.c/1", record: like(1))],
      tooBig: true)
    let (lines, translator) = translate([frame])
    XCTAssertEqual(lines, [])
    XCTAssertEqual(translator.counters.drops(.commit, .tooBig), 1)
  }

  func testBadCARDropsTheCommitDeletesIncluded() {
    let good = FrameBuilder.car(
      root: FrameBuilder.cid(of: [0xA0]), blocks: [(FrameBuilder.cid(of: [0xA0]), [0xA0])])
    let cases: [String: [UInt8]] = [
      "truncated": Array(good.dropLast(3)),
      "garbage": [0xFF, 0xFF, 0xFF],
      "root is not a commit": good,
      "commit version 4": {
        let commit = FrameBuilder.commitBlock(
          did: did, rev: "r", data: FrameBuilder.cid(of: [0xA0]), version: 4)
        let cid = FrameBuilder.cid(of: commit)
        return FrameBuilder.car(root: cid, blocks: [(cid, commit)])
      }(),
      "root block missing": FrameBuilder.car(root: FrameBuilder.cid(of: [0x01]), blocks: []),
    ]
    for (name, car) in cases {
      let frame = FrameBuilder.commit(
        seq: 1, repo: did, rev: "r",
        ops: [
          .init(action: "delete", path: "a.b.c/1"),
          .init(action: "create", path: "a.b.c/2", record: like(1)),
        ],
        blocksOverride: car)
      let (lines, translator) = translate([frame])
      XCTAssertEqual(lines, [], name)
      XCTAssertEqual(translator.counters.drops(.commit, .badCar), 1, name)
    }
  }

  func testBadCommitTimeDropsTheCommit() {
    let frame = FrameBuilder.commit(
      seq: 1, repo: did, rev: "r", time: "yesterday",
      ops: [.init(action: "delete", path: "a.b.c/1")])
    let (lines, translator) = translate([frame])
    XCTAssertEqual(lines, [])
    XCTAssertEqual(translator.counters.drops(.commit, .badTime), 1)
  }

  func testUnknownActionIsSkipped() {
    let frame = FrameBuilder.commit(
      seq: 1, repo: did, rev: "r",
      ops: [
        .init(action: "create", path: "a.b.c/1", record: like(1)),
        .init(action: "frobnicate", path: "a.b.c/2", record: like(2)),
        .init(action: "delete", path: "a.b.c/3"),
      ])
    let (lines, translator) = translate([frame])
    XCTAssertEqual(lines.count, 2)
    XCTAssertEqual(translator.counters.drops(.op, .unknownAction), 1)
  }

  func testPaths() {
    let frame = FrameBuilder.commit(
      seq: 1, repo: did, rev: "r",
      ops: [
        .init(action: "delete", path: "coll.x.y/rk/extra"),
        .init(action: "delete", path: "noslash"),
      ])
    let (lines, translator) = translate([frame])
    XCTAssertEqual(lines.count, 1)
    XCTAssertTrue(lines[0].hasSuffix(#""collection":"coll.x.y","rkey":"rk"}}"#), lines[0])
    XCTAssertEqual(translator.counters.drops(.op, .badPath), 1)
  }

  func testNullCIDAndBadRecordDropOneOp() {
    let padded = CBORValue.map([("$type", "a.b.c"), ("d", .map([("$bytes", "AQI=")]))])
    let frame = FrameBuilder.commit(
      seq: 1, repo: did, rev: "r",
      ops: [
        .init(action: "create", path: "a.b.c/1"),  // no record → null cid
        .init(action: "create", path: "a.b.c/2", record: padded),
        .init(action: "create", path: "a.b.c/3", record: like(3)),
      ])
    let (lines, translator) = translate([frame])
    XCTAssertEqual(lines.count, 1)
    XCTAssertEqual(translator.counters.drops(.op, .nullCid), 1)
    XCTAssertEqual(translator.counters.drops(.op, .badRecord), 1)
  }

  func testEmptyRevCollectionAndRkeyAreOmitted() {
    let frame = FrameBuilder.commit(
      seq: 1, repo: did, rev: "", ops: [.init(action: "delete", path: "/")])
    let (lines, _) = translate([frame])
    XCTAssertEqual(
      lines, [#"{"did":"\#(did)","time_us":1001,"kind":"commit","commit":{"operation":"delete"}}"#])
  }

  func testIdentityAndAccount() {
    let frames = [
      FrameBuilder.identity(seq: 10, did: did, time: "2026-07-04T14:38:07.877Z", handle: nil),
      FrameBuilder.identity(
        seq: 11, did: did, time: "2026-07-04T14:38:07.877Z", handle: "handle.invalid"),
      FrameBuilder.identity(seq: 12, did: did, time: "not-a-time", handle: "x.test"),
      FrameBuilder.account(
        seq: 13, did: did, time: "2026-07-04T14:38:07.877Z", active: false, status: "deactivated"),
      FrameBuilder.account(
        seq: 14, did: did, time: "2026-07-04T14:38:07.877Z", active: true, status: nil),
      FrameBuilder.frame(
        type: "#account",
        body: .map([("seq", 15), ("did", .text(did)), ("time", "2026-07-04T14:38:07Z")])),
      FrameBuilder.frame(
        type: "#identity",
        body: .map([
          ("seq", 16), ("did", .text(did)), ("time", "2026-07-04T14:38:07Z"), ("handle", .null),
        ])),
    ]
    let (lines, translator) = translate(frames)
    XCTAssertEqual(
      lines,
      [
        #"{"did":"\#(did)","time_us":1001,"kind":"identity","identity":{"did":"\#(did)","seq":10,"time":"2026-07-04T14:38:07.877Z"}}"#,
        #"{"did":"\#(did)","time_us":1002,"kind":"identity","identity":{"did":"\#(did)","handle":"handle.invalid","seq":11,"time":"2026-07-04T14:38:07.877Z"}}"#,
        #"{"did":"\#(did)","time_us":1003,"kind":"account","account":{"active":false,"did":"\#(did)","seq":13,"status":"deactivated","time":"2026-07-04T14:38:07.877Z"}}"#,
        #"{"did":"\#(did)","time_us":1004,"kind":"account","account":{"active":true,"did":"\#(did)","seq":14,"time":"2026-07-04T14:38:07.877Z"}}"#,
        #"{"did":"\#(did)","time_us":1005,"kind":"account","account":{"active":false,"did":"\#(did)","seq":15,"time":"2026-07-04T14:38:07Z"}}"#,
        #"{"did":"\#(did)","time_us":1006,"kind":"identity","identity":{"did":"\#(did)","seq":16,"time":"2026-07-04T14:38:07Z"}}"#,
      ])
    XCTAssertEqual(translator.counters.drops(.event, .badTime), 1)
  }

  func testSyncFramesBecomeSyncEvents() {
    let frames = [
      FrameBuilder.sync(
        seq: 444, did: "did:plc:test", rev: "rev-sync", time: "2026-05-25T00:00:00Z",
        blocks: [1, 2, 3]),
      // Strings escaped as in the other events (invalid UTF-8 in the envelope becomes \ufffd),
      // unknown fields skipped, empty blocks.
      FrameBuilder.frame(
        type: "#sync",
        body: .map([
          ("did", "did:plc:<x>&"), ("seq", 2), ("blocks", .bytes([])),
          ("time", "2026-07-04T14:38:07Z"),
          ("rev", .raw([0x67] + Array("r\"\u{2028}\n".utf8) + [0xFF])), ("handle", "h.test"),
          ("active", true), ("extra", .array([1, 2])),
        ])),
      // Blocks of 1 or 2 bytes past a multiple of 3: base64 without padding.
      FrameBuilder.sync(
        seq: 3, did: "did:plc:test", rev: "r", time: "2026-07-04T14:38:07.877Z",
        blocks: [0xFB, 0xFF, 0xBF, 0x00]),
    ]
    let translator = Translator(sequencer: Sequencer(last: 1000, clock: { 1000 }))
    var events: [Event] = []
    let outcomes = frames.map { translator.translate($0, into: &events) }
    XCTAssertEqual(
      outcomes,
      [.translated(.sync, seq: 444), .translated(.sync, seq: 2), .translated(.sync, seq: 3)])
    XCTAssertEqual(
      events.map { String(decoding: $0.json, as: UTF8.self) },
      [
        #"{"did":"did:plc:test","time_us":1001,"kind":"sync","sync":{"blocks":{"$bytes":"AQID"},"did":"did:plc:test","rev":"rev-sync","seq":444,"time":"2026-05-25T00:00:00Z"}}"#,
        #"{"did":"did:plc:\u003cx\u003e\u0026","time_us":1002,"kind":"sync","sync":{"blocks":{"$bytes":""},"did":"did:plc:\u003cx\u003e\u0026","rev":"r\"\u2028\n\ufffd","seq":2,"time":"2026-07-04T14:38:07Z"}}"#,
        #"{"did":"did:plc:test","time_us":1003,"kind":"sync","sync":{"blocks":{"$bytes":"+/+/AA"},"did":"did:plc:test","rev":"r","seq":3,"time":"2026-07-04T14:38:07.877Z"}}"#,
      ])
    let first = events[0]
    XCTAssertEqual(first.kind, .sync)
    XCTAssertEqual(first.did, "did:plc:test")
    XCTAssertEqual(first.collection, "")
    XCTAssertEqual(first.seq, 444)
    XCTAssertEqual(first.timeUS, 1001)
    XCTAssertFalse(EventFilter.all.matches(first), "v1 subscribers never see sync events")
    XCTAssertTrue(EventFilter.everything.matches(first))
    let c = translator.counters
    XCTAssertEqual(c.frames(.sync), 3)
    XCTAssertEqual(c.events(.sync), 3)
    XCTAssertEqual(c.totalDrops, 0)
  }

  /// A bad time drops a `#sync` like an identity or account event; so do `blocks` over the
  /// lexicon's 10,000 bytes. The frame's seq still counts as taken.
  func testSyncDrops() {
    let did = "did:plc:test"
    let frames = [
      FrameBuilder.sync(seq: 1, did: did, rev: "r", time: "yesterday", blocks: [1]),
      FrameBuilder.frame(
        type: "#sync",
        body: .map([("seq", 2), ("did", .text(did)), ("rev", "r"), ("blocks", .bytes([1]))])),
      FrameBuilder.sync(
        seq: 3, did: did, rev: "r", time: "2026-07-04T14:38:07Z",
        blocks: [UInt8](repeating: 7, count: AccountEventMessage.maxSyncBlocksBytes + 1)),
      FrameBuilder.sync(
        seq: 4, did: did, rev: "r", time: "2026-07-04T14:38:07Z",
        blocks: [UInt8](repeating: 7, count: AccountEventMessage.maxSyncBlocksBytes)),
    ]
    let translator = Translator()
    var events: [Event] = []
    let outcomes = frames.map { translator.translate($0, into: &events) }
    XCTAssertEqual(outcomes, (1...4).map { .translated(.sync, seq: Int64($0)) })
    XCTAssertEqual(events.map(\.seq), [4])
    let blocks = #""blocks":{"$bytes":""# + String(repeating: "BwcH", count: 3_333) + #"Bw"}"#
    XCTAssertTrue(String(decoding: events.first?.json ?? [], as: UTF8.self).contains(blocks))
    XCTAssertEqual(translator.counters.drops(.event, .badTime), 2)
    XCTAssertEqual(translator.counters.drops(.event, .tooBig), 1)
    XCTAssertEqual(translator.counters.events(.sync), 1)
  }

  /// `#sync` needs `seq`, `did`, `rev` and `blocks`, each of its type, like the other bodies.
  func testMalformedSyncBodiesAreUndecodable() {
    let fields: [(String, CBORValue)] = [
      ("seq", 5), ("did", "did:plc:test"), ("rev", "r"), ("time", "2026-07-04T14:38:07Z"),
      ("blocks", .bytes([1])),
    ]
    var cases: [[UInt8]] = []
    for index in [0, 1, 2, 4] {  // each required field missing (time is a drop instead)
      var body = fields
      body.remove(at: index)
      cases.append(FrameBuilder.frame(type: "#sync", body: .map(body)))
    }
    let wrongTypes: [(Int, CBORValue)] = [
      (0, "5"), (0, -5), (1, 5), (1, .null), (2, .bytes([1])), (2, .null), (4, "AQID"), (4, .null),
    ]
    for (index, value) in wrongTypes {
      var body = fields
      body[index].1 = value
      cases.append(FrameBuilder.frame(type: "#sync", body: .map(body)))
    }
    cases.append(FrameBuilder.frame(type: "#sync", body: .map(fields)) + [0x00])  // trailing byte
    cases.append(FrameBuilder.frame(type: "#sync", body: .array([5])))
    let header = CBORValue.map([("op", 1), ("t", "#sync")]).encoded
    cases.append(
      header + [0xA1, 0x66] + Array("blocks".utf8) + [0x5B, 0, 0, 0, 1, 0, 0, 0, 0])  // 4 GiB
    let translator = Translator()
    var events: [Event] = []
    for frame in cases {
      XCTAssertEqual(translator.translate(frame, into: &events), .ignored(.undecodable))
    }
    XCTAssertEqual(events.count, 0)
    XCTAssertEqual(translator.counters.frames(.undecodable), cases.count)
    XCTAssertEqual(
      translator.translate(FrameBuilder.frame(type: "#sync", body: .map(fields)), into: &events),
      .translated(.sync, seq: 5))
    XCTAssertEqual(events.count, 1)
  }

  func testIgnoredFrameTypesAreCountedByType() {
    let body = CBORValue.map([("seq", 1)])
    let frames = [
      FrameBuilder.frame(type: "#info", body: .map([("name", "OutdatedCursor")])),
      FrameBuilder.frame(type: "#handle", body: body),
      FrameBuilder.frame(type: "#tombstone", body: body),
      FrameBuilder.frame(type: "#foo", body: body),
      FrameBuilder.frame(type: "#commit", op: 2, body: body),
      [0xFF, 0x00],
    ]
    let translator = Translator()
    var events: [Event] = []
    let outcomes = frames.map { translator.translate($0, into: &events) }
    XCTAssertEqual(events.count, 0)
    XCTAssertEqual(
      outcomes,
      [
        .info(name: "OutdatedCursor", message: nil), .ignored(.legacy), .ignored(.legacy),
        .ignored(.unknown), .ignored(.unknown), .ignored(.undecodable),
      ])
    let c = translator.counters
    XCTAssertEqual(
      [c.frames(.info), c.frames(.legacy), c.frames(.unknown), c.frames(.undecodable)],
      [1, 2, 2, 1])
  }

  func testErrorFrame() {
    let translator = Translator()
    var events: [Event] = []
    let outcome = translator.translate(
      FrameBuilder.error("ConsumerTooSlow", message: "slow"), into: &events)
    XCTAssertEqual(outcome, .error(code: "ConsumerTooSlow", message: "slow"))
    XCTAssertEqual(translator.counters.frames(.error), 1)
    XCTAssertEqual(translator.counters.errorCodes, ["ConsumerTooSlow": 1])
    XCTAssertEqual(events.count, 0)
  }

  /// Found in review: every distinct error code was kept forever (in the counters and as a
  /// metric label), and each message was logged whole. Now 16 codes besides the protocol's are
  /// counted by name and the rest as `other`; messages and long codes are cut to an excerpt.
  func testErrorCodesAndMessagesAreBounded() {
    let translator = Translator()
    var events: [Event] = []
    XCTAssertEqual(
      translator.translate(FrameBuilder.error("FutureCursor"), into: &events),
      .error(code: "FutureCursor", message: nil), "a protocol code takes no place of the 16")
    for index in 0..<100 {
      let outcome = translator.translate(FrameBuilder.error("Junk\(index)"), into: &events)
      XCTAssertEqual(
        outcome,
        index < TranslateCounters.maxErrorCodes
          ? .error(code: "Junk\(index)", message: nil)
          : .error(code: "other", message: "code Junk\(index)"))
    }
    XCTAssertEqual(
      translator.translate(FrameBuilder.error("FutureCursor"), into: &events),
      .error(code: "FutureCursor", message: nil), "the protocol's codes keep their names")
    XCTAssertEqual(
      translator.translate(FrameBuilder.error("Junk3", message: "again"), into: &events),
      .error(code: "Junk3", message: "again"), "a code seen before keeps its name")
    XCTAssertEqual(
      translator.translate(FrameBuilder.error("Bad\nCode"), into: &events),
      .error(code: "other", message: "code Bad?Code"), "past the 16, and printable")
    let long = String(repeating: "x", count: 1 << 20)
    guard
      case .error(let code, let message?) = translator.translate(
        FrameBuilder.error(long, message: long + "\u{1}"), into: &events)
    else { return XCTFail("not an error outcome") }
    XCTAssertEqual(code, "other")
    XCTAssertLessThan(message.utf8.count, 700)
    XCTAssertTrue(message.hasPrefix("code xxxx"), message)
    guard
      case .info(let name, let detail?) = translator.translate(
        FrameBuilder.frame(
          type: "#info", body: .map([("name", .text(long)), ("message", .text(long))])),
        into: &events)
    else { return XCTFail("not an info outcome") }
    XCTAssertLessThan(name.utf8.count + detail.utf8.count, 700)
    let counts = translator.counters.errorCodes
    XCTAssertEqual(
      counts.count, TranslateCounters.maxErrorCodes + 2, "16 named, other, FutureCursor")
    XCTAssertEqual(counts["other"], 100 - TranslateCounters.maxErrorCodes + 2)
    XCTAssertEqual(counts["Junk3"], 2)
    XCTAssertEqual(counts["FutureCursor"], 2)
    XCTAssertEqual(translator.counters.frames(.error), 105)
    XCTAssertEqual(events.count, 0)
  }

  /// Found in review: a commit whose 1,000 ops all named one ~1 MB record made 6 GB of events
  /// (16.8 s of CPU) from a 1 MB frame. Now a commit converts at most its frame's size (+1 MiB)
  /// of records and writes at most 8× its size (+1 MiB) of events; the ops past that are dropped
  /// and counted as `over_budget` (here 200 ops naming one 20 KB record of `<`, 120 KB of JSON
  /// each, in a frame under 50 KB), while a large well-formed commit is translated whole.
  func testOpsThatRepeatOneLargeRecordAreBoundedByTheFrameSize() throws {
    let record = CBORValue.map([
      ("$type", "app.bsky.feed.post"), ("text", .text(String(repeating: "<", count: 20_000))),
    ])
    let ops = (0..<200).map { index in
      FrameBuilder.Op(
        action: "create", path: "app.bsky.feed.post/k\(index)", record: record,
        omitBlock: index > 0)
    }
    let frame = FrameBuilder.commit(seq: 7, repo: "did:plc:abc", rev: "3l3qo2vuowo2b", ops: ops)
    let translator = Translator()
    var events: [Event] = []
    XCTAssertEqual(translator.translate(frame, into: &events), .translated(.commit, seq: 7))
    let budget = Translator.frameBudget(frame.count)
    let json = events.reduce(0) { $0 + $1.json.count }
    XCTAssertGreaterThan(events.count, 0)
    XCTAssertLessThanOrEqual(json, budget.jsonBytes)
    XCTAssertLessThanOrEqual(events.count * 20_000, budget.recordBytes)
    XCTAssertLessThan(events.count, 20)
    XCTAssertEqual(translator.counters.drops(.op, .overBudget), 200 - events.count)
    XCTAssertEqual(
      events.map { String(decoding: $0.json, as: UTF8.self).contains("\"rkey\":\"k0\"") }.first,
      true, "the ops within the budget are translated, in order")

    // A well-formed large commit (2,000 posts, each its own block) is far within its budget.
    let dropped = translator.counters.drops(.op, .overBudget)
    events = []
    _ = translator.translate(FrameBuilder.postsCommit(count: 2_000), into: &events)
    XCTAssertEqual(events.count, 2_000)
    XCTAssertEqual(translator.counters.drops(.op, .overBudget), dropped)
  }

  /// Found in the second review: deletes never touch the record budget, and the JSON budget was
  /// checked after each event was written, so a long `repo` (escaped 6× in every event) and
  /// thousands of deletes still cost gigabytes of writing, each event dropped only afterwards.
  /// Now the first op past a budget ends the commit: every later op is dropped unread. Here
  /// 5,000 deletes with a 100 KB `repo` of `<` (600 KB of JSON per event): ~3 GB of escaping
  /// before the fix (74.5 s in a debug build, checked), 0.2 s and a handful of events after it.
  func testABudgetOnceSpentEndsTheCommit() throws {
    let repo = String(repeating: "<", count: 100_000)
    let ops = (0..<5_000).map {
      FrameBuilder.Op(action: "delete", path: "app.bsky.feed.like/k\($0)")
    }
    let frame = FrameBuilder.commit(seq: 9, repo: repo, rev: "3l3qo2vuowo2b", ops: ops)
    let translator = Translator()
    var events: [Event] = []
    let clock = ContinuousClock()
    let start = clock.now
    XCTAssertEqual(translator.translate(frame, into: &events), .translated(.commit, seq: 9))
    let elapsed = clock.now - start
    XCTAssertGreaterThan(events.count, 0)
    XCTAssertLessThanOrEqual(
      events.reduce(0) { $0 + $1.json.count }, Translator.frameBudget(frame.count).jsonBytes)
    XCTAssertEqual(translator.counters.drops(.op, .overBudget), 5_000 - events.count)
    XCTAssertLessThan(elapsed, .seconds(5), "the ops after the budget are not written")
  }

  func testMalformedBodiesAreUndecodable() {
    let cases: [[UInt8]] = [
      FrameBuilder.frame(type: "#commit", body: .map([("seq", 1)])),  // no repo
      FrameBuilder.frame(type: "#commit", body: .map([("seq", 1), ("repo", 5)])),
      FrameBuilder.frame(
        type: "#commit", body: .map([("seq", 1), ("repo", "x"), ("ops", .array([1]))])),
      FrameBuilder.frame(type: "#identity", body: .map([("did", "x")])),  // no seq
      // A truncated body.
      FrameBuilder.frame(type: "#commit", body: .raw([0xA1, 0x63] + Array("seq".utf8))),
      CBORValue.map([("op", 1), ("t", "#commit")]).encoded,  // no body
      // A body map declaring 2^32 entries, and `blocks` declaring 4 GiB.
      CBORValue.map([("op", 1), ("t", "#commit")]).encoded + [0xBB, 0, 0, 0, 1, 0, 0, 0, 0],
      CBORValue.map([("op", 1), ("t", "#commit")]).encoded
        + [0xA1, 0x66] + Array("blocks".utf8) + [0x5B, 0, 0, 0, 1, 0, 0, 0, 0],
    ]
    let translator = Translator()
    var events: [Event] = []
    for frame in cases {
      XCTAssertEqual(translator.translate(frame, into: &events), .ignored(.undecodable))
    }
    XCTAssertEqual(events.count, 0)
  }

  private func cidText(_ record: CBORValue) -> String {
    var sink = ByteSink()
    defer { sink.release() }
    FrameBuilder.cid(of: record.encoded).withUnsafeBytes { CID.appendString($0, to: &sink) }
    return String(decoding: sink.bytes, as: UTF8.self)
  }
}
