import Firehose
import RelayFixture
import Synchronization
import SyntheticFirehose
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// The fixture relay over real sockets on 127.0.0.1 with a real websocket client.
final class FixtureRelayTests: XCTestCase {
  private func frames(_ count: Int, firstSeq: Int64 = 100) -> [[UInt8]] {
    var generator = FirehoseGenerator(seed: 21, firstSeq: firstSeq)
    return (0..<count).map { _ in generator.next() }
  }

  /// Runs `body` against a relay on an ephemeral port, then stops the relay.
  private func withRelay(
    _ source: any RelaySource, _ configure: (inout FixtureRelay.Configuration) -> Void = { _ in },
    _ body: (FixtureRelay, Int) async throws -> Void
  ) async throws {
    var configuration = FixtureRelay.Configuration()
    configure(&configuration)
    let relay = FixtureRelay(source: source, configuration: configuration)
    let (ports, bound) = AsyncStream.makeStream(of: Int.self)
    let server = Task { try await relay.run(onBound: { bound.yield($0) }) }
    var iterator = ports.makeAsyncIterator()
    let firstPort = await iterator.next()
    let port = try XCTUnwrap(firstPort)
    do {
      try await body(relay, port)
    } catch {
      server.cancel()
      throw error
    }
    server.cancel()
    _ = await server.result
  }

  private func receive(_ client: TestWebSocketClient, _ count: Int) async throws -> [[UInt8]] {
    var received: [[UInt8]] = []
    while received.count < count {
      let message = try await client.next()
      guard case .binary(let bytes) = message else {
        XCTFail("expected a binary frame, got \(String(describing: message))")
        break
      }
      received.append(bytes)
    }
    return received
  }

  private func seq(_ frame: [UInt8]) -> Int64? { FrameSeq.locate(frame)?.seq }

  func testServesEveryFrameInOrderToSeveralClients() async throws {
    let all = frames(300)
    try await withRelay(FileRelaySource(frames: all, loop: false)) { relay, port in
      let a = try await TestWebSocketClient.connect(port: port, target: FixtureRelay.path)
      let b = try await TestWebSocketClient.connect(port: port, target: FixtureRelay.path)
      let fromA = try await receive(a, 300)
      let fromB = try await receive(b, 300)
      XCTAssertEqual(fromA, all)
      XCTAssertEqual(fromB, all)
      // At the end the relay stays quiet but open.
      do {
        let extra = try await a.next(timeout: .milliseconds(300))
        XCTFail("unexpected message after the last frame: \(String(describing: extra))")
      } catch is TestWebSocketClient.Timeout {}
      XCTAssertEqual(relay.openConnections, 2)
      await a.close()
      await b.close()
    }
  }

  func testCursorResumesAfterTheGivenSeq() async throws {
    let all = frames(200, firstSeq: 1_000)
    try await withRelay(FileRelaySource(frames: all, loop: false)) { _, port in
      let first = try await TestWebSocketClient.connect(port: port, target: FixtureRelay.path)
      let head = try await receive(first, 50)
      await first.close()
      let cursor = try XCTUnwrap(seq(head[49]))
      let resumed = try await TestWebSocketClient.connect(
        port: port, target: FixtureRelay.path + "?cursor=\(cursor)")
      let rest = try await receive(resumed, 150)
      XCTAssertEqual(head + rest, all, "nothing lost, nothing repeated")
      await resumed.close()
    }
  }

  func testOutdatedCursorGetsAnInfoFrameFirst() async throws {
    let all = frames(20, firstSeq: 5_000)
    try await withRelay(FileRelaySource(frames: all, loop: false)) { _, port in
      let client = try await TestWebSocketClient.connect(
        port: port, target: FixtureRelay.path + "?cursor=10")
      let received = try await receive(client, 21)
      let message = received[0].withUnsafeBytes { FrameDecoder.decode($0) }
      guard case .info(let name, _) = message else {
        return XCTFail("expected #info, got \(message)")
      }
      XCTAssertEqual(name, "OutdatedCursor")
      XCTAssertEqual(Array(received.dropFirst()), all)
      await client.close()
    }
  }

  func testLoopContinuesUnderNewIncreasingSeqs() async throws {
    let all = frames(30, firstSeq: 1)
    try await withRelay(FileRelaySource(frames: all, loop: true)) { _, port in
      let client = try await TestWebSocketClient.connect(port: port, target: FixtureRelay.path)
      let received = try await receive(client, 75)
      let seqs = received.compactMap(seq)
      XCTAssertGreaterThan(seqs.count, 70)
      for (a, b) in zip(seqs, seqs.dropFirst()) { XCTAssertLessThan(a, b) }
      XCTAssertEqual(seqs.last, 75)
      await client.close()
      // A cursor in the second pass resumes there.
      let resumed = try await TestWebSocketClient.connect(
        port: port, target: FixtureRelay.path + "?cursor=44")
      let next = try await receive(resumed, 1)
      XCTAssertEqual(next.compactMap(seq), [45])
      await resumed.close()
    }
  }

  func testErrorFrameThenClose() async throws {
    try await withRelay(FileRelaySource(frames: frames(10), loop: false)) { relay, port in
      let client = try await TestWebSocketClient.connect(port: port, target: FixtureRelay.path)
      _ = try await receive(client, 10)
      relay.sendError("ConsumerTooSlow", message: "too slow")
      guard case .binary(let bytes) = try await client.next() else {
        return XCTFail("expected the error frame")
      }
      guard case .error(let code, let message) = bytes.withUnsafeBytes({ FrameDecoder.decode($0) })
      else {
        return XCTFail("expected an op = -1 frame")
      }
      XCTAssertEqual(code, "ConsumerTooSlow")
      XCTAssertEqual(message, "too slow")
      let close = try await client.next()
      XCTAssertEqual(close, .close(code: 1000, reason: ""))
    }
  }

  func testRatePacesEachConnection() async throws {
    let source = FileRelaySource(frames: frames(60), loop: false)
    try await withRelay(
      source, { $0.rate = 100 },
      { _, port in
        let client = try await TestWebSocketClient.connect(port: port, target: FixtureRelay.path)
        let clock = ContinuousClock()
        let started = clock.now
        _ = try await receive(client, 60)
        XCTAssertGreaterThanOrEqual(clock.now - started, .milliseconds(450), "60 frames at 100/s")
        await client.close()
      })
  }

  func testSyntheticSourceIsEndlessAndResumable() async throws {
    try await withRelay(SyntheticRelaySource(seed: 4, firstSeq: 1)) { _, port in
      let client = try await TestWebSocketClient.connect(
        port: port, target: FixtureRelay.path + "?cursor=500")
      let received = try await receive(client, 100)
      XCTAssertEqual(received.first.flatMap(seq), 501)
      var generator = FirehoseGenerator(seed: 4, firstSeq: 1)
      let expected = (0..<600).map { _ in generator.next() }
      XCTAssertEqual(received, Array(expected[500..<600]))
      await client.close()
    }
  }

  func testOtherPathsGet404() async throws {
    try await withRelay(FileRelaySource(frames: [], loop: false)) { _, port in
      do {
        _ = try await TestWebSocketClient.connect(port: port, target: "/xrpc/other")
        XCTFail("upgrade should be refused")
      } catch is TestWebSocketClient.NotUpgraded {}
    }
  }

  /// Consumers that close or vanish mid-stream are a normal end: the relay logs the close and
  /// nothing else (no "connection ended: …" error line per disconnect).
  func testConsumerDisconnectsAreQuiet() async throws {
    let lines = Mutex<[String]>([])
    let capture: (inout FixtureRelay.Configuration) -> Void = {
      $0.log = { line in lines.withLock { $0.append(line) } }
    }
    try await withRelay(SyntheticRelaySource(seed: 4), capture) { _, port in
      // A close frame and the socket closed right after it, as `serve` leaves a relay.
      let polite = try RawSocket.silentWebSocket(port: port, target: FixtureRelay.path)
      _ = RawSocket.readToEnd(polite, timeout: .seconds(10)) { $0.count > 10_000 }
      RawSocket.send(polite, [0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2])  // 1000, masked
      close(polite)
      // A reset in the middle of the stream.
      let abrupt = try RawSocket.silentWebSocket(port: port, target: FixtureRelay.path)
      _ = RawSocket.readToEnd(abrupt, timeout: .seconds(10)) { $0.count > 10_000 }
      var reset = linger(l_onoff: 1, l_linger: 0)
      setsockopt(abrupt, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
      close(abrupt)
      try await waitUntil("both connections closed", timeout: .seconds(20)) {
        lines.withLock { $0.filter { $0.hasSuffix(" closed") || $0.contains("ended") }.count } == 2
      }
    }
    let all = lines.withLock { $0 }
    XCTAssertEqual(all.filter { $0.contains("opened") }.count, 2, "\(all)")
    XCTAssertFalse(all.contains { $0.contains("connection ended") }, "\(all)")
  }
}
