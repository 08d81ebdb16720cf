import Firehose

/// Realistic records per collection, as the live network carries them (likes, posts with
/// facets, replies and embeds, reposts, follows, blocks, list items, profiles, other lexicons).
struct RecordFactory {
  var random: SeededRandom
  let accounts: Accounts

  /// A binary CIDv1 with a random digest (`codec` 0x71 dag-cbor, 0x55 raw for blobs).
  mutating func randomCID(codec: UInt8 = 0x71) -> [UInt8] {
    [0x01, codec, 0x12, 0x20] + random.bytes(32)
  }

  mutating func cidString() -> String {
    var sink = ByteSink(capacity: 64)
    defer { sink.release() }
    randomCID().withUnsafeBytes { CID.appendString($0, to: &sink) }
    return String(decoding: sink.bytes, as: UTF8.self)
  }

  mutating func tid(near micros: Int64) -> String {
    Identifiers.tid(
      microseconds: micros - Int64(random.below(86_400_000_000)), clockID: random.below(1024))
  }

  mutating func strongRef(_ collection: String, near micros: Int64) -> CBORValue {
    let did = other()
    return .map([
      ("cid", .text(cidString())), ("uri", .text("at://\(did)/\(collection)/\(tid(near: micros))")),
    ])
  }

  mutating func blob(mime: String) -> CBORValue {
    .map([
      ("$type", "blob"), ("ref", .link(randomCID(codec: 0x55))), ("mimeType", .text(mime)),
      ("size", .int(Int64(random.int(in: 8_000...900_000)))),
    ])
  }

  /// Another account's DID, skewed towards popular accounts.
  mutating func other() -> String {
    accounts.did(random.skewedIndex(accounts.count))
  }

  /// The record for a create (or update) in `collection`, created at `micros`.
  mutating func record(_ collection: String, micros: Int64) -> CBORValue {
    let createdAt = CBORValue.text(
      Identifiers.timestamp(microseconds: micros - Int64(random.below(3_000_000))))
    switch collection {
    case "app.bsky.feed.like", "app.bsky.feed.repost":
      var fields: [(String, CBORValue)] = [
        ("$type", .text(collection)), ("createdAt", createdAt),
        ("subject", strongRef("app.bsky.feed.post", near: micros)),
      ]
      if random.chance(80) {
        fields.append(("via", strongRef("app.bsky.feed.repost", near: micros)))
      }
      return .map(fields)
    case "app.bsky.graph.follow", "app.bsky.graph.block":
      return .map([
        ("$type", .text(collection)), ("createdAt", createdAt), ("subject", .text(other())),
      ])
    case "app.bsky.graph.listitem":
      return .map([
        ("$type", .text(collection)), ("createdAt", createdAt),
        ("list", .text("at://\(other())/app.bsky.graph.list/\(tid(near: micros))")),
        ("subject", .text(other())),
      ])
    case "app.bsky.feed.post":
      return post(createdAt: createdAt, micros: micros)
    case "app.bsky.actor.profile":
      var fields: [(String, CBORValue)] = [
        ("$type", .text(collection)), ("displayName", .text(TextFactory.words(&random, 1...3))),
        ("description", .text(TextFactory.words(&random, 3...25))),
        ("avatar", blob(mime: "image/jpeg")), ("createdAt", createdAt),
      ]
      if random.chance(600) { fields.append(("banner", blob(mime: "image/jpeg"))) }
      if random.chance(300) {
        fields.append(("pinnedPost", strongRef("app.bsky.feed.post", near: micros)))
      }
      return .map(fields)
    case "fm.teal.alpha.actor.status":
      return .map([
        ("$type", .text(collection)), ("time", .text(String(micros / 1_000_000))),
        ("expiry", .text(String(micros / 1_000_000 + 600))), ("item", play(micros: micros)),
      ])
    case "fm.teal.alpha.feed.play":
      return play(micros: micros)
    case "sh.tangled.feed.star":
      return .map([
        ("$type", .text(collection)), ("createdAt", createdAt),
        ("subject", .text("at://\(other())/sh.tangled.repo/\(tid(near: micros))")),
      ])
    default:  // com.whtwnd.blog.entry and anything else: a long-form entry.
      return .map([
        ("$type", .text(collection)), ("title", .text(TextFactory.words(&random, 2...8))),
        ("content", .text(TextFactory.words(&random, 40...160))), ("createdAt", createdAt),
        ("visibility", "public"),
      ])
    }
  }

  private mutating func play(micros: Int64) -> CBORValue {
    .map([
      ("$type", "fm.teal.alpha.feed.play"), ("trackName", .text(TextFactory.words(&random, 1...4))),
      ("artists", .array([.map([("artistName", .text(TextFactory.words(&random, 1...2)))])])),
      ("releaseName", .text(TextFactory.words(&random, 1...3))),
      ("duration", .int(Int64(random.int(in: 90...420)))), ("isrc", .null),
      ("playedTime", .text(Identifiers.timestamp(microseconds: micros))),
      ("musicServiceBaseDomain", "local"), ("submissionClientAgent", "piper/v0.0.3"),
    ])
  }

  private mutating func post(createdAt: CBORValue, micros: Int64) -> CBORValue {
    let text = TextFactory.post(&random, accounts: accounts)
    var fields: [(String, CBORValue)] = [
      ("$type", "app.bsky.feed.post"), ("createdAt", createdAt), ("text", .text(text.text)),
    ]
    if !text.langs.isEmpty { fields.append(("langs", .array(text.langs.map { .text($0) }))) }
    if !text.facets.isEmpty { fields.append(("facets", .array(text.facets))) }
    if random.chance(350) {
      let root = strongRef("app.bsky.feed.post", near: micros)
      let parent = random.chance(500) ? root : strongRef("app.bsky.feed.post", near: micros)
      fields.append(("reply", .map([("parent", parent), ("root", root)])))
    }
    if random.chance(400) { fields.append(("embed", embed(micros: micros))) }
    return .map(fields)
  }

  private mutating func images() -> CBORValue {
    let images = (0..<random.int(in: 1...4)).map { _ in
      CBORValue.map([
        ("alt", .text(random.chance(400) ? TextFactory.words(&random, 2...12) : "")),
        ("image", blob(mime: random.chance(850) ? "image/jpeg" : "image/png")),
        (
          "aspectRatio",
          .map([
            ("height", .int(Int64(random.int(in: 400...2000)))),
            ("width", .int(Int64(random.int(in: 400...2000)))),
          ])
        ),
      ])
    }
    return .map([("$type", "app.bsky.embed.images"), ("images", .array(images))])
  }

  private mutating func embed(micros: Int64) -> CBORValue {
    switch random.below(100) {
    case 0..<55:
      return images()
    case 55..<80:
      var external: [(String, CBORValue)] = [
        (
          "uri",
          .text(
            "https://example.com/"
              + TextFactory.words(&random, 1...4).split(separator: " ").joined(separator: "-"))
        ),
        ("title", .text(TextFactory.words(&random, 3...10))),
        ("description", .text(TextFactory.words(&random, 0...20))),
      ]
      if random.chance(700) { external.append(("thumb", blob(mime: "image/jpeg"))) }
      return .map([("$type", "app.bsky.embed.external"), ("external", .map(external))])
    case 80..<95:
      return .map([
        ("$type", "app.bsky.embed.record"),
        ("record", strongRef("app.bsky.feed.post", near: micros)),
      ])
    default:
      return .map([
        ("$type", "app.bsky.embed.recordWithMedia"), ("media", images()),
        (
          "record",
          .map([
            ("$type", "app.bsky.embed.record"),
            ("record", strongRef("app.bsky.feed.post", near: micros)),
          ])
        ),
      ])
    }
  }
}
