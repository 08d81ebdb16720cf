import ArgumentParser
import Foundation
import Ingest

/// `contrail bench edge`: a primary and its edges as separate `contrail serve` processes, fed by
/// `contrail fake-relay` at a fixed rate; the CPU each process uses per event stored, the
/// primary's CPU with 0, 1, 2 and 4 edges following it, and an edge's CPU with subscribers.
struct BenchEdge: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "edge",
    abstract: "Primary and edge CPU per stored event; the primary's CPU per edge attached.",
    discussion: """
      Every part is a process of its own on 127.0.0.1: `fake-relay` (generated frames, looped \
      under new seqs, --rate frames/s), the primary (`serve --relay`) and the edges (`serve \
      --upstream`, each with a data directory of its own), so /proc/PID/stat gives each one's \
      CPU (user + system, every thread). Events stored: the primary's contrail_events_total over \
      the window; an edge stores the same records a few ms later (checked at the end of each \
      round: the edges' contrail_log_events and contrail_log_bytes against the primary's). \
      Phase 1, every round: the edge counts of --edges in turn (ascending in odd rounds, \
      descending in even ones), --settle s after each change, then --seconds s measured. \
      Phase 2 (--edge-subscribers > 0): one edge, with no subscribers, --edge-subscribers v1 \
      zstd ones and as many v2 zstd ones (a load-client process), rotating. With --preload, a \
      library that counts zstd and libcbor calls (Benchmarks/edge-bench.sh builds it) is loaded \
      into the serve processes, and the calls per event in each window are reported: an edge \
      must not decode records (cbor_stream_decode) or compress them (ZSTD_compress2).
      """)

  @Option(help: "Relay frames per second (about 1.04 events each).")
  var rate = 2_000

  @Option(help: "Edge counts to measure the primary with (comma-separated).")
  var edges = "0,1,2,4"

  @Option(help: "Seconds measured per configuration.")
  var seconds = 30

  @Option(help: "Seconds after each change before measuring (edges catch up, connections settle).")
  var settle = 10

  @Option(help: "Rounds; each starts a new relay, primary and edges.")
  var rounds = 3

  @Option(help: "Distinct generated frames the relay loops over.")
  var pool = 20_000

  @Option(help: "Subscribers of one edge in phase 2 (0: no phase 2).")
  var edgeSubscribers = 1_000

  @Option(help: "A counting library to LD_PRELOAD into the serve processes (edge-bench.sh).")
  var preload: String?

  func validate() throws {
    guard rate > 0, seconds > 0, settle >= 0, rounds > 0, pool >= 100, edgeSubscribers >= 0
    else { throw ValidationError("--rate, --seconds, --rounds, --pool must be positive") }
  }

  func run() async throws {
    let counts = try edges.split(separator: ",").map {
      guard let count = Int($0), count >= 0 else { throw CLIError("bad edge count: \($0)") }
      return count
    }
    let scratch = FileManager.default.temporaryDirectory.path + "/contrail-bench-edge-\(getpid())"
    try? FileManager.default.removeItem(atPath: scratch)
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let frames = scratch + "/pool.frames.zst"
    try Child.run(["generate", "--frames", String(pool), "--seed", "1", "--output", frames])
    print(
      "bench edge: \(ProcessInfo.processInfo.activeProcessorCount) cores, load average "
        + "\(MachineCPU.loadAverage()); relay: fake-relay, \(pool) generated frames looped, "
        + "\(rate) frames/s; \(settle) s settle + \(seconds) s measured per configuration; "
        + "\(rounds) rounds" + (preload.map { "; call counts: \($0)" } ?? ""))

    var windows: [Window] = []
    for round in 0..<rounds where !counts.isEmpty {
      let order = round % 2 == 0 ? counts : counts.reversed()
      windows += try await edgeRound(round, order: order, frames: frames, scratch: scratch)
    }
    if edgeSubscribers > 0 {
      for round in 0..<rounds {
        windows += try await subscriberRound(round, frames: frames, scratch: scratch)
      }
    }
    report(windows, counts: counts)
  }

  // MARK: Rounds

  /// Phase 1: the primary with each edge count of `order` in turn.
  private func edgeRound(_ round: Int, order: [Int], frames: String, scratch: String)
    async throws -> [Window]
  {
    let directory = scratch + "/round-\(round + 1)"
    let cluster = try await Cluster.start(
      frames: frames, rate: rate, directory: directory, preload: preload)
    defer { cluster.stop() }
    var windows: [Window] = []
    for count in order {
      while cluster.edges.count < count { try await cluster.addEdge() }
      while cluster.edges.count > count { cluster.removeEdge() }
      try await Task.sleep(for: .seconds(settle))
      let window = try await cluster.measure(
        seconds: seconds, round: round, phase: .edges(count), load: nil)
      window.print()
      windows.append(window)
    }
    try await cluster.checkEdges()
    // The same processes with nothing to store (the relay stays paused; under serve's 60 s
    // --stale-after, so ingest does not reconnect meanwhile): their fixed cost per second.
    let idle = try await cluster.measure(
      seconds: min(seconds, 40), round: round, phase: .idle(cluster.edges.count), load: nil)
    idle.print()
    windows.append(idle)
    return windows
  }

  /// Phase 2: one edge with no subscribers, v1 zstd ones and v2 zstd ones, rotating.
  private func subscriberRound(_ round: Int, frames: String, scratch: String) async throws
    -> [Window]
  {
    let directory = scratch + "/subscribers-\(round + 1)"
    let cluster = try await Cluster.start(
      frames: frames, rate: rate, directory: directory, preload: preload)
    defer { cluster.stop() }
    try await cluster.addEdge()
    let edgePort = cluster.edges[0].port
    let dictionaryID = try await cluster.dictionaryID()
    let forms: [FanoutForm?] = BenchFanout.rotated([nil, .v1Zstd, .v2Zstd], by: round)
    var windows: [Window] = []
    for form in forms {
      var load: LoadProcess? = nil
      if let form {
        load = try await LoadProcess.start(
          port: edgePort, connections: edgeSubscribers,
          target: form.target(dictionaryID: dictionaryID, cursor: nil), expect: 0)
      }
      try await Task.sleep(for: .seconds(settle))
      let window = try await cluster.measure(
        seconds: seconds, round: round,
        phase: .subscribers(form.map { $0.name } ?? "none", form == nil ? 0 : edgeSubscribers),
        load: load)
      window.print()
      windows.append(window)
      load?.stop()
    }
    try await cluster.checkEdges()
    return windows
  }

  // MARK: Report

  private func report(_ windows: [Window], counts: [Int]) {
    func spread(_ values: [Double], _ digits: Int = 3) -> String {
      FanoutTable.spread(values) { String(format: "%.\(digits)f", $0) }
    }
    print(
      "\nphase 1: the primary and its edges (CPU µs per event stored; median (min–max) over rounds)"
    )
    print(
      "| edges | rounds | events/s stored | primary CPU µs/event | primary CPU % of a core "
        + "| primary − no-edge primary, same round, µs/event per edge | edge CPU µs/event "
        + "| edge CPU % of a core | replication bytes sent per event per edge "
        + "| relay process CPU % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for count in counts {
      let rows = windows.filter { $0.phase == .edges(count) }
      guard !rows.isEmpty else { continue }
      var perEdge: [Double] = []
      if count > 0 {
        for row in rows {
          if let base = windows.first(where: { $0.phase == .edges(0) && $0.round == row.round }) {
            perEdge.append((row.primaryPerEvent - base.primaryPerEvent) / Double(count))
          }
        }
      }
      let edgePercent = rows.flatMap { row in row.edgeSeconds.map { $0 / row.window * 100 } }
      print(
        "| \(count) | \(rows.count) | \(spread(rows.map(\.eventsPerSecond), 0)) "
          + "| \(spread(rows.map(\.primaryPerEvent))) "
          + "| \(spread(rows.map { $0.primarySeconds / $0.window * 100 }, 1)) "
          + "| \(perEdge.isEmpty ? "–" : spread(perEdge)) "
          + "| \(count == 0 ? "–" : spread(rows.flatMap(\.edgePerEvent))) "
          + "| \(count == 0 ? "–" : spread(edgePercent, 1)) "
          + "| \(count == 0 ? "–" : spread(rows.map { $0.replicationBytesPerEvent / Double(count) }, 1)) "
          + "| \(spread(rows.map { $0.relaySeconds / $0.window * 100 }, 1)) |")
    }
    let idles = windows.filter {
      if case .idle = $0.phase { return true }
      return false
    }
    if !idles.isEmpty {
      // Fixed cost (relay paused) and what each event adds above it.
      let primaryIdle = idles.map { $0.primarySeconds / $0.window }
      let edgeIdle = idles.flatMap { window in window.edgeSeconds.map { $0 / window.window } }
      print(
        "idle (relay paused, \(idles.count) windows): primary "
          + "\(spread(primaryIdle.map { $0 * 100 }, 2)) % of a core, edges "
          + (edgeIdle.isEmpty ? "–" : "\(spread(edgeIdle.map { $0 * 100 }, 2)) %"))
      let alone = windows.filter { $0.phase == .edges(0) }
      let primaryMarginal = alone.map {
        ($0.primarySeconds / $0.window - FanoutTable.median(primaryIdle)) / $0.eventsPerSecond
          * 1e6
      }
      let followed = windows.filter {
        if case .edges(let count) = $0.phase { return count > 0 }
        return false
      }
      let edgeMarginal = followed.flatMap { window in
        window.edgeSeconds.map {
          ($0 / window.window - FanoutTable.median(edgeIdle)) / window.eventsPerSecond * 1e6
        }
      }
      print(
        "CPU per event above the idle cost, µs: primary without edges "
          + "\(primaryMarginal.isEmpty ? "–" : spread(primaryMarginal)), edges "
          + "\(edgeMarginal.isEmpty || edgeIdle.isEmpty ? "–" : spread(edgeMarginal))")
    }
    if preload != nil {
      print("\ncalls per event stored, in the windows (median over windows; primary | each edge):")
      print(
        "| call | primary | edges (no subscribers) | edge with v1 zstd subscribers | edge with v2 zstd subscribers |"
      )
      print("|---|---|---|---|---|")
      for (index, name) in CallCounts.names.enumerated() {
        let counted = windows.filter { $0.events > 0 }
        let primary = counted.map { $0.primaryCalls[index] / $0.events }
        let edges = counted.filter {
          if case .edges = $0.phase { return true }
          return $0.phase == .subscribers("none", 0)
        }.flatMap { window in window.edgeCalls.map { $0[index] / window.events } }
        func subscribed(_ form: String) -> String {
          let values = windows.filter {
            if case .subscribers(let name, _) = $0.phase { return name == form }
            return false
          }.flatMap { window in window.edgeCalls.map { $0[index] / window.events } }
          return values.isEmpty ? "–" : spread(values, 4)
        }
        print(
          "| \(name) | \(spread(primary, 4)) | \(edges.isEmpty ? "–" : spread(edges, 4)) "
            + "| \(subscribed("zstd")) | \(subscribed("v2 zstd")) |")
      }
    }
    let subscriberWindows = windows.filter {
      if case .subscribers = $0.phase { return true }
      return false
    }
    guard !subscriberWindows.isEmpty else { return }
    print(
      "\nphase 2: one edge with subscribers (median (min–max) over rounds; per message = the "
        + "edge's CPU above the same round's no-subscriber window, per event × subscribers)")
    print(
      "| subscribers | rounds | edge CPU % of a core | edge CPU µs/event | edge CPU µs/message "
        + "above none | load client CPU % | primary CPU µs/event |")
    print("|---|---|---|---|---|---|---|")
    for form in ["none", "zstd", "v2 zstd"] {
      let rows = subscriberWindows.filter {
        if case .subscribers(let name, _) = $0.phase { return name == form }
        return false
      }
      guard !rows.isEmpty else { continue }
      var perMessage: [Double] = []
      for row in rows {
        guard case .subscribers(_, let subscribers) = row.phase, subscribers > 0,
          let base = subscriberWindows.first(where: {
            $0.phase == .subscribers("none", 0) && $0.round == row.round
          })
        else { continue }
        perMessage.append(
          (row.edgePerEvent[0] - base.edgePerEvent[0]) / Double(subscribers))
      }
      let label =
        form == "none" ? "none" : "\(edgeSubscribers) \(form == "zstd" ? "v1 zstd" : form)"
      print(
        "| \(label) | \(rows.count) | \(spread(rows.map { $0.edgeSeconds[0] / $0.window * 100 }, 1)) "
          + "| \(spread(rows.map { $0.edgePerEvent[0] })) "
          + "| \(perMessage.isEmpty ? "–" : spread(perMessage)) "
          + "| \(spread(rows.map { $0.loadSeconds / $0.window * 100 }, 1)) "
          + "| \(spread(rows.map(\.primaryPerEvent))) |")
    }
  }
}

// MARK: - Processes

/// One measured window: CPU seconds of each process, events stored, calls counted.
struct Window {
  enum Phase: Equatable {
    case edges(Int)
    /// The relay paused (nothing stored), with this many edges attached.
    case idle(Int)
    /// The subscribers' form ("none", "zstd", "v2 zstd") and how many.
    case subscribers(String, Int)
  }
  var round: Int
  var phase: Phase
  var window: Double
  var events: Double
  var primarySeconds: Double
  var edgeSeconds: [Double]
  var relaySeconds: Double
  var loadSeconds: Double
  var replicationBytes: Double
  var primaryCalls: [Double]
  var edgeCalls: [[Double]]
  var othersPercent: Double

  var eventsPerSecond: Double { events / window }
  var primaryPerEvent: Double { primarySeconds / events * 1e6 }
  var edgePerEvent: [Double] { edgeSeconds.map { $0 / events * 1e6 } }
  var replicationBytesPerEvent: Double { replicationBytes / events }

  func print() {
    let name: String
    switch phase {
    case .edges(let count): name = "\(count) edge\(count == 1 ? "" : "s")"
    case .idle(let count):
      Swift.print(
        "round \(round + 1), idle (relay paused, \(count) edge\(count == 1 ? "" : "s")): "
          + "\(Int(events)) events stored; % of a core: primary "
          + "\(format1(primarySeconds / window * 100)), edges "
          + edgeSeconds.map { format1($0 / window * 100) }.joined(separator: " / ")
          + ", other processes \(format1(othersPercent))")
      return
    case .subscribers(let form, let count):
      name = count == 0 ? "1 edge, no subscribers" : "1 edge, \(count) \(form) subscribers"
    }
    var line =
      "round \(round + 1), \(name): \(Int(eventsPerSecond)) events/s stored; CPU µs/event: "
      + "primary \(format3(primaryPerEvent))"
    if !edgeSeconds.isEmpty {
      line += ", edges " + edgePerEvent.map(format3).joined(separator: " / ")
    }
    line +=
      "; % of a core: primary \(format1(primarySeconds / window * 100)), relay "
      + "\(format1(relaySeconds / window * 100))"
    if !edgeSeconds.isEmpty {
      line += ", edges " + edgeSeconds.map { format1($0 / window * 100) }.joined(separator: " / ")
    }
    if loadSeconds > 0 { line += ", load client \(format1(loadSeconds / window * 100))" }
    line += ", other processes \(format1(othersPercent))"
    if replicationBytes > 0 {
      line += "; replication \(format1(replicationBytesPerEvent)) B/event sent"
    }
    if !primaryCalls.isEmpty {
      let per = { (calls: [Double]) in
        zip(CallCounts.names, calls).map { "\($0) \(format3($1 / events))" }.joined(
          separator: ", ")
      }
      line += "\n  calls per event: primary: \(per(primaryCalls))"
      for (index, calls) in edgeCalls.enumerated() {
        line += "\n    edge \(index + 1): \(per(calls))"
      }
    }
    Swift.print(line)
  }
}

/// A relay, a primary and its edges, each a child process.
final class Cluster {
  let relay: Child
  let primary: Serve
  private(set) var edges: [Serve] = []
  private let directory: String
  private let preload: String?

  struct Serve {
    let child: Child
    let port: Int
    let counts: CallCounts?
  }

  private init(relay: Child, primary: Serve, directory: String, preload: String?) {
    self.relay = relay
    self.primary = primary
    self.directory = directory
    self.preload = preload
  }

  static func start(frames: String, rate: Int, directory: String, preload: String?) async throws
    -> Cluster
  {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let relayPort = try freePort()
    let relay = try Child.start([
      "fake-relay", "--frames", frames, "--loop", "--rate", String(rate), "--port",
      String(relayPort),
    ])
    try await waitForPort(relayPort)
    let primary = try await startServe(
      ["--relay", "ws://127.0.0.1:\(relayPort)"], name: "primary", directory: directory,
      preload: preload)
    let cluster = Cluster(relay: relay, primary: primary, directory: directory, preload: preload)
    // Events flowing before anything is measured.
    let deadline = ContinuousClock.now + .seconds(60)
    while try await cluster.metric(primary.port, "contrail_events_total") == 0 {
      guard ContinuousClock.now < deadline else { throw CLIError("the primary stores nothing") }
      try await Task.sleep(for: .milliseconds(100))
    }
    return cluster
  }

  private static func startServe(
    _ arguments: [String], name: String, directory: String, preload: String?
  ) async throws -> Serve {
    let port = try freePort()
    var environment: [String: String] = [:]
    var counts: CallCounts? = nil
    if let preload {
      let path = directory + "/\(name).calls"
      environment["LD_PRELOAD"] = preload
      environment["BENCH_CALL_COUNTS"] = path
      counts = CallCounts(path: path)
    }
    let child = try Child.start(
      ["serve"] + arguments + [
        "--host", "127.0.0.1", "--port", String(port), "--data-dir", directory + "/\(name)",
        "--log-level", "warning",
      ], environment: environment)
    let deadline = ContinuousClock.now + .seconds(60)
    while true {
      if let response = try? await HTTPGet.fetch(
        host: "127.0.0.1", port: port, path: "/readyz", tls: nil, timeout: .seconds(2)),
        response.status == 200
      {
        break
      }
      guard child.isRunning, ContinuousClock.now < deadline else {
        throw CLIError("\(name) did not become ready")
      }
      try await Task.sleep(for: .milliseconds(100))
    }
    return Serve(child: child, port: port, counts: counts)
  }

  func addEdge() async throws {
    edges.append(
      try await Self.startServe(
        ["--upstream", "ws://127.0.0.1:\(primary.port)"], name: "edge-\(edges.count + 1)",
        directory: directory, preload: preload))
  }

  func removeEdge() {
    let edge = edges.removeLast()
    edge.child.stop()
    try? FileManager.default.removeItem(atPath: directory + "/edge-\(edges.count + 1)")
  }

  func stop() {
    for edge in edges.reversed() { edge.child.stop() }
    edges.removeAll()
    primary.child.stop()
    relay.stop()
  }

  /// The sum of a metric's samples (every label set) on the server at `port`.
  func metric(_ port: Int, _ name: String) async throws -> Double {
    let response = try await HTTPGet.fetch(
      host: "127.0.0.1", port: port, path: "/metrics", tls: nil, timeout: .seconds(5))
    var total = 0.0
    for line in String(decoding: response.body, as: UTF8.self).split(separator: "\n")
    where line.hasPrefix(name) {
      let key = line.prefix { $0 != " " }
      guard key == name || key.hasPrefix(name + "{") else { continue }
      total += Double(line.split(separator: " ").last ?? "") ?? 0
    }
    return total
  }

  func dictionaryID() async throws -> UInt32 {
    let response = try await HTTPGet.fetch(
      host: "127.0.0.1", port: primary.port, path: "/dictionary", tls: nil)
    guard response.body.count >= 8, Array(response.body[0..<4]) == [0x37, 0xA4, 0x30, 0xEC] else {
      throw CLIError("/dictionary is not a zstd dictionary")
    }
    return response.body[4..<8].reversed().reduce(0) { $0 << 8 | UInt32($1) }
  }

  func measure(seconds: Int, round: Int, phase: Window.Phase, load: LoadProcess?) async throws
    -> Window
  {
    let startEvents = try await metric(primary.port, "contrail_events_total")
    let startBytes = try await metric(primary.port, "contrail_bytes_sent_total")
    let startMachine = MachineCPU.now()
    let startCPU = cpu(load)
    let startPrimaryCalls = primary.counts?.read() ?? []
    let startEdgeCalls = edges.map { $0.counts?.read() ?? [] }
    let start = ContinuousClock.now
    try await Task.sleep(for: .seconds(seconds))
    let elapsed = ContinuousClock.now - start
    let endCPU = cpu(load)
    let endMachine = MachineCPU.now()
    let endPrimaryCalls = primary.counts?.read() ?? []
    let endEdgeCalls = edges.map { $0.counts?.read() ?? [] }
    let endEvents = try await metric(primary.port, "contrail_events_total")
    let endBytes = try await metric(primary.port, "contrail_bytes_sent_total")
    let window =
      Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    let used = zip(endCPU, startCPU).map { $0 - $1 }
    let total = endMachine.total - startMachine.total
    let machine =
      total > 0
      ? (endMachine.busy - startMachine.busy) / total
        * Double(ProcessInfo.processInfo.activeProcessorCount) * 100 : 0
    let ours = used.reduce(0, +) / window * 100
    return Window(
      round: round, phase: phase, window: window, events: endEvents - startEvents,
      primarySeconds: used[1], edgeSeconds: Array(used[3...]), relaySeconds: used[0],
      loadSeconds: used[2], replicationBytes: endBytes - startBytes,
      primaryCalls: zip(endPrimaryCalls, startPrimaryCalls).map { $0 - $1 },
      edgeCalls: zip(endEdgeCalls, startEdgeCalls).map { zip($0, $1).map { $0 - $1 } },
      othersPercent: max(0, machine - ours))
  }

  /// CPU seconds: relay, primary, load client, then each edge.
  private func cpu(_ load: LoadProcess?) -> [Double] {
    [relay.cpuSeconds, primary.child.cpuSeconds, load?.cpuSeconds ?? 0]
      + edges.map(\.child.cpuSeconds)
  }

  /// After a round: every edge holds what the primary holds, byte for byte in size. The relay is
  /// paused (SIGSTOP) first, and the log gauges, updated every 5 s, are read 7 s later.
  func checkEdges() async throws {
    relay.pause()
    try await Task.sleep(for: .seconds(7))
    guard !edges.isEmpty else { return }
    let events = try await metric(primary.port, "contrail_log_events")
    let bytes = try await metric(primary.port, "contrail_log_bytes")
    var lines: [String] = []
    for (index, edge) in edges.enumerated() {
      let edgeEvents = try await metric(edge.port, "contrail_log_events")
      let edgeBytes = try await metric(edge.port, "contrail_log_bytes")
      lines.append(
        "edge \(index + 1) \(Int(edgeEvents)) events, \(Int(edgeBytes)) B"
          + (edgeEvents == events && edgeBytes == bytes ? " (equal)" : " (DIFFERENT)"))
    }
    print(
      "  logs with the relay paused: primary \(Int(events)) events, \(Int(bytes)) B; "
        + lines.joined(separator: "; "))
  }
}

/// A child process of this binary.
final class Child {
  let process: Process

  private init(process: Process) { self.process = process }

  static func start(_ arguments: [String], environment: [String: String] = [:]) throws -> Child {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
    process.arguments = arguments
    if !environment.isEmpty {
      process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    return Child(process: process)
  }

  /// Runs to the end; throws unless it exits with 0.
  static func run(_ arguments: [String]) throws {
    let child = try start(arguments)
    child.process.waitUntilExit()
    guard child.process.terminationStatus == 0 else {
      throw CLIError("contrail \(arguments.joined(separator: " ")) failed")
    }
  }

  var isRunning: Bool { process.isRunning }
  var pid: Int32 { process.processIdentifier }

  /// User + system CPU seconds so far, every thread (/proc/PID/stat).
  var cpuSeconds: Double { Child.cpuSeconds(pid) }

  static func cpuSeconds(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else {
      return 0
    }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
  }

  /// Stops it (SIGSTOP): a relay that sends nothing more.
  func pause() { kill(pid, SIGSTOP) }

  /// SIGTERM (a stopped process is continued first), then waits up to 15 s before SIGKILL.
  func stop() {
    guard process.isRunning else { return }
    kill(pid, SIGTERM)
    kill(pid, SIGCONT)
    let deadline = ContinuousClock.now + .seconds(15)
    while process.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
    if process.isRunning { kill(pid, SIGKILL) }
    process.waitUntilExit()
  }
}

extension LoadProcess {
  /// The load client's CPU seconds so far.
  var cpuSeconds: Double { Child.cpuSeconds(pid) }
}

/// The counters the preloaded library keeps in a file mapped by the serve process
/// (`edge-bench.sh`): one little-endian Int64 per call, in `names` order.
struct CallCounts {
  static let names = [
    "ZSTD_compress2", "ZSTD_compressStream2", "ZSTD_decompressDCtx", "ZSTD_decompressStream",
    "cbor_stream_decode",
  ]
  let path: String

  func read() -> [Double] {
    guard let data = FileManager.default.contents(atPath: path), data.count >= 8 * Self.names.count
    else { return [Double](repeating: .nan, count: Self.names.count) }
    return (0..<Self.names.count).map { index in
      Double(
        data[(index * 8)..<(index * 8 + 8)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    }
  }
}

/// A port nothing listens on now (bound to port 0, then released).
func freePort() throws -> Int {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard fd >= 0 else { throw CLIError("socket: \(String(cString: strerror(errno)))") }
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = 0
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  var length = socklen_t(MemoryLayout<sockaddr_in>.size)
  let bound = withUnsafeMutablePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
      bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
    }
  }
  guard bound else { throw CLIError("bind: \(String(cString: strerror(errno)))") }
  return Int(UInt16(bigEndian: address.sin_port))
}

/// Waits until something accepts connections on `port`.
func waitForPort(_ port: Int) async throws {
  let deadline = ContinuousClock.now + .seconds(30)
  while true {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
      }
    }
    close(fd)
    if connected { return }
    guard ContinuousClock.now < deadline else { throw CLIError("nothing listens on \(port)") }
    try await Task.sleep(for: .milliseconds(50))
  }
}
