import Broadcast
import EventLog
import Events
import Foundation
import Subscribe
import TestSupport
import XCTest

/// `contrail tail` against a real server: the printed lines are exactly the subscribed events,
/// compressed or not, and the summary says how many.
final class TailCommandTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  func testPrintsExactlyTheSubscribedEvents() async throws {
    let stream = try SyntheticStream(frames: 300, seed: 19, start: 8_000_000)
    let log = try TemporaryLog.open("tail", directories: &directories)
    let server = try await TestServer.start(stream, log: log)
    let likes = stream.events.filter { $0.kind != .commit || $0.collection == "app.bsky.feed.like" }
    let expected = likes.prefix(100).map { String(decoding: $0.json, as: UTF8.self) + "\n" }
      .joined()
    for extra in [[], ["--compress", "--fetch-dictionary"]] {
      let result = try ContrailCommand.run(
        [
          "tail", "ws://127.0.0.1:\(server.port)", "--cursor", "0", "--collection",
          "app.bsky.feed.like", "--limit", "100",
        ] + extra)
      XCTAssertEqual(result.status, 0, result.stderr)
      XCTAssertTrue(
        String(decoding: result.stdout, as: UTF8.self) == expected, "tail \(extra): wrong lines")
      XCTAssertTrue(result.stderr.hasPrefix("100 events, "), result.stderr)
    }
    try await server.stop()
  }

  /// `tail --v2` speaks subscribeEvents: from a seq cursor, with `--kind` and a collection, its
  /// lines are the v2 frames of exactly those events, text or zstd (the dictionary fetched from
  /// getZstdDictionary).
  func testV2PrintsTheV2FramesOfTheSubscribedEvents() async throws {
    let stream = try SyntheticStream(frames: 300, seed: 23, start: 1_700_000_000_000_000)
    let log = try TemporaryLog.open("tail-v2", directories: &directories)
    let server = try await TestServer.start(stream, log: log)
    let wanted = stream.events.indices.filter {
      stream.events[$0].kind == .commit && stream.events[$0].collection == "app.bsky.feed.like"
        && $0 >= 9
    }
    let expected = try wanted.prefix(50).map { index -> String in
      let event = stream.events[index]
      let frame = try XCTUnwrap(
        event.json.withUnsafeBytes {
          V2Frame.message(fromV1: $0, eventSeq: Int64(index + 1), timeUS: event.timeUS)
        })
      return String(decoding: frame, as: UTF8.self) + "\n"
    }.joined()
    for extra in [[], ["--compress"]] {
      let result = try ContrailCommand.run(
        [
          "tail", "ws://127.0.0.1:\(server.port)", "--v2", "--cursor", "10", "--kind", "commit",
          "--collection", "app.bsky.feed.like", "--limit", "50",
        ] + extra)
      XCTAssertEqual(result.status, 0, result.stderr)
      XCTAssertTrue(
        String(decoding: result.stdout, as: UTF8.self) == expected,
        "tail --v2 \(extra): wrong lines")
      XCTAssertTrue(result.stderr.hasPrefix("50 events, "), result.stderr)
    }
    try await server.stop()
  }
}
