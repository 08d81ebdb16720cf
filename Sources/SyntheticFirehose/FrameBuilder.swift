import Firehose

/// Builds relay frames from parts: canonical DAG-CBOR blocks, their CIDv1s, a CARv1 with the
/// signed commit as root, and the `{op, t}` header. Tests and the synthetic generator use it.
public enum FrameBuilder {
  /// The multicodec for DAG-CBOR and the multihash for sha2-256.
  static let dagCBOR = 0x71
  static let sha256 = 0x12

  /// The CIDv1 (dag-cbor, sha2-256) of a block.
  public static func cid(of block: [UInt8], codec: Int = 0x71) -> [UInt8] {
    var cid: [UInt8] = []
    Varint.append(1, to: &cid)
    Varint.append(codec, to: &cid)
    Varint.append(sha256, to: &cid)
    Varint.append(32, to: &cid)
    cid.append(contentsOf: SHA256.hash(block))
    return cid
  }

  /// A CARv1: header `{roots: [root], version: 1}`, then `[varint length][CID][data]` sections.
  public static func car(root: [UInt8], blocks: [(cid: [UInt8], data: [UInt8])]) -> [UInt8] {
    let header = CBORValue.map([("roots", .array([.link(root)])), ("version", 1)]).encoded
    var out: [UInt8] = []
    Varint.append(header.count, to: &out)
    out.append(contentsOf: header)
    for block in blocks {
      Varint.append(block.cid.count + block.data.count, to: &out)
      out.append(contentsOf: block.cid)
      out.append(contentsOf: block.data)
    }
    return out
  }

  /// A frame: header `{op, t}` then the body.
  public static func frame(type: String?, op: Int64 = 1, body: CBORValue) -> [UInt8] {
    var header: [(String, CBORValue)] = [("op", .int(op))]
    if let type { header.append(("t", .text(type))) }
    return CBORValue.map(header).encoded + body.encoded
  }

  /// One op of a commit to build.
  public struct Op {
    public var action: String
    public var path: String
    /// The record to store (create/update); nil for deletes.
    public var record: CBORValue?
    /// Leave the record block out of the CAR while keeping the op's CID.
    public var omitBlock = false

    public init(action: String, path: String, record: CBORValue? = nil, omitBlock: Bool = false) {
      self.action = action
      self.path = path
      self.record = record
      self.omitBlock = omitBlock
    }
  }

  /// The signed commit block of a repository at `rev` (the signature is a placeholder).
  public static func commitBlock(did: String, rev: String, data: [UInt8], version: Int64 = 3)
    -> [UInt8]
  {
    CBORValue.map([
      ("did", .text(did)), ("rev", .text(rev)), ("data", .link(data)), ("prev", .null),
      ("version", .int(version)), ("sig", .bytes([UInt8](repeating: 0xA5, count: 64))),
    ]).encoded
  }

  /// A `#commit` frame whose CAR holds the commit block (root), the record blocks and `extra`.
  public static func commit(
    seq: Int64, repo: String, rev: String, time: String = "2026-07-04T14:38:07.517Z",
    ops: [Op], tooBig: Bool = false, extraBlocks: [[UInt8]] = [], dataRoot: [UInt8]? = nil,
    blocksOverride: [UInt8]? = nil
  ) -> [UInt8] {
    var blocks: [(cid: [UInt8], data: [UInt8])] = []
    var opValues: [CBORValue] = []
    for op in ops {
      var cidValue = CBORValue.null
      if let record = op.record {
        let data = record.encoded
        let cid = cid(of: data)
        if !op.omitBlock { blocks.append((cid, data)) }
        cidValue = .link(cid)
      }
      opValues.append(
        .map([("action", .text(op.action)), ("path", .text(op.path)), ("cid", cidValue)]))
    }
    for extra in extraBlocks { blocks.append((cid(of: extra), extra)) }
    let mstRoot = dataRoot ?? blocks.first?.cid ?? cid(of: CBORValue.map([]).encoded)
    let commit = commitBlock(did: repo, rev: rev, data: mstRoot)
    let commitCID = cid(of: commit)
    let car = blocksOverride ?? Self.car(root: commitCID, blocks: [(commitCID, commit)] + blocks)
    let body = CBORValue.map([
      ("seq", .int(seq)), ("repo", .text(repo)), ("rev", .text(rev)), ("time", .text(time)),
      ("tooBig", .bool(tooBig)), ("rebase", .bool(false)), ("since", .null),
      ("commit", .link(commitCID)), ("blocks", .bytes(car)), ("ops", .array(opValues)),
      ("blobs", .array([])),
    ])
    return frame(type: "#commit", body: body)
  }

  /// A `#commit` creating `count` posts of ~600 bytes (one record block each): large frames
  /// with thousands of ops and blocks, for benches and tests of linear cost.
  public static func postsCommit(seq: Int64 = 1, count: Int) -> [UInt8] {
    let padding = String(repeating: "x", count: 500)
    return commit(
      seq: seq, repo: "did:plc:ewvi7nxzyoun6zhxrhs64oiz", rev: "3l3qo2vuowo2b",
      ops: (0..<count).map { index in
        Op(
          action: "create", path: "app.bsky.feed.post/3l\(index)",
          record: .map([
            ("$type", "app.bsky.feed.post"), ("createdAt", "2026-07-04T14:38:07.517Z"),
            ("text", .text(padding + String(index))),
          ]))
      })
  }

  public static func identity(seq: Int64, did: String, time: String, handle: String?) -> [UInt8] {
    var body: [(String, CBORValue)] = [
      ("seq", .int(seq)), ("did", .text(did)), ("time", .text(time)),
    ]
    if let handle { body.append(("handle", .text(handle))) }
    return frame(type: "#identity", body: .map(body))
  }

  public static func account(
    seq: Int64, did: String, time: String, active: Bool, status: String?
  ) -> [UInt8] {
    var body: [(String, CBORValue)] = [
      ("seq", .int(seq)), ("did", .text(did)), ("time", .text(time)), ("active", .bool(active)),
    ]
    if let status { body.append(("status", .text(status))) }
    return frame(type: "#account", body: .map(body))
  }

  /// A `#sync` frame (`com.atproto.sync.subscribeRepos#sync`): the repo's current commit, whose
  /// CAR `blocks` usually holds just the commit block (`syncCAR`).
  public static func sync(seq: Int64, did: String, rev: String, time: String, blocks: [UInt8])
    -> [UInt8]
  {
    frame(
      type: "#sync",
      body: .map([
        ("seq", .int(seq)), ("did", .text(did)), ("rev", .text(rev)), ("time", .text(time)),
        ("blocks", .bytes(blocks)),
      ]))
  }

  /// The CAR of a `#sync`: the commit block of `did` at `rev`, as its one block and root.
  public static func syncCAR(did: String, rev: String, data: [UInt8]) -> [UInt8] {
    let commit = commitBlock(did: did, rev: rev, data: data)
    let cid = cid(of: commit)
    return car(root: cid, blocks: [(cid, commit)])
  }

  public static func error(_ code: String, message: String? = nil) -> [UInt8] {
    var body: [(String, CBORValue)] = [("error", .text(code))]
    if let message { body.append(("message", .text(message))) }
    return frame(type: nil, op: -1, body: .map(body))
  }
}
