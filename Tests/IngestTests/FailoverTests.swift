import Compression
import DefaultDictionary
import EventLog
import Events
import Foundation
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// Scale-out as an operator runs it (OPERATIONS §10, issue 16): a primary (`contrail serve
/// --offline`, a live stream for the whole test), two edges (`contrail serve --upstream
/// ws://127.0.0.1:PRIMARY`), all three separate processes, and Debian's HAProxy running
/// `deploy/haproxy.cfg` (the file docker compose uses) in front of the edges, on 127.0.0.1. A
/// client through HAProxy gets the primary's bytes with the primary's cursors; when the edge it
/// is on is killed with SIGKILL, it resumes through HAProxy on the other edge — a v1 client with
/// `cursor = last time_us + 1`, PyPI `atproto`'s v2 client by itself with its last `seq` — and
/// ends with every event of the primary's log, no gap, no duplicate. Also: an edge gives up a
/// primary that falls silent without closing (`--stale-after`) and catches up when it returns,
/// and follows a primary behind a TLS proxy trusting `--relay-ca`.
final class FailoverTests: XCTestCase {
  private var base = ""
  private var processes: [Process] = []
  private var logs: [String] = []

  override func tearDown() {
    for process in processes where process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
    if let run = testRun, run.failureCount + run.unexpectedExceptionCount > 0 {
      for path in logs {
        let text = String(
          decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
        print("--- \(path) (last 4,000 characters)\n\(text.suffix(4_000))")
      }
    }
    if !base.isEmpty { try? FileManager.default.removeItem(atPath: base) }
  }

  // MARK: The cluster

  /// A `contrail serve` subprocess; its log (standard error, at info) goes to a file.
  final class Server {
    let process: Process
    let directory: String
    let logPath: String
    private(set) var port = 0

    init(_ arguments: [String], directory: String, logPath: String) throws {
      self.directory = directory
      self.logPath = logPath
      _ = FileManager.default.createFile(atPath: logPath, contents: nil)
      process = Process()
      process.executableURL = try ContrailCommand.binary()
      process.arguments =
        ["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", directory] + arguments
      process.standardOutput = FileHandle.nullDevice
      process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
      try process.run()
    }

    var log: String {
      String(decoding: FileManager.default.contents(atPath: logPath) ?? Data(), as: UTF8.self)
    }

    /// Waits for the `serving` line and takes the port from it.
    func serving() async throws {
      try await waitUntil("\(directory): serving", timeout: .seconds(45)) {
        !process.isRunning || log.contains("] serving")
      }
      guard process.isRunning,
        let line = log.split(separator: "\n").first(where: { $0.contains("] serving") }),
        let match = line.firstMatch(of: /address=127\.0\.0\.1:([0-9]+)/),
        let port = Int(match.1)
      else { throw Failure(description: "\(directory) did not start:\n\(log.suffix(2_000))") }
      self.port = port
    }

    func ready() async throws {
      try await waitUntil("\(directory): /readyz 200", timeout: .seconds(30)) {
        (try? RawHTTP.get(port: port, target: "/readyz").status) == 200
      }
    }

    /// One series of `/metrics`; nil when it cannot be read.
    func metric(_ series: String) -> Double? {
      guard let body = try? RawHTTP.get(port: port, target: "/metrics").body else { return nil }
      for line in body.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
      }
      return 0
    }

    func kill() {
      guard process.isRunning else { return }
      Glibc.kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }

  struct Failure: Error, CustomStringConvertible {
    let description: String
  }

  struct Cluster {
    let primary: Server
    var edges: [Server]
    let balancer: Int
  }

  /// The primary (offline relay at `rate` frames/s, `/replicate` for 127.0.0.1 only), two edges
  /// following it, HAProxy with `deploy/haproxy.cfg` in front of the edges; everything ready.
  private func cluster(rate: Int = 300) async throws -> Cluster {
    let primary = try await primary(rate: rate)
    var edges: [Server] = []
    for name in ["edge1", "edge2"] {
      let edge = try edge(name, primary: primary)
      try await edge.serving()
      edges.append(edge)
    }
    for edge in edges { try await edge.ready() }
    let balancer = try await haproxy(edges.map { "127.0.0.1:\($0.port)" })
    return Cluster(primary: primary, edges: edges, balancer: balancer)
  }

  /// The primary: the offline relay at `rate` frames/s; `/replicate` for 127.0.0.1 only.
  private func primary(rate: Int = 300) async throws -> Server {
    base = TemporaryLog.directory("failover")
    try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
    let primary = try server(
      "primary",
      [
        "--offline", "--offline-rate", "\(rate)", "--fsync-interval", "20ms",
        "--replication-allow", "127.0.0.1/32",
      ])
    try await primary.serving()
    try await primary.ready()
    return primary
  }

  private func server(_ name: String, _ arguments: [String]) throws -> Server {
    let server = try Server(
      arguments, directory: base + "/" + name, logPath: base + "/\(name)-\(logs.count).log")
    processes.append(server.process)
    logs.append(server.logPath)
    return server
  }

  private func edge(_ name: String, primary: Server, _ more: [String] = []) throws -> Server {
    try server(
      name,
      ["--upstream", "ws://127.0.0.1:\(primary.port)", "--trusted-proxies", "127.0.0.1/32"]
        + more)
  }

  /// HAProxy running `deploy/haproxy.cfg` unchanged on a free loopback port, the edges as
  /// `CONTRAIL_LB_SERVER_1…`; nothing else from the environment. Fails without haproxy.
  private func haproxy(_ servers: [String]) async throws -> Int {
    let port = try RawSocket.freePort()
    var environment = ["CONTRAIL_LB_BIND": "127.0.0.1:\(port)"]
    for (index, server) in servers.enumerated() {
      environment["CONTRAIL_LB_SERVER_\(index + 1)"] = server
    }
    try await haproxy(LoadBalancerTests.configuration, environment: environment, port: port)
    return port
  }

  /// HAProxy with `configuration`, once it listens on `port`.
  private func haproxy(_ configuration: String, environment: [String: String], port: Int)
    async throws
  {
    guard
      let path = ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"].first(
        where: { FileManager.default.isExecutableFile(atPath: $0) })
    else { throw LoadBalancerTests.Missing() }
    let logPath = base + "/haproxy-\(logs.count).log"
    _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = ["-db", "-f", configuration]
    process.environment = environment
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
    process.standardError = process.standardOutput
    try process.run()
    processes.append(process)
    logs.append(logPath)
    try await waitUntil("haproxy listening on \(port)", timeout: .seconds(20)) {
      guard process.isRunning, let fd = try? RawSocket.connect(port: port) else { return false }
      close(fd)
      return true
    }
  }

  /// The log in `directory`, opened read-only beside the process writing it.
  private func openLog(_ directory: String) throws -> EventLog {
    var configuration = EventLog.Configuration(directory: directory)
    configuration.sync = .never
    return try EventLog(configuration, readOnly: true)
  }

  private func lastEventSeq(_ server: Server) -> Int64 {
    guard let log = try? openLog(server.directory) else { return 0 }
    defer { try? log.close() }
    return log.lastEventSeq
  }

  /// The records of `directory` with event seqs 1…`through`.
  private func records(_ directory: String, through: Int64) throws -> [LogRecord] {
    let log = try openLog(directory)
    defer { try? log.close() }
    let reader = log.reader(from: 0, filter: .everything)
    var records: [LogRecord] = []
    while let record = reader.next(), record.eventSeq <= through { records.append(record) }
    return records
  }

  /// Which of `edges` has one subscription of `wire` open (the others none).
  private func edgeHolding(_ wire: String, among edges: [Server]) async throws -> Int {
    var holder: Int?
    try await waitUntil("one edge holds the \(wire) subscriber", timeout: .seconds(15)) {
      let values = edges.map { $0.metric(#"contrail_subscribers_wire{wire="\#(wire)"}"#) }
      holder = values.firstIndex(of: 1)
      return holder != nil && values.filter { $0 == 0 }.count == values.count - 1
    }
    return holder!
  }

  // MARK: Clients

  /// A websocket to `target`, tried again while it is refused (HAProxy answers 503 while it
  /// has no instance in rotation, and may try a dead one first) for at most 30 s.
  private func connect(port: Int, _ target: String) async throws -> TestWebSocketClient {
    var client: TestWebSocketClient?
    try await waitUntil("connected to \(port)\(target)", timeout: .seconds(30)) {
      client = try? await TestWebSocketClient.connect(port: port, target: target)
      if client == nil { try? await Task.sleep(for: .milliseconds(200)) }
      return client != nil
    }
    return client!
  }

  /// The next `count` data messages (pings are answered by the client, not returned).
  private func receive(
    _ count: Int, from client: TestWebSocketClient, _ what: String
  ) async throws -> [TestWebSocketClient.Message] {
    var messages: [TestWebSocketClient.Message] = []
    while messages.count < count {
      guard let message = try await client.next(timeout: .seconds(15)) else {
        throw Failure(description: "\(what): the connection ended after \(messages.count)")
      }
      if case .close = message {
        throw Failure(description: "\(what): closed after \(messages.count): \(message)")
      }
      messages.append(message)
    }
    return messages
  }

  private func frames(_ messages: [TestWebSocketClient.Message]) throws -> [[UInt8]] {
    try messages.map {
      guard case .binary(let bytes) = $0 else {
        throw Failure(description: "not a binary message: \($0)")
      }
      return bytes
    }
  }

  /// `time_us` of an event's JSON.
  private static func timeUS(_ json: some Collection<UInt8>) -> Int64? {
    let key = Array(#""time_us":"#.utf8)
    let bytes = Array(json)
    guard bytes.count > key.count,
      let start = (0...(bytes.count - key.count)).first(where: {
        bytes[$0..<($0 + key.count)].elementsEqual(key)
      })
    else { return nil }
    var value: Int64 = 0
    for byte in bytes[(start + key.count)...] {
      guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { break }
      value = value * 10 + Int64(byte - UInt8(ascii: "0"))
    }
    return value
  }

  /// `time_us` of each zstd frame (the primary's dictionary is the built-in one).
  private func times(_ frames: [[UInt8]], _ decompressor: EventDecompressor) throws -> [Int64] {
    try frames.map { frame in
      guard let time = Self.timeUS(try decompressor.decompress(frame)) else {
        throw Failure(description: "an event without time_us")
      }
      return time
    }
  }

  /// The first index where two arrays differ (a missing element counts); nil when equal.
  private static func firstDifference<T: Equatable>(_ a: [T], _ b: [T]) -> Int? {
    zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset
      ?? (a.count == b.count ? nil : min(a.count, b.count))
  }

  // MARK: Tests

  /// v1: through HAProxy an edge sends the primary's events byte for byte (text and zstd) with
  /// the primary's `time_us`; a zstd client whose edge is SIGKILLed mid-stream reconnects
  /// through HAProxy with `cursor = last time_us + 1`, lands on the other edge, and ends with
  /// exactly the primary's events over the whole range; the killed edge, started again on its
  /// directory, resumes and holds the primary's records exactly.
  func testAV1ClientResumesOnTheOtherEdgeWithNoGapOrDuplicate() async throws {
    let cluster = try await cluster()
    let primary = cluster.primary
    try await waitUntil("the primary has history", timeout: .seconds(30)) {
      lastEventSeq(primary) >= 600
    }
    // The edge took the primary's dictionary and says so.
    for edge in cluster.edges {
      let line = edge.log.split(separator: "\n").first { $0.contains("] zstd dictionary") }
      XCTAssertTrue(
        line?.contains("source=the primary ws://127.0.0.1:\(primary.port)") ?? false,
        "\(line ?? "no zstd dictionary line")")
    }

    // (a) The same cursor through HAProxy and on the primary: the same text events; each edge's
    // zstd frames are the primary's.
    let cursor = "cursor=1"  // from the oldest event
    func first(_ count: Int, port: Int, _ target: String) async throws
      -> [TestWebSocketClient.Message]
    {
      let client = try await connect(port: port, target)
      let messages = try await receive(count, from: client, "\(target) on \(port)")
      await client.close()
      return messages
    }
    let viaProxy = try await first(500, port: cluster.balancer, "/subscribe?\(cursor)")
    let direct = try await first(500, port: primary.port, "/subscribe?\(cursor)")
    XCTAssertNil(
      Self.firstDifference(viaProxy, direct), "text events through HAProxy = the primary's")
    let textTimes = direct.compactMap { message -> Int64? in
      guard case .text(let json) = message else { return nil }
      return Self.timeUS(json.utf8)
    }
    XCTAssertEqual(textTimes.count, 500)
    XCTAssertTrue(zip(textTimes, textTimes.dropFirst()).allSatisfy { $0 < $1 })
    let primaryFrames = try await first(
      500, port: primary.port, "/subscribe?compress=true&\(cursor)")
    for edge in cluster.edges {
      let edgeFrames = try await first(500, port: edge.port, "/subscribe?compress=true&\(cursor)")
      XCTAssertNil(
        Self.firstDifference(edgeFrames, primaryFrames),
        "edge \(edge.port)'s zstd frames = the primary's")
    }

    // (b) A zstd subscriber through HAProxy from the oldest event, into the live stream.
    let target = "/subscribe?compress=true&\(cursor)"
    let atConnect = lastEventSeq(primary)
    let subscriber = try await connect(port: cluster.balancer, target)
    var received = try frames(
      try await receive(Int(atConnect) + 150, from: subscriber, "before the kill"))
    let victim = try await edgeHolding("v1", among: cluster.edges)
    let survivor = 1 - victim
    cluster.edges[victim].kill()
    // What was in flight, then the end of the connection (no close frame: the edge is gone).
    while true {
      guard let message = try await subscriber.next(timeout: .seconds(15)) else { break }
      if case .close = message { continue }
      received += try frames([message])
    }
    let beforeKill = received.count
    let decompressor = try EventDecompressor(
      dictionary: try ZstdDictionary(bytes: DefaultDictionary.bytes))
    let lastTime = try XCTUnwrap(try times([received.last!], decompressor).first)

    // Edges of one primary are within milliseconds of each other, and a client reconnects after
    // a backoff; make sure of it here: a cursor past an edge's newest event starts live there
    // (PROTOCOL §6), which would repeat the events in between (OPERATIONS §10, the caveat).
    let survivorDirectory = cluster.edges[survivor].directory
    try await waitUntil("the surviving edge holds what the client received") {
      guard let log = try? openLog(survivorDirectory) else { return false }
      defer { try? log.close() }
      return (log.lastTimeUS ?? 0) >= lastTime
    }
    let resumed = try await connect(
      port: cluster.balancer, "/subscribe?compress=true&cursor=\(lastTime + 1)")
    // The survivor has it (the killed edge cannot answer).
    _ = try await edgeHolding("v1", among: [cluster.edges[survivor]])
    received += try frames(try await receive(300, from: resumed, "after the reconnect"))
    await resumed.close()

    // The primary's own events over the same range, from the same first cursor.
    let reference = try frames(
      try await first(received.count, port: primary.port, target))
    let receivedTimes = try times(received, decompressor)
    let referenceTimes = try times(reference, decompressor)
    XCTAssertTrue(
      zip(receivedTimes, receivedTimes.dropFirst()).allSatisfy { $0 < $1 },
      "no duplicate and no reordering across the failover")
    XCTAssertEqual(receivedTimes.count, referenceTimes.count)
    XCTAssertNil(
      Self.firstDifference(receivedTimes, referenceTimes),
      "the union's time_us equal the primary's (\(beforeKill) before the kill, "
        + "\(received.count - beforeKill) after)")
    XCTAssertNil(
      Self.firstDifference(received, reference),
      "the union is the primary's zstd frames byte for byte")

    // The killed edge, started again on its directory (after SIGKILL), resumes after its last
    // record: its log is the primary's, record for record.
    let restarted = try edge("edge\(victim + 1)", primary: primary)
    try await restarted.serving()
    try await restarted.ready()
    let mark = lastEventSeq(primary)
    try await waitUntil("the restarted edge caught up", timeout: .seconds(30)) {
      lastEventSeq(restarted) >= mark
    }
    let edgeRecords = try records(restarted.directory, through: mark)
    let primaryRecords = try records(primary.directory, through: mark)
    XCTAssertEqual(edgeRecords.count, Int(mark))
    XCTAssertEqual(edgeRecords.map(\.eventSeq), Array(1...mark))
    XCTAssertNil(
      Self.firstDifference(edgeRecords, primaryRecords), "the edge's records = the primary's")
  }

  /// v2: PyPI `atproto`'s `AsyncJetstreamClient`, unmodified (scripts/v2-client.py), through
  /// HAProxy from seq 1 into the live stream; the edge it is on is SIGKILLed, the client
  /// reconnects by itself through HAProxy with its last seq, reaches the other edge, and ends
  /// with every event of the primary's log in order, none twice.
  func testTheAtprotoV2ClientResumesOnTheOtherEdgeByItself() async throws {
    let python = SharedData.projectRoot + "/.build/python-v2/bin/python3"
    guard FileManager.default.isExecutableFile(atPath: python) else {
      throw Failure(
        description:
          "the atproto Python client is not installed (no \(python)): the v2 failover test "
          + "needs it (scripts/setup-deps --tests makes the venv and pip-installs "
          + "atproto==0.0.73; .ci/run and scripts/test run it)")
    }
    let cluster = try await cluster()
    let primary = cluster.primary
    try await waitUntil("the primary has history", timeout: .seconds(30)) {
      lastEventSeq(primary) >= 600
    }
    // Every event from seq 1 through about 5 s of live stream past now (commit, identity and
    // account: the kinds the client asks for).
    let atStart = lastEventSeq(primary)
    let count = Int(atStart) + 1_500
    let outPath = base + "/v2-client.out"
    let errPath = base + "/v2-client.err"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    logs.append(errPath)
    let client = Process()
    client.executableURL = URL(fileURLWithPath: python)
    client.arguments = [
      SharedData.projectRoot + "/scripts/v2-client.py", "--uri",
      "ws://127.0.0.1:\(cluster.balancer)/xrpc", "--cursor", "1", "--count", "\(count)",
      "--timeout", "60",
    ]
    client.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    client.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    try client.run()
    processes.append(client)

    // Mid-stream (replay done, live events flowing), the client's edge dies.
    let victim = try await edgeHolding("v2", among: cluster.edges)
    let edge = cluster.edges[victim]
    try await waitUntil("the client is live on edge \(victim + 1)", timeout: .seconds(30)) {
      (edge.metric(#"contrail_events_sent_total{compression="zstd"}"#) ?? 0)
        >= Double(atStart + 200)
    }
    edge.kill()
    try await waitUntil("the Python client finished", timeout: .seconds(90)) { !client.isRunning }
    let stdout = FileManager.default.contents(atPath: outPath) ?? Data()
    let stderr = String(
      decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self)
    XCTAssertEqual(client.terminationStatus, 0, "the client: \(stderr)")

    var events: [[String: Any]] = []
    var summary: [String: Any] = [:]
    for line in stdout.split(separator: UInt8(ascii: "\n")) {
      let value = try XCTUnwrap(
        try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
      if let found = value["summary"] as? [String: Any] {
        summary = found
      } else {
        events.append(value)
      }
    }
    // It reconnected by itself through HAProxy, resuming from its last seq.
    let requests = try XCTUnwrap(summary["requests"] as? [String], "\(summary)")
    let statuses = try XCTUnwrap(summary["statuses"] as? [Int], "\(summary)")
    XCTAssertGreaterThanOrEqual(requests.count, 2, "a second connection: \(summary)")
    XCTAssertEqual(statuses.first, 101)
    XCTAssertEqual(statuses.last, 101, "\(summary)")
    XCTAssertTrue(requests[0].contains("cursor=1&"), requests[0])
    let resumedAt = try XCTUnwrap(
      requests.last?.firstMatch(of: /cursor=([0-9]+)/).flatMap { Int64($0.1) }, "\(requests)")
    XCTAssertGreaterThan(resumedAt, atStart, "the kill came during the live stream")
    XCTAssertEqual(summary["compressed"] as? Bool, true)

    // Every event of the primary's log from seq 1, each once, in order, the same event by seq.
    let expected = try records(primary.directory, through: Int64.max).filter {
      $0.kind != .sync
    }.prefix(count)
    XCTAssertEqual(expected.count, count, "the primary has them all")
    let seqs = events.compactMap { ($0["seq"] as? Int).map(Int64.init) }
    XCTAssertEqual(seqs.count, events.count, "every line has a seq (no #info)")
    XCTAssertEqual(seqs, expected.map(\.eventSeq), "seqs 1…\(count): no gap, no duplicate")
    for (event, record) in zip(events, expected) {
      XCTAssertEqual(event["kind"] as? String, record.kind.label, "seq \(record.eventSeq)")
      XCTAssertEqual(event["did"] as? String, record.did, "seq \(record.eventSeq)")
      XCTAssertEqual(
        event["time"] as? String, V2Frame.time(record.timeUS), "seq \(record.eventSeq)")
      if record.kind == .commit {
        XCTAssertEqual(
          event["collection"] as? String, record.collection, "seq \(record.eventSeq)")
      }
    }
  }

  /// A primary that stops answering without closing the connection (SIGSTOP: the kernel keeps
  /// the TCP connection, nothing arrives, not even a ping) is given up after `--stale-after`
  /// and dialled again; once it runs again the edge catches up, its log the primary's exactly.
  func testAnEdgeGivesUpASilentPrimaryAndCatchesUpWhenItAnswersAgain() async throws {
    let primary = try await primary()
    let edge = try edge("edge", primary: primary, ["--stale-after", "2s"])
    try await edge.serving()
    try await edge.ready()
    try await waitUntil("the edge follows", timeout: .seconds(30)) {
      lastEventSeq(edge) >= 300
    }
    func gaveUp() -> Bool {
      edge.log.split(separator: "\n").contains {
        $0.contains("primary stream ended")
          && $0.contains("no message or ping from the primary for 2000 ms")
      }
    }
    XCTAssertFalse(gaveUp(), "a live primary is never given up")
    kill(primary.process.processIdentifier, SIGSTOP)
    let stopped = ContinuousClock.now
    let edgeHadThen = lastEventSeq(edge)
    do {
      try await waitUntil("the edge gives up the silent primary", timeout: .seconds(20)) {
        gaveUp()
      }
    } catch {
      kill(primary.process.processIdentifier, SIGCONT)
      throw error
    }
    // The 2 s run from the edge's last read, a little before the SIGSTOP (the primary sends
    // in bursts), so "about 2 s" after it.
    XCTAssertGreaterThanOrEqual(ContinuousClock.now - stopped, .milliseconds(1_500))
    kill(primary.process.processIdentifier, SIGCONT)
    // Past what the edge had when the primary went silent (the edge may follow closely again
    // by now: it dials again after its backoff).
    try await waitUntil("the primary moved on", timeout: .seconds(30)) {
      lastEventSeq(primary) >= edgeHadThen + 300
    }
    let mark = lastEventSeq(primary)
    try await waitUntil("the edge caught up", timeout: .seconds(30)) {
      lastEventSeq(edge) >= mark
    }
    let edgeRecords = try records(edge.directory, through: mark)
    XCTAssertEqual(edgeRecords.map(\.eventSeq), Array(1...mark), "no gap, no duplicate")
    XCTAssertNil(
      Self.firstDifference(edgeRecords, try records(primary.directory, through: mark)),
      "the edge's records = the primary's")
  }

  /// A primary behind a TLS proxy with a private CA: `--upstream wss://…` with `--relay-ca`
  /// trusts it both for the primary's dictionary (fetched before anything else) and for its
  /// stream, and the edge copies the primary's log.
  func testAnEdgeFollowsAPrimaryOverTLSTrustingRelayCA() async throws {
    let primary = try await primary()
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else {
      throw Failure(
        description: "needs /usr/bin/openssl to make a test certificate (apt-get install openssl)")
    }
    let cert = base + "/cert.pem"
    let key = base + "/key.pem"
    let openssl = Process()
    openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    openssl.arguments = [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days",
      "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", key,
      "-out", cert,
    ]
    openssl.standardError = FileHandle.nullDevice
    try openssl.run()
    openssl.waitUntilExit()
    XCTAssertEqual(openssl.terminationStatus, 0, "openssl req")
    let pem = base + "/haproxy.pem"  // HAProxy takes the certificate and its key in one file
    try Data(
      (FileManager.default.contents(atPath: cert) ?? Data())
        + (FileManager.default.contents(atPath: key) ?? Data())
    ).write(to: URL(fileURLWithPath: pem))
    let port = try RawSocket.freePort()
    let configuration = base + "/tls.cfg"
    try """
    defaults
      mode http
      timeout connect 5s
      timeout client 60s
      timeout server 60s
      timeout tunnel 1h
    frontend tls
      bind 127.0.0.1:\(port) ssl crt \(pem)
      default_backend primary
    backend primary
      server primary 127.0.0.1:\(primary.port)

    """.write(toFile: configuration, atomically: true, encoding: .utf8)
    try await haproxy(configuration, environment: [:], port: port)

    let edge = try server(
      "edge", ["--upstream", "wss://localhost:\(port)", "--relay-ca", cert])
    try await edge.serving()
    try await edge.ready()
    try await waitUntil("the edge follows over TLS", timeout: .seconds(30)) {
      lastEventSeq(edge) >= 300
    }
    let mark = lastEventSeq(edge)
    XCTAssertNil(
      Self.firstDifference(
        try records(edge.directory, through: mark), try records(primary.directory, through: mark)),
      "the edge's records = the primary's")
  }
}
