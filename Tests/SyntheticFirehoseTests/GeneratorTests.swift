import Events
import Firehose
import SyntheticFirehose
import TestSupport
import XCTest

final class GeneratorTests: XCTestCase {
  private func frames(seed: UInt64, count: Int) -> [[UInt8]] {
    var generator = FirehoseGenerator(seed: seed)
    return (0..<count).map { _ in generator.next() }
  }

  /// A decoded commit frame: body fields and the CAR's blocks by CID.
  private struct Commit {
    var body: CBORTree
    var root: [UInt8]
    var blocks: [[UInt8]: [UInt8]]
    var order: [[UInt8]]
  }

  private func commit(_ frame: [UInt8]) -> Commit? {
    frame.withUnsafeBytes { raw -> Commit? in
      guard case .commit = FrameDecoder.decode(raw) else { return nil }
      var reader = CBORReader(raw)
      guard reader.skipValue() else { return nil }
      let bodyBytes = Array(raw[reader.offset...])
      guard let body = CBORTree.decode(bodyBytes), case .bytes(let car) = body["blocks"] else {
        return nil
      }
      return car.withUnsafeBytes { carRaw -> Commit? in
        guard let file = CARFile(carRaw) else { return nil }
        var blocks: [[UInt8]: [UInt8]] = [:]
        for block in file.blocks { blocks[Array(block.cid)] = Array(block.data) }
        return Commit(
          body: body, root: Array(file.root), blocks: blocks,
          order: file.blocks.map { Array($0.cid) })
      }
    }
  }

  func testSameSeedGivesTheSameBytes() {
    XCTAssertEqual(frames(seed: 42, count: 300), frames(seed: 42, count: 300))
    XCTAssertNotEqual(frames(seed: 42, count: 50), frames(seed: 43, count: 50))
  }

  func testEveryBlockCIDMatchesItsBytes() throws {
    var checked = 0
    for frame in frames(seed: 3, count: 400) {
      guard let commit = commit(frame) else { continue }
      XCTAssertEqual(commit.order.first, commit.root, "the commit block comes first")
      for (cid, data) in commit.blocks {
        XCTAssertEqual(cid, FrameBuilder.cid(of: data, codec: Int(cid[1])))
        checked += 1
      }
      if case .link(let commitCID) = commit.body["commit"] {
        XCTAssertEqual(commitCID, commit.root)
      }
    }
    XCTAssertGreaterThan(checked, 3_000)
  }

  func testFramesTranslateWithoutASingleDrop() {
    let translator = Translator()
    var events: [Event] = []
    for frame in frames(seed: 5, count: 2_000) { translator.translate(frame, into: &events) }
    XCTAssertEqual(translator.counters.totalDrops, 0)
    XCTAssertEqual(translator.counters.frames(.undecodable), 0)
    XCTAssertGreaterThan(events.count, 2_000)
  }

  /// `syncEvery` makes every N-th frame a `#sync` of a generated account (besides the mix's
  /// random 0.15%), which the translator stores as a `sync` event that the v2 wire can send.
  func testSyncEveryAddsSyncEvents() throws {
    var generator = FirehoseGenerator(seed: 6, syncEvery: 10)
    let frames = (0..<2_000).map { _ in generator.next() }
    let translator = Translator()
    var events: [Event] = []
    for (index, frame) in frames.enumerated() {
      let outcome = translator.translate(frame, into: &events)
      if index % 10 == 9 {
        XCTAssertEqual(outcome, .translated(.sync, seq: Int64(index + 1)))
        XCTAssertEqual(events.last?.kind, .sync)
      }
    }
    XCTAssertEqual(translator.counters.totalDrops, 0)
    XCTAssertEqual(translator.counters.frames(.undecodable), 0)
    let syncs = events.filter { $0.kind == .sync }
    XCTAssertGreaterThanOrEqual(syncs.count, 200)
    XCTAssertEqual(translator.counters.events(.sync), syncs.count)
    for event in syncs {
      let json = String(decoding: event.json, as: UTF8.self)
      XCTAssertTrue(json.hasPrefix(#"{"did":"\#(event.did)","time_us":"#), json)
      XCTAssertTrue(json.contains(#","kind":"sync","sync":{"blocks":{"$bytes":""#), json)
      XCTAssertTrue(json.contains(#""seq":\#(event.seq),"time":""#), json)
      let frame = try XCTUnwrap(
        event.json.withUnsafeBytes { V2Frame.message(fromV1: $0, eventSeq: 1, timeUS: 2) })
      XCTAssertTrue(
        String(decoding: frame, as: UTF8.self).hasPrefix(
          #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#sync","did":"\#(event.did)","seq":1,"sync":{"blocks":{"$bytes":""#
        ))
    }
  }

  /// Without `syncEvery` there is no `#sync` at all; an `#info` takes each random one's place
  /// and every other frame is the one a `syncEvery: 1_000_000` stream holds.
  func testNoSyncFramesByDefault() {
    var plain = FirehoseGenerator(seed: 5)
    var rare = FirehoseGenerator(seed: 5, syncEvery: 1_000_000)
    let translator = Translator()
    var events: [Event] = []
    var replaced = 0
    for _ in 0..<5_000 {
      let frame = plain.next()
      let other = rare.next()
      translator.translate(frame, into: &events)
      if frame != other {
        replaced += 1
        XCTAssertEqual(frame.withUnsafeBytes { FrameDecoder.decode($0).type }, .info)
        XCTAssertEqual(other.withUnsafeBytes { FrameDecoder.decode($0).type }, .sync)
      }
    }
    XCTAssertGreaterThan(replaced, 0)
    XCTAssertEqual(translator.counters.frames(.sync), 0)
    XCTAssertEqual(translator.counters.events(.sync), 0)
  }

  /// The live network's shape (issue targets), each within ±20%.
  func testMixAndSizesAreNearTheLiveNetwork() throws {
    let all = frames(seed: 1, count: 5_000)
    let translator = Translator()
    var events: [Event] = []
    for frame in all { translator.translate(frame, into: &events) }
    let sizes = all.map(\.count).sorted()
    let meanFrame = Double(sizes.reduce(0, +)) / Double(sizes.count)
    let p90Frame = Double(sizes[sizes.count * 9 / 10])
    let meanEvent = Double(events.reduce(0) { $0 + $1.json.count }) / Double(events.count)
    func near(_ value: Double, _ target: Double, _ name: String) {
      XCTAssertTrue(abs(value - target) <= 0.2 * target, "\(name): \(value), target \(target)")
    }
    near(meanFrame, 5_400, "mean frame bytes")
    near(p90Frame, 7_400, "90th percentile frame bytes")
    near(meanEvent, 550, "mean event JSON bytes")

    var counts: [String: Int] = [:]
    for event in events {
      let json = String(decoding: event.json, as: UTF8.self)
      let key: String
      if event.kind != .commit {
        key = "identity/account"
      } else if json.contains(#""operation":"delete""#) {
        key = "delete"
      } else if json.contains(#""operation":"update""#) {
        key = "update"
      } else {
        key = event.collection
      }
      counts[key, default: 0] += 1
    }
    func share(_ key: String) -> Double { 100 * Double(counts[key] ?? 0) / Double(events.count) }
    near(share("app.bsky.feed.like"), 70, "likes %")
    near(share("app.bsky.feed.post"), 12, "posts %")
    near(share("app.bsky.feed.repost"), 10, "reposts %")
    near(share("app.bsky.graph.follow"), 6, "follows %")
    near(share("delete"), 2.5, "deletes %")
    near(share("update"), 1, "updates %")
    near(share("identity/account"), 1, "identity and account %")
    XCTAssertGreaterThan(share("app.bsky.graph.block") + share("app.bsky.graph.listitem"), 0.5)
    let others = counts.keys.filter { !$0.hasPrefix("app.bsky.") && $0.contains(".") }
    XCTAssertGreaterThanOrEqual(others.count, 2, "non-Bluesky lexicons: \(others)")
  }

  func testRevisionsIncreasePerDIDAndRecordsLookReal() {
    var lastRev: [String: String] = [:]
    var posts = 0
    var facets = 0
    var nonASCII = 0
    for frame in frames(seed: 9, count: 1_500) {
      guard let commit = commit(frame), let did = commit.body["repo"]?.text,
        let rev = commit.body["rev"]?.text
      else { continue }
      XCTAssertEqual(rev.count, 13)
      if let previous = lastRev[did] { XCTAssertLessThan(previous, rev, did) }
      lastRev[did] = rev
      XCTAssertTrue(did.hasPrefix("did:plc:") && did.count == 32 || did.hasPrefix("did:web:"), did)
      for block in commit.blocks.values {
        guard let record = CBORTree.decode(block), record["$type"]?.text == "app.bsky.feed.post",
          let text = record["text"]?.text
        else { continue }
        posts += 1
        if text.utf8.contains(where: { $0 >= 0x80 }) { nonASCII += 1 }
        guard case .array(let list) = record["facets"] else { continue }
        for facet in list {
          guard case .int(let start) = facet["index"]?["byteStart"],
            case .int(let end) = facet["index"]?["byteEnd"]
          else { return XCTFail("facet without a byte range") }
          let slice = Array(text.utf8)[Int(start)..<Int(end)]
          XCTAssertTrue(
            slice.first == UInt8(ascii: "@") || slice.first == UInt8(ascii: "#")
              || slice.starts(with: Array("https://".utf8)))
          facets += 1
        }
      }
    }
    XCTAssertGreaterThan(lastRev.count, 500, "many accounts")
    XCTAssertLessThan(lastRev.count, 1_400, "a skewed set of active accounts")
    XCTAssertGreaterThan(posts, 100)
    XCTAssertGreaterThan(facets, 20)
    XCTAssertGreaterThan(nonASCII, 20, "several scripts and emoji")
  }

  /// Every op's path walks from the commit's `data` root through the included nodes to its CID
  /// (creates and updates) or to proof of absence at the key's layer (deletes).
  func testMSTProofsWalkToEveryOp() throws {
    var walked = 0
    for frame in frames(seed: 11, count: 600) {
      guard let commit = commit(frame),
        let commitBlock = commit.blocks[commit.root].flatMap(CBORTree.decode),
        case .link(let dataRoot) = commitBlock["data"], case .array(let ops) = commit.body["ops"]
      else { continue }
      for op in ops {
        let path = try XCTUnwrap(op["path"]?.text)
        let found = try MSTWalk.lookup(Array(path.utf8), root: dataRoot, blocks: commit.blocks)
        switch op["action"]?.text {
        case "delete": XCTAssertNil(found, path)
        default:
          guard case .link(let cid) = op["cid"] else { return XCTFail("op without cid") }
          XCTAssertEqual(found, cid, path)
        }
        walked += 1
      }
    }
    XCTAssertGreaterThan(walked, 500)
  }
}

/// A verifying consumer's MST lookup: follows keys by order, checks sorting and layers, and
/// proves absence only at the key's own layer.
enum MSTWalk {
  struct Failure: Error, CustomStringConvertible { let description: String }

  static func layer(_ key: [UInt8]) -> Int {
    var zeros = 0
    for byte in SHA256.hash(key) {
      zeros += byte.leadingZeroBitCount
      if byte != 0 { break }
    }
    return zeros / 2
  }

  static func lookup(_ key: [UInt8], root: [UInt8], blocks: [[UInt8]: [UInt8]]) throws -> [UInt8]? {
    var cid = root
    var expectedLayer: Int? = nil
    while true {
      guard let bytes = blocks[cid] else {
        throw Failure(description: "node missing from the proof")
      }
      guard let node = CBORTree.decode(bytes), case .array(let entries) = node["e"] else {
        throw Failure(description: "not an MST node")
      }
      var previous: [UInt8] = []
      var keys: [([UInt8], CBORTree, CBORTree)] = []
      for entry in entries {
        guard case .int(let p) = entry["p"], case .bytes(let k) = entry["k"], let v = entry["v"],
          let t = entry["t"]
        else { throw Failure(description: "bad entry") }
        let full = Array(previous[..<Int(p)]) + k
        if !keys.isEmpty && !previous.lexicographicallyPrecedes(full) {
          throw Failure(description: "unsorted")
        }
        keys.append((full, v, t))
        previous = full
      }
      let layers = Set(keys.map { layer($0.0) })
      if layers.count > 1 { throw Failure(description: "mixed layers in one node") }
      if let expectedLayer, let l = layers.first, l != expectedLayer {
        throw Failure(description: "wrong layer")
      }
      let nodeLayer = layers.first ?? expectedLayer
      if let hit = keys.first(where: { $0.0 == key }) {
        guard case .link(let value) = hit.1 else { throw Failure(description: "bad value") }
        return value
      }
      if let nodeLayer, nodeLayer <= layer(key) { return nil }  // absent at its own layer
      let index = keys.firstIndex { key.lexicographicallyPrecedes($0.0) } ?? keys.count
      let pointer = index == 0 ? node["l"] : keys[index - 1].2
      guard case .link(let next) = pointer else { return nil }
      cid = next
      expectedLayer = nodeLayer.map { $0 - 1 }
    }
  }
}
