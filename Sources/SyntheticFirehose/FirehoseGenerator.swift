/// A deterministic source of realistic relay frames (`com.atproto.sync.subscribeRepos`): commits
/// with real CIDs, CARs and MST proofs, identity and account events, and the odd `#info`, in
/// roughly the live network's mix, plus `#sync` frames when asked for (`syncEvery`). The same
/// seed gives the same bytes everywhere.
public struct FirehoseGenerator {
  /// The seq of the next frame.
  public private(set) var seq: Int64
  /// The synthetic clock (µs since the epoch); it advances ~500 µs per frame (~2k frames/s).
  public private(set) var clock: Int64
  /// `#sync` frames, which become stored `sync` events (sent on the v2 wire only), are opt-in:
  /// with `syncEvery` set, every `syncEvery`-th frame is a `#sync`, and so is the 0.15% of frames
  /// the live network's mix gives them. Nil, the default, sends none: an `#info` takes the place
  /// of each random one (after the same random draws), so the stream and its events are those
  /// the generator always made.
  public let syncEvery: Int?
  /// Frames made so far.
  private var made = 0
  private var random: SeededRandom
  private var records: RecordFactory
  private let accounts: Accounts
  /// The last revision TID per account index, so revisions increase per DID.
  private var revisions: [Int: Int64] = [:]

  /// 2026-07-04T14:38:00Z, a moment in the real capture's range.
  public static let defaultStart: Int64 = 1_783_175_880_000_000

  /// `syncEvery`, when given, must be at least 1.
  public init(
    seed: UInt64, firstSeq: Int64 = 1, start: Int64 = defaultStart, accounts: Int = 50_000,
    syncEvery: Int? = nil
  ) {
    precondition(syncEvery.map { $0 >= 1 } ?? true, "syncEvery must be at least 1")
    self.syncEvery = syncEvery
    self.seq = firstSeq
    self.clock = start
    self.random = SeededRandom(seed: seed)
    self.accounts = Accounts(count: accounts, salt: seed &* 0x2545_F491_4F6C_DD1D)
    self.records = RecordFactory(random: SeededRandom(seed: seed ^ 0x5EED), accounts: self.accounts)
  }

  /// Creates per mille by collection (the rest of the ops are deletes and updates).
  private static let createMix: [(String, Int)] = [
    ("app.bsky.feed.like", 690), ("app.bsky.feed.post", 125), ("app.bsky.feed.repost", 103),
    ("app.bsky.graph.follow", 60), ("app.bsky.graph.block", 10), ("app.bsky.graph.listitem", 6),
    ("fm.teal.alpha.feed.play", 3), ("sh.tangled.feed.star", 2), ("com.whtwnd.blog.entry", 1),
  ]

  public mutating func next() -> [UInt8] {
    clock += Int64(random.int(in: 100...900))
    defer { seq += 1 }
    made += 1
    if let syncEvery, made % syncEvery == 0 {
      let account = random.skewedIndex(accounts.count)
      return sync(
        did: accounts.did(account), account: account,
        time: Identifiers.timestamp(microseconds: clock))
    }
    let roll = random.below(10_000)
    let account = random.skewedIndex(accounts.count)
    let did = accounts.did(account)
    let time = Identifiers.timestamp(microseconds: clock)
    switch roll {
    case 0..<55:
      let handle: String? = random.chance(900) ? accounts.handle(account) : nil
      return FrameBuilder.identity(seq: seq, did: did, time: time, handle: handle)
    case 55..<110:
      let active = random.chance(800)
      let status: String? = active ? nil : random.pick(["deactivated", "takendown", "deleted"])
      return FrameBuilder.account(seq: seq, did: did, time: time, active: active, status: status)
    case 110..<125:
      let frame = sync(did: did, account: account, time: time)
      return syncEvery == nil ? Self.info : frame
    case 125..<128:
      return Self.info
    default:
      return commit(did: did, account: account, time: time)
    }
  }

  private static let info = FrameBuilder.frame(
    type: "#info",
    body: .map([
      ("name", "OutdatedCursor"),
      ("message", "Requested cursor exceeded limit. Possibly missing events"),
    ]))

  private mutating func nextRevision(_ account: Int) -> String {
    let micros = max(clock, (revisions[account] ?? 0) + 1)
    revisions[account] = micros
    return Identifiers.tid(microseconds: micros, clockID: account & 0x3FF)
  }

  private mutating func commit(did: String, account: Int, time: String) -> [UInt8] {
    let previousRev = revisions[account].map {
      Identifiers.tid(microseconds: $0, clockID: account & 0x3FF)
    }
    let rev = nextRevision(account)
    let opCount = random.chance(30) ? random.int(in: 2...3) : 1
    var ops: [CBORValue] = []
    var blocks: [(cid: [UInt8], data: [UInt8])] = []
    var changes: [(key: [UInt8], change: MSTPool.Change)] = []
    var paths: Set<String> = []
    while paths.count < opCount {
      let (action, path, record) = chooseOp()
      guard paths.insert(path).inserted else { continue }  // one op per path in a commit
      var cid = CBORValue.null
      var change = MSTPool.Change.delete
      if let record {
        let block = record.encoded
        let recordCID = FrameBuilder.cid(of: block)
        blocks.append((recordCID, block))
        cid = .link(recordCID)
        change = .put(cid: recordCID)
      }
      changes.append((Array(path.utf8), change))
      var op: [(String, CBORValue)] = [
        ("action", .text(action)), ("path", .text(path)), ("cid", cid),
      ]
      if action != "create" { op.append(("prev", .link(records.randomCID()))) }
      ops.append(.map(op))
    }
    let proof = MSTPool.shared.proof(
      changes, rootLevel: random.int(in: 3...6), neighbour: { random.chance(550) })
    blocks.append(contentsOf: proof.blocks)
    let commit = FrameBuilder.commitBlock(did: did, rev: rev, data: proof.root)
    let commitCID = FrameBuilder.cid(of: commit)
    var sections: [(cid: [UInt8], data: [UInt8])] = [(commitCID, commit)]
    var seen: Set<[UInt8]> = [commitCID]
    for block in blocks where seen.insert(block.cid).inserted { sections.append(block) }
    let body = CBORValue.map([
      ("seq", .int(seq)), ("rebase", false), ("tooBig", false), ("repo", .text(did)),
      ("commit", .link(commitCID)), ("rev", .text(rev)),
      ("since", previousRev.map { .text($0) } ?? .null),
      ("blocks", .bytes(FrameBuilder.car(root: commitCID, blocks: sections))), ("ops", .array(ops)),
      ("blobs", .array([])), ("time", .text(time)), ("prevData", .link(records.randomCID())),
    ])
    return FrameBuilder.frame(type: "#commit", body: body)
  }

  /// An op: action, path and record (nil for deletes).
  private mutating func chooseOp() -> (String, String, CBORValue?) {
    let roll = random.below(1000)
    if roll < 25 {
      let collection = random.pick([
        "app.bsky.feed.like", "app.bsky.graph.follow", "app.bsky.feed.repost", "app.bsky.feed.post",
      ])
      return ("delete", collection + "/" + records.tid(near: clock), nil)
    }
    if roll < 35 {
      let collection = random.chance(700) ? "app.bsky.actor.profile" : "fm.teal.alpha.actor.status"
      return ("update", collection + "/self", records.record(collection, micros: clock))
    }
    var pick = random.below(1000)
    var collection = Self.createMix[0].0
    for (name, weight) in Self.createMix {
      if pick < weight {
        collection = name
        break
      }
      pick -= weight
    }
    let rkey = Identifiers.tid(
      microseconds: clock - Int64(random.below(2_000_000)), clockID: random.below(1024))
    return ("create", collection + "/" + rkey, records.record(collection, micros: clock))
  }

  private mutating func sync(did: String, account: Int, time: String) -> [UInt8] {
    let rev = nextRevision(account)
    let car = FrameBuilder.syncCAR(did: did, rev: rev, data: records.randomCID())
    return FrameBuilder.sync(seq: seq, did: did, rev: rev, time: time, blocks: car)
  }
}
