import App
import Broadcast
import Compression
import EventLog
import Events
import Foundation
import Ingest
import Subscribe
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// Edges (`serve --upstream`, OPERATIONS §10) over real sockets on 127.0.0.1: an edge stores
/// exactly the records its primary stored, serves the same bytes with the same cursors on both
/// wires, resumes after a restart with no gap and no duplicate, and compresses nothing.
final class ReplicationTests: XCTestCase {
  private var directories: [String] = []
  private static let base: Int64 = 1_700_000_000_000_000

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// A primary serving a log that holds `stream.events[0..<stored]`.
  private func primary(_ stream: SyntheticStream, stored: Int) async throws -> TestServer {
    let log = try TemporaryLog.open("primary", directories: &directories)
    return try await TestServer.start(stream, stored: stored, log: log)
  }

  private func edge(of primary: TestServer, directory: String) async throws -> (
    ContrailServer, Task<Void, Never>
  ) {
    try await edge(ofPort: primary.port, directory: directory)
  }

  private func edge(ofPort port: Int, directory: String) async throws -> (
    ContrailServer, Task<Void, Never>
  ) {
    var settings = try ServeSettings.forTests(relay: "ws://127.0.0.1:1", dataDirectory: directory)
    settings.upstream = try RelayEndpoint("ws://127.0.0.1:\(port)")
    settings.dictionaryPath = nil  // the edge takes the primary's
    let edge = try await ContrailServer.start(settings, registry: nil, logger: quietLogger)
    return (edge, Task { await edge.run() })
  }

  /// An edge's log ends up holding the primary's records byte for byte (time_us, relay seq, v2
  /// seq, payload), live ones included; subscribers of both wires get the primary's bytes from
  /// the same cursors; and the edge compressed nothing.
  func testAnEdgeStoresAndServesExactlyThePrimarysRecords() async throws {
    let stream = try SyntheticStream(frames: 1_500, seed: 61, start: Self.base, spacing: 1_000)
    let total = stream.events.count
    let primary = try await primary(stream, stored: total / 2)
    let directory = TemporaryLog.directory("edge")
    directories.append(directory)
    let (edge, running) = try await edge(of: primary, directory: directory)
    try await waitUntil("the edge has the first half") {
      edge.log.lastEventSeq == Int64(total / 2)
    }
    try stream.ingest((total / 2)..<total, log: primary.log, ring: primary.ring)
    // The primary compressed those; from here on only the edge works.
    let compressedBefore = EventCompressor.framesCompressed
    try await waitUntil("the edge has everything") { edge.log.lastEventSeq == Int64(total) }
    XCTAssertEqual(edge.log.allRecords(), primary.log.allRecords())
    XCTAssertEqual(try edge.log.locate(eventSeqAtLeast: 101)?.eventSeq, 101)
    XCTAssertEqual(try primary.log.locate(eventSeqAtLeast: 101)?.eventSeq, 101)
    XCTAssertEqual(
      try edge.log.locate(timeUSAtLeast: stream.events[100].timeUS)?.eventSeq, 101)
    XCTAssertEqual(
      EventCompressor.framesCompressed, compressedBefore, "the edge compressed nothing")

    // Both wires, from the same cursor on each server: the same bytes.
    let cursorTime = stream.events[100].timeUS
    for target in [
      "/subscribe?compress=true&cursor=\(cursorTime)", "/subscribe?cursor=\(cursorTime)",
      "/xrpc/network.bsky.jetstream.subscribeEvents?cursor=101",
    ] {
      var received: [[TestWebSocketClient.Message]] = []
      for port in [primary.port, edge.port] {
        let client = try await TestWebSocketClient.connect(port: port, target: target)
        var messages: [TestWebSocketClient.Message] = []
        while messages.count < total - 100 {
          guard let message = try? await client.next(timeout: .seconds(5)) else {
            XCTFail(
              "\(target) on \(port == edge.port ? "the edge" : "the primary"): \(messages.count) messages"
            )
            break
          }
          if message != .ping { messages.append(message) }
        }
        await client.close()
        received.append(messages)
      }
      XCTAssertEqual(received[0].count, total - 100, target)
      XCTAssertEqual(received[0], received[1], target)
    }
    await edge.shutdown()
    await running.value
    try await primary.stop()
  }

  /// An edge stopped and started again resumes after the last record it stored: with the
  /// primary moving on meanwhile, its log ends equal to the primary's — no gap, no duplicate.
  func testARestartedEdgeResumesWithNoGapAndNoDuplicate() async throws {
    let stream = try SyntheticStream(frames: 1_200, seed: 62, start: Self.base, spacing: 1_000)
    let total = stream.events.count
    let primary = try await primary(stream, stored: total / 3)
    let directory = TemporaryLog.directory("edge-restart")
    directories.append(directory)
    var (edge, running) = try await edge(of: primary, directory: directory)
    try await waitUntil("the edge caught up") { edge.log.lastEventSeq == Int64(total / 3) }
    await edge.shutdown()
    await running.value
    try stream.ingest((total / 3)..<(2 * total / 3), log: primary.log, ring: primary.ring)
    (edge, running) = try await self.edge(of: primary, directory: directory)
    try stream.ingest((2 * total / 3)..<total, log: primary.log, ring: primary.ring)
    try await waitUntil("the restarted edge caught up") {
      edge.log.lastEventSeq == Int64(total)
    }
    XCTAssertEqual(edge.log.allRecords(), primary.log.allRecords())
    await edge.shutdown()
    await running.value
    try await primary.stop()
  }

  /// An edge restarted while its primary is down starts within seconds from the dictionary it
  /// saved (instead of failing after 30 s), serves the log it holds, and follows again once the
  /// primary is back on the same address.
  func testAnEdgeRestartedWhileThePrimaryIsDownServesItsLogAndFollowsAgain() async throws {
    let stream = try SyntheticStream(frames: 600, seed: 64, start: Self.base, spacing: 1_000)
    let total = stream.events.count
    var primary = try await primary(stream, stored: total / 2)
    let port = primary.port
    let directory = TemporaryLog.directory("edge-primary-down")
    directories.append(directory)
    var (edge, running) = try await edge(of: primary, directory: directory)
    try await waitUntil("the edge caught up") { edge.log.lastEventSeq == Int64(total / 2) }
    XCTAssertNotNil(
      FileManager.default.contents(atPath: directory + "/upstream.zdict"),
      "the edge keeps the primary's dictionary in its data directory")
    await edge.shutdown()
    await running.value
    try await primary.stop()

    let started = ContinuousClock.now
    (edge, running) = try await self.edge(ofPort: port, directory: directory)
    XCTAssertLessThan(
      ContinuousClock.now - started, .seconds(20), "started from the saved dictionary")
    let client = try await TestWebSocketClient.connect(
      port: edge.port, target: "/subscribe?compress=true&cursor=\(stream.events[0].timeUS)")
    var received = 0
    while received < total / 2, let message = try? await client.next(timeout: .seconds(5)) {
      if message != .ping { received += 1 }
    }
    await client.close()
    XCTAssertEqual(received, total / 2, "the edge serves what it holds with the primary down")

    primary = try await TestServer.start(
      ring: primary.ring, log: primary.log, dictionary: stream.dictionary
    ) { $0.port = port }
    try stream.ingest((total / 2)..<total, log: primary.log, ring: primary.ring)
    try await waitUntil("the edge follows the primary again") {
      edge.log.lastEventSeq == Int64(total)
    }
    XCTAssertEqual(edge.log.allRecords(), primary.log.allRecords())
    await edge.shutdown()
    await running.value
    try await primary.stop()
  }

  /// `--replication-allow` keeps other addresses out with a 403; a bad `after` is a 400.
  func testReplicationCanBeRestrictedAndValidates() async throws {
    let stream = try SyntheticStream(frames: 20, seed: 63, start: Self.base, spacing: 1_000)
    let log = try TemporaryLog.open("primary", directories: &directories)
    let ring = LiveRing()
    try stream.ingest(0..<stream.events.count, log: log, ring: ring)
    let primary = try await TestServer.start(ring: ring, log: log, dictionary: stream.dictionary) {
      $0.replicationAllowed = TrustedProxies("10.0.0.0/8")
    }
    let (fd, head) = try RawSocket.handshake(port: primary.port, target: "/replicate?after=0")
    close(fd)
    XCTAssertTrue(head.hasPrefix("HTTP/1.1 403"), head)
    let open = try await TestServer.start(ring: ring, log: log, dictionary: stream.dictionary)
    let (fd2, head2) = try RawSocket.handshake(port: open.port, target: "/replicate?after=-1")
    close(fd2)
    XCTAssertTrue(head2.hasPrefix("HTTP/1.1 400"), head2)
    let (fd3, head3) = try RawSocket.handshake(port: open.port, target: "/replicate?after=0")
    close(fd3)
    XCTAssertTrue(head3.hasPrefix("HTTP/1.1 101"), head3)
    try await primary.stop()
    try await open.stop()
  }

  /// `contrail serve --upstream` as a process: it follows the primary, and SIGTERM stops it
  /// promptly (the follower, not only a relay connection, is stopped).
  func testAnEdgeProcessFollowsAndStopsOnSIGTERM() async throws {
    let stream = try SyntheticStream(frames: 200, seed: 64, start: Self.base, spacing: 1_000)
    let primary = try await primary(stream, stored: stream.events.count)
    let directory = TemporaryLog.directory("edge-process")
    directories.append(directory)
    let process = Process()
    process.executableURL = try ContrailCommand.binary()
    process.arguments = [
      "serve", "--upstream", "ws://127.0.0.1:\(primary.port)", "--data-dir", directory, "--host",
      "127.0.0.1", "--port", "0", "--fsync-interval", "20ms", "--log-level", "warning",
    ]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    let total = Int64(stream.events.count)
    try await waitUntil("the edge process stored everything") {
      var configuration = EventLog.Configuration(directory: directory)
      configuration.sync = .never
      return (try? EventLog(configuration, readOnly: true))?.lastEventSeq == total
    }
    let stopping = ContinuousClock.now
    kill(process.processIdentifier, SIGTERM)
    try await waitUntil("the edge exits on SIGTERM", timeout: .seconds(10)) { !process.isRunning }
    XCTAssertLessThan(ContinuousClock.now - stopping, .seconds(10))
    XCTAssertEqual(process.terminationStatus, 0)
    try await primary.stop()
  }

  /// `storeReplicated` keeps what continues the log and refuses, storing nothing past it, a
  /// record from another log (newer time but not newer seq) or one whose payload the dictionary
  /// cannot read; repeated records are skipped.
  func testStoreReplicatedRefusesForeignAndUnreadableRecords() throws {
    let stream = try SyntheticStream(frames: 60, seed: 65, start: Self.base, spacing: 1_000)
    let log = try TemporaryLog.open("edge-store", directories: &directories)
    let store = try EventStore(log: log, ring: LiveRing(), dictionary: stream.dictionary)
    let records = stream.records
    XCTAssertEqual(store.storeReplicated(Array(records.prefix(20))).stored, 20)
    // A reconnect repeating some: only the new ones are stored.
    XCTAssertEqual(store.storeReplicated(Array(records[10..<30])).stored, 10)
    let next = records[30]
    let foreign = LogRecord(
      timeUS: next.timeUS, seq: next.seq, eventSeq: 5, kind: next.kind, did: next.did,
      collection: next.collection, payload: next.payload)
    let refused = store.storeReplicated([foreign] + Array(records[31..<40]))
    XCTAssertEqual(refused.stored, 0)
    XCTAssertTrue(refused.error is EventStore.Diverged, "\(String(describing: refused.error))")
    let unreadable = LogRecord(
      timeUS: next.timeUS, seq: next.seq, eventSeq: next.eventSeq, kind: next.kind, did: next.did,
      collection: next.collection, payload: [0x28, 0xB5, 0x2F, 0xFD, 1, 2, 3])
    let garbage = store.storeReplicated([unreadable] + Array(records[31..<40]))
    XCTAssertEqual(garbage.stored, 0)
    XCTAssertNotNil(garbage.error)
    XCTAssertEqual(log.lastEventSeq, 30)
    XCTAssertEqual(store.storeReplicated(Array(records[30...])).stored, records.count - 30)
  }

  /// A client moving to an edge a little behind the instance it came from asks for a cursor past
  /// the edge's newest event: the edge starts there once the events arrive (v1 time and v2 seq),
  /// rather than live at its own newest event, which would send again what the client has.
  func testACursorPastAnEdgesNewestEventStartsThereNotLive() async throws {
    let stream = try SyntheticStream(frames: 600, seed: 66, start: Self.base, spacing: 1_000)
    let total = stream.events.count
    let primary = try await primary(stream, stored: 300)
    let directory = TemporaryLog.directory("edge-ahead")
    directories.append(directory)
    let (edge, running) = try await edge(of: primary, directory: directory)
    try await waitUntil("the edge caught up") { edge.log.lastEventSeq == 300 }
    let k = 400  // not stored anywhere yet
    let v1 = try await TestWebSocketClient.connect(
      port: edge.port, target: "/subscribe?cursor=\(stream.events[k].timeUS)")
    let v2Connect = Task {
      try await TestWebSocketClient.connect(
        port: edge.port,
        target: "/xrpc/network.bsky.jetstream.subscribeEvents?cursor=\(k + 1)")
    }
    try await waitUntil("the v2 request waits for seq k + 1") {
      edge.server.pendingConnectionCount == 1
    }
    try stream.ingest(300..<total, log: primary.log, ring: primary.ring)
    let v2 = try await v2Connect.value
    guard case .text(let first1)? = try await v1.next() else { return XCTFail("no v1 event") }
    XCTAssertEqual(first1, String(decoding: stream.events[k].json, as: UTF8.self))
    guard case .text(let first2)? = try await v2.next() else { return XCTFail("no v2 event") }
    XCTAssertTrue(first2.contains(#""seq":\#(k + 1),"#), first2)
    await v1.close()
    await v2.close()
    await edge.shutdown()
    await running.value
    try await primary.stop()
  }

  /// An edge whose data directory holds another log than its primary's stores nothing of the
  /// primary's and says so on `/readyz` (503), so a balancer stops sending clients to it.
  func testAnEdgeOfAnotherLogIsNotReady() async throws {
    let mine = try SyntheticStream(frames: 120, seed: 67, start: Self.base, spacing: 1_000)
    let theirs = try SyntheticStream(
      frames: 50, seed: 68, start: Self.base + 1_000_000_000, spacing: 1_000)
    let primary = try await primary(theirs, stored: theirs.events.count)
    let directory = TemporaryLog.directory("edge-foreign")
    directories.append(directory)
    do {
      var configuration = EventLog.Configuration(directory: directory)
      configuration.dictionaryID = mine.dictionary.id
      let log = try EventLog(configuration)
      try mine.ingest(0..<mine.events.count, log: log, ring: LiveRing())
      try log.close()
    }
    let (edge, running) = try await edge(of: primary, directory: directory)
    try await waitUntil("the edge reports it") {
      let response = try? RawHTTP.get(port: edge.port, target: "/readyz")
      return response?.status == 503 && response?.body.contains("does not continue") == true
    }
    XCTAssertEqual(edge.log.lastEventSeq, Int64(mine.events.count), "nothing of theirs stored")
    await edge.shutdown()
    await running.value
    try await primary.stop()
  }
}
