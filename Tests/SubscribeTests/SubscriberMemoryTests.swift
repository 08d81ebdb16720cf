import Broadcast
import Compression
import EventLog
import Events
import Foundation
import NIOCore
import Prometheus
import Subscribe
import Synchronization
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// A relay-like source: ~1.5 KB JSON events, `time_us` 1 ms apart, appended to the log and
/// published to the ring in batches, as ingest does. Unless `realFrames`, all events share one
/// zstd frame (enough for live text subscribers; disk replays need the real ones).
private final class Publisher: @unchecked Sendable {
  static let base: Int64 = 1_700_000_000_000_000
  let log: EventLog
  let ring: LiveRing
  let frame: ByteBuffer
  let next = Atomic<Int64>(0)
  /// Set only with `realFrames`; used from one task at a time.
  private let compressor: EventCompressor?
  private static let padding = String(repeating: "x", count: 1_500)

  init(log: EventLog, ring: LiveRing, dictionary: ZstdDictionary, realFrames: Bool = false) throws {
    self.log = log
    self.ring = ring
    let compressor = try EventCompressor(dictionary: dictionary)
    frame = ByteBuffer(bytes: try compressor.compress(Array(#"{"kind":"commit"}"#.utf8)))
    self.compressor = realFrames ? compressor : nil
  }

  func publish(_ count: Int) throws {
    var broadcast: [BroadcastEvent] = []
    var records: [LogRecord] = []
    for _ in 0..<count {
      let index = next.add(1, ordering: .relaxed).newValue
      let time = Self.base + index * 1_000
      let did = "did:plc:aaaaaaaaaaaaaaaaaaaaaa\(index % 10)a"
      let json = Array(
        #"{"did":"\#(did)","time_us":\#(time),"kind":"commit","pad":"\#(Self.padding)"}"#.utf8)
      let compressed = try compressor.map { ByteBuffer(bytes: try $0.compress(json)) } ?? frame
      broadcast.append(
        BroadcastEvent(
          timeUS: time, kind: .commit, did: did, collection: "app.bsky.feed.like",
          json: ByteBuffer(bytes: json), compressed: compressed, jsonLength: json.count))
      records.append(
        LogRecord(
          timeUS: time, seq: index, eventSeq: index, kind: .commit, did: did,
          collection: "app.bsky.feed.like",
          payload: Array(compressed.readableBytesView)))
    }
    try log.append(records)
    ring.publish(broadcast)
  }
}

/// ARCHITECTURE §4: a subscriber that never reads costs a small, bounded amount of memory beyond
/// the kernel's socket buffers, and gives it back when it leaves.
final class SubscriberMemoryTests: XCTestCase {
  private var directories: [String] = []
  private let registry = PrometheusCollectorRegistry()

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  func testNeverReadingSubscribersCostLittleMemoryAndGiveItBack() async throws {
    let dictionary = try ZstdDictionary(path: SharedData.defaultDictionaryPath)
    let log = try TemporaryLog.open("memory", directories: &directories)
    let ring = LiveRing(capacity: 10_000, startAfter: 0)
    let publisher = try Publisher(log: log, ring: ring, dictionary: dictionary)
    try publisher.publish(10_000)  // the ring is full from the start: its size stays put
    let server = try await TestServer.start(
      ring: ring, log: log, dictionary: dictionary, metrics: registry
    ).server
    // 2,000 events/s (3 MB/s) for the whole test.
    let publishing = Task {
      while !Task.isCancelled {
        try publisher.publish(20)
        try await Task.sleep(for: .milliseconds(10))
      }
    }
    defer { publishing.cancel() }
    // A subscriber that reads, all along (on a raw socket: the test's own allocations stay out
    // of the measurement).
    let readerSocket = try RawSocket.silentWebSocket(port: server.port, target: "/subscribe")
    defer { close(readerSocket) }
    let reader = SocketDrain(readerSocket)
    try await waitUntil("the reader receives", timeout: .seconds(10)) { reader.bytes > 1 << 20 }
    // Wait for the process to settle (thread arenas, the ring's churn): RSS steady within 1 MiB
    // over a second, twice in a row, or 10 s.
    var previous = residentBytes()
    var steady = 0
    for _ in 0..<10 where steady < 2 {
      try await Task.sleep(for: .seconds(1))
      let now = residentBytes()
      steady = abs(now - previous) < 1 << 20 ? steady + 1 : 0
      previous = now
    }
    let baseline = residentBytes()

    let count = 100
    var silent: [Int32] = []
    defer { for fd in silent { close(fd) } }
    for _ in 0..<count {
      silent.append(
        try RawSocket.silentWebSocket(
          port: server.port, target: "/subscribe", receiveBuffer: 4_096))
    }
    // Stalled: every silent subscriber has filled its socket and holds bytes server-side.
    try await waitUntil("every silent subscriber stalls", timeout: .seconds(30)) {
      let buffered = await server.bufferedBytesPerSubscriber()
      return buffered.count == count + 1 && buffered.filter { $0 > 0 }.count >= count
    }
    let receivedBefore = reader.bytes
    try await Task.sleep(for: .seconds(1))  // let allocator and queues settle, then measure
    let loaded = residentBytes()
    let perSubscriber = (loaded - baseline) / count
    let buffered = await server.bufferedBytesPerSubscriber()
    print(
      "RSS baseline \(baseline >> 10) KiB, with \(count) silent subscribers \(loaded >> 10) KiB: "
        + "\(perSubscriber >> 10) KiB each; buffered max \((buffered.max() ?? 0) >> 10) KiB")
    XCTAssertLessThanOrEqual(perSubscriber, 256 << 10, "≤ 256 KiB per never-reading subscriber")
    XCTAssertGreaterThan(reader.bytes, receivedBefore, "the reader kept receiving")

    // They leave: their memory goes back.
    for fd in silent { close(fd) }
    silent = []
    try await waitUntil("the silent subscribers are gone", timeout: .seconds(20)) {
      server.subscriberCount == 1
    }
    var after = 0
    // The allocator returns freed memory on its own schedule (the server trims it after
    // subscribers leave); wait for it, bounded.
    let tolerance = max(8 << 20, (loaded - baseline) / 4)
    do {
      try await waitUntil("memory is given back", timeout: .seconds(10)) {
        after = residentBytes()
        return after <= baseline + tolerance
      }
    } catch {
      XCTFail(
        "RSS \(after >> 10) KiB after they left; baseline \(baseline >> 10) KiB, "
          + "loaded \(loaded >> 10) KiB")
    }
    print("RSS after they left: \(after >> 10) KiB")
    publishing.cancel()
    XCTAssertFalse(reader.ended, "the reader was never closed")
    try await server.stop()
  }
}

/// A reader that keeps stalling (its socket fills, it pauses, it drains) still gets exactly the
/// log's sequence, whether the rest of a batch waits (short pauses) or is dropped and read again
/// (pauses over two periodic checks).
final class StallingReaderTests: XCTestCase {
  private var directories: [String] = []

  override func tearDown() {
    for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// Server frames (unmasked) from `bytes`, from `offset` on; leaves `offset` at the first
  /// incomplete frame.
  private func frames(_ bytes: [UInt8], _ offset: inout Int) -> [[UInt8]] {
    var out: [[UInt8]] = []
    while bytes.count - offset >= 2 {
      var length = Int(bytes[offset + 1] & 0x7F)
      var header = 2
      if length == 126 {
        guard bytes.count - offset >= 4 else { break }
        length = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        header = 4
      } else if length == 127 {
        guard bytes.count - offset >= 10 else { break }
        length = bytes[(offset + 2)..<(offset + 10)].reduce(0) { $0 << 8 | Int($1) }
        header = 10
      }
      guard bytes.count - offset >= header + length else { break }
      out.append(Array(bytes[(offset + header)..<(offset + header + length)]))
      offset += header + length
    }
    return out
  }

  func testAStallingReaderGetsExactlyTheLogSequence() async throws {
    // 1.5 KB events: a disk batch (512) is ~800 KB, so a stall leaves a rest bigger than a
    // piece: held through a short pause, dropped and read again after a long one.
    let dictionary = try ZstdDictionary(path: SharedData.defaultDictionaryPath)
    let log = try TemporaryLog.open("stalling", directories: &directories)
    let ring = LiveRing(capacity: 500, startAfter: 0)  // the replay comes from disk
    let publisher = try Publisher(log: log, ring: ring, dictionary: dictionary, realFrames: true)
    let total = 4_000
    for _ in 0..<(total / 500) { try publisher.publish(500) }
    let server = try await TestServer.start(ring: ring, log: log, dictionary: dictionary)
    let fd = try RawSocket.silentWebSocket(
      port: server.port, target: "/subscribe?cursor=0", receiveBuffer: 4_096)
    defer { close(fd) }
    var bytes: [UInt8] = []
    var offset = 0
    var received = 0
    var chunk = [UInt8](repeating: 0, count: 16_384)
    let deadline = ContinuousClock.now + .seconds(60)
    var pauses = 0
    while received < total && ContinuousClock.now < deadline {
      // Let the socket fill and the server stall every ~200 KB.
      if bytes.count > 200_000 * (pauses + 1) {
        pauses += 1
        try await Task.sleep(for: .milliseconds(pauses % 4 == 0 ? 1_200 : 30))
      }
      let n = recv(fd, &chunk, chunk.count, 0)
      guard n > 0 else { break }
      bytes += chunk[..<n]
      for frame in frames(bytes, &offset) {
        let time = Publisher.base + Int64(received + 1) * 1_000
        let text = String(decoding: frame, as: UTF8.self)
        guard received < total, text.contains(#""time_us":\#(time),"#) else {
          return XCTFail(
            "message \(received) is not the log's event \(received): \(text.prefix(80))")
        }
        received += 1
      }
    }
    XCTAssertEqual(received, total, "every event, in order")
    XCTAssertGreaterThan(pauses, 5, "the reader stalled repeatedly")
    try await server.stop()
  }
}
