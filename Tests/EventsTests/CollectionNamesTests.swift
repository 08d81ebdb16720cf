import XCTest

@testable import Events

/// The translator's interned collection names stay small whatever names a relay sends.
final class CollectionNamesTests: XCTestCase {
  private func name(_ text: String, _ names: inout CollectionNames) -> String {
    Array(text.utf8).withUnsafeBytes { names.name($0) }
  }

  func testNamesAreInternedOnceAndReturnedIntact() {
    var names = CollectionNames()
    defer { names.release() }
    XCTAssertEqual(name("app.bsky.feed.post", &names), "app.bsky.feed.post")
    XCTAssertEqual(name("app.bsky.feed.like", &names), "app.bsky.feed.like")
    XCTAssertEqual(name("app.bsky.feed.post", &names), "app.bsky.feed.post")
    XCTAssertEqual(name("", &names), "")
    XCTAssertEqual(names.count, 3)
  }

  func testLongNamesAreNotKept() {
    var names = CollectionNames()
    defer { names.release() }
    let longest = String(repeating: "a", count: CollectionNames.maxNameBytes)
    let tooLong = String(repeating: "b", count: CollectionNames.maxNameBytes + 1)
    let huge = String(repeating: "c", count: 1 << 20)
    XCTAssertEqual(name(longest, &names), longest)
    XCTAssertEqual(names.count, 1)
    XCTAssertEqual(name(tooLong, &names), tooLong)
    XCTAssertEqual(name(huge, &names), huge)
    XCTAssertEqual(names.count, 1, "names longer than an NSID are returned but not interned")
  }

  func testAtMostTheLimitIsKept() {
    var names = CollectionNames()
    defer { names.release() }
    for index in 0..<(CollectionNames.limit + 50) {
      XCTAssertEqual(name("com.example.n\(index)", &names), "com.example.n\(index)")
    }
    XCTAssertEqual(names.count, CollectionNames.limit)
    XCTAssertEqual(name("com.example.n3", &names), "com.example.n3")
    XCTAssertEqual(
      name("com.example.n\(CollectionNames.limit + 10)", &names),
      "com.example.n\(CollectionNames.limit + 10)")
  }
}
