import App
import ArgumentParser
import Broadcast
import Compression
import DefaultDictionary
import EventLog
import Events
import Firehose
import Foundation
import Ingest
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Prometheus
import RelayFixture
import Synchronization
import SyntheticFirehose

/// `contrail bench latency`: the whole of `contrail serve` in this process (fsync on), fed by a
/// relay in this process at a fixed frame rate, with live subscribers and one replaying from
/// disk; the latency from the relay writing a frame to a subscriber's socket read returning its
/// event.
struct BenchLatency: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "latency",
    abstract: "Relay frame → subscriber read latency (p50/p99/p999) at fixed rates, fsync on.",
    discussion: """
      Start: the relay in this process records the time of each frame right before writing it \
      to the ingest socket (paced relay: just before the flush of its tick's frames; fixture \
      relay: when it takes the frame from its source, before gathering its burst). End: the \
      time a measuring subscriber's read(2) returned the bytes that completed the event's \
      websocket message. Measuring subscribers are JSON, unfiltered, each a blocking socket on \
      a thread of its own that parses only an event's identity (did + rev, or the relay seq); \
      the other live subscribers run in a `contrail load-client` process and only count bytes; \
      the replaying subscriber (zstd, cursor at the log's start, paced) runs on its own thread. \
      Every part shares the machine's cores with the server. --wire both: --measuring \
      subscribers of each of v1 JSON, v1 zstd, v2 text and v2 zstd (subscribeEvents with \
      zstdDictionary), reported side by side, on the same event stream; the other live \
      subscribers are half `?--background` on v1, half v2 zstd, in two load-client processes.
      """)

  @Option(help: "Relay frame rates to run, frames/s (comma-separated).")
  var rates = "1000,5000,20000"

  @Option(help: "Live subscribers in total, the measuring ones included.")
  var subscribers = 100

  @Option(
    help: """
      Live subscribers whose latency is measured (no filter, a thread each): JSON on v1, or \
      this many of each form with --wire both.
      """)
  var measuring = 3

  @Option(
    help: """
      v1: measuring subscribers are v1 JSON (as before the v2 wire); both: v1 JSON, v1 zstd, \
      v2 text and v2 zstd, and half the other live subscribers on v2 (zstd).
      """)
  var wire = "v1"

  @Option(help: "Seconds measured per rate, after the warm-up.")
  var seconds = 30

  @Option(help: "Warm-up seconds per rate (not measured); the replayer starts after it.")
  var warmup = 10

  @Option(help: "Query of the other live subscribers (`contrail load-client`, counting only).")
  var background = "compress=true"

  @Option(
    help: """
      Pace of the subscriber replaying from the log's first event, as a multiple of the event \
      rate (it reads from disk all along); 0: no replaying subscriber.
      """)
  var replaySpeed = 1.25

  @Option(help: "Query of the replaying subscriber, besides its cursor (default: JSON, no filter).")
  var replayQuery = ""

  @Option(
    help: """
      Frames stored in the log before the server starts: the replayer's backlog, so that it \
      reads the log (not the live window) through the whole run.
      """)
  var backlog = 100_000

  @Option(help: "Events held in memory (default: the frame rate, ~1 s), so a replayer reads disk.")
  var liveWindow: Int?

  @Option(help: "The log's fsync interval, ms (serve's default: 100).")
  var fsyncInterval = 100

  @Option(
    help: """
      The relay: `paced` (this benchmark's own, writes the frames due every --tick-us) or \
      `fixture` (FixtureRelay with its rate: a burst of ~20 ms of frames at a time).
      """)
  var relay = "paced"

  @Option(help: "Tick of the paced relay, µs.")
  var tickUs = 1_000

  @Option(help: "Distinct synthetic frames, generated once and looped under new seqs.")
  var pool = 20_000

  @Option(help: "How often the fsync watcher polls the log, µs.")
  var fsyncPollUs = 1_000

  /// The measuring subscribers' forms.
  private var forms: [LatencyForm] { wire == "both" ? LatencyForm.allCases : [.v1JSON] }

  func validate() throws {
    guard ["v1", "both"].contains(wire) else { throw ValidationError("--wire is v1 or both") }
    guard measuring > 0, subscribers >= measuring * forms.count else {
      throw ValidationError(
        "--measuring must be positive and, times the forms measured, at most --subscribers")
    }
    guard seconds > 0, warmup >= 0, pool >= 1_000, tickUs >= 100, fsyncPollUs >= 100 else {
      throw ValidationError(
        "--seconds must be positive, --pool at least 1000, --tick-us and --fsync-poll-us ≥ 100")
    }
    guard ["paced", "fixture"].contains(relay) else {
      throw ValidationError("--relay is `paced` or `fixture`")
    }
    guard backlog >= 0 else { throw ValidationError("--backlog must not be negative") }
    guard replaySpeed == 0 || replaySpeed > 1 else {
      throw ValidationError("--replay-speed is 0 (none) or above 1 (it must catch up eventually)")
    }
  }

  func run() async throws {
    let rateList = try rates.split(separator: ",").map {
      guard let rate = Int($0), rate > 0 else { throw CLIError("bad rate: \($0)") }
      return rate
    }
    let built = ContinuousClock.now
    let frames = try LatencyPool(count: pool, seed: 13)
    print(
      "bench latency: \(ProcessInfo.processInfo.activeProcessorCount) cores, load average "
        + "\(MachineCPU.loadAverage()); pool of \(frames.count) synthetic frames "
        + "(\(frames.bytes / frames.count) B average, \(format2(frames.eventsPerFrame)) events per "
        + "frame) generated in \(format1(elapsedSeconds(since: built))) s, looped under new seqs")
    print(
      "relay: \(relay == "paced" ? "paced, writes the frames due every \(tickUs) µs" : "FixtureRelay, rate-paced (bursts of ~20 ms of frames)"); "
        + "subscribers: \(measuring) measuring "
        + (wire == "both"
          ? "of each of \(forms.map(\.label).joined(separator: ", ")) (no filter, blocking "
            + "reads, a thread each) + \(backgroundV1) `/subscribe?\(background)` and "
            + "\(backgroundV2) v2 zstd in two load-client processes"
          : "(JSON, no filter, blocking reads, a thread each) + "
            + "\(subscribers - measuring) `?\(background)` in a load-client process")
        + (replaySpeed > 0
          ? " + 1 replaying (`?cursor=1\(replayQuery.isEmpty ? "" : "&" + replayQuery)`: from the "
            + "log's first event, \(backlog) frames stored before the server starts, paced at "
            + "\(replaySpeed)× the event rate, a thread of its own)"
          : "")
        + "; fsync every \(fsyncInterval) ms; \(warmup) s warm-up, \(seconds) s measured per rate")
    var results: [RateResult] = []
    for rate in rateList {
      let result = try await measure(rate: rate, pool: frames)
      result.report()
      results.append(result)
    }
    print("\nsummary (ms; latency = relay write → subscriber read):")
    print(
      "| frames/s target | achieved | "
        + (forms.count > 1 ? "subscribers | " : "")
        + "events measured | p50 | p90 | p99 | p999 | max "
        + "| p99 written −5…+2 ms around an fsync | p99 otherwise | CPU %: this process | load client "
        + "| other processes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|" + (forms.count > 1 ? "---|" : ""))
    for result in results {
      for form in forms { print(result.summaryRow(form, labelled: forms.count > 1)) }
    }
  }

  /// The background subscribers on v1 and (with --wire both) on v2.
  private var backgroundV1: Int {
    let others = subscribers - measuring * forms.count
    return wire == "both" ? others - others / 2 : others
  }
  private var backgroundV2: Int { wire == "both" ? (subscribers - measuring * forms.count) / 2 : 0 }

  // MARK: One rate

  private func measure(rate: Int, pool: LatencyPool) async throws -> RateResult {
    let directory =
      FileManager.default.temporaryDirectory.path + "/contrail-bench-latency-\(getpid())-\(rate)"
    try? FileManager.default.removeItem(atPath: directory)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try Self.prefill(directory, frames: backlog, pool: pool)
    let stamps = SendStamps()

    // The relay, waiting for ingest to connect.
    let relayPort: Int
    let stopRelay: @Sendable () async -> Void
    if relay == "paced" {
      let paced = PacedRelay(
        pool: pool, stamps: stamps, rate: rate, tick: .microseconds(Int64(tickUs)))
      relayPort = try await paced.start()
      stopRelay = { await paced.stop() }
    } else {
      var configuration = FixtureRelay.Configuration()
      configuration.rate = rate
      let fixture = FixtureRelay(
        source: StampingRelaySource(pool: pool, stamps: stamps), configuration: configuration)
      let (port, task) = try await fixture.start()
      relayPort = port
      stopRelay = {
        task.cancel()
        await task.value
      }
    }

    var settings = ServeSettings(relay: try RelayEndpoint("ws://127.0.0.1:\(relayPort)"))
    settings.host = "127.0.0.1"
    settings.port = 0
    settings.dataDirectory = directory
    settings.fsyncMilliseconds = fsyncInterval
    settings.liveWindowEvents = liveWindow ?? max(1_024, rate)
    let registry = PrometheusCollectorRegistry()
    let logger = Logger(label: "bench-latency") { label in
      var handler = StreamLogHandler.standardError(label: label)
      handler.logLevel = .warning
      return handler
    }
    let contrail = try await ContrailServer.start(settings, registry: registry, logger: logger)
    let port = contrail.port

    // Every v1 subscriber connects before the first frame. v2 ones are refused until the
    // server is ready (PROTOCOL §12.1), i.e. until ingest has connected to the relay: they
    // connect then, during the warm-up.
    let dictionary = try ZstdDictionary(bytes: DefaultDictionary.bytes)
    var clients: [WireClient?] = Array(repeating: nil, count: forms.count * measuring)
    func connect(_ v2: Bool) throws {
      for (index, form) in forms.enumerated() where form.isV2 == v2 {
        for offset in 0..<measuring {
          let client = try WireClient(
            port: port, target: form.target(dictionaryID: dictionary.id),
            mode: .measure(pool, stamps, try form.decoder(dictionary)))
          client.start()
          clients[index * measuring + offset] = client
        }
      }
    }
    try connect(false)
    var loads: [LoadProcess] = []
    if backgroundV1 > 0 {
      loads.append(
        try await LoadProcess.start(
          port: port, connections: backgroundV1, target: "/subscribe?\(background)", expect: 0))
    }
    let v1Subscribers = backgroundV1 + measuring * forms.filter { !$0.isV2 }.count
    try await BenchFanout.waitFor(contrail.server, subscribers: v1Subscribers)
    let running = Task { await contrail.run() }
    if forms.contains(where: \.isV2) {
      try await Self.waitForReadiness(port)
      try connect(true)
      if backgroundV2 > 0 {
        loads.append(
          try await LoadProcess.start(
            port: port, connections: backgroundV2,
            target: LatencyForm.v2Zstd.target(dictionaryID: dictionary.id), expect: 0))
      }
      try await BenchFanout.waitFor(contrail.server, subscribers: subscribers)
    }

    try await Task.sleep(for: .seconds(warmup))
    var replayer: WireClient? = nil
    if replaySpeed > 0 {
      let pace = replaySpeed * Double(rate) * pool.eventsPerFrame
      let query = replayQuery.isEmpty ? "" : "&\(replayQuery)"
      replayer = try WireClient(
        port: port, target: "/subscribe?cursor=1\(query)", mode: .replay(eventsPerSecond: pace))
      replayer!.start()
    }
    let watcher = FsyncWatcher(log: contrail.log, pollMicroseconds: fsyncPollUs)
    watcher.start()

    let before = Snapshot(stamps: stamps, registry: registry)
    try await Task.sleep(for: .seconds(seconds))
    let after = Snapshot(stamps: stamps, registry: registry)

    let fsyncs = await watcher.finish()
    let replayed = await replayer?.finish()
    var samples: [LatencyForm: [LatencySample]] = [:]
    var perClient: [LatencyForm: [Int]] = [:]
    var unmatched: [LatencyForm: Int] = [:]
    var unkeyed: [LatencyForm: Int] = [:]
    for (index, client) in clients.compactMap({ $0 }).enumerated() {
      let form = forms[index / measuring]
      let outcome = await client.finish()
      let inWindow = outcome.samples.filter { $0.arrival >= before.time && $0.arrival < after.time }
      perClient[form, default: []].append(inWindow.count)
      samples[form, default: []] += inWindow
      unmatched[form, default: 0] += outcome.unmatched
      unkeyed[form, default: 0] += outcome.unkeyed
    }
    for load in loads { load.stop() }
    await contrail.shutdown()
    await running.value
    await stopRelay()

    return RateResult(
      rate: rate, forms: forms, before: before, after: after, samplesByForm: samples,
      perClient: perClient, unmatched: unmatched, unkeyed: unkeyed, fsyncs: fsyncs,
      fsyncPoll: UInt64(fsyncPollUs) * 1_000, replayed: replayed?.events,
      replayPace: replaySpeed > 0 ? replaySpeed * Double(rate) * pool.eventsPerFrame : nil)
  }

  /// Waits until `GET /readyz` answers 200 (ingest has connected to the relay).
  static func waitForReadiness(_ port: Int) async throws {
    let deadline = ContinuousClock.now + .seconds(30)
    while true {
      if let response = try? await HTTPGet.fetch(
        host: "127.0.0.1", port: port, path: "/readyz", tls: nil, timeout: .seconds(2)),
        response.status == 200
      {
        return
      }
      guard ContinuousClock.now < deadline else { throw CLIError("the server never got ready") }
      try await Task.sleep(for: .milliseconds(10))
    }
  }

  /// Stores the pool's first `frames` positions in a new log through the store path serve uses
  /// (translate, compress once with the default dictionary, append), so ingest resumes after
  /// them and a replayer has that much to read from disk.
  static func prefill(_ directory: String, frames: Int, pool: LatencyPool) throws {
    guard frames > 0 else { return }
    let dictionary = try ZstdDictionary(bytes: DefaultDictionary.bytes)
    var configuration = EventLog.Configuration(directory: directory)
    configuration.sync = .never
    configuration.dictionaryID = dictionary.id
    let log = try EventLog(configuration)
    let store = try EventStore(log: log, ring: LiveRing(capacity: 1), dictionary: dictionary)
    let translator = Translator()
    var events: [Event] = []
    for position in 0..<frames {
      _ = translator.translate(pool.frame(at: position), into: &events)
      if events.count >= 1_024 || position == frames - 1 {
        if let error = store.store(events).error { throw error }
        events.removeAll(keepingCapacity: true)
      }
    }
    try log.close()
  }
}

// MARK: - Frames and their identities

/// Synthetic frames held in memory, served in a loop: position `p` is frame `p % count` under
/// relay seq `p + 1`. Every event a frame yields is identified by its JSON: a commit by its
/// did + rev (a hash of them, mapped to the frame's index), identity and account events by
/// their relay seq (mapped to the position directly).
final class LatencyPool: Sendable {
  let frames: [[UInt8]]
  /// Where each frame's seq is encoded (nil: none, e.g. `#info`).
  private let seqRanges: [Range<Int>?]
  /// Commit identity → frame index.
  let commits: [UInt64: Int]
  let eventsPerFrame: Double
  let bytes: Int

  var count: Int { frames.count }

  init(count: Int, seed: UInt64) throws {
    var generator = FirehoseGenerator(seed: seed)
    let translator = Translator()
    var frames: [[UInt8]] = []
    var ranges: [Range<Int>?] = []
    var commits: [UInt64: Int] = [:]
    var events: [Event] = []
    var total = 0
    for index in 0..<count {
      let frame = generator.next()
      let located = FrameSeq.locate(frame)
      if let seq = located?.seq, seq != Int64(index) + 1 {
        throw CLIError("generated frame \(index) has seq \(seq), not \(index + 1)")
      }
      frames.append(frame)
      ranges.append(located?.range)
      events.removeAll(keepingCapacity: true)
      _ = translator.translate(frame, into: &events)
      total += events.count
      for event in events {
        let key = event.json.withUnsafeBytes { EventIdentity.parse($0) }
        switch key {
        case .commit(let hash):
          if let other = commits[hash], other != index {
            throw CLIError("two frames share a commit identity (\(other), \(index))")
          }
          commits[hash] = index
        case .seq(let seq):
          guard seq == Int64(index) + 1 else {
            throw CLIError("event seq \(seq) in frame \(index)")
          }
        case nil:
          throw CLIError(
            "an event without an identity: \(String(decoding: event.json, as: UTF8.self))")
        }
      }
    }
    self.frames = frames
    self.seqRanges = ranges
    self.commits = commits
    self.eventsPerFrame = Double(total) / Double(count)
    self.bytes = frames.reduce(0) { $0 + $1.count }
  }

  /// The frame at `position`, under seq `position + 1`.
  func frame(at position: Int) -> [UInt8] {
    let (pass, index) = position.quotientAndRemainder(dividingBy: frames.count)
    guard pass > 0, let range = seqRanges[index] else { return frames[index] }
    return FrameSeq.rewrite(frames[index], to: Int64(position) + 1, at: range)
  }
}

/// What identifies an event's frame, read from its JSON without parsing all of it.
enum EventIdentity: Equatable {
  /// A commit: FNV-1a of did and rev.
  case commit(UInt64)
  /// An identity or account event: the relay seq.
  case seq(Int64)

  private static let didPrefix = Array(#"{"did":""#.utf8)
  private static let kindKey = Array(#""kind":""#.utf8)
  private static let revKey = Array(#""rev":""#.utf8)
  private static let seqKey = Array(#""seq":"#.utf8)

  static func parse(_ json: UnsafeRawBufferPointer) -> EventIdentity? {
    guard json.count > didPrefix.count, json.starts(with: didPrefix),
      let didEnd = find([UInt8(ascii: "\"")], in: json, from: didPrefix.count),
      let kind = find(kindKey, in: json, from: didEnd), kind + kindKey.count < json.count
    else { return nil }
    let value = kind + kindKey.count
    switch json[value] {
    case UInt8(ascii: "c"):
      guard let rev = find(revKey, in: json, from: value),
        let revEnd = find([UInt8(ascii: "\"")], in: json, from: rev + revKey.count)
      else { return nil }
      return .commit(
        commitHash(did: json[didPrefix.count..<didEnd], rev: json[(rev + revKey.count)..<revEnd]))
    case UInt8(ascii: "i"), UInt8(ascii: "a"):
      guard let seq = find(seqKey, in: json, from: value) else { return nil }
      return number(in: json, at: seq + seqKey.count).map { .seq($0) }
    default:
      return nil
    }
  }

  private static let timeKey = Array(#""time_us":"#.utf8)

  /// The event's `time_us`.
  static func timeUS(_ json: UnsafeRawBufferPointer) -> Int64? {
    guard let key = find(timeKey, in: json, from: 0) else { return nil }
    return number(in: json, at: key + timeKey.count)
  }

  /// The decimal number (up to 18 digits) at `start`, if there is one.
  private static func number(in json: UnsafeRawBufferPointer, at start: Int) -> Int64? {
    var index = start
    var number: Int64 = 0
    while index < json.count, json[index] >= 0x30, json[index] <= 0x39, index - start < 18 {
      number = number * 10 + Int64(json[index] - 0x30)
      index += 1
    }
    return index > start ? number : nil
  }

  /// FNV-1a of a commit's DID and rev, with a separator byte between them.
  private static func commitHash(
    did: Slice<UnsafeRawBufferPointer>, rev: Slice<UnsafeRawBufferPointer>
  )
    -> UInt64
  {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in did { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    hash = (hash ^ 0xFF) &* 0x100_0000_01b3
    for byte in rev { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return hash
  }

  private static let v2KindPrefix = Array(
    #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#"#.utf8)
  private static let didKey = Array(#""did":""#.utf8)
  private static let timeStringKey = Array(#""time":""#.utf8)

  /// The identity of a v2 event frame (PROTOCOL §12.4), the same as its v1 event's: a commit's
  /// `did` (the first one: `cid` and `collection` precede it) and `rev` (the last one: it follows
  /// the record, whose keys could include a `rev`); an identity or account event's relay seq,
  /// the first `seq` (the inner object precedes the event's own v2 `seq`).
  static func parseV2(_ json: UnsafeRawBufferPointer) -> EventIdentity? {
    guard json.count > v2KindPrefix.count, json.starts(with: v2KindPrefix) else { return nil }
    let kind = v2KindPrefix.count
    switch json[kind] {
    case UInt8(ascii: "c"):
      guard let did = find(didKey, in: json, from: kind),
        let didEnd = find([UInt8(ascii: "\"")], in: json, from: did + didKey.count),
        let rev = findLast(revKey, in: json),
        let revEnd = find([UInt8(ascii: "\"")], in: json, from: rev + revKey.count)
      else { return nil }
      return .commit(
        commitHash(
          did: json[(did + didKey.count)..<didEnd], rev: json[(rev + revKey.count)..<revEnd]))
    case UInt8(ascii: "i"), UInt8(ascii: "a"):
      guard let seq = find(seqKey, in: json, from: kind) else { return nil }
      return number(in: json, at: seq + seqKey.count).map { .seq($0) }
    default:
      return nil
    }
  }

  /// A v2 event's witness time (its v1 `time_us`), from its last `time` member
  /// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`).
  static func witnessTimeUS(_ json: UnsafeRawBufferPointer) -> Int64? {
    guard let key = findLast(timeStringKey, in: json) else { return nil }
    let start = key + timeStringKey.count
    guard json.count >= start + 27 else { return nil }
    func number(_ offset: Int, _ length: Int) -> Int64? {
      var value: Int64 = 0
      for index in (start + offset)..<(start + offset + length) {
        let byte = json[index]
        guard byte >= 0x30, byte <= 0x39 else { return nil }
        value = value * 10 + Int64(byte - 0x30)
      }
      return value
    }
    guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
      let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
      let micros = number(20, 6)
    else { return nil }
    let days = CivilDate.days(year: year, month: month, day: day)
    return ((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + micros
  }

  private static func findLast(_ needle: [UInt8], in haystack: UnsafeRawBufferPointer) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    var index = haystack.count - needle.count
    while index >= 0 {
      if haystack[index] == needle[0]
        && (1..<needle.count).allSatisfy({ haystack[index + $0] == needle[$0] })
      {
        return index
      }
      index -= 1
    }
    return nil
  }

  private static func find(_ needle: [UInt8], in haystack: UnsafeRawBufferPointer, from start: Int)
    -> Int?
  {
    guard let first = needle.first, haystack.count >= needle.count else { return nil }
    var index = start
    let last = haystack.count - needle.count
    outer: while index <= last {
      if haystack[index] == first {
        for offset in 1..<needle.count where haystack[index + offset] != needle[offset] {
          index += 1
          continue outer
        }
        return index
      }
      index += 1
    }
    return nil
  }
}

/// When the relay wrote each position (CLOCK_MONOTONIC ns), for the last 2^20 positions.
final class SendStamps: Sendable {
  private static let capacity = 1 << 20
  private struct State {
    var positions = [Int](repeating: -1, count: SendStamps.capacity)
    var times = [UInt64](repeating: 0, count: SendStamps.capacity)
    var sent = 0
  }
  private let state = Mutex(State())

  func record(_ positions: Range<Int>, at time: UInt64) {
    state.withLock { state in
      for position in positions {
        state.positions[position & (Self.capacity - 1)] = position
        state.times[position & (Self.capacity - 1)] = time
      }
      state.sent = max(state.sent, positions.upperBound)
    }
  }

  /// The time `position` was written, if it was and is still held.
  func time(of position: Int) -> UInt64? {
    state.withLock { state in
      let slot = position & (Self.capacity - 1)
      return state.positions[slot] == position ? state.times[slot] : nil
    }
  }

  /// Positions written so far (all below this).
  var sent: Int { state.withLock { $0.sent } }
}

/// The pool as a `RelaySource` for `FixtureRelay`, stamping each frame as it is taken (right
/// before the relay gathers its burst and writes it).
struct StampingRelaySource: RelaySource {
  let pool: LatencyPool
  let stamps: SendStamps

  var oldestSeq: Int64 { 1 }

  func frame(at position: Int) -> (seq: Int64, bytes: [UInt8])? {
    let bytes = pool.frame(at: position)
    stamps.record(position..<(position + 1), at: monotonicNanoseconds())
    return (Int64(position) + 1, bytes)
  }

  func position(after cursor: Int64) -> Int { max(0, Int(cursor)) }
}

// MARK: - The paced relay

/// A relay that writes the frames due every `tick` (rate × elapsed time since the connection
/// opened), on an event loop of its own, stamping them just before the flush; a `?cursor=`
/// resumes after that seq.
final class PacedRelay: Sendable {
  private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
  private let pool: LatencyPool
  private let stamps: SendStamps
  private let rate: Int
  private let tick: TimeAmount
  private let channel = Mutex<Channel?>(nil)

  init(pool: LatencyPool, stamps: SendStamps, rate: Int, tick: TimeAmount) {
    self.pool = pool
    self.stamps = stamps
    self.rate = rate
    self.tick = tick
  }

  func start() async throws -> Int {
    let pool = self.pool
    let stamps = self.stamps
    let rate = self.rate
    let tick = self.tick
    let server = try await ServerBootstrap(group: group)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { channel in
        let upgrader = NIOWebSocketServerUpgrader(
          maxFrameSize: 1 << 16,
          shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
          upgradePipelineHandler: { channel, head in
            channel.eventLoop.makeCompletedFuture {
              try channel.pipeline.syncOperations.addHandler(
                PacedSender(
                  pool: pool, stamps: stamps, rate: rate, tick: tick,
                  first: Self.cursor(in: head.uri).map { max(0, Int($0)) } ?? 0))
            }
          })
        return channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
        }
      }
      .bind(host: "127.0.0.1", port: 0).get()
    channel.withLock { $0 = server }
    return server.localAddress?.port ?? 0
  }

  func stop() async {
    try? await channel.withLock { $0 }?.close()
    try? await group.shutdownGracefully()
  }

  static func cursor(in uri: String) -> Int64? {
    guard let query = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
    for pair in query.split(separator: "&") where pair.hasPrefix("cursor=") {
      return Int64(pair.dropFirst("cursor=".count))
    }
    return nil
  }
}

/// One relay connection of `PacedRelay`.
final class PacedSender: ChannelInboundHandler {
  typealias InboundIn = WebSocketFrame
  typealias OutboundOut = WebSocketFrame

  private let pool: LatencyPool
  private let stamps: SendStamps
  private let rate: Double
  private let tick: TimeAmount
  private var next: Int
  private var sent = 0
  private var opened: UInt64 = 0
  private var timer: RepeatedTask?

  init(pool: LatencyPool, stamps: SendStamps, rate: Int, tick: TimeAmount, first: Int) {
    self.pool = pool
    self.stamps = stamps
    self.rate = Double(rate)
    self.tick = tick
    self.next = first
  }

  func handlerAdded(context: ChannelHandlerContext) {
    opened = monotonicNanoseconds()
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    timer = context.eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in
      let (sender, context) = bound.value
      sender.send(context)
    }
  }

  func handlerRemoved(context: ChannelHandlerContext) { timer?.cancel() }

  /// Writes the frames due (at most 100 ms' worth at once), stamps them, flushes.
  private func send(_ context: ChannelHandlerContext) {
    guard context.channel.isActive, context.channel.isWritable else { return }
    let due = Int(Double(monotonicNanoseconds() - opened) * rate / 1e9)
    let count = min(due - sent, max(1, Int(rate) / 10))
    guard count > 0 else { return }
    let first = next
    for _ in 0..<count {
      let frame = pool.frame(at: next)
      var buffer = context.channel.allocator.buffer(capacity: frame.count)
      buffer.writeBytes(frame)
      context.write(
        wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: buffer)), promise: nil)
      next += 1
    }
    sent += count
    stamps.record(first..<next, at: monotonicNanoseconds())
    context.flush()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = unwrapInboundIn(data)
    switch frame.opcode {
    case .ping:
      context.writeAndFlush(
        wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)),
        promise: nil)
    case .connectionClose:
      context.close(promise: nil)
    default:
      break
    }
  }
}

// MARK: - Subscribers on plain sockets

/// A websocket subscriber on a blocking socket and a thread of its own. Measuring: stamps each
/// read(2) as it returns and matches every event in it to the relay's write time. Replaying:
/// counts events and sleeps to hold a pace (the server then finds its socket full and waits).
final class WireClient: @unchecked Sendable {
  enum Mode {
    case measure(LatencyPool, SendStamps, LatencyDecoder)
    case replay(eventsPerSecond: Double)
  }

  struct Outcome {
    var samples: [LatencySample] = []
    var events = 0
    /// Events whose frame could not be found (not written, or no longer stamped).
    var unmatched = 0
    /// Events without a recognizable identity.
    var unkeyed = 0
  }

  private let fd: Int32
  private let target: String
  private let port: Int
  private let mode: Mode
  /// CLOCK_REALTIME − CLOCK_MONOTONIC, ns, to read `time_us` on the monotonic clock.
  private let realtimeOffset = realtimeMinusMonotonic()
  private let done = DispatchGroup()
  private let stopping = Atomic<Bool>(false)
  // Owned by the client's thread until `done`.
  private var outcome = Outcome()
  private var lastPosition = -1

  init(port: Int, target: String, mode: Mode) throws {
    self.port = port
    self.target = target
    self.mode = mode
    fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw CLIError("socket: \(String(cString: strerror(errno)))") }
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    if case .replay = mode {
      // A small receive buffer: the pace reaches the server soon, as backpressure.
      var size: Int32 = 256 << 10
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard connected == 0 else {
      close(fd)
      throw CLIError("connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
    }
  }

  func start() {
    done.enter()
    let thread = Thread { [self] in
      loop()
      done.leave()
    }
    thread.start()
  }

  /// Ends the connection (the blocked read returns) and hands over what was seen.
  func finish() async -> Outcome {
    stopping.store(true, ordering: .relaxed)
    shutdown(fd, Int32(SHUT_RDWR))
    await withCheckedContinuation { continuation in
      done.notify(queue: .global()) { continuation.resume() }
    }
    close(fd)
    return outcome
  }

  private func loop() {
    let request =
      "GET \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\n"
      + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      + "Sec-WebSocket-Version: 13\r\n\r\n"
    guard sendAll(Array(request.utf8)) else { return }
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    var filled = 0
    var upgraded = false
    let started = monotonicNanoseconds()
    // The replayer takes small reads, so its pace is smooth.
    var readLimit = Int.max
    if case .replay = mode { readLimit = 64 << 10 }
    while true {
      if filled == buffer.count { buffer += [UInt8](repeating: 0, count: buffer.count) }
      let count = buffer.withUnsafeMutableBytes {
        read(fd, $0.baseAddress! + filled, min($0.count - filled, readLimit))
      }
      let arrival = monotonicNanoseconds()
      guard count > 0, !stopping.load(ordering: .relaxed) else { return }
      filled += count
      var consumed = 0
      if !upgraded {
        guard let end = Self.headerEnd(buffer, filled) else { continue }
        guard String(decoding: buffer[0..<end], as: UTF8.self).hasPrefix("HTTP/1.1 101") else {
          return
        }
        upgraded = true
        consumed = end
      }
      let events = outcome.events
      // Whole messages (the server sends each event as one unfragmented frame).
      while filled - consumed >= 2 {
        let opcode = buffer[consumed] & 0x0F
        var length = Int(buffer[consumed + 1] & 0x7F)
        var header = 2
        if length == 126 {
          guard filled - consumed >= 4 else { break }
          length = Int(buffer[consumed + 2]) << 8 | Int(buffer[consumed + 3])
          header = 4
        } else if length == 127 {
          guard filled - consumed >= 10 else { break }
          length = (0..<8).reduce(0) { $0 << 8 | Int(buffer[consumed + 2 + $1]) }
          header = 10
        }
        guard filled - consumed >= header + length else {
          if header + length > buffer.count {
            buffer += [UInt8](repeating: 0, count: header + length)
          }
          break
        }
        let payload = (consumed + header)..<(consumed + header + length)
        switch opcode {
        case 0x1, 0x2:
          outcome.events += 1
          if case .measure(let pool, let stamps, let decoder) = mode {
            buffer.withUnsafeBytes {
              let message = UnsafeRawBufferPointer(rebasing: $0[payload])
              guard let decompressor = decoder.decompressor else {
                return match(message, arrival, pool, stamps, v2: decoder.v2)
              }
              guard let json = try? decompressor.decompress(message) else {
                outcome.unkeyed += 1
                return
              }
              json.withUnsafeBytes { match($0, arrival, pool, stamps, v2: decoder.v2) }
            }
          }
        case 0x9:  // ping: a masked pong (zero mask) with the same payload
          var pong: [UInt8] = [0x8A, 0x80 | UInt8(length), 0, 0, 0, 0]
          pong += buffer[payload]
          guard length < 126, sendAll(pong) else { return }
        case 0x8:
          return
        default:
          break
        }
        consumed += header + length
      }
      if consumed > 0 {
        buffer.withUnsafeMutableBytes {
          $0.baseAddress!.copyMemory(from: $0.baseAddress! + consumed, byteCount: filled - consumed)
        }
        filled -= consumed
      }
      if case .replay(let pace) = mode, outcome.events > events {
        while true {
          let ahead =
            Double(outcome.events) / pace - Double(monotonicNanoseconds() - started) / 1e9
          guard ahead > 0, !stopping.load(ordering: .relaxed) else { break }
          usleep(UInt32(min(ahead, 0.05) * 1e6))
        }
      }
    }
  }

  private func match(
    _ json: UnsafeRawBufferPointer, _ arrival: UInt64, _ pool: LatencyPool, _ stamps: SendStamps,
    v2: Bool
  ) {
    let position: Int
    switch v2 ? EventIdentity.parseV2(json) : EventIdentity.parse(json) {
    case .seq(let seq):
      position = Int(seq) - 1
    case .commit(let hash):
      guard let index = pool.commits[hash] else {
        outcome.unkeyed += 1
        return
      }
      if lastPosition < 0 {
        // The first event: the newest written frame with this index.
        let newest = stamps.sent - 1
        guard newest >= index else {
          outcome.unmatched += 1
          return
        }
        position = newest - (newest - index) % pool.count
      } else {
        // Events arrive in relay order: the first position from the last one on.
        position = lastPosition + ((index - lastPosition) % pool.count + pool.count) % pool.count
      }
    case nil:
      outcome.unkeyed += 1
      return
    }
    guard position >= lastPosition, let sent = stamps.time(of: position) else {
      outcome.unmatched += 1
      return
    }
    lastPosition = position
    // time_us is the server's wall clock when it translated the event: it splits the latency.
    let translated =
      (v2 ? EventIdentity.witnessTimeUS(json) : EventIdentity.timeUS(json)).map {
        $0 * 1_000 - realtimeOffset
      } ?? 0
    outcome.samples.append(
      LatencySample(
        arrival: arrival, latency: Int64(arrival) - Int64(sent),
        toTranslate: translated - Int64(sent)))
  }

  private static func headerEnd(_ buffer: [UInt8], _ filled: Int) -> Int? {
    guard filled >= 4 else { return nil }
    for index in 3..<filled
    where buffer[index] == 10 && buffer[index - 1] == 13 && buffer[index - 2] == 10
      && buffer[index - 3] == 13
    {
      return index + 1
    }
    return nil
  }

  private func sendAll(_ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
      let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
      guard written > 0 else { return false }
      offset += written
    }
    return true
  }
}

// MARK: - fsync

/// Notices each fsync of the log as it completes: polls `lastDurableSeq`, which advances then
/// (the only public sign of one).
final class FsyncWatcher: @unchecked Sendable {
  struct Sync {
    /// When the poll that saw the new durable seq returned (≤ one poll interval after the end).
    var time: UInt64
  }

  private let log: EventLog
  private let poll: UInt32
  private let stopping = Atomic<Bool>(false)
  private let done = DispatchGroup()
  private var syncs: [Sync] = []

  init(log: EventLog, pollMicroseconds: Int) {
    self.log = log
    self.poll = UInt32(pollMicroseconds)
  }

  func start() {
    done.enter()
    let thread = Thread { [self] in
      var last = log.lastDurableSeq
      while !stopping.load(ordering: .relaxed) {
        let durable = log.lastDurableSeq
        if durable != last {
          syncs.append(Sync(time: monotonicNanoseconds()))
          last = durable
        }
        usleep(poll)
      }
      done.leave()
    }
    thread.start()
  }

  func finish() async -> [Sync] {
    stopping.store(true, ordering: .relaxed)
    await withCheckedContinuation { continuation in
      done.notify(queue: .global()) { continuation.resume() }
    }
    return syncs
  }
}

// MARK: - Measurements

/// Counters at one moment.
struct Snapshot {
  var time: UInt64
  var sent: Int
  var events: Double
  var diskReads: Double
  var replaying: Double
  var cpu: Double
  /// CPU seconds of this process's children (the load client).
  var children: Double
  var machine: MachineCPU

  init(stamps: SendStamps, registry: PrometheusCollectorRegistry) {
    time = monotonicNanoseconds()
    sent = stamps.sent
    let text = String(decoding: registry.emitToBuffer(), as: UTF8.self)
    func value(_ prefix: String) -> Double {
      text.split(separator: "\n").filter { $0.hasPrefix(prefix) }.reduce(0.0) {
        $0 + (Double($1.split(separator: " ").last ?? "") ?? 0)
      }
    }
    events = value("contrail_events_total")
    diskReads = value("contrail_subscriber_reads_total{source=\"disk\"}")
    replaying = value("contrail_subscribers_replaying")
    cpu = CPUTime.now()
    children = MachineCPU.childrenSeconds()
    machine = MachineCPU.now()
  }
}

/// The machine's CPU time from /proc/stat, in clock ticks.
struct MachineCPU {
  var busy: Double = 0
  var total: Double = 0
  var steal: Double = 0

  static func now() -> MachineCPU {
    guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
      let line = stat.split(separator: "\n").first
    else { return MachineCPU() }
    let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    guard fields.count >= 8 else { return MachineCPU() }
    let idle = fields[3] + fields[4]
    let total = fields[0..<8].reduce(0, +)
    return MachineCPU(busy: total - idle, total: total, steal: fields[7])
  }

  /// User + system CPU seconds of this process's live children, from /proc.
  static func childrenSeconds() -> Double {
    let me = getpid()
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    var total = 0.0
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    where entry.first?.isNumber == true {
      guard let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
      else { continue }
      let fields = stat[stat.index(after: close)...].split(separator: " ")
      guard fields.count > 12, Int32(fields[1]) == me,
        let user = Double(fields[11]), let system = Double(fields[12])
      else { continue }
      total += (user + system) / ticks
    }
    return total
  }

  static func loadAverage() -> String {
    let text = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? ""
    return text.split(separator: " ").prefix(3).joined(separator: " ")
  }
}

/// One rate's numbers and their report.
struct RateResult {
  var rate: Int
  /// The measuring subscribers' forms, in the order reported.
  var forms: [LatencyForm]
  var before: Snapshot
  var after: Snapshot
  var samplesByForm: [LatencyForm: [LatencySample]]
  var perClient: [LatencyForm: [Int]]
  var unmatched: [LatencyForm: Int]
  var unkeyed: [LatencyForm: Int]
  var fsyncs: [FsyncWatcher.Sync]
  var fsyncPoll: UInt64
  var replayed: Int?
  var replayPace: Double?

  /// The form whose samples the per-form figures below are about.
  private var form = LatencyForm.v1JSON
  private var samples: [LatencySample] { samplesByForm[form] ?? [] }

  init(
    rate: Int, forms: [LatencyForm], before: Snapshot, after: Snapshot,
    samplesByForm: [LatencyForm: [LatencySample]], perClient: [LatencyForm: [Int]],
    unmatched: [LatencyForm: Int], unkeyed: [LatencyForm: Int], fsyncs: [FsyncWatcher.Sync],
    fsyncPoll: UInt64, replayed: Int?, replayPace: Double?
  ) {
    self.rate = rate
    self.forms = forms
    self.before = before
    self.after = after
    self.samplesByForm = samplesByForm
    self.perClient = perClient
    self.unmatched = unmatched
    self.unkeyed = unkeyed
    self.fsyncs = fsyncs
    self.fsyncPoll = fsyncPoll
    self.replayed = replayed
    self.replayPace = replayPace
    self.form = forms.first ?? .v1JSON
  }

  /// This result with `form`'s samples in view.
  private func selecting(_ form: LatencyForm) -> RateResult {
    var copy = self
    copy.form = form
    return copy
  }

  private var window: Double { Double(after.time - before.time) / 1e9 }
  private var sorted: [Int64] { samples.map(\.latency).sorted() }

  private static func percentile(_ sorted: [Int64], _ q: Double) -> Int64 {
    guard !sorted.isEmpty else { return 0 }
    let rank = Int((q * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
  }

  private static func line(_ sorted: [Int64]) -> String {
    guard !sorted.isEmpty else { return "none" }
    return "p50 \(ms(percentile(sorted, 0.5))), p90 \(ms(percentile(sorted, 0.9))), "
      + "p99 \(ms(percentile(sorted, 0.99))), p999 \(ms(percentile(sorted, 0.999))), "
      + "max \(ms(sorted.last!))"
  }

  /// Each sample's write time at the relay minus the nearest fsync completion seen (ns; negative:
  /// written before it), nil when none was seen. It does not depend on the latency, so grouping
  /// by it is fair (grouping by "an fsync ended while the event was in flight" is not: a slow
  /// event spans more time, so it would find an fsync more often whatever the cause).
  private var fsyncOffsets: [Int64?] {
    let ends = fsyncs.map { Int64($0.time) }
    return samples.map { sample in
      let sent = Int64(sample.arrival) - sample.latency
      var low = 0
      var high = ends.count
      while low < high {
        let mid = (low + high) / 2
        if ends[mid] <= sent { low = mid + 1 } else { high = mid }
      }
      let before = low > 0 ? sent - ends[low - 1] : nil
      let after = low < ends.count ? sent - ends[low] : nil
      guard let before else { return after }
      guard let after else { return before }
      return before <= -after ? before : after
    }
  }

  /// Written from 5 ms before to 2 ms after an fsync completed (the watcher sees a completion up
  /// to one poll late).
  private static let nearFsync: Range<Int64> = -5_000_000..<2_000_000

  /// Latencies of the samples written near an fsync, and of the others, sorted.
  private func byFsync(_ offsets: [Int64?]) -> (near: [Int64], others: [Int64]) {
    var near: [Int64] = []
    var others: [Int64] = []
    for (sample, offset) in zip(samples, offsets) {
      if let offset, Self.nearFsync.contains(offset) {
        near.append(sample.latency)
      } else {
        others.append(sample.latency)
      }
    }
    return (near.sorted(), others.sorted())
  }

  /// CPU in the window, % of one core: the whole machine, this process, the load client, and
  /// the rest (other processes on the machine).
  private var cpu: (machine: Double, process: Double, client: Double, others: Double) {
    let total = after.machine.total - before.machine.total
    let machine =
      total > 0
      ? (after.machine.busy - before.machine.busy) / total
        * Double(ProcessInfo.processInfo.activeProcessorCount) * 100 : 0
    let process = (after.cpu - before.cpu) / window * 100
    let client = (after.children - before.children) / window * 100
    return (machine, process, client, max(0, machine - process - client))
  }

  func report() {
    let frames = Double(after.sent - before.sent) / window
    let events = (after.events - before.events) / window
    print("\n== \(rate) frames/s (load average at the end: \(MachineCPU.loadAverage())) ==")
    print(
      "relay: \(format1(frames)) frames/s written (\(format1(frames / Double(rate) * 100)) % of "
        + "the target); server stored \(format1(events)) events/s")
    let disk = after.diskReads - before.diskReads
    if let replayed, let replayPace {
      print(
        "replayer: \(replayed) events read (paced at \(Int(replayPace))/s); server reads from "
          + "disk in the window: \(Int(disk)); still replaying at the end: "
          + (after.replaying > 0 ? "yes" : "no"))
    }
    let cpu = self.cpu
    let steal =
      after.machine.total > before.machine.total
      ? (after.machine.steal - before.machine.steal) / (after.machine.total - before.machine.total)
        * Double(ProcessInfo.processInfo.activeProcessorCount) * 100 : 0
    print(
      "CPU in the window, % of a core: this process (server, relay, measuring and replaying "
        + "clients) \(format1(cpu.process)), the load-client process\(forms.count > 1 ? "es" : "") "
        + "\(format1(cpu.client)), other "
        + "processes \(format1(cpu.others)); the machine \(format1(cpu.machine)) of "
        + "\(ProcessInfo.processInfo.activeProcessorCount * 100) (steal \(format1(steal)))")
    let inWindow = fsyncs.filter { $0.time >= before.time && $0.time < after.time }
    let intervals = zip(inWindow.dropFirst(), inWindow).map { Int64($0.time - $1.time) }.sorted()
    print(
      "fsync: \(inWindow.count) completed in the window, interval median "
        + "\(ms(Self.percentile(intervals, 0.5))) ms (min \(ms(intervals.first ?? 0)), max "
        + "\(ms(intervals.last ?? 0))); seen within \(fsyncPoll / 1_000) µs of completing")
    for form in forms {
      selecting(form).reportForm(label: forms.count > 1 ? "[\(form.label)] " : "")
    }
  }

  /// The lines about the selected form's measuring subscribers.
  private func reportForm(label: String) {
    let sorted = self.sorted
    print(
      "\(label)measured: \(samples.count) events over \(format1(window)) s "
        + "(per measuring subscriber: "
        + "\((perClient[form] ?? []).map(String.init).joined(separator: ", ")); "
        + "unmatched \(unmatched[form] ?? 0), without identity \(unkeyed[form] ?? 0))")
    print("\(label)latency relay write → subscriber read, ms: \(Self.line(sorted))")
    let toTranslate = samples.map(\.toTranslate).sorted()
    let afterTranslate = samples.map { $0.latency - $0.toTranslate }.sorted()
    print("  of which relay write → translated (event's time_us): \(Self.line(toTranslate))")
    print("  and translated → subscriber read: \(Self.line(afterTranslate))")
    let offsets = fsyncOffsets
    let (near, others) = byFsync(offsets)
    print(
      "  written from 5 ms before to 2 ms after an fsync completed (\(near.count) events, "
        + "\(format1(Double(near.count) / Double(max(samples.count, 1)) * 100)) %): "
        + Self.line(near))
    print("  all other events (\(others.count)): \(Self.line(others))")
    let bins: [(String, Range<Int64>)] = [
      ("< −10", Int64.min..<(-10_000_000)), ("−10…−5", -10_000_000..<(-5_000_000)),
      ("−5…−2", -5_000_000..<(-2_000_000)), ("−2…0", -2_000_000..<0), ("0…2", 0..<2_000_000),
      ("2…5", 2_000_000..<5_000_000), ("5…10", 5_000_000..<10_000_000),
      ("≥ 10", 10_000_000..<Int64.max),
    ]
    var phases: [String] = []
    for (name, range) in bins {
      let latencies = zip(samples, offsets).filter { $1.map(range.contains) ?? false }
        .map { $0.0.latency }.sorted()
      guard !latencies.isEmpty else { continue }
      phases.append(
        "\(name): \(ms(Self.percentile(latencies, 0.99)))/\(ms(latencies.last!)) (\(latencies.count))"
      )
    }
    print(
      "  p99/max by when the frame was written, ms from the nearest fsync completion (events): "
        + phases.joined(separator: "; "))
    // The worst 100 ms windows against a typical one.
    var maxima: [UInt64: Int64] = [:]
    for sample in samples {
      let key = (sample.arrival - before.time) / 100_000_000
      maxima[key] = max(maxima[key] ?? 0, sample.latency)
    }
    let windowMaxima = maxima.values.sorted()
    print(
      "  max per 100 ms window (\(windowMaxima.count) windows): median "
        + "\(ms(Self.percentile(windowMaxima, 0.5))), p90 \(ms(Self.percentile(windowMaxima, 0.9))), "
        + "max \(ms(windowMaxima.last ?? 0))")
    let slowest = zip(samples, offsets).sorted { $0.0.latency > $1.0.latency }.prefix(5)
    print(
      "  slowest: "
        + slowest.map { sample, offset in
          "\(ms(sample.latency)) (written \(offset.map { ms($0) } ?? "?") ms from an fsync)"
        }.joined(separator: ", "))
  }

  /// One row of the summary for `form` (with its name as a column when `labelled`).
  func summaryRow(_ form: LatencyForm, labelled: Bool) -> String {
    selecting(form).summaryRow(labelled: labelled)
  }

  private func summaryRow(labelled: Bool) -> String {
    let sorted = self.sorted
    let (near, others) = byFsync(fsyncOffsets)
    let frames = Double(after.sent - before.sent) / window
    return "| \(rate) | \(Int(frames.rounded())) | "
      + (labelled ? "\(form.label) | " : "") + "\(samples.count) "
      + "| \(ms(Self.percentile(sorted, 0.5))) | \(ms(Self.percentile(sorted, 0.9))) "
      + "| \(ms(Self.percentile(sorted, 0.99))) | \(ms(Self.percentile(sorted, 0.999))) "
      + "| \(ms(sorted.last ?? 0)) | \(near.isEmpty ? "–" : ms(Self.percentile(near, 0.99))) "
      + "| \(ms(Self.percentile(others, 0.99))) | \(Int(cpu.process.rounded())) "
      + "| \(Int(cpu.client.rounded())) | \(Int(cpu.others.rounded())) |"
  }
}

// MARK: - Wires

/// What a measuring subscriber asks for.
enum LatencyForm: CaseIterable, Hashable {
  case v1JSON, v1Zstd, v2Text, v2Zstd

  var isV2: Bool { self == .v2Text || self == .v2Zstd }

  var label: String {
    switch self {
    case .v1JSON: return "v1 JSON"
    case .v1Zstd: return "v1 zstd"
    case .v2Text: return "v2 text"
    case .v2Zstd: return "v2 zstd"
    }
  }

  /// Live, no filter.
  func target(dictionaryID: UInt32) -> String {
    switch self {
    case .v1JSON: return "/subscribe"
    case .v1Zstd: return "/subscribe?compress=true"
    case .v2Text: return "/xrpc/network.bsky.jetstream.subscribeEvents"
    case .v2Zstd:
      return "/xrpc/network.bsky.jetstream.subscribeEvents?zstdDictionary=\(dictionaryID)"
    }
  }

  /// How a measuring subscriber of this form reads an event's identity.
  func decoder(_ dictionary: ZstdDictionary) throws -> LatencyDecoder {
    switch self {
    case .v1JSON: return LatencyDecoder(v2: false, decompressor: nil)
    case .v1Zstd:
      return LatencyDecoder(v2: false, decompressor: try EventDecompressor(dictionary: dictionary))
    case .v2Text: return LatencyDecoder(v2: true, decompressor: nil)
    case .v2Zstd:
      return LatencyDecoder(v2: true, decompressor: try EventDecompressor(dictionary: dictionary))
    }
  }
}

/// A measuring subscriber's decoding: zstd frames are decompressed (with a context of its own,
/// on its thread) before its identity is read, the v1 or the v2 way.
struct LatencyDecoder {
  var v2: Bool
  var decompressor: EventDecompressor?
}

// MARK: - Helpers

/// One measured event: when its read returned, the latency from the relay's write, and the part
/// of that until the server translated it (its `time_us`; the rest is compress, append, publish,
/// fan-out and the socket).
struct LatencySample {
  var arrival: UInt64
  var latency: Int64
  var toTranslate: Int64
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, ns (read back to back; a clock step during a run would
/// shift the split, not the latency).
func realtimeMinusMonotonic() -> Int64 {
  var real = timespec()
  clock_gettime(CLOCK_REALTIME, &real)
  let monotonic = monotonicNanoseconds()
  return Int64(real.tv_sec) * 1_000_000_000 + Int64(real.tv_nsec) - Int64(monotonic)
}

/// CLOCK_MONOTONIC in nanoseconds (the same clock on every thread).
func monotonicNanoseconds() -> UInt64 {
  var time = timespec()
  clock_gettime(CLOCK_MONOTONIC, &time)
  return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

private func ms(_ nanoseconds: Int64) -> String {
  String(format: "%.3f", Double(nanoseconds) / 1e6)
}

private func format2(_ value: Double) -> String { String(format: "%.2f", value) }

private func elapsedSeconds(since start: ContinuousClock.Instant) -> Double {
  let elapsed = ContinuousClock.now - start
  return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
}
