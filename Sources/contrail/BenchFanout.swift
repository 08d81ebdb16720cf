import ArgumentParser
import Broadcast
import Compression
import EventLog
import Events
import Foundation
import NIOCore
import Subscribe
import SyntheticFirehose

/// `contrail bench fanout`: the subscribe server in this process, `contrail load-client` in
/// another (so this process's CPU time is the server's), over 127.0.0.1.
struct BenchFanout: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fanout",
    abstract: "Live fan-out and disk replay events/s, server CPU per message, idle RSS.",
    discussion: """
      Live: the events are published to the ring as fast as possible while every subscriber \
      reads them all. Replay: one subscriber reads a log from its first event. Idle: RSS with \
      --idle subscribers connected and nothing to send. --compare: live runs only, each one \
      twice, interleaved: with frames built once at publish and sent as slices (the server's \
      way), and with every subscriber copying each payload into a buffer of its own (the way \
      before it); medians and spreads over --rounds. --wire v2 or both: the same runs with \
      v2 subscribers (subscribeEvents, text and zstdDictionary), whose frames the server makes \
      once per event (V2Publisher, included in the server CPU); with --rounds above 1 every \
      round runs each count's forms in a rotating order, then medians and spreads, and v2 / v1 \
      ratios taken within each round.
      """)

  @Option(help: "Subscriber counts for the live runs (comma-separated).")
  var subscribers = "1,10,100,1000"

  @Option(help: "Messages to deliver per live run, in total over all subscribers.")
  var deliveries = 2_000_000

  @Option(help: "Events in the log for the replay runs.")
  var replay = 500_000

  @Option(help: "Idle subscribers for the RSS measurement.")
  var idle = 1_000

  @Option(help: "Distinct synthetic frames behind the events (they are reused with new time_us).")
  var frames = 20_000

  @Option(help: "The dictionary the events are compressed with.")
  var dictionary = "Dictionaries/contrail-default.zdict"

  @Flag(help: "Live runs only: shared frames sent as slices vs per-subscriber copies, interleaved.")
  var compare = false

  @Option(
    help: """
      Rounds: of --compare (each runs every count and form both ways; default 5), or of the \
      live and replay runs (default 1), interleaved.
      """)
  var rounds: Int?

  @Option(help: "Subscribers' wire: v1 (/subscribe, JSON and zstd), v2 (subscribeEvents) or both.")
  var wire = "v1"

  func validate() throws {
    guard ["v1", "v2", "both"].contains(wire) else {
      throw ValidationError("--wire is v1, v2 or both")
    }
    guard (rounds ?? 1) > 0 else { throw ValidationError("--rounds must be positive") }
  }

  /// The subscriber forms of the live and replay runs.
  private var forms: [FanoutForm] {
    switch wire {
    case "v2": return [.v2Text, .v2Zstd]
    case "both": return FanoutForm.allCases
    default: return [.v1JSON, .v1Zstd]
    }
  }

  func run() async throws {
    let counts = try subscribers.split(separator: ",").map {
      guard let count = Int($0), count > 0 else { throw CLIError("bad subscriber count: \($0)") }
      return count
    }
    let dictionary = try ZstdDictionary(path: dictionary)
    let scratch = FileManager.default.temporaryDirectory.path + "/contrail-bench-fanout-\(getpid())"
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    if compare {
      return try await comparison(
        counts, rounds: rounds ?? 5, dictionary: dictionary, scratch: scratch)
    }

    let idleLog = try EventLog(Self.logConfiguration(scratch + "/idle"))
    let server = try await SubscribeServer.start(
      sources: .init(ring: LiveRing(), log: idleLog, dictionary: dictionary))
    let before = Self.residentBytes()
    let client = try await LoadProcess.start(
      port: server.port, connections: idle, target: "/subscribe", expect: 0)
    try await Self.waitFor(server, subscribers: idle)
    let after = Self.residentBytes()
    let anonymous = BenchIngest.resident(getpid(), "RssAnon:")
    client.stop()
    print(
      "idle: RSS \(after >> 20) MB with \(idle) subscribers (\(anonymous >> 20) MB anonymous; "
        + "\(before >> 20) MB before they connected, \((after - before) / max(idle, 1)) B each)")
    try await server.stop()

    let pool = try Self.events(frames: frames, dictionary: dictionary)
    let average = pool.reduce(0) { $0 + $1.compressed.readableBytes } / pool.count
    print(
      "\(pool.count) distinct events (zstd \(average) B average), reused with new time_us; "
        + "load client: `contrail load-client` in a second process")
    let forms = self.forms
    let rounds = self.rounds ?? 1
    var table = FanoutTable()

    // One round: every count of one form, then the next form (the order the benchmark always
    // ran, so that a before/after comparison runs the same sequence); more: each count's forms
    // together, in an order rotating by round and count.
    let order: (Int) -> [(count: Int, form: FanoutForm)] = { round in
      guard rounds > 1 else { return forms.flatMap { form in counts.map { ($0, form) } } }
      return counts.enumerated().flatMap { index, count in
        Self.rotated(forms, by: round + index).map { (count, $0) }
      }
    }
    for round in 0..<rounds {
      for (count, form) in order(round) {
        let run = try await live(
          count, form: form, framing: true, pool: pool, dictionary: dictionary, scratch: scratch)
        let name = "live \(form.name) × \(count)"
        report(
          (rounds > 1 ? "round \(round + 1) " : "") + name, run.result, cpu: run.cpu,
          delivered: run.delivered, publish: run.publish, others: run.others)
        table.add(
          name, group: "live × \(count)", form: form, round: round, run.result, cpu: run.cpu,
          delivered: run.delivered, others: run.others)
      }
    }

    // One log for every replay run, written once.
    let log = try EventLog(Self.logConfiguration(scratch + "/replay"))
    var records: [LogRecord] = []
    for index in 0..<replay {
      let event = pool[index % pool.count]
      records.append(
        LogRecord(
          timeUS: Int64(index + 1), seq: Int64(index + 1), eventSeq: Int64(index + 1),
          kind: event.kind, did: event.did,
          collection: event.collection,
          payload: Array(event.compressed.readableBytesView)))
      if records.count == 1_000 {
        try log.append(records)
        records.removeAll(keepingCapacity: true)
      }
    }
    try log.append(records)
    for round in 0..<rounds {
      for form in Self.rotated(forms, by: round) {
        let ring = LiveRing(capacity: 1_024, startAfter: Int64(replay))
        let server = try await SubscribeServer.start(
          sources: .init(ring: ring, log: log, dictionary: dictionary))
        let cpu = CPUTime.now()
        let meter = BusyMeter(client: nil)
        let client = try await LoadProcess.start(
          port: server.port, connections: 1,
          target: form.target(dictionaryID: dictionary.id, cursor: 1), expect: replay)
        let result = try await client.result()
        let used = CPUTime.now() - cpu
        let others = meter.othersPercent()
        let name = "replay from disk, \(form.replayName) × 1"
        report(
          (rounds > 1 ? "round \(round + 1) " : "") + name, result, cpu: used, delivered: replay,
          others: others)
        table.add(
          name, group: "replay", form: form, round: round, result, cpu: used, delivered: replay,
          others: others)
        try await server.stop()
      }
    }
    try log.close()

    if forms.contains(where: \.isV2) {
      try v2Costs(pool, dictionary: dictionary)
    }
    if rounds > 1 || forms.count > 2 {
      table.print(rounds: rounds)
    }
  }

  /// The v2 form's own costs over the same events, on this thread: the rewrite, its zstd frame
  /// and their sizes against the v1 zstd frame the log stores, i.e. what a v2 feed derives per
  /// event replayed, and what storing the v2 form too would add at ingest and on disk.
  private func v2Costs(_ pool: [BroadcastEvent], dictionary: ZstdDictionary) throws {
    let compressor = try EventCompressor(dictionary: dictionary)
    let decompressor = try EventDecompressor(dictionary: dictionary)
    let v1 = pool.map { Array($0.compressed.readableBytesView) }
    var v1JSON = 0
    var v2JSON = 0
    var v2Zstd = 0
    var v2Frames: [[UInt8]] = []
    for (index, event) in pool.enumerated() {
      let json = try decompressor.decompress(v1[index])
      v1JSON += json.count
      guard
        let v2 = json.withUnsafeBytes({
          V2Frame.message(fromV1: $0, eventSeq: Int64(index + 1), timeUS: event.timeUS + 1)
        })
      else { throw CLIError("event \(index) has no v2 form") }
      v2JSON += v2.count
      v2Zstd += try compressor.compress(v2).count
      v2Frames.append(v2)
    }
    let v1Zstd = v1.reduce(0) { $0 + $1.count }
    let n = Double(pool.count)
    /// Best of 5 passes over the pool, µs per event.
    func time(_ body: () throws -> Int) rethrows -> Double {
      var best = Double.infinity
      var sink = 0
      for _ in 0..<5 {
        let start = ContinuousClock.now
        sink &+= try body()
        let elapsed = ContinuousClock.now - start
        best = min(
          best,
          Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
      }
      if sink == Int.min { print(sink) }
      return best / n * 1e6
    }
    let decompress = try time { try v1.reduce(0) { $0 + (try decompressor.decompress($1).count) } }
    var jsons: [[UInt8]] = []
    for payload in v1 { jsons.append(try decompressor.decompress(payload)) }
    let rewrite = time {
      var total = 0
      for (index, json) in jsons.enumerated() {
        total &+=
          json.withUnsafeBytes {
            V2Frame.message(fromV1: $0, eventSeq: Int64(index + 1), timeUS: Int64(index + 1))
          }?.count ?? 0
      }
      return total
    }
    let compress = try time { try v2Frames.reduce(0) { $0 + (try compressor.compress($1).count) } }
    print(
      "v2 form of the \(pool.count) events (level \(EventCompressor.defaultLevel), this "
        + "dictionary, one thread, best of 5): v1 JSON \(format1(Double(v1JSON) / n)) B, v1 zstd "
        + "\(format1(Double(v1Zstd) / n)) B (what the log stores); v2 JSON "
        + "\(format1(Double(v2JSON) / n)) B, v2 zstd \(format1(Double(v2Zstd) / n)) B "
        + "(\(format3(Double(v2Zstd) / Double(v1Zstd))) × v1 zstd); decompress v1 "
        + "\(format3(decompress)) µs, rewrite \(format3(rewrite)) µs, compress v2 "
        + "\(format3(compress)) µs per event")
  }

  /// `forms` starting at `offset` (mod its count): each round puts another form first.
  static func rotated<T>(_ forms: [T], by offset: Int) -> [T] {
    guard !forms.isEmpty else { return forms }
    let start = offset % forms.count
    return Array(forms[start...] + forms[..<start])
  }

  /// One live run: `count` subscribers read every event published as fast as possible. With
  /// `framing` off the ring does not build frames, so every subscriber copies each payload.
  /// `publish`: the CPU time of the publishing loop (restamping, framing, publishing) alone.
  private func live(
    _ count: Int, form: FanoutForm, framing: Bool, fresh: Bool = false, pool: [BroadcastEvent],
    dictionary: ZstdDictionary, scratch: String
  ) async throws -> (
    result: LoadProcess.Result, cpu: Double, publish: Double, delivered: Int, others: Double
  ) {
    let events = max(2_000, deliveries / count)
    let directory = scratch + "/live-\(count)-\(form)-\(framing)"
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let log = try EventLog(Self.logConfiguration(directory))
    let ring = LiveRing(capacity: events + 1, maxBytes: 8 << 30, framing: framing)
    let server = try await SubscribeServer.start(
      sources: .init(ring: ring, log: log, dictionary: dictionary))
    let client = try await LoadProcess.start(
      port: server.port, connections: count,
      target: form.target(dictionaryID: dictionary.id, cursor: nil), expect: events)
    try await Self.waitFor(server, subscribers: count)
    if form.isV2 { try await Self.waitForV2Following(server) }
    let cpu = CPUTime.now()
    let meter = BusyMeter(client: client.pid)
    // The publishing loop never suspends, so it runs on this one thread throughout.
    let publishing = CPUTime.thread()
    var time: Int64 = 0
    for start in stride(from: 0, to: events, by: 256) {
      ring.publish(
        (start..<min(start + 256, events)).map { index in
          time += 1
          return Self.restamped(pool[index % pool.count], time, fresh: fresh)
        })
    }
    let published = CPUTime.thread() - publishing
    let result = try await client.result()
    let used = CPUTime.now() - cpu
    let others = meter.othersPercent()
    try await server.stop()
    return (result, used, published, count * events, others)
  }

  /// `--compare`: every count and form with shared slices and with per-subscriber copies, the
  /// two interleaved (their order alternating by round), then the median and range of each.
  private func comparison(
    _ counts: [Int], rounds: Int, dictionary: ZstdDictionary, scratch: String
  ) async throws {
    let pool = try Self.events(frames: frames, dictionary: dictionary)
    print(
      "compare: \(pool.count) distinct events, \(deliveries) deliveries per run, \(rounds) rounds; "
        + "every event published with payload buffers of its own, as ingest makes them; "
        + "slices = frames built once at publish, sent as slices of shared blocks; "
        + "copies = every subscriber copies each payload into its own buffer")
    struct Key: Hashable {
      var compressed: Bool
      var count: Int
      var framing: Bool
    }
    var cpu: [Key: [Double]] = [:]
    var rates: [Key: [Double]] = [:]
    /// Server CPU per message without the publishing loop, and the loop's CPU per event.
    var rest: [Key: [Double]] = [:]
    var publishing: [Key: [Double]] = [:]
    for round in 0..<rounds {
      for compressed in [false, true] {
        for count in counts {
          let order = (round + count) % 2 == 0 ? [false, true] : [true, false]
          for framing in order {
            let run = try await live(
              count, form: compressed ? .v1Zstd : .v1JSON, framing: framing, fresh: true,
              pool: pool, dictionary: dictionary, scratch: scratch)
            let name =
              "round \(round + 1) live \(compressed ? "zstd" : "json") × \(count) "
              + (framing ? "slices" : "copies")
            report(name, run.result, cpu: run.cpu, delivered: run.delivered, publish: run.publish)
            guard run.result.complete, run.result.messages == run.delivered else { continue }
            let key = Key(compressed: compressed, count: count, framing: framing)
            cpu[key, default: []].append(run.cpu / Double(run.delivered) * 1e6)
            rest[key, default: []].append(
              (run.cpu - run.publish) / Double(run.delivered) * 1e6)
            publishing[key, default: []].append(
              run.publish / Double(run.delivered / count) * 1e6)
            rates[key, default: []].append(Double(run.result.messages) / run.result.seconds)
          }
        }
      }
    }
    func median(_ values: [Double]) -> Double {
      let sorted = values.sorted()
      guard !sorted.isEmpty else { return .nan }
      return sorted.count % 2 == 1
        ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
    print("")
    print(
      "| run | server CPU µs/message, copies: median (min–max) | slices: median (min–max) "
        + "| slices / copies | without publishing, copies → slices | publishing µs/event, "
        + "copies → slices | events/s, copies → slices |")
    print("|---|---|---|---|---|---|---|")
    for compressed in [false, true] {
      for count in counts {
        let old = Key(compressed: compressed, count: count, framing: false)
        let new = Key(compressed: compressed, count: count, framing: true)
        func spread(_ values: [Double]) -> String {
          "\(format3(median(values))) (\(format3(values.min() ?? .nan))–"
            + "\(format3(values.max() ?? .nan)))"
        }
        func rate(_ key: Key) -> Int {
          let value = median(rates[key] ?? [])
          return value.isNaN ? 0 : Int(value)
        }
        print(
          "| live \(compressed ? "zstd" : "json") × \(count) | \(spread(cpu[old] ?? [])) "
            + "| \(spread(cpu[new] ?? [])) "
            + "| \(format3(median(cpu[new] ?? []) / median(cpu[old] ?? []))) "
            + "| \(format3(median(rest[old] ?? []))) → \(format3(median(rest[new] ?? []))) "
            + "| \(format3(median(publishing[old] ?? []))) → "
            + "\(format3(median(publishing[new] ?? []))) "
            + "| \(rate(old)) → \(rate(new)) |")
      }
    }
  }

  private func report(
    _ name: String, _ result: LoadProcess.Result, cpu: Double, delivered: Int,
    publish: Double? = nil, others: Double? = nil
  ) {
    guard result.complete, result.messages == delivered else {
      print("\(name): INCOMPLETE, \(result.messages) of \(delivered) messages")
      return
    }
    let split = publish.map {
      "; without publishing \(format3((cpu - $0) / Double(delivered) * 1e6)) µs/message"
    }
    print(
      "\(name): \(Int(Double(result.messages) / result.seconds)) events/s delivered, "
        + "\(format1(Double(result.bytes) / result.seconds / 1e6)) MB/s, server CPU "
        + "\(format3(cpu / Double(delivered) * 1e6)) µs/message "
        + "(\(Int(cpu / Double(delivered) * 1e8)) ms per 100k\(split ?? ""))"
        + (others.map { "; other processes \(format1($0)) % of a core" } ?? ""))
  }

  static func logConfiguration(_ directory: String) -> EventLog.Configuration {
    var configuration = EventLog.Configuration(directory: directory)
    configuration.sync = .never
    return configuration
  }

  static func waitFor(_ server: SubscribeServer, subscribers: Int) async throws {
    let deadline = ContinuousClock.now + .seconds(60)
    while server.subscriberCount < subscribers {
      guard ContinuousClock.now < deadline else {
        throw CLIError("only \(server.subscriberCount) of \(subscribers) subscribers connected")
      }
      try await Task.sleep(for: .milliseconds(5))
    }
  }

  /// Waits until the server's v2 publisher follows the v1 ring (it starts on its own queue when
  /// the first v2 subscriber arrives): what is published before that reaches v2 subscribers
  /// only through the log, and the live runs publish to the ring alone.
  static func waitForV2Following(_ server: SubscribeServer) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while true {
      let ring = server.v2.ring
      if case .events = ring.read(after: ring.newestTimeUS, limit: 1, filter: .everything) {
        return
      }
      guard ContinuousClock.now < deadline else {
        throw CLIError("the v2 publisher did not start following")
      }
      try await Task.sleep(for: .milliseconds(2))
    }
  }

  /// Synthetic events in the ring's form, compressed once.
  static func events(frames: Int, dictionary: ZstdDictionary) throws -> [BroadcastEvent] {
    let compressor = try EventCompressor(dictionary: dictionary)
    var generator = FirehoseGenerator(seed: 5)
    let translator = Translator(sequencer: Sequencer(last: 0, clock: { 0 }))
    var events: [Event] = []
    for _ in 0..<frames { translator.translate(generator.next(), into: &events) }
    return try events.map {
      BroadcastEvent($0, eventSeq: 0, compressed: try compressor.compress($0.json))
    }
  }

  /// `event` at `time`: sharing its payload buffers, or (`fresh`) with copies of its own, as
  /// ingest makes each event (`BroadcastEvent(_:compressed:)`), so that every event in the ring
  /// is in memory of its own, as in a server.
  static func restamped(_ event: BroadcastEvent, _ time: Int64, fresh: Bool = false)
    -> BroadcastEvent
  {
    BroadcastEvent(
      timeUS: time, eventSeq: time, kind: event.kind, did: event.did,
      collection: event.collection,
      json: fresh ? event.json.map { ByteBuffer(bytes: $0.readableBytesView) } : event.json,
      compressed: fresh ? ByteBuffer(bytes: event.compressed.readableBytesView) : event.compressed,
      jsonLength: event.jsonLength)
  }

  static func residentBytes() -> Int { BenchIngest.resident(getpid(), "VmRSS:") }
}

/// User + system CPU seconds of this process, or of the calling thread.
enum CPUTime {
  static func now() -> Double { seconds(RUSAGE_SELF.rawValue) }

  /// Of the children that ended and were waited for.
  static func children() -> Double { seconds(RUSAGE_CHILDREN.rawValue) }

  static func thread() -> Double {
    #if os(Linux)
      return seconds(1)  // RUSAGE_THREAD (glibc declares it only with _GNU_SOURCE)
    #else
      return 0  // not measured: the split is reported as if publishing were free
    #endif
  }

  private static func seconds(_ who: Int32) -> Double {
    var usage = rusage()
    getrusage(who, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
      + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
  }
}

/// The CPU that processes other than this one and its load client used during a run, from
/// /proc/stat (clock ticks): what tells a quiet run from a disturbed one on a shared machine.
struct BusyMeter {
  private let machine = MachineCPU.now()
  private let own = CPUTime.now()
  private let children = CPUTime.children()
  /// The running load client's CPU so far (it is counted in `children` once waited for).
  private let clientBefore: Double
  private let start = ContinuousClock.now

  init(client: Int32?) { clientBefore = client.map(Child.cpuSeconds) ?? 0 }

  /// % of one core, over the time since `init`; call it once the load client was waited for.
  func othersPercent() -> Double {
    let end = MachineCPU.now()
    let elapsed = ContinuousClock.now - start
    let seconds =
      Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    guard end.total > machine.total, seconds > 0 else { return 0 }
    let busy =
      (end.busy - machine.busy) / (end.total - machine.total)
      * Double(ProcessInfo.processInfo.activeProcessorCount) * seconds
    let ours = (CPUTime.now() - own) + (CPUTime.children() - children - clientBefore)
    return max(0, (busy - ours) / seconds * 100)
  }
}

/// `contrail load-client` running as a child process.
final class LoadProcess: Sendable {
  struct Result {
    var messages = 0
    var bytes = 0
    var seconds = 0.0
    var complete = false
  }

  private let process: Process
  private let output: FileHandle
  private let input: Pipe

  private init(process: Process, output: FileHandle, input: Pipe) {
    self.process = process
    self.output = output
    self.input = input
  }

  /// Starts the client and returns once all its connections are up.
  static func start(port: Int, connections: Int, target: String, expect: Int) async throws
    -> LoadProcess
  {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
    process.arguments = [
      "load-client", "--port", String(port), "--connections", String(connections), "--target",
      target, "--expect", String(expect),
    ]
    let stdout = Pipe()
    let stdin = Pipe()
    process.standardOutput = stdout
    process.standardInput = stdin
    try process.run()
    let client = LoadProcess(process: process, output: stdout.fileHandleForReading, input: stdin)
    guard try await client.line() == "ready" else { throw CLIError("the load client failed") }
    return client
  }

  /// The next line the client prints (blocking read on a thread of its own).
  private func line() async throws -> String? {
    let output = self.output
    return await Task.detached {
      var bytes: [UInt8] = []
      while true {
        let byte = output.readData(ofLength: 1)
        guard let first = byte.first else {
          return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
        }
        if first == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
        bytes.append(first)
      }
    }.value
  }

  /// Waits for the client's result line.
  func result() async throws -> Result {
    guard let line = try await line(), line.hasPrefix("result ") else {
      throw CLIError("the load client ended without a result")
    }
    var result = Result()
    for field in line.split(separator: " ").dropFirst() {
      let parts = field.split(separator: "=")
      guard parts.count == 2 else { continue }
      switch parts[0] {
      case "messages": result.messages = Int(parts[1]) ?? 0
      case "bytes": result.bytes = Int(parts[1]) ?? 0
      case "seconds": result.seconds = Double(parts[1]) ?? 0
      case "complete": result.complete = parts[1] == "true"
      default: break
      }
    }
    process.waitUntilExit()
    return result
  }

  var pid: Int32 { process.processIdentifier }

  /// Ends an idle client (it exits when its standard input closes).
  func stop() {
    try? input.fileHandleForWriting.close()
    process.waitUntilExit()
  }
}

/// What a fan-out run's subscribers ask for.
enum FanoutForm: CaseIterable, CustomStringConvertible {
  case v1JSON, v1Zstd, v2Text, v2Zstd

  var isV2: Bool { self == .v2Text || self == .v2Zstd }
  var compressed: Bool { self == .v1Zstd || self == .v2Zstd }

  /// As named in the live rows (the v1 names are those the benchmark always printed).
  var name: String {
    switch self {
    case .v1JSON: return "json"
    case .v1Zstd: return "zstd"
    case .v2Text: return "v2 text"
    case .v2Zstd: return "v2 zstd"
    }
  }

  /// As named in the replay rows.
  var replayName: String {
    switch self {
    case .v1JSON: return "json (decompressed per event)"
    case .v1Zstd: return "zstd"
    case .v2Text: return "v2 text (rewritten per read batch)"
    case .v2Zstd: return "v2 zstd (rewritten and compressed per read batch)"
    }
  }

  var description: String { name.replacingOccurrences(of: " ", with: "-") }

  /// The request target: v1 `/subscribe` (`compress=true`), or v2 `subscribeEvents`
  /// (`zstdDictionary`); `cursor` a `time_us` on v1 and a seq on v2 (the fan-out logs number
  /// both from 1, so cursor 1 is the first event either way).
  func target(dictionaryID: UInt32, cursor: Int64?) -> String {
    var query: [String] = []
    if let cursor { query.append("cursor=\(cursor)") }
    switch self {
    case .v1JSON: break
    case .v1Zstd: query.append("compress=true")
    case .v2Text: break
    case .v2Zstd: query.append("zstdDictionary=\(dictionaryID)")
    }
    let path = isV2 ? "/xrpc/network.bsky.jetstream.subscribeEvents" : "/subscribe"
    return query.isEmpty ? path : path + "?" + query.joined(separator: "&")
  }

  /// The v1 form a v2 form is compared with (same compression), nil for v1 forms.
  var v1Counterpart: FanoutForm? {
    switch self {
    case .v2Text: return .v1JSON
    case .v2Zstd: return .v1Zstd
    default: return nil
    }
  }
}

/// Every run's events/s and server CPU per message by row and round; printed as medians with
/// their spread, and v2 / v1 ratios taken within each round (runs minutes apart on a shared
/// machine are compared only through runs next to them).
struct FanoutTable {
  private struct Row {
    var name: String
    /// Rows of one group differ only in their form (`live × 100`, `replay`).
    var group: String
    var form: FanoutForm
    var rates: [Int: Double] = [:]
    var cpu: [Int: Double] = [:]
    var others: [Int: Double] = [:]
  }
  private var rows: [Row] = []

  mutating func add(
    _ name: String, group: String, form: FanoutForm, round: Int, _ result: LoadProcess.Result,
    cpu: Double, delivered: Int, others: Double
  ) {
    guard result.complete, result.messages == delivered, result.seconds > 0 else { return }
    if !rows.contains(where: { $0.name == name }) {
      rows.append(Row(name: name, group: group, form: form))
    }
    let index = rows.firstIndex { $0.name == name }!
    rows[index].rates[round] = Double(result.messages) / result.seconds
    rows[index].cpu[round] = cpu / Double(delivered) * 1e6
    rows[index].others[round] = others
  }

  static func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1
      ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
  }

  static func spread(_ values: [Double], _ format: (Double) -> String) -> String {
    guard let low = values.min(), let high = values.max() else { return "–" }
    return "\(format(median(values))) (\(format(low))–\(format(high)))"
  }

  func print(rounds: Int) {
    Swift.print("")
    Swift.print(
      "| run | rounds | events/s delivered, median (min–max) | server CPU µs/message, median "
        + "(min–max) | v2 / v1 CPU per message, same round: median (min–max) "
        + "| other processes, % of a core: median (max) |")
    Swift.print("|---|---|---|---|---|---|")
    // By group (in the order first run), then by form.
    let groups = rows.map(\.group).reduce(into: [String]()) {
      if !$0.contains($1) { $0.append($1) }
    }
    let ordered = rows.sorted {
      let (left, right) = (groups.firstIndex(of: $0.group)!, groups.firstIndex(of: $1.group)!)
      if left != right { return left < right }
      return FanoutForm.allCases.firstIndex(of: $0.form)! < FanoutForm.allCases.firstIndex(
        of: $1.form)!
    }
    for row in ordered {
      var ratio = "–"
      if let counterpart = row.form.v1Counterpart,
        let v1 = rows.first(where: { $0.form == counterpart && $0.group == row.group })
      {
        let ratios = row.cpu.compactMap { round, cpu in v1.cpu[round].map { cpu / $0 } }
        if !ratios.isEmpty { ratio = Self.spread(ratios, format3) }
      }
      Swift.print(
        "| \(row.name) | \(row.rates.count) of \(rounds) "
          + "| \(Self.spread(Array(row.rates.values)) { String(Int($0)) }) "
          + "| \(Self.spread(Array(row.cpu.values), format3)) | \(ratio) "
          + "| \(format1(Self.median(Array(row.others.values)))) "
          + "(\(format1(row.others.values.max() ?? .nan))) |")
    }
  }
}
