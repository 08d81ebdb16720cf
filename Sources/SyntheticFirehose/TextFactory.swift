/// Post text in several scripts with emoji, and facets whose byte ranges match the UTF-8 text.
struct TextFactory {
  struct Post {
    var text: String
    var langs: [String]
    var facets: [CBORValue]
  }

  private static let words: [(lang: String, words: [String])] = [
    (
      "en",
      [
        "the", "a", "just", "really", "love", "this", "today", "morning", "coffee", "cat", "dog",
        "new", "thread", "reading", "about", "what", "think", "people", "good", "weird", "feed",
        "finally", "shipped", "weekend", "rain", "music", "album", "game", "night", "city", "train",
        "honestly", "everyone", "posting", "again", "little", "big", "update", "photo", "garden",
      ]
    ),
    (
      "ja",
      [
        "今日は", "とても", "いい天気", "です", "ね", "猫", "コーヒー", "朝", "新しい", "写真", "仕事",
        "終わった", "楽しい", "ありがとう", "よろしく", "ゲーム", "音楽", "雨", "夜", "電車",
      ]
    ),
    (
      "pt",
      [
        "hoje", "muito", "bom", "dia", "gente", "que", "saudade", "café", "gato", "chuva",
        "obrigado", "novo", "amanhã", "vida", "música", "trabalho", "cidade", "amigos",
      ]
    ),
    (
      "es",
      [
        "hoy", "muy", "buenos", "días", "gracias", "café", "gato", "lluvia", "nuevo", "mañana",
        "vida", "música", "trabajo", "ciudad", "amigos", "qué", "pasó", "señor",
      ]
    ),
    (
      "de",
      [
        "heute", "sehr", "guten", "Morgen", "Kaffee", "Katze", "Regen", "neu", "morgen", "Leben",
        "Musik", "Arbeit", "Stadt", "Freunde", "schön", "Grüße", "über", "für",
      ]
    ),
    (
      "ko",
      ["오늘", "정말", "좋은", "아침", "커피", "고양이", "비", "새로운", "음악", "일", "친구", "감사합니다"]
    ),
  ]
  private static let emoji = ["🎉", "😂", "❤️", "🙏", "🔥", "✨", "🥲", "👀", "🌧️", "☕", "🐈", "💙", "🦋"]
  private static let tags = [
    "art", "photography", "bookstodon", "gamedev", "swift", "music", "cats",
  ]
  private static let domains = [
    "www.youtube.com/watch?v=", "example.com/articles/", "news.example.org/2026/07/",
    "blog.example.net/posts/", "github.com/example/repo/pull/",
  ]

  /// A post: mostly short, sometimes long, one language, sometimes links, mentions and tags.
  static func post(_ random: inout SeededRandom, accounts: Accounts) -> Post {
    let (lang, words) = random.pick(words)
    var text: [UInt8] = []
    var facets: [CBORValue] = []
    func add(_ s: String) { text.append(contentsOf: Array(s.utf8)) }
    func separator() {
      if !text.isEmpty && lang != "ja" { add(" ") }
    }
    let wordCount = random.chance(150) ? random.int(in: 20...45) : random.int(in: 1...16)
    for _ in 0..<wordCount {
      separator()
      add(random.pick(words))
      if random.chance(40) { add(random.pick(emoji)) }
    }
    if random.chance(300) {
      // 0–2 facets: a link, a mention or a tag, each with exact byte offsets.
      for _ in 0..<random.int(in: 1...2) {
        separator()
        let start = text.count
        switch random.below(3) {
        case 0:
          let uri =
            "https://" + random.pick(domains) + String(random.next() % 1_000_000_000, radix: 36)
          add(uri)
          facets.append(
            facet(
              start, text.count,
              .map([("$type", "app.bsky.richtext.facet#link"), ("uri", .text(uri))])))
        case 1:
          let index = random.skewedIndex(accounts.count)
          add("@" + accounts.handle(index))
          facets.append(
            facet(
              start, text.count,
              .map([
                ("$type", "app.bsky.richtext.facet#mention"), ("did", .text(accounts.did(index))),
              ])))
        default:
          let tag = random.pick(tags)
          add("#" + tag)
          facets.append(
            facet(
              start, text.count,
              .map([("$type", "app.bsky.richtext.facet#tag"), ("tag", .text(tag))])))
        }
      }
    }
    if random.chance(20) { add("\n\n" + random.pick(words) + " & <" + random.pick(words) + ">") }
    let langs = random.chance(900) ? [lang] : []
    return Post(text: String(decoding: text, as: UTF8.self), langs: langs, facets: facets)
  }

  private static func facet(_ start: Int, _ end: Int, _ feature: CBORValue) -> CBORValue {
    .map([
      ("$type", "app.bsky.richtext.facet"), ("features", .array([feature])),
      ("index", .map([("byteEnd", .int(Int64(end))), ("byteStart", .int(Int64(start)))])),
    ])
  }

  static func words(_ random: inout SeededRandom, _ count: ClosedRange<Int>) -> String {
    let bank = random.pick(words).words
    return (0..<random.int(in: count)).map { _ in random.pick(bank) }.joined(separator: " ")
  }
}
