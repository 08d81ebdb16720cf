/// The generated population of accounts: index → DID and handle, derived without state so any
/// account can be named from its index. About 2% use `did:web`.
struct Accounts: Sendable {
  let count: Int
  let salt: UInt64

  func did(_ index: Int) -> String {
    var random = SeededRandom(seed: salt ^ UInt64(index) &* 0x9E37_79B9)
    let a = random.next()
    if a % 50 == 0 { return "did:web:u\(index).pds.example.net" }
    return Identifiers.plcDID(a, random.next())
  }

  func handle(_ index: Int) -> String {
    "user\(index).bsky.social"
  }
}
