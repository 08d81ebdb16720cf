import Foundation
import Prometheus
import TestSupport
import XCTest

@testable import App

/// `/status` in a real browser: `serve --offline` in-process, one zstd subscriber, and Debian's
/// headless `chromium` loading the page (JavaScript on, so the live updates run too).
final class StatusPageTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  func testChromiumShowsTheLiveStatusPage() async throws {
    let chromium = try Chromium.find()
    let directory = TemporaryLog.directory("status")
    directories.append(directory)
    var settings = try ServeSettings.offlineForTests(dataDirectory: directory)
    settings.offlineRate = 300
    let registry = PrometheusCollectorRegistry()
    let contrail = try await ContrailServer.start(settings, registry: registry, logger: quietLogger)
    let running = Task { await contrail.run() }
    do {
      try await check(contrail, registry: registry, chromium: chromium)
    } catch {
      await contrail.shutdown()
      await running.value
      throw error
    }
    await contrail.shutdown()
    await running.value
  }

  private func check(
    _ contrail: ContrailServer, registry: PrometheusCollectorRegistry, chromium: Chromium
  ) async throws {
    let subscriber = try await TestWebSocketClient.connect(
      port: contrail.port, target: "/subscribe?compress=true")
    try await waitUntil("the subscriber is counted", timeout: .seconds(10)) {
      contrail.server.subscriberCount == 1
    }
    try await waitUntil("events reach the subscriber", timeout: .seconds(30)) {
      registry.value(#"contrail_bytes_sent_total{compression="zstd"}"#) > 0
    }
    // ...and one on the v2 wire, counted apart.
    let v2 = try await TestWebSocketClient.connect(
      port: contrail.port, target: "/xrpc/network.bsky.jetstream.subscribeEvents")
    try await waitUntil("both subscribers are counted", timeout: .seconds(10)) {
      contrail.server.subscriberCount == 2
    }
    try await waitUntil("three seconds of chart history", timeout: .seconds(30)) {
      if case .array(let rates)? = contrail.status.snapshot()["history.rates"] {
        return rates.count >= 3
      }
      return false
    }
    let url = "http://127.0.0.1:\(contrail.port)/status"

    // Without JavaScript: the server renders every number.
    let plain = try RawHTTP.get(port: contrail.port, target: "/status")
    XCTAssertEqual(plain.status, 200)
    XCTAssertEqual(Self.field(plain.body, "subscribers.total"), "2")
    XCTAssertEqual(Self.field(plain.body, "subscribers.v1"), "1")
    XCTAssertEqual(Self.field(plain.body, "subscribers.v2"), "1")
    XCTAssertEqual(Self.field(plain.body, "subscribers.replaying"), "0", "a live subscriber")
    let saved = try XCTUnwrap(Self.field(plain.body, "bytes.saved"), plain.body)
    XCTAssertTrue(saved.first?.isNumber == true && saved.hasSuffix("B"), "bytes saved: \(saved)")
    XCTAssertGreaterThan(registry.value("contrail_bytes_saved_total"), 0)
    XCTAssertEqual(Self.field(plain.body, "upstream.connected"), "connected")
    XCTAssertNotNil(Self.number(plain.body, "ingest.totals.total"))
    XCTAssertFalse(plain.body.contains("src=\""), "no external scripts or images")
    XCTAssertFalse(plain.body.contains("<link"), "no external stylesheets")

    // With JavaScript, in the browser.
    let first = try await chromium.dumpDOM(url)
    XCTAssertTrue(first.contains("data-live=\"1\""), "the script applied status.json:\n\(first)")
    XCTAssertTrue(first.contains("ws://127.0.0.1:"), "the page names the upstream")
    XCTAssertTrue(first.contains("bundled fixture relay, offline"))
    XCTAssertEqual(Self.field(first, "upstream.connected"), "connected")
    XCTAssertEqual(Self.field(first, "subscribers.total"), "2")
    XCTAssertEqual(Self.field(first, "subscribers.zstd"), "1")
    XCTAssertEqual(Self.field(first, "subscribers.v2"), "1")
    XCTAssertEqual(Self.field(first, "subscribers.replaying"), "0")
    XCTAssertTrue(first.contains("<svg id=\"chart\""), "the chart is there")
    let points = Self.attribute(first, "data-points").flatMap { Int($0) } ?? 0
    XCTAssertGreaterThanOrEqual(points, 3, "the chart has data")
    let line = Self.attribute(first, "d", after: "id=\"chart-line\"") ?? ""
    XCTAssertGreaterThanOrEqual(line.filter { $0 == "L" }.count, 2, "the chart line: \(line)")
    XCTAssertTrue(first.contains("app.bsky.feed.like"), "the top collections are listed")
    let total1 = try XCTUnwrap(Self.number(first, "ingest.totals.total"))
    XCTAssertGreaterThan(total1, 0)

    // The page's numbers come from the status collector's latest snapshot, which lags the
    // metrics: wait until the server's own rendering shows more, then load it in the browser.
    try await waitUntil("the status page shows more events", timeout: .seconds(20)) {
      guard let page = try? RawHTTP.get(port: contrail.port, target: "/status") else {
        return false
      }
      return (Self.number(page.body, "ingest.totals.total") ?? 0) > total1
    }
    let second = try await chromium.dumpDOM(url)
    let total2 = try XCTUnwrap(Self.number(second, "ingest.totals.total"))
    XCTAssertGreaterThan(total2, total1, "the events total moves between loads")

    // A screenshot for people (and the README): out/status-page.png.
    let out = SharedData.projectRoot + "/out"
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    let png = out + "/status-page.png"
    try? FileManager.default.removeItem(atPath: png)
    try await chromium.screenshot(url, to: png)
    let bytes = try XCTUnwrap(FileManager.default.contents(atPath: png))
    XCTAssertEqual(Array(bytes.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "a PNG")
    XCTAssertGreaterThan(bytes.count, 10_000)
    await subscriber.close()
    await v2.close()
  }

  /// Whatever a relay URL or a collection name holds is escaped, in the HTML and in the JSON.
  func testHostileTextIsEscaped() {
    let hostile = "</td><script>alert(1)</script>\u{2028}\"'&"
    let status: StatusValue = .object([
      ("version", .string("1<b>")),
      ("upstream", .object([("relay", .string("ws://x/" + hostile)), ("connected", .bool(true))])),
      (
        "collections",
        .object([
          ("top", .array([.object([("name", .string(hostile)), ("rate", .number(1))])]))
        ])
      ),
      (
        "history", .object([("capacity", .int(600)), ("rates", .array([.number(1), .number(2)]))])
      ),
    ])
    let html = StatusCollector.html(status)
    XCTAssertFalse(html.contains("<script>alert"), html)
    XCTAssertFalse(html.contains("1<b>"))
    XCTAssertTrue(html.contains("&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;"))
    XCTAssertEqual(html.components(separatedBy: "<script>").count, 2, "only the page's own script")
    let json = StatusValue.string(hostile).json
    XCTAssertEqual(
      json, #""\u003c/td\u003e\u003cscript\u003ealert(1)\u003c/script\u003e\u2028\"'\u0026""#)
    let decoded =
      try? JSONSerialization.jsonObject(
        with: Data(status.json.utf8)) as? [String: Any]
    XCTAssertEqual(
      ((decoded?["collections"] as? [String: Any])?["top"] as? [[String: Any]])?.first?["name"]
        as? String, hostile)
  }

  /// The collection table stays bounded, and a busy collection that stops stays ranked above a
  /// trickle while its last-seen time stands still.
  func testCollectionTableIsBoundedAndKeepsStoppedCollections() {
    var table: [String: StatusCollector.Collection] = [:]
    for second in 0..<30 {
      StatusCollector.fold(
        ["app.bsky.feed.like": (500, Int64(second)), "slow.trickle": (1, Int64(second))],
        into: &table, seconds: 1)
    }
    for second in 30..<60 {
      var seen: [String: (count: Int, last: Int64)] = ["slow.trickle": (1, Int64(second))]
      for index in 0..<40 { seen["spam.c\(second).n\(index)"] = (1, Int64(second)) }
      StatusCollector.fold(seen, into: &table, seconds: 1)
      XCTAssertLessThanOrEqual(table.count, StatusCollector.maxCollections)
    }
    let like = table["app.bsky.feed.like"]
    XCTAssertNotNil(like, "the stopped collection is still tracked")
    XCTAssertEqual(like?.lastSeenUS, 29)
    XCTAssertGreaterThan(like?.long ?? 0, table["slow.trickle"]?.long ?? 0)
    XCTAssertLessThan(like?.recent ?? 0, 500 * 0.7, "its 1-minute rate decays")
  }

  func testPrometheusTextIsParsed() {
    let text = """
      # TYPE contrail_subscribers gauge
      contrail_subscribers{compression="zstd"} 2.0
      contrail_relay_seq 12345
      other_metric 1
      """
    let values = StatusCollector.parse(Array(text.utf8))
    XCTAssertEqual(values[#"contrail_subscribers{compression="zstd"}"#], 2)
    XCTAssertEqual(values["contrail_relay_seq"], 12345)
    XCTAssertNil(values["other_metric"])
  }

  /// The text of the element carrying `data-k="key"`.
  static func field(_ html: String, _ key: String) -> String? {
    guard let start = html.range(of: "data-k=\"\(key)\""),
      let close = html[start.upperBound...].firstIndex(of: ">"),
      let end = html[close...].firstIndex(of: "<")
    else { return nil }
    return String(html[html.index(after: close)..<end])
  }

  static func number(_ html: String, _ key: String) -> Int? {
    field(html, key).flatMap { Int($0.replacingOccurrences(of: ",", with: "")) }
  }

  static func attribute(_ html: String, _ name: String, after marker: String = "") -> String? {
    let from = marker.isEmpty ? html.startIndex : html.range(of: marker)?.upperBound
    guard let from, let start = html[from...].range(of: " \(name)=\""),
      let end = html[start.upperBound...].firstIndex(of: "\"")
    else { return nil }
    return String(html[start.upperBound..<end])
  }
}

/// Debian's `chromium`, headless (`--no-sandbox`: tests may run as root), every run bounded.
struct Chromium {
  struct Missing: Error, CustomStringConvertible {
    var description: String {
      "chromium is not installed: the status page test needs a headless browser "
        + "(apt-get install chromium; .ci/run installs it)"
    }
  }

  struct Failed: Error, CustomStringConvertible {
    let description: String
  }

  let path: String

  static func find() throws -> Chromium {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") {
      for name in ["chromium", "chromium-browser"] {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) {
          return Chromium(path: candidate)
        }
      }
    }
    throw Missing()
  }

  /// The DOM after the page's script has run for `budget` ms of virtual time.
  func dumpDOM(_ url: String, budget: Int = 3000) async throws -> String {
    String(
      decoding: try await run(["--virtual-time-budget=\(budget)", "--dump-dom", url]), as: UTF8.self
    )
  }

  func screenshot(_ url: String, to path: String, budget: Int = 3000) async throws {
    _ = try await run([
      "--virtual-time-budget=\(budget)", "--window-size=1280,1000", "--hide-scrollbars",
      "--screenshot=\(path)", url,
    ])
  }

  /// Runs chromium with `arguments`; its standard output. Killed after `timeout`.
  private func run(_ arguments: [String], timeout: Duration = .seconds(90)) async throws -> [UInt8]
  {
    let scratch = TemporaryLog.directory("chromium")
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let outPath = scratch + "/stdout"
    let errPath = scratch + "/stderr"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments =
      [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--no-default-browser-check", "--user-data-dir=\(scratch)/profile",
      ] + arguments
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    try process.run()
    do {
      try await waitUntil("chromium \(arguments.joined(separator: " "))", timeout: timeout) {
        !process.isRunning
      }
    } catch {
      process.terminate()
      process.waitUntilExit()
      throw error
    }
    let stderr = String(
      decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self)
    guard process.terminationStatus == 0 else {
      throw Failed(description: "chromium exited with \(process.terminationStatus): \(stderr)")
    }
    return Array(FileManager.default.contents(atPath: outPath) ?? Data())
  }
}
